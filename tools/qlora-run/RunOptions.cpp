//===- RunOptions.cpp - qlora-run's command line
//---------------------------===//
#include "tools/qlora-run/RunOptions.h"

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace qlora::run {

namespace {

constexpr const char *kUsage =
    R"(usage: qlora-run train.bin --data FILE --steps N [options]

Trains the LoRA adapters of a program compiled by `qloracc -o train.bin`.

data:
  --data FILE            token file: raw little-endian uint16 (.bin, .u16) or
                         uint32 (.u32), cut into windows of seq+1 tokens; or
                         JSONL (.jsonl) with an "input_ids" list per line
  --data-format F        auto|u16|u32|jsonl (default: auto, by extension)
  --seed N               visit the sequences in a random order drawn from N
                         (default 0: in file order)
training:
  --steps N              optimizer steps to run (required)
  --lr X                 peak learning rate (default 2e-4)
  --schedule S           constant|linear|cosine (default constant)
  --warmup N             linear warmup steps (default 0)
  --weight-decay X       AdamW weight decay (default: train.bin's, 0 unless
                         qloracc --weight-decay said otherwise)
  --max-grad-norm X      clip the global gradient norm; 0 = off (default:
                         train.bin's, 1.0 unless qloracc said otherwise)
adapters:
  --init-adapter DIR     start from a PEFT adapter instead of the compiled
                         initialisation
  --save-adapter DIR     write the trained adapter in PEFT's format
  --save-grads FILE      write the first step's LoRA gradients (before
                         clipping) as safetensors with PEFT's key names
output:
  --metrics FILE         one JSON object per step: step, loss, lr, grad_norm,
                         tokens_per_s, elapsed_s
  --no-progress          no progress bar
  --memory-report        print the memory plan and the peak measured over
                         the first step on stdout; without --data, measure
                         one step on zero inputs and exit
  --profile              after the run, the time per step of every kernel
                         template (each instruction waited for; the first
                         step, with its loading and JIT, is left out when
                         there are more), its GB/s and TFLOP/s
device:
  --device D             auto|cpu|cuda (default auto: a GPU if one is usable,
                         else the CPU)
  --threads N            CPU threads (default: all cores)
)";

bool parseNumber(std::string_view text, int64_t &value) {
  auto [end, ec] =
      std::from_chars(text.data(), text.data() + text.size(), value);
  return ec == std::errc() && end == text.data() + text.size();
}

bool parseNumber(std::string_view text, double &value) {
  std::string copy(text);
  char *end = nullptr;
  value = std::strtod(copy.c_str(), &end);
  return !copy.empty() && end == copy.c_str() + copy.size();
}

} // namespace

std::optional<RunOptions> parseRunOptions(int argc, char **argv,
                                          int &exitCode) {
  RunOptions options;
  auto fail = [&](const std::string &message) -> std::optional<RunOptions> {
    std::fprintf(stderr, "qlora-run: %s\n\n%s", message.c_str(), kUsage);
    exitCode = 2;
    return std::nullopt;
  };

  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view inlineValue;
    bool hasInline = false;
    if (arg.starts_with("--")) {
      if (size_t eq = arg.find('='); eq != std::string_view::npos) {
        inlineValue = arg.substr(eq + 1);
        arg = arg.substr(0, eq);
        hasInline = true;
      }
    }
    auto value = [&](std::string_view &out) -> bool {
      if (hasInline) {
        out = inlineValue;
        return true;
      }
      if (i + 1 >= argc)
        return false;
      out = argv[++i];
      return true;
    };
    auto needValue = [&](std::string_view &out) -> std::optional<std::string> {
      if (!value(out))
        return std::string(arg) + " needs a value";
      return std::nullopt;
    };
    auto asInt = [&](int64_t &out,
                     int64_t minimum) -> std::optional<std::string> {
      std::string_view text;
      if (auto err = needValue(text))
        return err;
      if (!parseNumber(text, out) || out < minimum)
        return std::string(arg) +
               " expects an integer >= " + std::to_string(minimum) + ", got '" +
               std::string(text) + "'";
      return std::nullopt;
    };
    auto asFloat = [&](double &out) -> std::optional<std::string> {
      std::string_view text;
      if (auto err = needValue(text))
        return err;
      if (!parseNumber(text, out) || !(out >= 0))
        return std::string(arg) + " expects a non-negative number, got '" +
               std::string(text) + "'";
      return std::nullopt;
    };
    auto asString = [&](std::string &out) -> std::optional<std::string> {
      std::string_view text;
      if (auto err = needValue(text))
        return err;
      out = std::string(text);
      return std::nullopt;
    };

    std::optional<std::string> err;
    int64_t integer = 0;
    double real = 0;
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      exitCode = 0;
      return std::nullopt;
    } else if (arg == "--data") {
      err = asString(options.data);
    } else if (arg == "--data-format") {
      err = asString(options.dataFormat);
    } else if (arg == "--steps") {
      err = asInt(options.steps, 1);
    } else if (arg == "--lr") {
      err = asFloat(options.lr);
    } else if (arg == "--schedule") {
      err = asString(options.schedule);
    } else if (arg == "--warmup") {
      err = asInt(options.warmup, 0);
    } else if (arg == "--seed") {
      if (!(err = asInt(integer, 0)))
        options.seed = uint64_t(integer);
    } else if (arg == "--weight-decay") {
      if (!(err = asFloat(real)))
        options.weightDecay = real;
    } else if (arg == "--max-grad-norm") {
      if (!(err = asFloat(real)))
        options.maxGradNorm = real;
    } else if (arg == "--save-adapter") {
      err = asString(options.saveAdapter);
    } else if (arg == "--init-adapter") {
      err = asString(options.initAdapter);
    } else if (arg == "--metrics") {
      err = asString(options.metrics);
    } else if (arg == "--save-grads") {
      err = asString(options.saveGrads);
    } else if (arg == "--device") {
      err = asString(options.device);
      if (!err && options.device != "auto" && options.device != "cpu" &&
          options.device != "cuda")
        err =
            "--device expects auto, cpu or cuda, got '" + options.device + "'";
    } else if (arg == "--threads") {
      if (!(err = asInt(integer, 1)))
        options.threads = unsigned(integer);
    } else if (arg == "--no-progress") {
      options.progress = false;
    } else if (arg == "--memory-report") {
      options.memoryReport = true;
    } else if (arg == "--profile") {
      options.profile = true;
    } else if (arg.starts_with("-")) {
      err = "unknown option '" + std::string(arg) + "'";
    } else if (options.trainBin.empty()) {
      options.trainBin = std::string(arg);
    } else {
      err = "unexpected argument '" + std::string(arg) +
            "' (train.bin is already '" + options.trainBin + "')";
    }
    if (err)
      return fail(*err);
  }

  if (options.trainBin.empty())
    return fail("no train.bin given");
  if (options.memoryReport && options.data.empty())
    return options;
  if (options.data.empty())
    return fail("--data is required");
  if (options.steps == 0)
    return fail("--steps is required");
  return options;
}

} // namespace qlora::run
