//===- KernelParams.h - Static parameters of a kernel instance ---*- C++
//-*-===//
//
// The parameters a `qrt.kernel` instantiation carries (KernelAbi.h lists them
// per kernel), as the runtime reads them from train.bin. Lookups return
// std::nullopt when a parameter is missing or of another kind, so a backend
// can refuse a malformed program with a message instead of crashing.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_FORMAT_KERNELPARAMS_H
#define QLORACC_RUNTIME_FORMAT_KERNELPARAMS_H

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace qlora::format {

class KernelParams {
public:
  using Value =
      std::variant<int64_t, double, std::string, std::vector<int64_t>>;

  void set(std::string name, Value value) {
    values.insert_or_assign(std::move(name), std::move(value));
  }

  const Value *find(std::string_view name) const {
    auto it = values.find(name);
    return it == values.end() ? nullptr : &it->second;
  }

  std::optional<int64_t> getInt(std::string_view name) const {
    return get<int64_t>(name);
  }

  /// Floats; an integer parameter reads as its value.
  std::optional<double> getFloat(std::string_view name) const {
    if (auto value = get<double>(name))
      return value;
    if (auto value = get<int64_t>(name))
      return double(*value);
    return std::nullopt;
  }

  std::optional<std::string> getString(std::string_view name) const {
    return get<std::string>(name);
  }

  std::optional<std::vector<int64_t>> getInts(std::string_view name) const {
    return get<std::vector<int64_t>>(name);
  }

  const std::map<std::string, Value, std::less<>> &all() const {
    return values;
  }

private:
  template <typename T> std::optional<T> get(std::string_view name) const {
    const Value *value = find(name);
    if (!value || !std::holds_alternative<T>(*value))
      return std::nullopt;
    return std::get<T>(*value);
  }

  std::map<std::string, Value, std::less<>> values;
};

} // namespace qlora::format

#endif // QLORACC_RUNTIME_FORMAT_KERNELPARAMS_H
