//===- CpuKernels.cpp - The CPU backend's kernel registry -----------------===//
#include "runtime/backends/cpu/CpuKernels.h"
#include "runtime/backends/cpu/KernelSupport.h"

#include <array>

namespace qlora::cpu {

namespace {
using Family = std::span<const detail::NamedKernel> (*)();
constexpr std::array<Family, 7> kFamilies = {
    detail::elementwiseKernels, detail::normRopeKernels,
    detail::linearKernels,      detail::attentionKernels,
    detail::lossKernels,        detail::optimizerKernels,
    detail::nf4Kernels,
};
} // namespace

const CpuKernel *findCpuKernel(std::string_view templateName) {
  for (Family family : kFamilies)
    for (const detail::NamedKernel &entry : family())
      if (entry.name == templateName)
        return &entry.kernel;
  return nullptr;
}

std::vector<std::string_view> cpuKernelNames() {
  std::vector<std::string_view> names;
  for (Family family : kFamilies)
    for (const detail::NamedKernel &entry : family())
      names.push_back(entry.name);
  return names;
}

} // namespace qlora::cpu
