//===- PythonJson.h - JSON spelled as Python's json.dumps -------*- C++ -*-===//
//
// transformers writes config.json and model.safetensors.index.json with
// json.dumps(obj, indent=2, sort_keys=True) + "\n", and bitsandbytes packs a
// quant_state as json.dumps(dict). To write the same bytes we spell floats
// with Python's repr (shortest round-trip digits, guaranteed, where
// nlohmann's Grisu2 is not) and strings with json.dumps' ensure_ascii
// escapes.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_TOOLS_QLORACC_QUANTIZE_PYTHONJSON_H
#define QLORACC_TOOLS_QLORACC_QUANTIZE_PYTHONJSON_H

#include <nlohmann/json.hpp>

#include <string>

namespace qlora::quantize {

/// Python's repr() of a finite double (what json.dumps writes): the shortest
/// round-trip digits, fixed notation for decimal exponents -4..15 (with ".0"
/// when integral), otherwise "1.5e-05" / "1e+16".
std::string pythonFloatRepr(double value);

/// json.dumps(value, indent=2, sort_keys=True), without a final newline.
/// Keys come out sorted because nlohmann::json keeps objects in a std::map
/// (byte order of UTF-8 is code point order, as Python sorts). NaN and
/// infinities cannot occur: the parser rejects them.
std::string dumpJsonLikePython(const nlohmann::json &value);

} // namespace qlora::quantize

#endif // QLORACC_TOOLS_QLORACC_QUANTIZE_PYTHONJSON_H
