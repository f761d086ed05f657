//===- LoraState.cpp - LoRA buffers <-> PEFT adapter files
//-----------------===//
#include "runtime/exec/LoraState.h"

#include "runtime/format/train_generated.h"

namespace qlora::exec {

namespace {

std::span<std::byte> asBytes(std::vector<float> &values) {
  return std::as_writable_bytes(std::span<float>(values));
}

} // namespace

LoraState::LoraState(Executor &executor) : executor_(executor) {
  const fb::TrainBin &root = executor.file().root();
  const fb::LoraInfo *lora = root.lora();
  if (!lora)
    return;
  config_.r = lora->r();
  config_.alpha = lora->alpha();
  config_.dropout = lora->dropout();
  config_.useRslora = lora->use_rslora();
  if (lora->target_modules())
    for (const flatbuffers::String *target : *lora->target_modules())
      config_.targetModules.push_back(target->str());
  if (root.model() && root.model()->name_or_path())
    config_.baseModelNameOrPath = root.model()->name_or_path()->str();
  if (!lora->modules())
    return;
  for (const fb::LoraModule *entry : *lora->modules()) {
    Module module;
    module.name = entry->module_()->str(); // flatc renames the C++20 keyword
    module.loraA = entry->lora_a();
    module.loraB = entry->lora_b();
    module.gradA = entry->grad_a();
    module.gradB = entry->grad_b();
    // A is [r, in] and B is [out, r]; the loader checked both are 2-D.
    const auto *shapeA = executor.buffer(module.loraA).shape();
    const auto *shapeB = executor.buffer(module.loraB).shape();
    module.rank = shapeA->Get(0);
    module.in = shapeA->Get(1);
    module.out = shapeB->Get(0);
    module.a.resize(size_t(module.rank * module.in));
    module.b.resize(size_t(module.out * module.rank));
    modules_.push_back(std::move(module));
  }
}

std::vector<adapter::LoraTensorRef> LoraState::tensorRefs() {
  std::vector<adapter::LoraTensorRef> refs;
  for (Module &module : modules_)
    refs.push_back({module.name, module.rank, module.in, module.out,
                    module.a.data(), module.b.data()});
  return refs;
}

bool LoraState::download(bool gradients, std::string &error) {
  for (Module &module : modules_) {
    if (!executor_.read(gradients ? module.gradA : module.loraA,
                        asBytes(module.a), error) ||
        !executor_.read(gradients ? module.gradB : module.loraB,
                        asBytes(module.b), error))
      return false;
  }
  return true;
}

bool LoraState::loadAdapter(const std::string &dir, std::string &error) {
  std::vector<adapter::LoraTensorRef> refs = tensorRefs();
  if (!adapter::loadAdapter(dir, config_, refs, error))
    return false;
  for (Module &module : modules_)
    if (!executor_.write(module.loraA, asBytes(module.a), error) ||
        !executor_.write(module.loraB, asBytes(module.b), error))
      return false;
  return true;
}

bool LoraState::saveAdapter(const std::string &dir, std::string &error) {
  if (!download(/*gradients=*/false, error))
    return false;
  std::vector<adapter::LoraTensorRef> refs = tensorRefs();
  return adapter::saveAdapter(dir, config_, refs, error);
}

bool LoraState::saveGradients(const std::string &path, std::string &error) {
  if (!download(/*gradients=*/true, error))
    return false;
  std::vector<adapter::LoraTensorRef> refs = tensorRefs();
  return adapter::saveAdapterTensors(path, refs, error);
}

} // namespace qlora::exec
