//===- KernelFlops.h - The arithmetic a kernel launch stands for -*- C++
//-*-===//
//
// The floating-point operations of one launch of the matrix-heavy kernel
// templates, counted from their KernelAbi.h parameters as the model needs
// them (a multiply-add is 2), not as a kernel happens to execute them:
// qlora-run --profile divides them by the measured time, so the TFLOP/s it
// prints compare across implementations (cuBLAS, FlashAttention-2).
//   linear_fwd, linear_grad_input  2·rows·in·out, plus 2·rows·r·(in + out)
//                                  with LoRA rank r
//   lora_grad                      2·rows·r·(in + out)
//   attention_fwd                  4·batch·heads·seq²·head_dim, half when
//                                  causal (q·kᵀ and p·v)
//   attention_bwd                  2.5 times attention_fwd's
//   (FlashAttention-2's
//                                  count: s recomputed, dp, dv, dq, dk)
// Other templates are bandwidth-bound and have no count.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_EXEC_KERNELFLOPS_H
#define QLORACC_RUNTIME_EXEC_KERNELFLOPS_H

#include "runtime/format/KernelParams.h"

#include <optional>
#include <string_view>

namespace qlora::exec {

/// The operations of one launch of `templateName` with `params`, or
/// std::nullopt for a template without a count (or parameters missing).
std::optional<double> modelFlops(std::string_view templateName,
                                 const format::KernelParams &params);

} // namespace qlora::exec

#endif // QLORACC_RUNTIME_EXEC_KERNELFLOPS_H
