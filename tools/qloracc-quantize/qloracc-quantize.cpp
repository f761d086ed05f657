//===- qloracc-quantize.cpp - Quantizes a checkpoint to NF4 ---------------===//
//
//   qloracc-quantize model.safetensors -o model-nf4.safetensors
//   qloracc-quantize MODEL_DIR -o MODEL_DIR-nf4
//
// Writes the 4-bit checkpoint (or the whole model directory) that
// transformers + bitsandbytes save for the model (NF4, double quantization,
// blocksize 64, nested 256): every linear weight ("..._proj.weight")
// quantized, every other tensor copied.
//
//===----------------------------------------------------------------------===//
#include "tools/qloracc-quantize/Quantize.h"
#include "tools/qloracc-quantize/QuantizeDirectory.h"

#include <charconv>
#include <cstdio>
#include <string>
#include <string_view>

namespace {

void printUsage(std::FILE *stream) {
  std::fputs(
      "usage: qloracc-quantize IN.safetensors -o OUT.safetensors [options]\n"
      "       qloracc-quantize IN_DIR -o OUT_DIR [--force] [options]\n"
      "\n"
      "Quantizes every linear weight (2-D F32/F16/BF16 tensors named\n"
      "'*_proj.weight') to bitsandbytes NF4 with double quantization\n"
      "(blocksize 64, nested 256), stored under the keys transformers'\n"
      "save_pretrained writes; every other tensor is copied unchanged.\n"
      "\n"
      "IN_DIR is a Hugging Face model directory: config.json and\n"
      "model.safetensors or model.safetensors.index.json with its shards.\n"
      "OUT_DIR gets every shard quantized under its own name, the index\n"
      "with the new keys, config.json with the quantization_config block\n"
      "and every other file (tokenizer, generation_config.json, ...) as it\n"
      "was. It is built beside OUT_DIR and renamed at the end: a failed run\n"
      "leaves nothing.\n"
      "\n"
      "options:\n"
      "  --block-size N       elements per absmax (32..4096, default 64)\n"
      "  --dq-block-size N    absmax values per nested absmax (32..4096,\n"
      "                       default 256)\n"
      "  --no-double-quant    keep the absmax in fp32\n"
      "  --compute-dtype D    directory mode: bnb_4bit_compute_dtype\n"
      "                       (float32, float16, bfloat16; default: the\n"
      "                       config's dtype)\n"
      "  --force              directory mode: replace a non-empty OUT_DIR\n",
      stream);
}

int usageError(const std::string &message) {
  std::fprintf(stderr, "qloracc-quantize: %s\n", message.c_str());
  printUsage(stderr);
  return 2;
}

} // namespace

int main(int argc, char **argv) {
  using namespace qlora::quantize;
  std::string input, output;
  bool haveOutput = false;
  DirectoryOptions options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      printUsage(stdout);
      return 0;
    }
    // Options that take a value.
    if (arg == "-o" || arg == "--output" || arg == "--block-size" ||
        arg == "--dq-block-size" || arg == "--compute-dtype") {
      if (i + 1 >= argc)
        return usageError(std::string(arg) + " needs a value");
      std::string_view value = argv[++i];
      if (arg == "-o" || arg == "--output") {
        if (haveOutput)
          return usageError("-o given twice");
        output = value;
        haveOutput = true;
      } else if (arg == "--compute-dtype") {
        if (value != "float32" && value != "float16" && value != "bfloat16")
          return usageError("--compute-dtype must be float32, float16 or "
                            "bfloat16, not '" +
                            std::string(value) + "'");
        options.computeDtype = value;
      } else {
        int64_t blocksize = 0;
        auto [end, ec] = std::from_chars(
            value.data(), value.data() + value.size(), blocksize);
        if (ec != std::errc() || end != value.data() + value.size() ||
            !isBnbBlocksize(blocksize))
          return usageError(std::string(arg) +
                            " must be a power of two from 32 to 4096, not '" +
                            std::string(value) + "'");
        (arg == "--block-size" ? options.quantize.blocksize
                               : options.quantize.nestedBlocksize) = blocksize;
      }
      continue;
    }
    if (arg == "--no-double-quant") {
      options.quantize.doubleQuant = false;
      continue;
    }
    if (arg == "--force") {
      options.force = true;
      continue;
    }
    if (arg.size() > 1 && arg[0] == '-')
      return usageError("unknown option '" + std::string(arg) + "'");
    if (!input.empty())
      return usageError("more than one input file");
    input = arg;
  }
  if (input.empty() || !haveOutput || output.empty())
    return usageError(input.empty() ? "no input file" : "no output file (-o)");

  std::string error;
  if (isDirectory(input)) {
    DirectorySummary summary;
    auto progress = [](const std::string &line) {
      std::fprintf(stderr, "qloracc-quantize: %s\n", line.c_str());
    };
    if (!quantizeDirectory(input, output, options, progress, summary, error)) {
      std::fprintf(stderr, "qloracc-quantize: error: %s\n", error.c_str());
      return 1;
    }
    std::printf(
        "qloracc-quantize: %s: %lld linear weights quantized to NF4, "
        "%lld tensors copied, %lld shard%s, %lld other file%s copied, "
        "compute dtype %s\n",
        output.c_str(), static_cast<long long>(summary.quantized),
        static_cast<long long>(summary.copied),
        static_cast<long long>(summary.shards), summary.shards == 1 ? "" : "s",
        static_cast<long long>(summary.otherFiles),
        summary.otherFiles == 1 ? "" : "s", summary.computeDtype.c_str());
    return 0;
  }

  if (!options.computeDtype.empty() || options.force)
    return usageError(
        std::string(options.force ? "--force" : "--compute-dtype") +
        " applies to a model directory, and '" + input + "' is not one");
  QuantizeSummary summary;
  if (!quantizeCheckpoint(input, output, options.quantize, summary, error)) {
    std::fprintf(stderr, "qloracc-quantize: error: %s\n", error.c_str());
    return 1;
  }
  std::printf("qloracc-quantize: %s: %lld linear weights quantized to NF4, "
              "%lld tensors copied\n",
              output.c_str(), static_cast<long long>(summary.quantized),
              static_cast<long long>(summary.copied));
  return 0;
}
