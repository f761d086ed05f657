//===- TextFormat.cpp - Numbers as people read them -----------------------===//
#include "runtime/train/TextFormat.h"

#include <array>
#include <cmath>

#include <fmt/format.h>

namespace qlora::train {

std::string formatBytes(uint64_t bytes) {
  static constexpr std::array<const char *, 7> kUnits = {
      "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024)
    return fmt::format("{} B", bytes);
  size_t unit = 1;
  double value = static_cast<double>(bytes) / 1024.0;
  // 1048575 bytes is 1023.999 KiB, which two decimals would print as
  // "1024.00 KiB": move up a unit when the rounded value reaches 1024.
  while (unit + 1 < kUnits.size() && std::round(value * 100.0) >= 102400.0) {
    value /= 1024.0;
    ++unit;
  }
  return fmt::format("{:.2f} {}", value, kUnits[unit]);
}

std::string formatThousands(int64_t value) {
  std::string digits = std::to_string(value);
  size_t start = digits[0] == '-' ? 1 : 0;
  std::string result = digits.substr(0, start);
  size_t count = digits.size() - start;
  for (size_t i = 0; i < count; ++i) {
    if (i > 0 && (count - i) % 3 == 0)
      result += ',';
    result += digits[start + i];
  }
  return result;
}

std::string formatDuration(double seconds) {
  // 1e15 s is far past any run and keeps the cast below in range.
  if (!std::isfinite(seconds) || seconds < 0 || seconds > 1e15)
    return "-:--:--";
  auto total = static_cast<int64_t>(std::llround(seconds));
  return fmt::format("{}:{:02}:{:02}", total / 3600, total / 60 % 60,
                     total % 60);
}

std::optional<uint64_t> parseBytes(std::string_view text) {
  size_t digits = 0;
  bool point = false;
  while (digits < text.size() &&
         (std::isdigit(static_cast<unsigned char>(text[digits])) ||
          (text[digits] == '.' && !point))) {
    point |= text[digits] == '.';
    ++digits;
  }
  if (digits == 0 || text[0] == '.')
    return std::nullopt;
  double number =
      std::strtod(std::string(text.substr(0, digits)).c_str(), nullptr);
  std::string_view unit = text.substr(digits);
  if (!unit.empty() && unit.front() == ' ')
    unit.remove_prefix(1);
  struct Unit {
    std::string_view name;
    double scale;
  };
  static constexpr Unit kUnits[] = {{"", 1},         {"B", 1},    {"K", 0x1p10},
                                    {"KiB", 0x1p10}, {"KB", 1e3}, {"M", 0x1p20},
                                    {"MiB", 0x1p20}, {"MB", 1e6}, {"G", 0x1p30},
                                    {"GiB", 0x1p30}, {"GB", 1e9}, {"T", 0x1p40},
                                    {"TiB", 0x1p40}, {"TB", 1e12}};
  for (const Unit &candidate : kUnits) {
    if (candidate.name != unit)
      continue;
    double bytes = number * candidate.scale;
    if (!(bytes < 0x1p64) || bytes != std::floor(bytes))
      return std::nullopt;
    return static_cast<uint64_t>(bytes);
  }
  return std::nullopt;
}

} // namespace qlora::train
