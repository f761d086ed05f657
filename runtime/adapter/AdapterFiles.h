//===- AdapterFiles.h - Pieces of the adapter reader and writer -*- C++ -*-===//
//
// Private to QloraAdapter: the adapter_config.json contents and their
// checks.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_ADAPTER_ADAPTERFILES_H
#define QLORACC_RUNTIME_ADAPTER_ADAPTERFILES_H

#include "runtime/adapter/Adapter.h"

#include <nlohmann/json.hpp>

namespace qlora::adapter::detail {

/// `config.targetModules`, or when empty the sorted distinct last path
/// components of the tensors' modules.
std::vector<std::string>
targetModulesFor(const AdapterConfig &config,
                 std::span<const LoraTensorRef> tensors);

/// adapter_config.json as PEFT writes it (json.dumps(indent=2,
/// sort_keys=True), ASCII only); false with `problem` set when a string is
/// not UTF-8.
bool adapterConfigText(const AdapterConfig &config,
                       const std::vector<std::string> &targetModules,
                       std::string &text, std::string &problem);

/// Checks a parsed adapter_config.json (read from `path`) against
/// `expected`; see loadAdapter.
bool checkAdapterConfig(const std::string &path, const nlohmann::json &config,
                        const AdapterConfig &expected,
                        const std::vector<std::string> &targetModules,
                        std::string &error);

/// Checks that each tensor has a module name, positive dimensions, buffers
/// and rank `r`; `path` names the file the tensors belong to.
bool checkTensorRefs(const std::string &path,
                     std::span<const LoraTensorRef> tensors, int64_t r,
                     std::string &error);

} // namespace qlora::adapter::detail

#endif // QLORACC_RUNTIME_ADAPTER_ADAPTERFILES_H
