//===- CudaKernelBuilder.h - What the kernel builders share ----*- C++ -*-===//
//
// Private to kernels/: the pieces every `build<Kernel>` function of
// CudaKernelSource.cpp, CudaLinearSource.cpp and CudaAttentionSource.cpp
// uses to read a kernel's parameters and describe its instantiation.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_KERNELS_CUDAKERNELBUILDER_H
#define QLORACC_KERNELS_CUDAKERNELBUILDER_H

#include "runtime/format/KernelParams.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace qlora::cuda::detail {

inline std::string hexFloat(float value) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%af", double(value));
  return buffer;
}

inline std::string hexDouble(double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%a", value);
  return buffer;
}

inline uint32_t ceilDiv(int64_t a, int64_t b) {
  return uint32_t((a + b - 1) / b);
}

inline uint32_t powerOfTwoAtLeast(int64_t value) {
  uint32_t p = 1;
  while (p < value)
    p *= 2;
  return p;
}

/// The largest of 16 bytes / `elementBytes`, ..., 1 elements dividing n.
inline int vectorWidth(int64_t n, int64_t elementBytes) {
  for (int width = int(16 / elementBytes); width > 1; width /= 2)
    if (n % width == 0)
      return width;
  return 1;
}

/// A further entry of a multi-phase kernel.
struct InstancePhase {
  std::string body;
  uint32_t threads = 256;
  std::array<uint32_t, 3> grid = {1, 1, 1};
  uint32_t minBlocks = 0;     ///< as Instance::minBlocks
  uint32_t minBlocksSm90 = 0; ///< as Instance::minBlocksSm90
};

/// What a builder produces, before assembly.
struct Instance {
  std::string family;              ///< the .cuh file
  std::vector<std::string> config; ///< lines of `struct Config`
  std::string globals;             ///< device globals the entry uses
  std::string arguments;           ///< the entry's parameter list
  std::string body;                ///< the entry's body
  uint32_t threads = 256;
  std::array<uint32_t, 3> grid = {1, 1, 1};
  /// Other kernels/ files the family needs, included ahead of it
  /// ("Nf4.cuh" brings bitsandbytes' tables along).
  std::vector<std::string> uses;
  /// Entries launched after this one, in order, with the same arguments:
  /// for kernels whose steps need the whole grid to finish in between.
  std::vector<InstancePhase> then;
  /// __launch_bounds__'s minimum resident blocks per SM (0: left out).
  /// Naming one makes ptxas size registers for it instead of spilling a
  /// few cold values to reach a higher occupancy step.
  uint32_t minBlocks = 0;
  /// The same on sm_90 and newer, where it differs (0: minBlocks).
  uint32_t minBlocksSm90 = 0;
};

/// Parameter reads that remember the first problem.
class Reader {
public:
  Reader(std::string_view kernel, const format::KernelParams &params,
         std::string &error)
      : kernel(kernel), params(params), error(error) {}

  int64_t dim(std::string_view name, int64_t min = 1) {
    auto value = params.getInt(name);
    if (!value)
      fail("missing integer parameter '" + std::string(name) + "'");
    else if (*value < min)
      fail("parameter '" + std::string(name) + "' must be >= " +
           std::to_string(min) + ", found " + std::to_string(*value));
    return value.value_or(min);
  }
  bool flag(std::string_view name) { return dim(name, 0) != 0; }
  double real(std::string_view name) {
    auto value = params.getFloat(name);
    if (!value)
      fail("missing number parameter '" + std::string(name) + "'");
    else if (!std::isfinite(*value))
      fail("parameter '" + std::string(name) + "' must be finite");
    return value.value_or(0.0);
  }
  std::string oneOf(std::string_view name,
                    std::initializer_list<std::string_view> allowed) {
    auto value = params.getString(name);
    if (!value) {
      fail("missing string parameter '" + std::string(name) + "'");
      return std::string(*allowed.begin());
    }
    if (std::find(allowed.begin(), allowed.end(), *value) == allowed.end())
      fail("parameter '" + std::string(name) + "' has unsupported value '" +
           *value + "'");
    return *value;
  }
  /// A dtype parameter ("F32", "BF16", "F16") as its CUDA type.
  std::string cudaType(std::string_view name) {
    std::string dtype = oneOf(name, {"F32", "BF16", "F16"});
    return dtype == "BF16"  ? "__nv_bfloat16"
           : dtype == "F16" ? "__half"
                            : "float";
  }
  void fail(const std::string &message) {
    if (error.empty())
      error = "kernel '" + std::string(kernel) + "': " + message;
  }
  bool ok() const { return error.empty(); }
  const format::KernelParams &all() const { return params; }

private:
  std::string_view kernel;
  const format::KernelParams &params;
  std::string &error;
};

inline std::string intLine(std::string_view name, int64_t value) {
  return "static constexpr qlora::cuda::Index " + std::string(name) + " = " +
         std::to_string(value) + ";";
}
inline std::string intLine(std::string_view name, int value) {
  return "static constexpr int " + std::string(name) + " = " +
         std::to_string(value) + ";";
}
inline std::string boolLine(std::string_view name, bool value) {
  return "static constexpr bool " + std::string(name) + " = " +
         (value ? "true" : "false") + ";";
}
inline std::string floatLine(std::string_view name, float value) {
  return "static constexpr float " + std::string(name) + " = " +
         hexFloat(value) + ";";
}
inline std::string doubleLine(std::string_view name, double value) {
  return "static constexpr double " + std::string(name) + " = " +
         hexDouble(value) + ";";
}
inline std::string typeLine(std::string_view name, std::string_view type) {
  return "using " + std::string(name) + " = " + std::string(type) + ";";
}

inline size_t typeBytes(std::string_view cudaType) {
  return cudaType == "float" ? 4 : 2;
}

/// A grid-stride launch over `vectors` vectors.
inline std::array<uint32_t, 3> strideGrid(int64_t vectors, uint32_t threads) {
  constexpr int64_t kMaxBlocks = 8192; // enough to fill any GPU we target
  return {
      uint32_t(std::clamp<int64_t>(ceilDiv(vectors, threads), 1, kMaxBlocks)),
      1, 1};
}

using Builder = std::function<void(Reader &, const std::string &T, Instance &)>;

/// The Config lines of an NF4 weight `w` of n elements ([nf4] in
/// KernelAbi.h): Dequant, kBlockSize, kDqBlockSize and the layout's byte
/// offsets kAbsmaxOffset, kNestedAbsmaxOffset, kOffsetOffset, as Nf4.cuh's
/// nf4Absmax and nf4Decode read them. Fails on `r` for a bad layout.
std::vector<std::string> nf4WeightConfig(Reader &r, int64_t n);

//===- builders in other files --------------------------------------------===//

void buildLinearFwd(Reader &r, const std::string &T, Instance &out);
void buildLinearGradInput(Reader &r, const std::string &T, Instance &out);
void buildLoraGrad(Reader &r, const std::string &T, Instance &out);
void buildAttentionFwd(Reader &r, const std::string &T, Instance &out);
void buildAttentionBwd(Reader &r, const std::string &T, Instance &out);

} // namespace qlora::cuda::detail

#endif // QLORACC_KERNELS_CUDAKERNELBUILDER_H
