//===- qloracc-bench-quantize.cpp - NF4 quantizer throughput vs memcpy ----===//
//
//   qloracc-bench-quantize [--file F.safetensors] [--generate 4096x4096:bf16]
//                          [--runs 5] [--threads 0] [--blocksize 64]
//                          [--nested 256] [--avx2|--portable] [--json]
//                          [--dump OUT.safetensors]
//
// For every tensor of the file (or generated one), times quantizeNf4Tensor
// (median of --runs after one warm-up) and memcpy of the same input bytes
// into a buffer already written once, and prints the GB/s of input of both
// and their ratio. --dump writes each tensor's pieces (packed, absmax_q,
// nested_absmax, offset, or absmax without double quantization) for
// bench/quantize/run.py to compare with bitsandbytes. Numbers only: nothing
// here asserts a timing.
//
//===----------------------------------------------------------------------===//
#include "runtime/format/Nf4Quantizer.h"
#include "runtime/format/Safetensors.h"
#include "runtime/format/SafetensorsWriter.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace {

using namespace qlora::format;

struct BenchTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::span<const uint8_t> bytes;
  int64_t count = 0;
};

struct Options {
  std::string file;
  std::vector<std::string> generate;
  int runs = 5;
  Nf4QuantizeOptions quantize;
  bool json = false;
  std::string dump;
};

void printUsage(std::FILE *stream) {
  std::fputs(
      "usage: qloracc-bench-quantize [--file F.safetensors]\n"
      "         [--generate ROWSxCOLS:f32|f16|bf16]... [--runs N]\n"
      "         [--threads T] [--blocksize B] [--nested NB]\n"
      "         [--avx2 | --portable] [--json] [--dump OUT.safetensors]\n"
      "\n"
      "Times the NF4 quantizer (with double quantization unless --nested 0)\n"
      "and memcpy of the same input bytes on every F32/F16/BF16 tensor of\n"
      "the file or on generated N(0, 0.02) tensors; prints GB/s of input and\n"
      "the ratio quantizer/memcpy.\n",
      stream);
}

double medianOf(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

template <typename F> double timeSeconds(const F &f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

/// "4096x4096:bf16" -> shape and dtype.
bool parseGenerate(std::string_view spec, std::vector<int64_t> &shape,
                   DType &dtype) {
  const size_t colon = spec.find(':');
  if (colon == std::string_view::npos)
    return false;
  std::string_view dims = spec.substr(0, colon);
  std::string_view type = spec.substr(colon + 1);
  if (type == "f32")
    dtype = DType::F32;
  else if (type == "f16")
    dtype = DType::F16;
  else if (type == "bf16")
    dtype = DType::BF16;
  else
    return false;
  shape.clear();
  while (!dims.empty()) {
    const size_t x = dims.find('x');
    const std::string dim(dims.substr(0, x));
    char *end = nullptr;
    const long long value = std::strtoll(dim.c_str(), &end, 10);
    if (dim.empty() || *end != '\0' || value <= 0)
      return false;
    shape.push_back(value);
    dims =
        x == std::string_view::npos ? std::string_view() : dims.substr(x + 1);
  }
  return !shape.empty();
}

/// N(0, 0.02) values in `dtype` (rounded to nearest even), seeded.
std::vector<uint8_t> generateBytes(int64_t count, DType dtype, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<uint8_t> bytes(static_cast<size_t>(count) * dtypeSize(dtype));
  for (int64_t i = 0; i < count; ++i) {
    const float v = normal(rng);
    if (dtype == DType::F32) {
      std::memcpy(bytes.data() + 4 * i, &v, 4);
      continue;
    }
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    uint16_t half;
    if (dtype == DType::BF16) {
      half =
          static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
    } else {
      // |v| < 0.2 here: a normal half, rounded to nearest even by hand.
      const uint32_t sign = (bits >> 16) & 0x8000u;
      const int exponent = static_cast<int>((bits >> 23) & 0xff) - 127 + 15;
      if (exponent <= 0) {
        half = static_cast<uint16_t>(sign);
      } else {
        uint32_t mantissa = bits & 0x7fffffu;
        uint32_t rounded =
            (static_cast<uint32_t>(exponent) << 10) | (mantissa >> 13);
        const uint32_t rest = mantissa & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (rounded & 1u)))
          ++rounded;
        half = static_cast<uint16_t>(sign | rounded);
      }
    }
    std::memcpy(bytes.data() + 2 * i, &half, 2);
  }
  return bytes;
}

bool parseArgs(int argc, char **argv, Options &options) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> const char * {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "qloracc-bench-quantize: %s needs a value\n",
                     argv[i]);
        return nullptr;
      }
      return argv[++i];
    };
    const char *v = nullptr;
    if (arg == "-h" || arg == "--help") {
      printUsage(stdout);
      std::exit(0);
    } else if (arg == "--avx2") {
      options.quantize.isa = Nf4Isa::Avx2;
    } else if (arg == "--portable") {
      options.quantize.isa = Nf4Isa::Portable;
    } else if (arg == "--json") {
      options.json = true;
    } else if (arg == "--file" || arg == "--generate" || arg == "--runs" ||
               arg == "--threads" || arg == "--blocksize" ||
               arg == "--nested" || arg == "--dump") {
      if (!(v = value()))
        return false;
      if (arg == "--file")
        options.file = v;
      else if (arg == "--generate")
        options.generate.push_back(v);
      else if (arg == "--dump")
        options.dump = v;
      else if (arg == "--runs")
        options.runs = std::max(1, std::atoi(v));
      else if (arg == "--threads")
        options.quantize.threads = static_cast<unsigned>(std::atoi(v));
      else if (arg == "--blocksize")
        options.quantize.blocksize = std::atoll(v);
      else
        options.quantize.nestedBlocksize = std::atoll(v);
    } else {
      std::fprintf(stderr, "qloracc-bench-quantize: unknown argument '%s'\n",
                   argv[i]);
      return false;
    }
  }
  if (options.file.empty() && options.generate.empty()) {
    std::fprintf(stderr, "qloracc-bench-quantize: give --file or --generate\n");
    return false;
  }
  return true;
}

/// The pieces of one tensor, kept alive until --dump writes them.
struct Dumped {
  std::string name;
  Nf4Pieces pieces;
};

void addDumpTensors(const std::vector<Dumped> &dumped, bool nested,
                    std::vector<TensorToWrite> &out) {
  auto bytesOf = [](const auto &v) {
    return std::span<const uint8_t>(reinterpret_cast<const uint8_t *>(v.data()),
                                    v.size() * sizeof(v[0]));
  };
  for (const Dumped &d : dumped) {
    const Nf4Pieces &p = d.pieces;
    out.push_back({d.name + ".packed",
                   DType::U8,
                   {static_cast<int64_t>(p.packed.size())},
                   bytesOf(p.packed)});
    if (!nested) {
      out.push_back({d.name + ".absmax",
                     DType::F32,
                     {static_cast<int64_t>(p.absmax.size())},
                     bytesOf(p.absmax)});
      continue;
    }
    out.push_back({d.name + ".absmax_q",
                   DType::U8,
                   {static_cast<int64_t>(p.absmaxCodes.size())},
                   bytesOf(p.absmaxCodes)});
    out.push_back({d.name + ".nested_absmax",
                   DType::F32,
                   {static_cast<int64_t>(p.nestedAbsmax.size())},
                   bytesOf(p.nestedAbsmax)});
    out.push_back({d.name + ".offset",
                   DType::F32,
                   {1},
                   std::span<const uint8_t>(
                       reinterpret_cast<const uint8_t *>(&p.offset), 4)});
  }
}

} // namespace

int main(int argc, char **argv) {
  Options options;
  if (!parseArgs(argc, argv, options)) {
    printUsage(stderr);
    return 2;
  }

  std::vector<BenchTensor> tensors;
  std::unique_ptr<SafetensorsFile> file;
  std::vector<std::vector<uint8_t>> generated;
  if (!options.file.empty()) {
    std::string error;
    file = SafetensorsFile::open(options.file, error);
    if (!file) {
      std::fprintf(stderr, "qloracc-bench-quantize: %s\n", error.c_str());
      return 1;
    }
    for (const TensorView &view : file->tensors())
      if (view.dtype == DType::F32 || view.dtype == DType::F16 ||
          view.dtype == DType::BF16)
        tensors.push_back({view.name, view.dtype, view.shape, view.bytes,
                           view.numElements()});
  }
  uint32_t seed = 0;
  for (const std::string &spec : options.generate) {
    BenchTensor t;
    if (!parseGenerate(spec, t.shape, t.dtype)) {
      std::fprintf(stderr,
                   "qloracc-bench-quantize: --generate '%s': expected "
                   "ROWSxCOLS:f32|f16|bf16\n",
                   spec.c_str());
      return 2;
    }
    t.count = 1;
    for (int64_t d : t.shape)
      t.count *= d;
    generated.push_back(generateBytes(t.count, t.dtype, seed++));
    t.bytes = generated.back();
    t.name = spec;
    tensors.push_back(std::move(t));
  }

  if (!options.json)
    std::printf("%-36s %6s %10s %10s %10s %10s %10s %8s\n", "tensor", "dtype",
                "MB", "ours ms", "ours GB/s", "memcpy ms", "memcpyGB/s",
                "ours/mc");
  std::vector<Dumped> dumped;
  for (const BenchTensor &t : tensors) {
    const double mb = static_cast<double>(t.bytes.size()) / 1e6;
    std::vector<uint8_t> copy(t.bytes.size());
    std::vector<double> oursTimes, copyTimes;
    std::optional<Nf4Pieces> pieces;
    std::string error;
    for (int run = 0; run <= options.runs; ++run) {
      const double seconds = timeSeconds([&] {
        pieces = quantizeNf4Tensor(t.bytes.data(), t.dtype, t.count,
                                   options.quantize, error);
      });
      if (!pieces) {
        std::fprintf(stderr, "qloracc-bench-quantize: %s: %s\n", t.name.c_str(),
                     error.c_str());
        return 1;
      }
      const double copySeconds = timeSeconds(
          [&] { std::memcpy(copy.data(), t.bytes.data(), t.bytes.size()); });
      if (run > 0) { // run 0 warms up (and faults the copy's pages in)
        oursTimes.push_back(seconds);
        copyTimes.push_back(copySeconds);
      }
    }
    const double ours = medianOf(oursTimes), mc = medianOf(copyTimes);
    const double oursGbs = mb / 1e3 / ours, mcGbs = mb / 1e3 / mc;
    if (options.json)
      std::printf("{\"name\": \"%s\", \"dtype\": \"%s\", \"elements\": %lld, "
                  "\"bytes\": %zu, \"ours_s\": %.9g, \"memcpy_s\": %.9g, "
                  "\"runs\": %d}\n",
                  t.name.c_str(), std::string(dtypeName(t.dtype)).c_str(),
                  static_cast<long long>(t.count), t.bytes.size(), ours, mc,
                  options.runs);
    else
      std::printf("%-36s %6s %10.1f %10.2f %10.2f %10.2f %10.2f %8.2f\n",
                  t.name.c_str(), std::string(dtypeName(t.dtype)).c_str(), mb,
                  ours * 1e3, oursGbs, mc * 1e3, mcGbs, mc / ours);
    std::fflush(stdout);
    if (!options.dump.empty())
      dumped.push_back({t.name, std::move(*pieces)});
  }

  if (!options.dump.empty()) {
    std::vector<TensorToWrite> out;
    addDumpTensors(dumped, options.quantize.nestedBlocksize > 0, out);
    std::string error;
    if (!writeSafetensors(options.dump, out, {}, error)) {
      std::fprintf(stderr, "qloracc-bench-quantize: %s\n", error.c_str());
      return 1;
    }
  }
  return 0;
}
