//===- CudaAttentionSource.cpp - placeholder until the templates land
//----------===//
#include "kernels/CudaKernelBuilder.h"

namespace qlora::cuda::detail {
void buildAttentionFwd(Reader &r, const std::string &, Instance &) {
  r.fail("no CUDA template yet");
}
void buildAttentionBwd(Reader &r, const std::string &, Instance &) {
  r.fail("no CUDA template yet");
}
} // namespace qlora::cuda::detail
