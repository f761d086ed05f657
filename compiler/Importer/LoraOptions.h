//===- LoraOptions.h - The --lora specification -----------------*- C++ -*-===//
#ifndef QLORACC_COMPILER_IMPORTER_LORAOPTIONS_H
#define QLORACC_COMPILER_IMPORTER_LORAOPTIONS_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <string>
#include <vector>

namespace qloracc::importer {

/// PEFT's LoraConfig fields that shape the graph.
struct LoraOptions {
  int64_t r = 16;
  double alpha = 32.0;
  double dropout = 0.0;
  bool useRslora = false;
  /// Module names as PEFT's target_modules: q_proj, k_proj, v_proj, o_proj,
  /// gate_proj, up_proj, down_proj.
  std::vector<std::string> targets = {"q_proj", "v_proj"};
  int64_t seed = 0;
};

/// Parses `r=16,alpha=32,dropout=0.05,targets=q_proj,v_proj` (targets take
/// the rest of the list; `targets=all-linear` names every linear module but
/// lm_head, as PEFT does). Unspecified keys keep PEFT-like defaults.
llvm::Expected<LoraOptions> parseLoraSpec(llvm::StringRef spec);

} // namespace qloracc::importer

#endif // QLORACC_COMPILER_IMPORTER_LORAOPTIONS_H
