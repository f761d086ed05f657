//===- Json.h - JSON parsing with positioned errors -------------*- C++ -*-===//
//
// One entry point for every JSON file qloracc reads (config.json, safetensors
// headers, index files). It never throws, so it serves code built with and
// without exceptions, and a syntax error carries its byte offset.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_FORMAT_JSON_H
#define QLORACC_RUNTIME_FORMAT_JSON_H

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace qlora::format {

/// Parses `text`. On a syntax error returns std::nullopt and sets `error` to
/// "<sourceName>: malformed JSON at byte <N>: <what the parser expected>".
std::optional<nlohmann::json> parseJson(std::string_view text,
                                        std::string_view sourceName,
                                        std::string &error);

/// Reads and parses a whole file; a missing or unreadable file is an error
/// naming the path.
std::optional<nlohmann::json> readJsonFile(const std::string &path,
                                           std::string &error);

} // namespace qlora::format

#endif // QLORACC_RUNTIME_FORMAT_JSON_H
