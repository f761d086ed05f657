//===- CudaParityCases.h - Kernels the GPU must run like the CPU -*- C++
//-*-===//
//
// One case per kernels/ instantiation that the GPU parity test runs on
// random inputs on both backends: which KernelAbi.h kernel, its parameters,
// its activation type, and how to fill and compare each argument buffer.
// Every case runs with f32 activations, as the CPU computes; every case
// with an activation buffer also runs as `<case>_bf16_act`, its activation
// buffers bf16 on the device (as in `--activation-type bf16` programs) and
// f32 on the CPU, which computes from the same bf16-rounded inputs.
// qlora-cuda-parity-pack compiles the cases with NVRTC where this project
// is built; qlora-cuda-tests runs them where there is a GPU, and test/emu
// on the host.
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
  /// Of the kernel's activation type T (`const Config::T *` in the entry):
  /// bf16 on the device in a bf16 case, f32 (`dtype`) on the CPU always.
  bool activation = false;
};

struct ParityCase {
  std::string name;
  std::string kernel; ///< KernelAbi.h name
  format::KernelParams params;
  std::vector<ParityArg> args;
  /// Largest |gpu - cpu| allowed, relative to the largest |cpu| of the
  /// compared buffer: fp32 kernels do the CPU's math in another order
  /// (1e-4; the emulator sees under 1e-6); the linears multiply bf16
  /// operands on tensor cores (kGemmTolerance).
  double tolerance = 1e-4;
  /// instantiateCudaKernel's activation type: "f32" or "bf16".
  std::string activationType = "f32";
};

/// The least tolerance of a buffer that the device holds as bf16 and the
/// CPU as f32. Both backends compute from the same bf16-rounded inputs; the
/// device then rounds what it stores as T to nearest even, off by at most
/// bf16's unit roundoff 2^-8 of the value, so of max |cpu|. Elementwise,
/// norm, rope, embedding, loss and attention kernels round their T outputs
/// once, at the end (an accumulating one rounds the sum once); attention_bwd
/// also reads o rounded from the CPU's f32 forward. A LoRA linear rounds y
/// (dx) twice, the base GEMM's result and then its sum with the LoRA term,
/// which reads back the t_ws (dt_ws) it stored as bf16. Hence 2^-7, two
/// roundings; the case's own tolerance covers the rest (bf16 tensor-core
/// operands, summation order, fast math).
constexpr double kBf16Tolerance = 0x1p-7;

/// The linears' tolerance: operands rounded to bf16 (relative error 2^-9
/// each) summed over K in fp32 give about 4e-3 of the largest output at
/// the test shapes; 2e-2 leaves room for K = 4096.
constexpr double kGemmTolerance = 2e-2;

/// Appended to a case's name for its bf16 variant.
constexpr std::string_view kBf16Suffix = "_bf16_act";

/// The f32 cases, then the bf16 variant of each that has an activation
/// buffer.
std::vector<ParityCase> parityCases();

/// Bytes of one argument buffer.
uint64_t argBytes(const ParityArg &arg);

/// `arg` as the device holds it in case `c`: bf16 where it is an activation
/// buffer of a bf16 case, else as the CPU holds it.
ParityArg onTheDevice(const ParityCase &c, const ParityArg &arg);

/// Largest |device - cpu| allowed in `arg`, relative to its largest |cpu|:
/// the case's tolerance, at least kBf16Tolerance for a bf16 buffer.
double toleranceOf(const ParityCase &c, const ParityArg &arg);

} // namespace qlora::cuda::parity

#endif // QLORACC_TEST_RUNTIME_CUDAPARITYCASES_H
