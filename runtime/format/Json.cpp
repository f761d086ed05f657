//===- Json.cpp - JSON parsing with positioned errors ---------------------===//
#include "runtime/format/Json.h"

#include <cstring>
#include <fstream>
#include <sstream>

namespace qlora::format {
namespace {

/// nlohmann's DOM builder, keeping the first syntax error instead of throwing.
class ErrorRecordingDomParser
    : public nlohmann::detail::json_sax_dom_parser<nlohmann::json> {
public:
  explicit ErrorRecordingDomParser(nlohmann::json &result)
      : json_sax_dom_parser(result, /*allow_exceptions=*/false) {}

  template <typename Exception>
  bool parse_error(std::size_t position, const std::string &,
                   const Exception &exception) {
    errorPosition = position;
    errorMessage = exception.what();
    return false;
  }

  std::size_t errorPosition = 0;
  std::string errorMessage;
};

/// nlohmann prefixes messages with "[json.exception.parse_error.101] "; the
/// user needs only what follows.
std::string stripExceptionTag(const std::string &message) {
  if (message.rfind("[json.exception.", 0) == 0)
    if (size_t end = message.find("] "); end != std::string::npos)
      return message.substr(end + 2);
  return message;
}

} // namespace

std::optional<nlohmann::json> parseJson(std::string_view text,
                                        std::string_view sourceName,
                                        std::string &error) {
  nlohmann::json result;
  ErrorRecordingDomParser parser(result);
  if (!nlohmann::json::sax_parse(text.begin(), text.end(), &parser)) {
    std::ostringstream os;
    os << sourceName << ": malformed JSON at byte " << parser.errorPosition
       << ": " << stripExceptionTag(parser.errorMessage);
    error = os.str();
    return std::nullopt;
  }
  return result;
}

std::optional<nlohmann::json> readJsonFile(const std::string &path,
                                           std::string &error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = path + ": cannot open: " + std::strerror(errno);
    return std::nullopt;
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  return parseJson(contents.str(), path, error);
}

} // namespace qlora::format
