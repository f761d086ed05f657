//===- CudaParityCases.h - Kernels the GPU must run like the CPU -*- C++
//-*-===//
//
// One case per kernels/ instantiation that the GPU parity test runs on
// random inputs on both backends (f32 activations, as the CPU computes):
// which KernelAbi.h kernel, its parameters, and how to fill and compare
// each argument buffer. qlora-cuda-parity-pack compiles the cases with
// NVRTC where this project is built; qlora-cuda-tests runs them where there
// is a GPU.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_TEST_RUNTIME_CUDAPARITYCASES_H
#define QLORACC_TEST_RUNTIME_CUDAPARITYCASES_H

#include "runtime/format/DType.h"
#include "runtime/format/KernelParams.h"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace qlora::cuda::parity {

/// How an argument buffer starts.
enum class Fill {
  Normal,    ///< uniform in [-scale, scale]
  Positive,  ///< uniform in [0, scale] (AdamW's second moment)
  Value,     ///< every element `scale`
  Tokens,    ///< i32 in [0, range)
  Labels,    ///< i32 in [0, range), one in eight ignore_index (-100)
  Nf4,       ///< an NF4 tensor of `elements` (block 64, nested 256)
  Nf4NoDq,   ///< an NF4 tensor of `elements` (block 64, fp32 absmax)
  Attention, ///< attention_fwd(q, k, v) of the case's first three inputs
  Output,    ///< zeros; written by the kernel
};

struct ParityArg {
  std::string name;
  format::DType dtype = format::DType::F32;
  int64_t elements = 1;
  Fill fill = Fill::Normal;
  double scale = 1.0;   ///< Normal/Positive bound, Value value
  int64_t range = 0;    ///< Tokens/Labels: the vocabulary
  bool compare = false; ///< read back and compared after the launch
};

struct ParityCase {
  std::string name;
  std::string kernel; ///< KernelAbi.h name
  format::KernelParams params;
  std::vector<ParityArg> args;
  /// Largest |gpu - cpu| allowed, relative to the largest |cpu| of the
  /// compared buffer.
  double tolerance = 2e-2;
};

std::vector<ParityCase> parityCases();

/// Bytes of one argument buffer.
uint64_t argBytes(const ParityArg &arg);

} // namespace qlora::cuda::parity

#endif // QLORACC_TEST_RUNTIME_CUDAPARITYCASES_H
