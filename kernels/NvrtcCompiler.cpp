//===- NvrtcCompiler.cpp - CUDA source to CUBIN and PTX -------------------===//
//
// Without the CUDA toolkit (QLORA_HAVE_NVRTC unset) everything but the log
// parser reports that NVRTC is missing.
//
//===----------------------------------------------------------------------===//
#include "kernels/NvrtcCompiler.h"

#include <charconv>
#include <regex>

#if QLORA_HAVE_NVRTC
#include <nvrtc.h>
#endif

namespace qlora::cuda {

std::vector<PtxasFunctionInfo> parsePtxasInfo(std::string_view log) {
  // ptxas info    : Compiling entry function 'k' for 'sm_90'
  // ptxas info    : Function properties for k
  // ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes
  // spill loads ptxas info    : Used 23 registers, used 0 barriers
  static const std::regex compiling(
      R"(Compiling entry function '([^']+)' for '([^']+)')");
  static const std::regex properties(R"(Function properties for (\S+))");
  static const std::regex spills(
      R"((\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads)");
  static const std::regex registers(R"(Used (\d+) registers)");
  std::vector<PtxasFunctionInfo> result;
  std::string arch;
  auto find = [&](const std::string &name) -> PtxasFunctionInfo & {
    for (PtxasFunctionInfo &info : result)
      if (info.function == name)
        return info;
    result.push_back({name, arch});
    return result.back();
  };
  PtxasFunctionInfo *current = nullptr;
  std::string text(log);
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos)
      end = text.size();
    std::string line = text.substr(start, end - start);
    start = end + 1;
    std::smatch m;
    if (std::regex_search(line, m, compiling)) {
      arch = m[2];
      current = &find(m[1]);
      current->arch = arch;
    } else if (std::regex_search(line, m, properties)) {
      current = &find(m[1]);
    } else if (current && std::regex_search(line, m, spills)) {
      current->stackFrameBytes = std::stoll(m[1]);
      current->spillStoreBytes = std::stoll(m[2]);
      current->spillLoadBytes = std::stoll(m[3]);
    } else if (current && std::regex_search(line, m, registers)) {
      current->registers = std::stoi(m[1]);
    }
  }
  return result;
}

bool NvrtcImage::spills() const {
  for (const PtxasFunctionInfo &function : functions)
    if (function.spillStoreBytes > 0 || function.spillLoadBytes > 0)
      return true;
  return false;
}

#if QLORA_HAVE_NVRTC

bool nvrtcAvailable() { return true; }

std::string nvrtcVersionString() {
  int major = 0, minor = 0;
  if (::nvrtcVersion(&major, &minor) != NVRTC_SUCCESS)
    return "unknown";
  return std::to_string(major) + "." + std::to_string(minor);
}

namespace {

std::string programLog(nvrtcProgram program) {
  size_t size = 0;
  if (nvrtcGetProgramLogSize(program, &size) != NVRTC_SUCCESS || size == 0)
    return {};
  std::string log(size, '\0');
  nvrtcGetProgramLog(program, log.data());
  while (!log.empty() && log.back() == '\0')
    log.pop_back();
  return log;
}

bool validArch(std::string_view arch, bool &isPtx) {
  std::string_view digits;
  if (arch.starts_with("sm_"))
    digits = arch.substr(3), isPtx = false;
  else if (arch.starts_with("compute_"))
    digits = arch.substr(8), isPtx = true;
  else
    return false;
  if (!digits.empty() && (digits.back() == 'a' || digits.back() == 'f'))
    digits.remove_suffix(1);
  return !digits.empty() &&
         digits.find_first_not_of("0123456789") == std::string_view::npos;
}

} // namespace

std::optional<std::vector<NvrtcImage>>
compileCuda(std::string_view source, std::string_view name,
            std::span<const std::string> archs, std::string &error,
            const NvrtcOptions &options) {
  std::vector<NvrtcImage> images;
  std::string sourceText(source), nameText(name);
  for (const std::string &arch : archs) {
    NvrtcImage image;
    image.arch = arch;
    if (!validArch(arch, image.isPtx)) {
      error = std::string(name) + ": unknown CUDA architecture '" + arch +
              "' (expected sm_NN or compute_NN)";
      return std::nullopt;
    }
    std::vector<std::string> flags = {"--gpu-architecture=" + arch,
                                      "-std=c++20", "--ptxas-options=-v"};
    std::vector<std::string> includes = options.includeDirs;
    if (includes.empty())
      includes.push_back(QLORA_CUDA_INCLUDE_DIR);
    for (const std::string &dir : includes)
      flags.push_back("-I" + dir);
    flags.insert(flags.end(), options.extra.begin(), options.extra.end());
    std::vector<const char *> argv;
    for (const std::string &flag : flags)
      argv.push_back(flag.c_str());

    nvrtcProgram program;
    nvrtcResult result = nvrtcCreateProgram(
        &program, sourceText.c_str(), nameText.c_str(), 0, nullptr, nullptr);
    if (result != NVRTC_SUCCESS) {
      error = std::string(name) + ": " + nvrtcGetErrorString(result);
      return std::nullopt;
    }
    result = nvrtcCompileProgram(program, int(argv.size()), argv.data());
    image.log = programLog(program);
    if (result == NVRTC_SUCCESS) {
      size_t size = 0;
      if (image.isPtx) {
        nvrtcGetPTXSize(program, &size);
        image.bytes.resize(size);
        nvrtcGetPTX(program, image.bytes.data());
      } else {
        nvrtcGetCUBINSize(program, &size);
        image.bytes.resize(size);
        nvrtcGetCUBIN(program, image.bytes.data());
      }
    }
    nvrtcDestroyProgram(&program);
    if (result != NVRTC_SUCCESS) {
      error = std::string(name) + " for " + arch + ": " +
              nvrtcGetErrorString(result) + "\n" + image.log;
      return std::nullopt;
    }
    image.functions = parsePtxasInfo(image.log);
    images.push_back(std::move(image));
  }
  return images;
}

std::optional<std::vector<NvrtcImage>>
compileCudaKernel(std::string_view source, std::string_view name,
                  std::span<const std::string> archs, std::string &error,
                  const NvrtcOptions &options) {
  std::optional<std::vector<NvrtcImage>> images =
      compileCuda(source, name, archs, error, options);
  if (!images)
    return std::nullopt;
  NvrtcOptions relaxed = options;
  relaxed.extra.push_back("-D" + std::string(kNoSm90MinBlocksDefine));
  for (NvrtcImage &image : *images) {
    if (image.isPtx || !image.spills())
      continue;
    std::optional<std::vector<NvrtcImage>> again =
        compileCuda(source, name, std::span(&image.arch, 1), error, relaxed);
    if (!again)
      return std::nullopt;
    image = std::move(again->front());
    image.withoutSm90MinBlocks = true;
  }
  return images;
}

#else // !QLORA_HAVE_NVRTC

bool nvrtcAvailable() { return false; }

std::string nvrtcVersionString() { return "none"; }

std::optional<std::vector<NvrtcImage>>
compileCudaKernel(std::string_view source, std::string_view name,
                  std::span<const std::string> archs, std::string &error,
                  const NvrtcOptions &options) {
  return compileCuda(source, name, archs, error, options);
}

std::optional<std::vector<NvrtcImage>> compileCuda(std::string_view,
                                                   std::string_view name,
                                                   std::span<const std::string>,
                                                   std::string &error,
                                                   const NvrtcOptions &) {
  error = std::string(name) +
          ": qloracc was built without the CUDA toolkit (NVRTC); install it "
          "and reconfigure to compile CUDA kernels";
  return std::nullopt;
}

#endif // QLORA_HAVE_NVRTC

} // namespace qlora::cuda
