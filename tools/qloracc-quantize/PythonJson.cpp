//===- PythonJson.cpp - JSON spelled as Python's json.dumps ---------------===//
#include "tools/qloracc-quantize/PythonJson.h"

#include <charconv>
#include <cstdint>
#include <cstdlib>

namespace qlora::quantize {
namespace {

void appendEscapedUnit(std::string &out, uint32_t unit) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += "\\u";
  for (int shift = 12; shift >= 0; shift -= 4)
    out += kHex[(unit >> shift) & 0xF];
}

/// json.dumps' ensure_ascii string: '"' and '\\' escaped, \b \f \n \r \t by
/// name, every other code point outside ' '..'~' as \uXXXX (a surrogate pair
/// above U+FFFF). `text` is valid UTF-8: nlohmann validated it on parsing.
void appendPythonString(std::string &out, const std::string &text) {
  out += '"';
  for (size_t i = 0; i < text.size();) {
    auto byte = static_cast<unsigned char>(text[i]);
    uint32_t codePoint = byte;
    size_t length = 1;
    if (byte >= 0xF0) {
      codePoint = byte & 0x07;
      length = 4;
    } else if (byte >= 0xE0) {
      codePoint = byte & 0x0F;
      length = 3;
    } else if (byte >= 0xC0) {
      codePoint = byte & 0x1F;
      length = 2;
    }
    for (size_t k = 1; k < length && i + k < text.size(); ++k)
      codePoint =
          (codePoint << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
    i += length;

    switch (codePoint) {
    case '"':
      out += "\\\"";
      continue;
    case '\\':
      out += "\\\\";
      continue;
    case '\b':
      out += "\\b";
      continue;
    case '\f':
      out += "\\f";
      continue;
    case '\n':
      out += "\\n";
      continue;
    case '\r':
      out += "\\r";
      continue;
    case '\t':
      out += "\\t";
      continue;
    default:
      break;
    }
    if (codePoint >= 0x20 && codePoint <= 0x7E) {
      out += static_cast<char>(codePoint);
    } else if (codePoint <= 0xFFFF) {
      appendEscapedUnit(out, codePoint);
    } else {
      uint32_t offset = codePoint - 0x10000;
      appendEscapedUnit(out, 0xD800 | (offset >> 10));
      appendEscapedUnit(out, 0xDC00 | (offset & 0x3FF));
    }
  }
  out += '"';
}

void appendIndent(std::string &out, int level) {
  out += '\n';
  out.append(static_cast<size_t>(2 * level), ' ');
}

void appendValue(std::string &out, const nlohmann::json &value, int level) {
  switch (value.type()) {
  case nlohmann::json::value_t::null:
    out += "null";
    return;
  case nlohmann::json::value_t::boolean:
    out += value.get<bool>() ? "true" : "false";
    return;
  case nlohmann::json::value_t::number_integer:
    out += std::to_string(value.get<int64_t>());
    return;
  case nlohmann::json::value_t::number_unsigned:
    out += std::to_string(value.get<uint64_t>());
    return;
  case nlohmann::json::value_t::number_float:
    out += pythonFloatRepr(value.get<double>());
    return;
  case nlohmann::json::value_t::string:
    appendPythonString(out, value.get_ref<const std::string &>());
    return;
  case nlohmann::json::value_t::array: {
    if (value.empty()) {
      out += "[]";
      return;
    }
    out += '[';
    bool first = true;
    for (const nlohmann::json &element : value) {
      if (!first)
        out += ',';
      first = false;
      appendIndent(out, level + 1);
      appendValue(out, element, level + 1);
    }
    appendIndent(out, level);
    out += ']';
    return;
  }
  case nlohmann::json::value_t::object: {
    if (value.empty()) {
      out += "{}";
      return;
    }
    out += '{';
    bool first = true;
    for (const auto &[key, element] : value.items()) {
      if (!first)
        out += ',';
      first = false;
      appendIndent(out, level + 1);
      appendPythonString(out, key);
      out += ": ";
      appendValue(out, element, level + 1);
    }
    appendIndent(out, level);
    out += '}';
    return;
  }
  case nlohmann::json::value_t::binary:
  case nlohmann::json::value_t::discarded:
    out += "null";
    return;
  }
}

} // namespace

std::string pythonFloatRepr(double value) {
  // The shortest round-trip digits, as "d.ddde±XX".
  char buffer[64];
  auto [end, ec] = std::to_chars(buffer, buffer + sizeof(buffer), value,
                                 std::chars_format::scientific);
  if (ec != std::errc())
    return "nan";
  std::string text(buffer, end);
  size_t ePos = text.find('e');
  std::string mantissa = text.substr(0, ePos);
  int exponent = std::atoi(text.c_str() + ePos + 1);
  std::string sign;
  if (!mantissa.empty() && mantissa[0] == '-') {
    sign = "-";
    mantissa.erase(0, 1);
  }
  std::string digits;
  for (char c : mantissa)
    if (c != '.')
      digits += c;

  if (exponent < -4 || exponent >= 16) {
    std::string out = sign + digits.substr(0, 1);
    if (digits.size() > 1)
      out += "." + digits.substr(1);
    out += exponent < 0 ? "e-" : "e+";
    int magnitude = std::abs(exponent);
    if (magnitude < 10)
      out += "0";
    out += std::to_string(magnitude);
    return out;
  }
  // Fixed notation: the point goes after digit number exponent + 1.
  int point = exponent + 1;
  std::string intPart, fracPart;
  if (point <= 0) {
    intPart = "0";
    fracPart = std::string(static_cast<size_t>(-point), '0') + digits;
  } else if (static_cast<size_t>(point) >= digits.size()) {
    intPart = digits + std::string(point - digits.size(), '0');
  } else {
    intPart = digits.substr(0, point);
    fracPart = digits.substr(point);
  }
  if (fracPart.empty())
    fracPart = "0";
  return sign + intPart + "." + fracPart;
}

std::string dumpJsonLikePython(const nlohmann::json &value) {
  std::string out;
  appendValue(out, value, 0);
  return out;
}

} // namespace qlora::quantize
