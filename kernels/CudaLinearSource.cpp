//===- CudaLinearSource.cpp - placeholder until the templates land
//----------===//
#include "kernels/CudaKernelBuilder.h"

namespace qlora::cuda::detail {
void buildLinearFwd(Reader &r, const std::string &, Instance &) {
  r.fail("no CUDA template yet");
}
void buildLinearGradInput(Reader &r, const std::string &, Instance &) {
  r.fail("no CUDA template yet");
}
void buildLoraGrad(Reader &r, const std::string &, Instance &) {
  r.fail("no CUDA template yet");
}
} // namespace qlora::cuda::detail
