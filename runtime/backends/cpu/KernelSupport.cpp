//===- KernelSupport.cpp - Helpers shared by the CPU kernel families ------===//
#include "runtime/backends/cpu/KernelSupport.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <type_traits>
#include <variant>

namespace qlora::cpu::detail {

namespace {
std::string describe(const format::KernelParams::Value &value) {
  return std::visit(
      [](const auto &v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, int64_t>) {
          return "integer " + std::to_string(v);
        } else if constexpr (std::is_same_v<T, double>) {
          char text[32];
          std::snprintf(text, sizeof(text), "%.9g", v);
          return std::string("float ") + text;
        } else if constexpr (std::is_same_v<T, std::string>) {
          return "string '" + v + "'";
        } else {
          std::string text = "integer array [";
          for (size_t i = 0; i < v.size(); ++i)
            text += (i ? ", " : "") + std::to_string(v[i]);
          return text + "]";
        }
      },
      value);
}

std::string quoted(std::string_view name) {
  return "'" + std::string(name) + "'";
}
} // namespace

void Signature::check(bool ok, const std::string &message) {
  if (!ok && error.empty())
    error = kernel + ": " + message;
}

const format::KernelParams::Value *
Signature::lookup(std::string_view name, std::string_view expectedKind) {
  const format::KernelParams::Value *value = params.find(name);
  check(value, "missing parameter " + quoted(name) + " (expected " +
                   std::string(expectedKind) + ")");
  return value;
}

int64_t Signature::integer(std::string_view name, int64_t min) {
  std::string kind = min == 1   ? "a positive integer"
                     : min == 0 ? "a non-negative integer"
                                : "an integer";
  const format::KernelParams::Value *value = lookup(name, kind);
  if (!value)
    return std::max<int64_t>(min, 1);
  std::optional<int64_t> result = params.getInt(name);
  check(result && *result >= min, "parameter " + quoted(name) + " must be " +
                                      kind + ", found " + describe(*value));
  return result && *result >= min ? *result : std::max<int64_t>(min, 1);
}

bool Signature::flag(std::string_view name) {
  const format::KernelParams::Value *value = lookup(name, "0 or 1");
  if (!value)
    return false;
  std::optional<int64_t> result = params.getInt(name);
  bool ok = result && (*result == 0 || *result == 1);
  check(ok, "parameter " + quoted(name) + " must be 0 or 1, found " +
                describe(*value));
  return ok && *result == 1;
}

double Signature::real(std::string_view name, bool allowNonFinite) {
  std::string kind = allowNonFinite ? "a float" : "a finite float";
  const format::KernelParams::Value *value = lookup(name, kind);
  if (!value)
    return 1.0;
  std::optional<double> result = params.getFloat(name);
  bool ok = result && (allowNonFinite || std::isfinite(*result));
  check(ok, "parameter " + quoted(name) + " must be " + kind + ", found " +
                describe(*value));
  return ok ? *result : 1.0;
}

std::string Signature::oneOf(std::string_view name,
                             std::initializer_list<std::string_view> options) {
  std::string list;
  for (std::string_view option : options)
    list += (list.empty() ? "" : "|") + std::string(option);
  const format::KernelParams::Value *value = lookup(name, "one of " + list);
  if (!value)
    return std::string(*options.begin());
  std::optional<std::string> result = params.getString(name);
  bool ok = false;
  for (std::string_view option : options)
    ok |= result && *result == option;
  check(ok, "parameter " + quoted(name) + " must be one of " + list +
                ", found " + describe(*value));
  return ok ? *result : std::string(*options.begin());
}

std::string Signature::text(std::string_view name) {
  const format::KernelParams::Value *value = lookup(name, "a non-empty string");
  if (!value)
    return "";
  std::optional<std::string> result = params.getString(name);
  bool ok = result && !result->empty();
  check(ok, "parameter " + quoted(name) +
                " must be a non-empty string, found " + describe(*value));
  return ok ? *result : "";
}

format::DType Signature::floatType(std::string_view name) {
  return *format::parseDType(oneOf(name, {"F32", "BF16", "F16"}));
}

std::vector<int64_t> Signature::dims(std::string_view name) {
  const format::KernelParams::Value *value =
      lookup(name, "an array of positive integers");
  if (!value)
    return {};
  std::optional<std::vector<int64_t>> result = params.getInts(name);
  bool ok = result.has_value();
  for (int64_t entry : result.value_or(std::vector<int64_t>{}))
    ok &= entry >= 1;
  check(ok, "parameter " + quoted(name) +
                " must be an array of positive integers, found " +
                describe(*value));
  return ok ? *result : std::vector<int64_t>{};
}

namespace {
// Bounded by 2^62 bytes so that every index computed in int64 fits.
constexpr uint64_t kMaxBytes = uint64_t(1) << 62;
} // namespace

Signature::Expected Signature::shaped(std::string_view name,
                                      std::span<const int64_t> shape,
                                      uint64_t elementBytes) {
  Expected entry{std::string(name) + " [", 0, false};
  uint64_t bytes = elementBytes;
  for (size_t i = 0; i < shape.size(); ++i) {
    entry.description += (i ? " x " : "") + std::to_string(shape[i]);
    uint64_t extent = uint64_t(std::max<int64_t>(shape[i], 0));
    if (__builtin_mul_overflow(bytes, extent, &bytes) || bytes > kMaxBytes)
      entry.overflow = true;
  }
  if (shape.empty())
    entry.description.pop_back(), entry.description += "scalar";
  else
    entry.description += "]";
  entry.bytes = size_t(bytes);
  return entry;
}

void Signature::arg(std::string_view name, std::span<const int64_t> shape,
                    format::DType dtype) {
  Expected entry = shaped(name, shape, format::dtypeSize(dtype));
  entry.description += " " + std::string(format::dtypeName(dtype));
  expected.push_back(std::move(entry));
}

void Signature::nf4Arg(std::string_view name,
                       std::initializer_list<int64_t> shape,
                       const Nf4Params &nf4) {
  Expected entry =
      shaped(name, std::span<const int64_t>(shape.begin(), shape.size()), 1);
  entry.description +=
      " NF4 (blocks of " + std::to_string(nf4.blockSize) +
      (nf4.dqBlockSize ? ", nested blocks of " + std::to_string(nf4.dqBlockSize)
                       : std::string(", f32 absmax")) +
      ")";
  std::optional<format::Nf4Layout> layout = format::Nf4Layout::compute(
      int64_t(entry.bytes), nf4.blockSize, nf4.dqBlockSize);
  entry.overflow |= !layout || uint64_t(layout->totalBytes) > kMaxBytes;
  entry.bytes = layout ? size_t(layout->totalBytes) : 0;
  expected.push_back(std::move(entry));
}

Nf4Params Signature::nf4Params() {
  // Block sizes past 2^40 would overflow the layout's arithmetic; no real
  // tensor has them.
  constexpr int64_t kMaxBlock = int64_t(1) << 40;
  Nf4Params nf4;
  nf4.blockSize = integer("w_block_size", 1);
  check(nf4.blockSize <= kMaxBlock,
        "parameter 'w_block_size' must be at most 2^40, found " +
            std::to_string(nf4.blockSize));
  nf4.dqBlockSize = integer("w_dq_block_size", 0);
  check(nf4.dqBlockSize <= kMaxBlock,
        "parameter 'w_dq_block_size' must be at most 2^40, found " +
            std::to_string(nf4.dqBlockSize));
  nf4.dequantType = floatType("w_dequant_dtype");
  return nf4;
}

void Signature::arg(std::string_view name, std::initializer_list<int64_t> shape,
                    format::DType dtype) {
  arg(name, std::span<const int64_t>(shape.begin(), shape.size()), dtype);
}

std::string Signature::finish() {
  if (!error.empty())
    return error;
  if (argBytes.size() != expected.size()) {
    std::string names;
    for (const Expected &entry : expected)
      names += (names.empty() ? "" : ", ") +
               entry.description.substr(0, entry.description.find(' '));
    return kernel + ": expected " + std::to_string(expected.size()) +
           " arguments (" + names + "), found " +
           std::to_string(argBytes.size());
  }
  for (size_t i = 0; i < expected.size(); ++i) {
    const Expected &entry = expected[i];
    if (entry.overflow)
      return kernel + ": argument " + std::to_string(i) + " (" +
             entry.description + ") is too large to address";
    // A buffer may be larger than its tensor (qrt.buffer sizes are "at
    // least" the type's bytes); the kernel touches only the tensor.
    if (argBytes[i] < entry.bytes)
      return kernel + ": argument " + std::to_string(i) + " (" +
             entry.description + ") needs " + std::to_string(entry.bytes) +
             " bytes, found " + std::to_string(argBytes[i]);
  }
  return "";
}

format::DType dtypeParam(const KernelCall &call, std::string_view name) {
  return *format::parseDType(*call.params.getString(name));
}

Nf4Params nf4ParamsOf(const KernelCall &call) {
  return {intParam(call, "w_block_size"), intParam(call, "w_dq_block_size"),
          dtypeParam(call, "w_dequant_dtype")};
}

} // namespace qlora::cpu::detail
