//===- Adapter.h - PEFT LoRA adapter directories ----------------*- C++ -*-===//
//
// Saves and loads LoRA weights as a PEFT adapter directory, the layout that
// `PeftModel.save_pretrained` writes and `PeftModel.from_pretrained` loads:
//
//   <dir>/adapter_model.safetensors  tensors
//       base_model.model.<module>.lora_A.weight  [r, in]
//       base_model.model.<module>.lora_B.weight  [out, r]
//     with metadata {"format": "pt"} (what safetensors' torch save writes);
//   <dir>/adapter_config.json        the LoraConfig (peft_type "LORA",
//     task_type "CAUSAL_LM", r, lora_alpha, target_modules, ...).
//
// <module> is the module path in the transformers model, e.g.
// "model.layers.0.self_attn.q_proj". Only safetensors adapters are read;
// a pickled adapter_model.bin is refused with a message saying so.
//
// This library knows nothing of train.bin: the caller describes its LoRA
// parameters as LoraTensorRef views of fp32 host buffers.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_ADAPTER_ADAPTER_H
#define QLORACC_RUNTIME_ADAPTER_ADAPTER_H

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace qlora::adapter {

inline constexpr std::string_view kAdapterWeightsFile =
    "adapter_model.safetensors";
inline constexpr std::string_view kAdapterConfigFile = "adapter_config.json";

/// One LoRA-adapted linear layer: y = x W^T + (x A^T) B^T * scaling.
struct LoraTensorRef {
  /// Module path in the transformers model,
  /// e.g. "model.layers.0.self_attn.q_proj".
  std::string module;
  int64_t rank = 0;
  int64_t inFeatures = 0;
  int64_t outFeatures = 0;
  /// [rank, inFeatures], row-major fp32.
  float *loraA = nullptr;
  /// [outFeatures, rank], row-major fp32.
  float *loraB = nullptr;
};

/// The LoraConfig fields that describe the adapter.
struct AdapterConfig {
  int64_t r = 8;
  double alpha = 16;
  double dropout = 0;
  bool useRslora = false;
  /// Module name suffixes as PEFT's target_modules ("q_proj", "v_proj").
  /// When empty, saveAdapter and loadAdapter use the last path component of
  /// every LoraTensorRef's module, sorted and without repeats.
  std::vector<std::string> targetModules;
  /// Written as base_model_name_or_path; null when empty.
  std::string baseModelNameOrPath;
};

/// "base_model.model.<module>.lora_A.weight" (`isB` false) or the lora_B
/// key, as PEFT names them in adapter_model.safetensors.
std::string adapterTensorKey(std::string_view module, bool isB);

/// Writes `tensors` as adapter_model.safetensors does (F32, PEFT's keys,
/// metadata {"format": "pt"}) to `path`, atomically. saveAdapter uses it;
/// so does qlora-run --save-grads, whose gradients share the layout.
bool saveAdapterTensors(const std::string &path,
                        std::span<const LoraTensorRef> tensors,
                        std::string &error);

/// Writes `<dir>/adapter_model.safetensors` (fp32, tensors in the order of
/// `tensors`, A before B) and `<dir>/adapter_config.json`, creating `dir`
/// when needed. Each file is written to a temporary file and renamed into
/// place. Every tensor's rank must equal `config.r`. On failure returns
/// false with a one-line `error` naming the file and the problem.
bool saveAdapter(const std::string &dir, const AdapterConfig &config,
                 std::span<const LoraTensorRef> tensors, std::string &error);

/// Reads the adapter in `dir` into the buffers of `into`. Checks, before
/// writing any buffer, that adapter_config.json is a LORA config whose r,
/// lora_alpha, use_rslora and target_modules match `expected` (a
/// target_modules regex string is not compared; the tensor keys decide),
/// that every key of `into` is present with its shape and no other tensor
/// is, and that tensors are F32, BF16 or F16 (widened exactly to fp32).
/// Keys carrying PEFT's adapter name (`...lora_A.default.weight`) are
/// accepted as well. On failure returns false with a one-line `error`
/// naming the file, the key or field, what was expected and what was found.
bool loadAdapter(const std::string &dir, const AdapterConfig &expected,
                 std::span<const LoraTensorRef> into, std::string &error);

} // namespace qlora::adapter

#endif // QLORACC_RUNTIME_ADAPTER_ADAPTER_H
