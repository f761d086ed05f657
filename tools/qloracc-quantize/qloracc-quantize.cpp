//===- qloracc-quantize.cpp - Quantizes a checkpoint to NF4 ---------------===//
//
//   qloracc-quantize model.safetensors -o model-nf4.safetensors
//
// Writes the 4-bit checkpoint that transformers + bitsandbytes save for the
// model (NF4, double quantization, blocksize 64, nested 256): every linear
// weight ("..._proj.weight") quantized, every other tensor copied.
//
//===----------------------------------------------------------------------===//
#include "tools/qloracc-quantize/Quantize.h"

#include <cstdio>
#include <string>
#include <string_view>

namespace {

void printUsage(std::FILE *stream) {
  std::fputs(
      "usage: qloracc-quantize IN.safetensors -o OUT.safetensors\n"
      "\n"
      "Quantizes every linear weight (2-D F32/F16/BF16 tensors named\n"
      "'*_proj.weight') to bitsandbytes NF4 with double quantization\n"
      "(blocksize 64, nested 256), stored under the keys transformers'\n"
      "save_pretrained writes; every other tensor is copied unchanged.\n",
      stream);
}

} // namespace

int main(int argc, char **argv) {
  std::string input, output;
  bool haveOutput = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      printUsage(stdout);
      return 0;
    }
    if (arg == "-o" || arg == "--output") {
      if (i + 1 >= argc || haveOutput) {
        std::fprintf(stderr, "qloracc-quantize: %s\n",
                     haveOutput ? "-o given twice" : "-o needs a file name");
        printUsage(stderr);
        return 2;
      }
      output = argv[++i];
      haveOutput = true;
      continue;
    }
    if (arg.size() > 1 && arg[0] == '-') {
      std::fprintf(stderr, "qloracc-quantize: unknown option '%s'\n", argv[i]);
      printUsage(stderr);
      return 2;
    }
    if (!input.empty()) {
      std::fprintf(stderr, "qloracc-quantize: more than one input file\n");
      printUsage(stderr);
      return 2;
    }
    input = arg;
  }
  if (input.empty() || !haveOutput || output.empty()) {
    std::fprintf(stderr, "qloracc-quantize: %s\n",
                 input.empty() ? "no input file" : "no output file (-o)");
    printUsage(stderr);
    return 2;
  }

  qlora::quantize::QuantizeSummary summary;
  std::string error;
  if (!qlora::quantize::quantizeCheckpoint(input, output, summary, error)) {
    std::fprintf(stderr, "qloracc-quantize: error: %s\n", error.c_str());
    return 1;
  }
  std::printf("qloracc-quantize: %s: %lld linear weights quantized to NF4, "
              "%lld tensors copied\n",
              output.c_str(), static_cast<long long>(summary.quantized),
              static_cast<long long>(summary.copied));
  return 0;
}
