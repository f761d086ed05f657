//===- CudaKernelBuilder.cpp - What the kernel builders share -------------===//
#include "kernels/CudaKernelBuilder.h"
#include "runtime/format/Nf4Layout.h"

namespace qlora::cuda::detail {

std::vector<std::string> nf4WeightConfig(Reader &r, int64_t n) {
  int64_t blockSize = r.dim("w_block_size");
  int64_t dqBlockSize = r.dim("w_dq_block_size", 0);
  std::string dequant = r.cudaType("w_dequant_dtype");
  auto layout = format::Nf4Layout::compute(n, blockSize, dqBlockSize);
  if (!layout) {
    r.fail("invalid NF4 layout (" + std::to_string(n) + " elements, block " +
           std::to_string(blockSize) + ", nested block " +
           std::to_string(dqBlockSize) + ")");
    return {};
  }
  return {typeLine("Dequant", dequant),
          intLine("kBlockSize", blockSize),
          intLine("kDqBlockSize", dqBlockSize),
          intLine("kAbsmaxOffset", layout->absmaxOffset),
          intLine("kNestedAbsmaxOffset", layout->nestedAbsmaxOffset),
          intLine("kOffsetOffset", layout->offsetOffset)};
}

} // namespace qlora::cuda::detail
