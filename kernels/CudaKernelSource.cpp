//===- CudaKernelSource.cpp - kernels/ templates, instantiated ------------===//
//
// One builder per KernelAbi.h kernel reads its parameters, picks the launch
// shape and writes the `Config` lines and the entry; `assemble` puts the
// templates, the Config and the entry together. Floating-point parameters
// are written as hexadecimal literals, so the kernel sees exactly the value
// the program holds.
//
//===----------------------------------------------------------------------===//
#include "kernels/CudaKernelSource.h"
#include "kernels/CudaKernelBuilder.h"
#include "runtime/format/KernelAbi.h"
#include "runtime/format/Nf4.h"
#include "runtime/format/Nf4Layout.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <numbers>

namespace qlora::cuda {
namespace {

using namespace detail;

constexpr CudaTemplateFile kTemplates[] = {
#include "kernels/CudaKernelTemplates.inc"
};

std::string_view templateText(std::string_view name) {
  for (const CudaTemplateFile &file : kTemplates)
    if (file.name == name)
      return file.text;
  return {};
}

/// FNV-1a, 64 bits: stable across hosts and builds.
uint64_t fnv1a(std::string_view text) {
  uint64_t hash = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ull;
  }
  return hash;
}

/// The parameters in one canonical line (sorted by name).
std::string canonicalParams(const format::KernelParams &params) {
  std::string text;
  for (const auto &[name, value] : params.all()) {
    text += name + "=";
    if (const auto *i = std::get_if<int64_t>(&value))
      text += std::to_string(*i);
    else if (const auto *d = std::get_if<double>(&value))
      text += hexDouble(*d);
    else if (const auto *s = std::get_if<std::string>(&value))
      text += '"' + *s + '"';
    else
      for (int64_t v : std::get<std::vector<int64_t>>(value))
        text += std::to_string(v) + ",";
    text += " ";
  }
  return text;
}

//===- builders -----------------------------------------------------------===//

void elementwise(Instance &out, const std::string &T, int64_t n, int vec,
                 std::string arguments, std::string call) {
  out.family = "Elementwise.cuh";
  out.config = {typeLine("T", T), intLine("kN", n), intLine("kVec", vec)};
  out.arguments = std::move(arguments);
  out.body = std::move(call);
  out.grid = strideGrid(n / vec, out.threads);
}

/// An elementwise kernel's element type: its `dtype` parameter (add also
/// sums f32 LoRA gradients in a bf16 program), else the activation type.
std::string elementType(Reader &r, const std::string &T) {
  return r.all().getString("dtype") ? r.cudaType("dtype") : T;
}

void buildBinary(Reader &r, const std::string &activation, Instance &out,
                 std::string_view function) {
  int64_t n = r.dim("n");
  std::string T = elementType(r, activation);
  elementwise(out, T, n, vectorWidth(n, typeBytes(T)),
              "const Config::T *a, const Config::T *b, Config::T *y",
              "qlora::cuda::" + std::string(function) + "<Config>(a, b, y);");
}

void buildSiluFwd(Reader &r, const std::string &activation, Instance &out) {
  int64_t n = r.dim("n");
  std::string T = elementType(r, activation);
  elementwise(out, T, n, vectorWidth(n, typeBytes(T)),
              "const Config::T *x, Config::T *y",
              "qlora::cuda::siluFwd<Config>(x, y);");
}

void buildSiluBwd(Reader &r, const std::string &activation, Instance &out) {
  int64_t n = r.dim("n");
  std::string T = elementType(r, activation);
  bool accumulate = r.flag("accumulate");
  elementwise(out, T, n, vectorWidth(n, typeBytes(T)),
              "const Config::T *dy, const Config::T *x, Config::T *dx",
              "qlora::cuda::siluBwd<Config>(dy, x, dx);");
  out.config.push_back(boolLine("kAccumulate", accumulate));
}

void buildFill(Reader &r, const std::string &T, Instance &out) {
  int64_t n = r.dim("n");
  auto value = r.all().getFloat("value");
  if (!value)
    r.fail("missing number parameter 'value'");
  auto bits = std::bit_cast<uint32_t>(float(value.value_or(0.0)));
  elementwise(out, T, n, vectorWidth(n, typeBytes(T)), "Config::T *out",
              "qlora::cuda::fill<Config>(out);");
  out.config.push_back(
      "static constexpr unsigned kValueBits = " + std::to_string(bits) + "u;");
}

void buildCast(Reader &r, const std::string &, Instance &out) {
  int64_t n = r.dim("n");
  std::string from = r.cudaType("from"), to = r.cudaType("to");
  int vec = vectorWidth(n, std::max(typeBytes(from), typeBytes(to)));
  elementwise(out, from, n, vec, "const Config::From *in, Config::To *out",
              "qlora::cuda::cast<Config>(in, out);");
  out.config[0] = typeLine("From", from);
  out.config.push_back(typeLine("To", to));
}

void buildEmbedding(Reader &r, const std::string &T, Instance &out) {
  int64_t rows = r.dim("rows"), vocab = r.dim("vocab");
  int64_t hidden = r.dim("hidden");
  std::string W = r.cudaType("w_dtype");
  int vec = vectorWidth(hidden, std::max(typeBytes(W), typeBytes(T)));
  out.family = "Embedding.cuh";
  out.threads = std::clamp<uint32_t>(powerOfTwoAtLeast(hidden / vec), 32, 256);
  out.config = {typeLine("T", T),
                typeLine("W", W),
                intLine("kRows", rows),
                intLine("kVocab", vocab),
                intLine("kHidden", hidden),
                intLine("kVec", vec),
                intLine("kThreads", int(out.threads))};
  out.arguments = "const Config::W *table, const int *tokens, Config::T *out";
  out.body = "qlora::cuda::embeddingFwd<Config>(table, tokens, out);";
  out.grid = {uint32_t(rows), 1, 1};
}

void buildRmsNorm(Reader &r, const std::string &T, Instance &out,
                  bool backward) {
  int64_t rows = r.dim("rows"), hidden = r.dim("hidden");
  double eps = r.real("eps");
  std::string W = r.cudaType("w_dtype");
  bool accumulate = backward && r.flag("accumulate");
  int vec = vectorWidth(hidden, std::max(typeBytes(W), typeBytes(T)));
  int64_t vectors = hidden / vec;
  out.threads =
      std::clamp<uint32_t>(powerOfTwoAtLeast((vectors + 1) / 2), 32, 1024);
  if (ceilDiv(vectors, out.threads) > 8)
    r.fail("hidden " + std::to_string(hidden) +
           " does not fit one block's registers (at most " +
           std::to_string(8 * 1024 * vec) + ")");
  out.family = "RmsNorm.cuh";
  out.config = {typeLine("T", T),
                typeLine("W", W),
                intLine("kRows", rows),
                intLine("kHidden", hidden),
                floatLine("kEps", float(eps)),
                intLine("kVec", vec),
                intLine("kThreads", int(out.threads)),
                boolLine("kAccumulate", accumulate)};
  if (backward) {
    out.arguments = "const Config::T *dy, const Config::T *x, const Config::W "
                    "*w, Config::T *dx";
    out.body = "qlora::cuda::rmsNormBwd<Config>(dy, x, w, dx);";
  } else {
    out.arguments = "const Config::T *x, const Config::W *w, Config::T *y";
    out.body = "qlora::cuda::rmsNormFwd<Config>(x, w, y);";
  }
  out.grid = {uint32_t(rows), 1, 1};
}

void buildRope(Reader &r, const std::string &T, Instance &out) {
  int64_t batch = r.dim("batch"), seq = r.dim("seq");
  int64_t heads = r.dim("heads"), headDim = r.dim("head_dim", 2);
  bool inverse = r.flag("inverse");
  double theta = r.real("theta");
  std::string type = r.oneOf("rope_type", {"default", "llama3"});
  int64_t half = headDim / 2;
  if (headDim % 2 != 0 || half > 1024)
    r.fail("parameter 'head_dim' must be even and at most 2048, found " +
           std::to_string(headDim));
  int64_t headsPerBlock =
      std::min<int64_t>(heads, std::max<int64_t>(1, 256 / half));
  out.family = "Rope.cuh";
  out.threads = uint32_t(half * headsPerBlock);
  out.config = {typeLine("T", T),
                intLine("kBatch", batch),
                intLine("kSeq", seq),
                intLine("kHeads", heads),
                intLine("kHeadDim", headDim),
                floatLine("kTheta", float(theta)),
                boolLine("kInverse", inverse),
                intLine("kThreads", int(out.threads)),
                boolLine("kLlama3", type == "llama3")};
  if (type == "llama3") {
    // The same float roundings as the CPU's ropeInverseFrequencies.
    double factor = r.real("factor"), low = r.real("low_freq_factor");
    double high = r.real("high_freq_factor");
    double original = r.real("original_max_position");
    out.config.push_back(floatLine("kFactor", float(factor)));
    out.config.push_back(floatLine("kLowFreqFactor", float(low)));
    out.config.push_back(floatLine("kOriginalMaxPosition", float(original)));
    out.config.push_back(floatLine("kLowFreqWavelen", float(original / low)));
    out.config.push_back(floatLine("kHighFreqWavelen", float(original / high)));
    out.config.push_back(floatLine("kFreqFactorSpread", float(high - low)));
  }
  out.arguments = "const Config::T *x, Config::T *y";
  out.body = "qlora::cuda::rope<Config>(x, y);";
  out.grid = {uint32_t(batch * seq), 1, 1};
}

void lossConfig(Reader &r, const std::string &T, Instance &out, int64_t vocab) {
  int64_t batch = r.dim("batch"), seq = r.dim("seq");
  auto ignoreIndex = r.all().getInt("ignore_index");
  if (!ignoreIndex)
    r.fail("missing integer parameter 'ignore_index'");
  int vec = vectorWidth(vocab, typeBytes(T));
  out.family = "CrossEntropy.cuh";
  out.threads = std::clamp<uint32_t>(powerOfTwoAtLeast(vocab / vec), 32, 256);
  out.config = {typeLine("T", T),
                intLine("kBatch", batch),
                intLine("kSeq", seq),
                intLine("kVocab", vocab),
                intLine("kVec", vec),
                intLine("kThreads", int(out.threads)),
                "static constexpr int kIgnoreIndex = " +
                    std::to_string(ignoreIndex.value_or(-100)) + ";"};
  out.grid = {uint32_t(batch * seq), 1, 1};
}

void buildCrossEntropy(Reader &r, const std::string &T, Instance &out,
                       bool backward) {
  lossConfig(r, T, out, r.dim("vocab"));
  bool hasNormalizer = r.flag("has_normalizer");
  out.config.push_back(boolLine("kHasNormalizer", hasNormalizer));
  std::string normalizer = hasNormalizer ? "const float *normalizer, " : "";
  std::string normalizerValue = hasNormalizer ? "normalizer" : "nullptr";
  if (backward) {
    out.arguments = "const Config::T *logits, const int *labels, const float "
                    "*dloss, " +
                    normalizer + "Config::T *dlogits";
    out.body = "qlora::cuda::crossEntropyBwd<Config>(logits, labels, dloss, " +
               normalizerValue + ", dlogits);";
    return;
  }
  int64_t rows = int64_t(out.grid[0]);
  out.globals = "__device__ float qloraRowLoss[" + std::to_string(rows) +
                "];\n__device__ unsigned qloraCounter;\n";
  out.arguments = "const Config::T *logits, const int *labels, " + normalizer +
                  "float *loss";
  out.body = "qlora::cuda::crossEntropyFwd<Config>(logits, labels, " +
             normalizerValue + ", loss, qloraRowLoss, &qloraCounter);";
}

void buildCountTargets(Reader &r, const std::string &T, Instance &out) {
  lossConfig(r, T, out, 1);
  out.arguments = "const int *labels, float *count";
  out.body = "qlora::cuda::countTargets<Config>(labels, count);";
  out.threads = 256;
  out.config[5] = intLine("kThreads", 256);
  out.grid = {1, 1, 1};
}

void buildScalarBinary(Reader &r, const std::string &, Instance &out) {
  std::string op = r.oneOf("op", {"add", "sub", "mul", "div"});
  std::string name = op == "add"   ? "Add"
                     : op == "sub" ? "Sub"
                     : op == "mul" ? "Mul"
                                   : "Div";
  out.family = "Scalar.cuh";
  out.threads = 32;
  out.config = {"static constexpr qlora::cuda::ScalarOp kOp = "
                "qlora::cuda::ScalarOp::" +
                name + ";"};
  out.arguments = "const float *a, const float *b, float *out";
  out.body = "qlora::cuda::scalarBinary<Config>(a, b, out);";
}

void buildClipCoefficient(Reader &, const std::string &, Instance &out) {
  out.family = "Scalar.cuh";
  out.threads = 32;
  out.arguments = "const float *norm, const float *max_norm, float *out";
  out.body = "qlora::cuda::clipCoefficient<Config>(norm, max_norm, out);";
}

void buildAdamW(Reader &r, const std::string &, Instance &out) {
  int64_t n = r.dim("n");
  int vec = vectorWidth(n, 4);
  out.family = "AdamW.cuh";
  out.config = {intLine("kN", n),
                doubleLine("kBeta1", r.real("beta1")),
                doubleLine("kBeta2", r.real("beta2")),
                doubleLine("kEpsilon", r.real("epsilon")),
                intLine("kVec", vec),
                intLine("kThreads", int(out.threads))};
  out.arguments = "float *p, const float *g, float *m, float *v, const float "
                  "*grad_scale, const float *lr, const long long *step, const "
                  "float *weight_decay";
  out.body = "qlora::cuda::adamw<Config>(p, g, m, v, grad_scale, lr, step, "
             "weight_decay);";
  out.grid = strideGrid(n / vec, out.threads);
}

void buildGlobalNorm(Reader &r, const std::string &, Instance &out) {
  constexpr int64_t kChunk = 1 << 14; // the CPU kernel's chunk
  int64_t count = r.dim("count", 0);
  std::vector<int64_t> sizes =
      r.all().getInts("sizes").value_or(std::vector<int64_t>{});
  if (int64_t(sizes.size()) != count) {
    r.fail("parameter 'sizes' must have 'count' (" + std::to_string(count) +
           ") entries, found " + std::to_string(sizes.size()));
    return;
  }
  std::string firstChunk = "0", sizeList, arguments, cases;
  int64_t chunks = 0;
  for (int64_t t = 0; t < count; ++t) {
    chunks += (sizes[size_t(t)] + kChunk - 1) / kChunk;
    firstChunk += ", " + std::to_string(chunks);
    sizeList += (t ? ", " : "") + std::to_string(sizes[size_t(t)]);
    arguments += "const float *g" + std::to_string(t) + ", ";
    cases += "    case " + std::to_string(t) + ": return g" +
             std::to_string(t) + ";\n";
  }
  out.family = "GlobalNorm.cuh";
  out.config = {intLine("kCount", int(count)), intLine("kChunk", kChunk),
                intLine("kTotalChunks", chunks),
                intLine("kThreads", int(out.threads))};
  out.globals =
      "__constant__ qlora::cuda::Index qloraFirstChunk[] = {" + firstChunk +
      "};\n__constant__ qlora::cuda::Index qloraSizes[] = {" +
      (count ? sizeList : "0") + "};\n__device__ double qloraPartial[" +
      std::to_string(std::max<int64_t>(chunks, 1)) +
      "];\n__device__ unsigned qloraCounter;\n";
  out.arguments = arguments + "float *norm";
  // A switch, not an array of the arguments: no local memory.
  out.body = "auto gradient = [&](int t) -> const float * {\n"
             "    switch (t) {\n" +
             cases +
             "    default: return nullptr;\n    }\n  };\n"
             "  qlora::cuda::globalNorm<Config>(gradient, qloraFirstChunk, "
             "qloraSizes, norm, qloraPartial, &qloraCounter);";
  out.grid = {uint32_t(std::max<int64_t>(chunks, 1)), 1, 1};
}

void buildDequantizeNf4(Reader &r, const std::string &, Instance &out) {
  int64_t n = r.dim("n");
  std::string to = r.cudaType("to");
  std::vector<std::string> nf4 = nf4WeightConfig(r, n);
  if (!r.ok())
    return;
  int64_t blockSize = *r.all().getInt("w_block_size");
  int vec = blockSize % 8 == 0 && n % 8 == 0   ? 8
            : blockSize % 2 == 0 && n % 2 == 0 ? 2
                                               : 1;
  out.family = "Nf4.cuh";
  out.config = {typeLine("To", to), intLine("kN", n), intLine("kVec", vec),
                intLine("kThreads", int(out.threads))};
  out.config.insert(out.config.end(), nf4.begin(), nf4.end());
  out.arguments = "const unsigned char *w, Config::To *out";
  out.body = "qlora::cuda::dequantizeNf4<Config>(w, out);";
  out.grid = strideGrid(n / vec, out.threads);
}

/// bitsandbytes' tables as __constant__ arrays, ahead of Nf4.cuh.
std::string nf4Tables() {
  auto list = [](const auto &values) {
    std::string text;
    for (float value : values)
      text += hexFloat(value) + ",";
    return text;
  };
  return "namespace qlora::cuda {\n__constant__ float kNf4Code[16] = {" +
         list(format::kNf4Code) +
         "};\n__constant__ float kDynamicMap[256] = {" +
         list(format::createDynamicMap(true)) + "};\n}\n";
}

const std::map<std::string_view, Builder> &builders() {
  static const std::map<std::string_view, Builder> table = {
      {kernels::kEmbeddingFwd, buildEmbedding},
      {kernels::kCast, buildCast},
      {kernels::kRmsNormFwd,
       [](Reader &r, const std::string &T, Instance &out) {
         buildRmsNorm(r, T, out, false);
       }},
      {kernels::kRmsNormBwd,
       [](Reader &r, const std::string &T, Instance &out) {
         buildRmsNorm(r, T, out, true);
       }},
      {kernels::kRope, buildRope},
      {kernels::kSiluFwd, buildSiluFwd},
      {kernels::kSiluBwd, buildSiluBwd},
      {kernels::kAdd, [](Reader &r, const std::string &T,
                         Instance &out) { buildBinary(r, T, out, "add"); }},
      {kernels::kMul, [](Reader &r, const std::string &T,
                         Instance &out) { buildBinary(r, T, out, "mul"); }},
      {kernels::kFill, buildFill},
      {kernels::kScalarBinary, buildScalarBinary},
      {kernels::kCountTargets, buildCountTargets},
      {kernels::kCrossEntropyFwd,
       [](Reader &r, const std::string &T, Instance &out) {
         buildCrossEntropy(r, T, out, false);
       }},
      {kernels::kCrossEntropyBwd,
       [](Reader &r, const std::string &T, Instance &out) {
         buildCrossEntropy(r, T, out, true);
       }},
      {kernels::kGlobalNorm, buildGlobalNorm},
      {kernels::kClipCoefficient, buildClipCoefficient},
      {kernels::kAdamW, buildAdamW},
      {kernels::kDequantizeNf4, buildDequantizeNf4},
      {kernels::kLinearFwd, buildLinearFwd},
      {kernels::kLinearGradInput, buildLinearGradInput},
      {kernels::kLoraGrad, buildLoraGrad},
      {kernels::kAttentionFwd, buildAttentionFwd},
      {kernels::kAttentionBwd, buildAttentionBwd},
  };
  return table;
}

/// The entry of the phase launched `index`-th after `entry`.
std::string phaseEntry(const std::string &entry, size_t index) {
  return entry + "_p" + std::to_string(index + 1);
}

/// A template's text without its `#include "kernels/..."` lines: the
/// translation unit carries those files itself.
std::string withoutLocalIncludes(std::string_view text) {
  std::string result;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    end = end == std::string_view::npos ? text.size() : end + 1;
    std::string_view line = text.substr(start, end - start);
    if (!line.starts_with("#include \"kernels/"))
      result += line;
    start = end;
  }
  return result;
}

std::string assemble(std::string_view kernel, std::string_view activation,
                     const std::string &params, const std::string &entry,
                     const Instance &instance) {
  std::string source = "// " + std::string(kernel) + " (" +
                       std::string(activation) + ") " + params +
                       "\n// Generated by qloracc from kernels/" +
                       instance.family + ".\n";
  source += withoutLocalIncludes(templateText("Common.cuh"));
  std::vector<std::string> files = instance.uses;
  files.push_back(instance.family);
  for (const std::string &file : files) {
    if (file == "Nf4.cuh")
      source += nf4Tables();
    source += withoutLocalIncludes(templateText(file));
  }
  source += "\nnamespace {\nstruct Config {\n";
  for (const std::string &line : instance.config)
    source += "  " + line + "\n";
  source += "};\n} // namespace\n\n" + instance.globals;
  auto addEntry = [&](const std::string &name, uint32_t threads,
                      uint32_t minBlocks, uint32_t minBlocksSm90,
                      const std::string &body) {
    std::string bounds = std::to_string(threads);
    if (minBlocksSm90 && minBlocksSm90 != minBlocks)
      bounds += ", QLORA_MIN_BLOCKS(" + std::to_string(minBlocks) + ", " +
                std::to_string(minBlocksSm90) + ")";
    else if (minBlocks)
      bounds += ", " + std::to_string(minBlocks);
    source += "extern \"C\" __global__ void __launch_bounds__(" + bounds +
              ")\n" + name + "(" + instance.arguments + ") {\n  " + body +
              "\n}\n";
  };
  addEntry(entry, instance.threads, instance.minBlocks, instance.minBlocksSm90,
           instance.body);
  for (size_t i = 0; i < instance.then.size(); ++i)
    addEntry(phaseEntry(entry, i), instance.then[i].threads,
             instance.then[i].minBlocks, instance.then[i].minBlocksSm90,
             instance.then[i].body);
  return source;
}

} // namespace

std::optional<CudaKernelSource>
instantiateCudaKernel(std::string_view templateName,
                      const format::KernelParams &params,
                      std::string_view activationType, std::string &error) {
  error.clear();
  auto builder = builders().find(templateName);
  if (builder == builders().end()) {
    error = "kernel '" + std::string(templateName) +
            "' has no CUDA template in kernels/";
    return std::nullopt;
  }
  if (activationType != "f32" && activationType != "bf16") {
    error = "kernel '" + std::string(templateName) +
            "': activation type must be 'f32' or 'bf16', found '" +
            std::string(activationType) + "'";
    return std::nullopt;
  }
  Reader reader(templateName, params, error);
  Instance instance;
  std::string T = activationType == "bf16" ? "__nv_bfloat16" : "float";
  builder->second(reader, T, instance);
  if (!reader.ok())
    return std::nullopt;

  std::string canonical = canonicalParams(params);
  char hash[17];
  std::snprintf(hash, sizeof(hash), "%016llx",
                static_cast<unsigned long long>(
                    fnv1a(std::string(templateName) + "|" +
                          std::string(activationType) + "|" + canonical)));
  CudaKernelSource result;
  result.entry = std::string(templateName) + "_" + std::string(activationType) +
                 "_" + hash;
  result.source =
      assemble(templateName, activationType, canonical, result.entry, instance);
  result.blockThreads = instance.threads;
  result.grid = instance.grid;
  for (size_t i = 0; i < instance.then.size(); ++i)
    result.then.push_back({phaseEntry(result.entry, i),
                           instance.then[i].threads, instance.then[i].grid});
  return result;
}

std::vector<std::string_view> cudaKernelNames() {
  std::vector<std::string_view> names;
  for (const auto &[name, builder] : builders())
    names.push_back(name);
  return names;
}

std::vector<CudaTemplateFile> cudaTemplateFiles() {
  return {std::begin(kTemplates), std::end(kTemplates)};
}

} // namespace qlora::cuda
