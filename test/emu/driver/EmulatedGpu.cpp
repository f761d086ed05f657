//===- EmulatedGpu.cpp - The device behind the emulated CUDA driver -------===//
#include "test/emu/driver/EmulatedGpu.h"

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <sys/mman.h>
#include <thread>
#include <unistd.h>

namespace qlora::cuda::emu {
namespace {

const char *env(const char *name) {
  const char *value = std::getenv(name);
  return value && *value ? value : nullptr;
}

/// "80G", "512M", "1048576": bytes, or 0 when malformed.
size_t parseBytes(const std::string &text) {
  char *end = nullptr;
  unsigned long long value = std::strtoull(text.c_str(), &end, 10);
  if (end == text.c_str())
    return 0;
  std::string suffix = end;
  if (suffix == "")
    return value;
  int shift = suffix == "K" ? 10 : suffix == "M" ? 20 : suffix == "G" ? 30 : -1;
  return shift < 0 ? 0 : size_t(value) << shift;
}

/// "sm_86" -> {8, 6}; false when it is not one.
bool parseArch(const std::string &arch, int &major, int &minor) {
  if (arch.size() != 5 || !arch.starts_with("sm_") || !std::isdigit(arch[3]) ||
      !std::isdigit(arch[4]))
    return false;
  major = arch[3] - '0';
  minor = arch[4] - '0';
  return major >= 7;
}

template <class T> T readAt(const std::byte *bytes, size_t offset) {
  T value;
  std::memcpy(&value, bytes + offset, sizeof(T));
  return value;
}

constexpr uint16_t kEmCuda = 190;

size_t pageBytes() {
  static const size_t bytes = size_t(sysconf(_SC_PAGESIZE));
  return bytes;
}
size_t mappedBytes(size_t bytes) {
  return (bytes + pageBytes() - 1) / pageBytes() * pageBytes();
}

} // namespace

EmulatedGpu &EmulatedGpu::get() {
  static EmulatedGpu *gpu = new EmulatedGpu; // outlives every static user
  return *gpu;
}

CUresult EmulatedGpu::fail(CUresult code, std::string detail) const {
  lastCode_ = code;
  lastDetail_ = std::move(detail);
  return code;
}

const char *EmulatedGpu::errorName(CUresult code) {
  switch (code) {
  case CUDA_SUCCESS:
    return "CUDA_SUCCESS";
  case kInvalidValue:
    return "CUDA_ERROR_INVALID_VALUE";
  case kOutOfMemory:
    return "CUDA_ERROR_OUT_OF_MEMORY";
  case kNotInitialized:
    return "CUDA_ERROR_NOT_INITIALIZED";
  case kNoDevice:
    return "CUDA_ERROR_NO_DEVICE";
  case kInvalidDevice:
    return "CUDA_ERROR_INVALID_DEVICE";
  case kInvalidImage:
    return "CUDA_ERROR_INVALID_IMAGE";
  case kInvalidContext:
    return "CUDA_ERROR_INVALID_CONTEXT";
  case kNoBinaryForGpu:
    return "CUDA_ERROR_NO_BINARY_FOR_GPU";
  case kInvalidPtx:
    return "CUDA_ERROR_INVALID_PTX";
  case kInvalidHandle:
    return "CUDA_ERROR_INVALID_HANDLE";
  case kNotFound:
    return "CUDA_ERROR_NOT_FOUND";
  case kLaunchOutOfResources:
    return "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES";
  case kNotSupported:
    return "CUDA_ERROR_NOT_SUPPORTED";
  default:
    return nullptr;
  }
}

const char *EmulatedGpu::errorString(CUresult code) {
  const char *name = errorName(code);
  if (!name)
    return nullptr;
  errorText_ = std::string("emulated: ") + name;
  if (code == lastCode_ && !lastDetail_.empty())
    errorText_ += ": " + lastDetail_;
  return errorText_.c_str();
}

CUresult EmulatedGpu::init() {
  if (initialized_)
    return CUDA_SUCCESS;
  if (const char *count = env("QLORA_CUDA_EMU_DEVICES"))
    devices_ = std::atoi(count);
  if (const char *arch = env("QLORA_CUDA_EMU_ARCH");
      arch && !parseArch(arch, major_, minor_))
    return fail(kInvalidValue, std::string("QLORA_CUDA_EMU_ARCH '") + arch +
                                   "' is not sm_XY (sm_70 or later)");
  if (const char *memory = env("QLORA_CUDA_EMU_MEMORY");
      memory && !(totalBytes_ = parseBytes(memory)))
    return fail(kInvalidValue, std::string("QLORA_CUDA_EMU_MEMORY '") + memory +
                                   "' is not a byte count");
  const char *dirs = env("QLORA_CUDA_EMU_KERNELS");
  if (!dirs)
    return fail(kNotInitialized,
                "QLORA_CUDA_EMU_KERNELS is not set: name the directories of "
                "the CUDA sources to run (qloracc --dump-kernels DIR)");
  std::string first = std::string(dirs).substr(0, std::string(dirs).find(':'));
  std::filesystem::path cache = env("QLORA_CUDA_EMU_CACHE")
                                    ? env("QLORA_CUDA_EMU_CACHE")
                                    : first + "/.emu-cache";
  unsigned jobs = env("QLORA_CUDA_EMU_JOBS")
                      ? unsigned(std::atoi(env("QLORA_CUDA_EMU_JOBS")))
                      : std::max(1u, std::thread::hardware_concurrency());
  if (const char *mode = env("QLORA_CUDA_EMU_LAUNCH")) {
    if (std::string(mode) != "run" && std::string(mode) != "check")
      return fail(kInvalidValue, std::string("QLORA_CUDA_EMU_LAUNCH '") + mode +
                                     "' is not run or check");
    runKernels_ = std::string(mode) == "run";
  }
  std::string error;
  if (!catalog_.scan(dirs, error) ||
      (runKernels_ && !catalog_.compile(cache, jobs, error)))
    return fail(kNotInitialized, error);
  std::string pattern =
      (std::filesystem::temp_directory_path() / "qlora-cuda-emu-XXXXXX")
          .string();
  if (!mkdtemp(pattern.data()))
    return fail(kNotInitialized, "cannot create a directory like " + pattern);
  moduleDir_ = pattern;
  initialized_ = true;
  return CUDA_SUCCESS;
}

void EmulatedGpu::removeFiles() {
  std::lock_guard<std::mutex> lock(mutex);
  for (EmulatedModule *module : modules_)
    module->library.reset();
  if (!moduleDir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(moduleDir_, ec);
  }
}

std::string EmulatedGpu::name() const {
  return "qloracc CUDA emulator (sm_" + std::to_string(major_) +
         std::to_string(minor_) + " on the host)";
}

CUresult EmulatedGpu::attribute(CUdevice_attribute which, int &value) const {
  switch (which) {
  case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK:
    value = 1024;
    return CUDA_SUCCESS;
  case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT:
    value = major_ == 9 ? 132 : 108;
    return CUDA_SUCCESS;
  case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR:
    value = major_;
    return CUDA_SUCCESS;
  case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR:
    value = minor_;
    return CUDA_SUCCESS;
  case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN:
    // H100 and A100's limits; sm_86/sm_89 have less.
    value = major_ == 9 ? 232448 : minor_ == 0 ? 166912 : 101376;
    return CUDA_SUCCESS;
  default:
    return fail(kInvalidValue, "device attribute " + std::to_string(which) +
                                   " is not emulated");
  }
}

CUresult EmulatedGpu::allocate(CUdeviceptr &pointer, size_t bytes) {
  if (bytes == 0)
    return fail(kInvalidValue, "cuMemAlloc of 0 bytes");
  if (bytes > freeBytes())
    return fail(kOutOfMemory, std::to_string(bytes) + " bytes asked, " +
                                  std::to_string(freeBytes()) + " free");
  // Page-aligned (cuMemAlloc's are 256-byte aligned); pages are backed
  // when written.
  void *memory = mmap(nullptr, mappedBytes(bytes), PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (memory == MAP_FAILED)
    return fail(kOutOfMemory,
                "the host cannot map " + std::to_string(bytes) + " bytes");
  if (runKernels_)
    std::memset(memory, 0xff, bytes);
  pointer = CUdeviceptr(reinterpret_cast<uintptr_t>(memory));
  allocations_[pointer] = bytes;
  allocatedBytes_ += bytes;
  return CUDA_SUCCESS;
}

CUresult EmulatedGpu::free(CUdeviceptr pointer) {
  auto it = allocations_.find(pointer);
  if (it == allocations_.end())
    return fail(kInvalidValue, "cuMemFree of a pointer cuMemAlloc did not "
                               "return (or freed already)");
  allocatedBytes_ -= it->second;
  munmap(reinterpret_cast<void *>(uintptr_t(pointer)), mappedBytes(it->second));
  allocations_.erase(it);
  return CUDA_SUCCESS;
}

std::byte *EmulatedGpu::resolve(CUdeviceptr pointer, size_t bytes,
                                const char *what) {
  auto it = allocations_.upper_bound(pointer);
  if (it != allocations_.begin()) {
    --it;
    if (pointer - it->first <= it->second &&
        bytes <= it->second - (pointer - it->first))
      return reinterpret_cast<std::byte *>(uintptr_t(pointer));
  }
  char text[160];
  std::snprintf(text, sizeof(text),
                "%s [0x%llx, +%zu) is not inside one allocation", what,
                (unsigned long long)pointer, bytes);
  fail(kInvalidValue, text);
  return nullptr;
}

void EmulatedGpu::fill(std::byte *to, unsigned char value, size_t bytes) {
  // Zeroing whole pages gives them back instead of writing them.
  auto first = (uintptr_t(to) + pageBytes() - 1) / pageBytes() * pageBytes();
  auto last = (uintptr_t(to) + bytes) / pageBytes() * pageBytes();
  if (value != 0 || last <= first) {
    std::memset(to, value, bytes);
    return;
  }
  std::memset(to, 0, first - uintptr_t(to));
  madvise(reinterpret_cast<void *>(first), last - first, MADV_DONTNEED);
  std::memset(reinterpret_cast<void *>(last), 0, uintptr_t(to) + bytes - last);
}

CUresult EmulatedGpu::loadModule(EmulatedModule *&module, const void *image) {
  if (!image)
    return fail(kInvalidValue, "cuModuleLoadData of a null image");
  const auto *bytes = static_cast<const std::byte *>(image);
  auto owned = std::make_unique<EmulatedModule>();
  if (std::memcmp(bytes,
                  "\x7f"
                  "ELF",
                  4) == 0) {
    // A CUBIN: an ELF64 file for EM_CUDA whose flags name its SM.
    if (readAt<uint8_t>(bytes, 4) != 2 ||
        readAt<uint16_t>(bytes, 18) != kEmCuda)
      return fail(kInvalidImage, "an ELF image that is not a 64-bit CUBIN");
    unsigned sm = (readAt<uint32_t>(bytes, 0x30) >> 8) & 0xff;
    if (sm / 10 != unsigned(major_) || sm % 10 > unsigned(minor_))
      return fail(kNoBinaryForGpu, "a CUBIN for sm_" + std::to_string(sm) +
                                       " on an sm_" + std::to_string(major_) +
                                       std::to_string(minor_) + " device");
    size_t sections =
        readAt<uint64_t>(bytes, 0x28) +
        size_t(readAt<uint16_t>(bytes, 0x3c)) * readAt<uint16_t>(bytes, 0x3a);
    size_t programs =
        readAt<uint64_t>(bytes, 0x20) +
        size_t(readAt<uint16_t>(bytes, 0x38)) * readAt<uint16_t>(bytes, 0x36);
    owned->image = {bytes, std::max(sections, programs)};
  } else {
    std::string_view text(reinterpret_cast<const char *>(image));
    size_t target = text.find(".target sm_");
    if (text.find(".version") == std::string_view::npos ||
        target == std::string_view::npos)
      return fail(kInvalidImage,
                  "neither a CUBIN nor PTX (.version, .target sm_XY)");
    int sm = std::atoi(std::string(text.substr(target + 11, 3)).c_str());
    if (sm > major_ * 10 + minor_)
      return fail(kInvalidPtx, "PTX for sm_" + std::to_string(sm) +
                                   " on an sm_" + std::to_string(major_) +
                                   std::to_string(minor_) + " device");
    owned->image = {bytes, text.size()};
    owned->ptx = true;
  }
  module = owned.release();
  modules_.insert(module);
  return CUDA_SUCCESS;
}

CUresult EmulatedGpu::unloadModule(EmulatedModule *module) {
  if (!modules_.erase(module))
    return fail(kInvalidHandle, "cuModuleUnload of an unknown module");
  std::erase_if(functions_, [&](EmulatedFunction *function) {
    if (function->module != module)
      return false;
    delete function;
    return true;
  });
  delete module;
  return CUDA_SUCCESS;
}

CUresult EmulatedGpu::getFunction(EmulatedFunction *&function,
                                  EmulatedModule *module, const char *entry) {
  if (!modules_.count(module) || !entry)
    return fail(kInvalidHandle, "cuModuleGetFunction on an unknown module");
  // The image must define the function: a CUBIN names it in its symbol
  // table, PTX as `.entry name(`.
  std::string needle = module->ptx ? std::string(".entry ") + entry + "("
                                   : std::string(entry) + '\0';
  auto image =
      std::string_view(reinterpret_cast<const char *>(module->image.data()),
                       module->image.size());
  if (image.find(needle) == std::string_view::npos)
    return fail(kNotFound, std::string("the module's ") +
                               (module->ptx ? "PTX" : "CUBIN") +
                               " has no function '" + entry + "'");
  const CatalogEntry *info = catalog_.find(entry);
  if (!info)
    return fail(kNotFound, std::string("no CUDA source in "
                                       "QLORA_CUDA_EMU_KERNELS defines '") +
                               entry + "'");
  const CatalogSource &source = catalog_.sources()[info->source];
  if (!module->source)
    module->source = &source;
  else if (module->source != &source)
    return fail(kNotFound, std::string("'") + entry + "' is in " +
                               source.path.string() +
                               ", the module's other functions in " +
                               module->source->path.string());
  if (runKernels_ && !module->library) {
    // A copy per module: two modules of one source keep separate globals.
    std::filesystem::path dir =
        moduleDir_ / ("module-" + std::to_string(modulesLoaded_++));
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    std::filesystem::copy_file(source.library, dir / "kernel.so", ec);
    std::string error;
    if (!ec)
      module->library = HostKernelLibrary::load(dir / "kernel.so", dir, error);
    if (!module->library)
      return fail(kInvalidImage, "cannot load the host library of " +
                                     source.path.string() + ": " +
                                     (ec ? ec.message() : error));
  }
  function = new EmulatedFunction{module, entry, *info};
  functions_.insert(function);
  return CUDA_SUCCESS;
}

CUresult EmulatedGpu::setMaxDynamicShared(EmulatedFunction *function,
                                          int bytes) {
  if (!functions_.count(function))
    return fail(kInvalidHandle, "cuFuncSetAttribute on an unknown function");
  int limit = 0;
  attribute(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, limit);
  if (bytes < 0 || bytes > limit)
    return fail(kInvalidValue, std::to_string(bytes) +
                                   " bytes of dynamic shared memory; the "
                                   "device allows " +
                                   std::to_string(limit));
  function->maxDynamicShared = bytes;
  return CUDA_SUCCESS;
}

CUresult EmulatedGpu::launch(EmulatedFunction *function,
                             const unsigned (&grid)[3],
                             const unsigned (&block)[3], unsigned sharedBytes,
                             void **params, void **extra) {
  if (!functions_.count(function))
    return fail(kInvalidHandle, "cuLaunchKernel of an unknown function");
  const std::string &entry = function->entry;
  auto refuse = [&](CUresult code, const std::string &why) {
    return fail(code, "'" + entry + "': " + why);
  };
  auto dims = [](const unsigned(&d)[3]) {
    return std::to_string(d[0]) + "x" + std::to_string(d[1]) + "x" +
           std::to_string(d[2]);
  };
  if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || grid[0] > 0x7fffffffu ||
      grid[1] > 65535 || grid[2] > 65535)
    return refuse(kInvalidValue, "grid " + dims(grid) +
                                     " is outside 1..2^31-1 x 1..65535 x "
                                     "1..65535");
  uint64_t threads = uint64_t(block[0]) * block[1] * block[2];
  if (threads == 0 || threads > 1024 || block[2] > 64)
    return refuse(kInvalidValue,
                  "block " + dims(block) + " is outside the device's limits");
  if (threads > uint64_t(function->info.maxThreads))
    return refuse(kLaunchOutOfResources,
                  "block of " + std::to_string(threads) +
                      " threads; its __launch_bounds__ allows " +
                      std::to_string(function->info.maxThreads));
  if (block[1] != 1 || block[2] != 1)
    return refuse(kNotSupported,
                  "block " + dims(block) + ": the emulator runs x-only blocks");
  if (sharedBytes > unsigned(function->maxDynamicShared))
    return refuse(kInvalidValue,
                  std::to_string(sharedBytes) +
                      " bytes of dynamic shared memory; the function allows " +
                      std::to_string(function->maxDynamicShared) +
                      " (cuFuncSetAttribute opts in to more)");
  if (extra)
    return refuse(kNotSupported, "`extra` launch parameters");
  int count = function->info.parameters;
  if (count > 0 && !params)
    return refuse(kInvalidValue, "no kernelParams for its " +
                                     std::to_string(count) + " parameters");
  std::vector<void *> args(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    CUdeviceptr pointer;
    std::memcpy(&pointer, params[i], sizeof(pointer));
    std::string what = "'" + entry + "' parameter " + std::to_string(i);
    if (!resolve(pointer, 0, what.c_str()))
      return kInvalidValue;
    args[size_t(i)] = reinterpret_cast<void *>(uintptr_t(pointer));
  }
  if (!runKernels_)
    return CUDA_SUCCESS;
  std::string error;
  if (!function->module->library->launch(
          entry, args, {grid[0], grid[1], grid[2]}, block[0], error))
    return refuse(kNotFound, error);
  return CUDA_SUCCESS;
}

bool EmulatedGpu::validStream(CUstream stream) const {
  return stream == nullptr || streams_.count(stream);
}

CUstream EmulatedGpu::createStream() {
  static unsigned long next = 0x5000;
  auto stream = reinterpret_cast<CUstream>(uintptr_t(next += 16));
  streams_.insert(stream);
  return stream;
}

CUresult EmulatedGpu::destroyStream(CUstream stream) {
  if (!streams_.erase(stream))
    return fail(kInvalidHandle, "cuStreamDestroy of an unknown stream");
  return CUDA_SUCCESS;
}

} // namespace qlora::cuda::emu
