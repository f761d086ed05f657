//===- LoraOptions.cpp - Parsing the --lora specification -----------------===//
#include "compiler/Importer/LoraOptions.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FormatVariadic.h"

using namespace qloracc::importer;

/// The linear modules of a LLaMA block, in PEFT's "all-linear" order.
static constexpr llvm::StringRef kLinearModules[] = {
    "q_proj",    "k_proj",  "v_proj",   "o_proj",
    "gate_proj", "up_proj", "down_proj"};

static llvm::Error specError(const llvm::Twine &message) {
  return llvm::createStringError(llvm::inconvertibleErrorCode(),
                                 "--lora: " + message);
}

llvm::Expected<LoraOptions>
qloracc::importer::parseLoraSpec(llvm::StringRef spec) {
  LoraOptions options;
  llvm::SmallVector<llvm::StringRef> items;
  spec.split(items, ',', -1, /*KeepEmpty=*/false);
  for (size_t i = 0; i < items.size(); ++i) {
    auto [key, value] = items[i].split('=');
    key = key.trim();
    value = value.trim();
    if (key == "targets") {
      // Targets take the rest of the list: "targets=q_proj,v_proj".
      options.targets.clear();
      llvm::SmallVector<llvm::StringRef> listed = {value};
      llvm::append_range(listed, llvm::ArrayRef(items).drop_front(i + 1));
      for (llvm::StringRef target : listed) {
        target = target.trim();
        if (target.contains('='))
          return specError("'targets' must come last; found '" + target +
                           "' after it");
        bool allLinear = target == "all-linear";
        if (!allLinear && !llvm::is_contained(kLinearModules, target))
          return specError("unknown target module '" + target +
                           "' (expected all-linear or some of: " +
                           llvm::join(llvm::ArrayRef(kLinearModules), ", ") +
                           ")");
        for (llvm::StringRef module : kLinearModules)
          if ((allLinear || module == target) &&
              !llvm::is_contained(options.targets, module))
            options.targets.push_back(module.str());
      }
      if (options.targets.empty())
        return specError("'targets' needs at least one module");
      break;
    }
    if (key == "r") {
      if (value.getAsInteger(10, options.r) || options.r <= 0)
        return specError("r must be a positive integer, got '" + value + "'");
    } else if (key == "alpha") {
      if (value.getAsDouble(options.alpha) || !(options.alpha > 0))
        return specError("alpha must be a positive number, got '" + value +
                         "'");
    } else if (key == "dropout") {
      if (value.getAsDouble(options.dropout) ||
          !(options.dropout >= 0 && options.dropout < 1))
        return specError("dropout must be in [0, 1), got '" + value + "'");
    } else if (key == "seed") {
      if (value.getAsInteger(10, options.seed))
        return specError("seed must be an integer, got '" + value + "'");
    } else {
      return specError("unknown key '" + key +
                       "' (expected r, alpha, dropout, seed, targets)");
    }
  }
  return options;
}
