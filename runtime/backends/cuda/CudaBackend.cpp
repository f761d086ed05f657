//===- CudaBackend.cpp - Runs train.bin's kernel images on a GPU ----------===//
#include "runtime/backends/cuda/CudaBackend.h"

#include "runtime/exec/Executor.h"
#include "runtime/format/train_generated.h"

#include <algorithm>
#include <charconv>
#include <cstdio>

namespace qlora::cuda {

namespace {

/// Dynamic shared memory a function gets without opting in.
constexpr uint32_t kDefaultSharedBytes = 48 * 1024;

std::string gibibytes(size_t bytes) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.1f GiB",
                double(bytes) / (1024.0 * 1024.0 * 1024.0));
  return text;
}

/// The minor version of a CUBIN arch "sm_<major><minor>" with the given
/// major, or -1 (PTX, another major, arch-specific "sm_90a", ...).
int cubinMinor(std::string_view arch, int major) {
  std::string prefix = "sm_" + std::to_string(major);
  if (!arch.starts_with(prefix) || arch.size() != prefix.size() + 1)
    return -1;
  char digit = arch.back();
  return digit >= '0' && digit <= '9' ? digit - '0' : -1;
}

/// The compute capability (major * 10 + minor) a PTX image's `.target
/// sm_XY` needs, or -1 when it names none. The driver cannot JIT PTX for
/// an older GPU than its target.
int ptxTarget(std::span<const std::byte> image) {
  std::string_view text(reinterpret_cast<const char *>(image.data()),
                        image.size());
  size_t at = text.find(".target sm_");
  if (at == std::string_view::npos)
    return -1;
  int target = 0;
  const char *first = text.data() + at + 11;
  auto [end, ec] = std::from_chars(first, text.data() + text.size(), target);
  return ec == std::errc() && end != first ? target : -1;
}

} // namespace

std::vector<CudaKernelSpec> cudaKernelsOf(const format::TrainBinFile &file) {
  const fb::TrainBin &root = file.root();
  std::vector<CudaKernelSpec> kernels;
  if (!root.kernels())
    return kernels;
  for (const fb::Kernel *kernel : *root.kernels()) {
    CudaKernelSpec &spec = kernels.emplace_back();
    spec.symbol = kernel->symbol() ? kernel->symbol()->str() : "";
    spec.templateName =
        kernel->template_name() ? kernel->template_name()->str() : "";
    if (kernel->images())
      for (const fb::KernelImage *image : *kernel->images())
        spec.images.push_back({image->arch() ? image->arch()->str() : "",
                               image->section() >= 0
                                   ? file.section(uint32_t(image->section()))
                                   : std::span<const std::byte>()});
    if (kernel->then())
      for (const fb::KernelPhase *phase : *kernel->then()) {
        CudaKernelPhaseSpec &then = spec.then.emplace_back();
        then.entry = phase->entry() ? phase->entry()->str() : "";
        then.geometry = exec::launchGeometry(*phase);
        spec.maxBlockThreads =
            std::max(spec.maxBlockThreads, then.geometry.blockThreads());
      }
  }
  std::vector<bool> seen(kernels.size());
  if (root.programs())
    for (const fb::Program *program : *root.programs())
      for (const fb::Instr *instr : *program->instrs()) {
        if (instr->kind() != fb::InstrKind::Launch)
          continue;
        CudaKernelSpec &spec = kernels[instr->kernel()];
        exec::LaunchGeometry geometry = exec::launchGeometry(*instr);
        uint64_t threads =
            uint64_t(geometry.block[0]) * geometry.block[1] * geometry.block[2];
        spec.maxBlockThreads = uint32_t(std::min<uint64_t>(
            std::max<uint64_t>(spec.maxBlockThreads, threads), UINT32_MAX));
        spec.maxSharedBytes =
            std::max(spec.maxSharedBytes, geometry.sharedBytes);
        if (!seen[instr->kernel()]) {
          seen[instr->kernel()] = true;
          spec.geometry = geometry;
        }
      }
  return kernels;
}

std::string cudaArchName(int major, int minor) {
  return "sm_" + std::to_string(major) + std::to_string(minor);
}

std::optional<size_t> pickCudaImage(std::span<const CudaKernelImage> images,
                                    int major, int minor) {
  std::optional<size_t> best, ptx;
  int bestMinor = -1;
  for (size_t i = 0; i < images.size(); ++i) {
    if (images[i].arch == "ptx") {
      if (!ptx && ptxTarget(images[i].bytes) <= major * 10 + minor)
        ptx = i;
      continue;
    }
    int imageMinor = cubinMinor(images[i].arch, major);
    if (imageMinor >= 0 && imageMinor <= minor && imageMinor > bestMinor) {
      best = i;
      bestMinor = imageMinor;
    }
  }
  return best ? best : ptx;
}

std::string findMissingCudaImage(std::span<const CudaKernelSpec> kernels,
                                 int major, int minor) {
  for (const CudaKernelSpec &kernel : kernels)
    if (!pickCudaImage(kernel.images, major, minor))
      return "train.bin has no CUDA image for kernel '" + kernel.symbol +
             "' (template '" + kernel.templateName +
             "'): compile it with --qrt-codegen-cuda (arch " +
             cudaArchName(major, minor) + ")";
  return "";
}

std::unique_ptr<CudaBackend>
CudaBackend::create(std::vector<CudaKernelSpec> kernels, CudaFailure &failure,
                    const char *driverLibrary) {
  std::unique_ptr<CudaBackend> backend(new CudaBackend);
  backend->driver_ = CudaDriver::load(failure, driverLibrary);
  if (!backend->driver_)
    return nullptr;
  backend->kernels_ = std::move(kernels);
  backend->loaded_.resize(backend->kernels_.size());
  if (!backend->open(failure))
    return nullptr;
  return backend;
}

std::unique_ptr<CudaBackend>
CudaBackend::create(const format::TrainBinFile &file, CudaFailure &failure) {
  std::unique_ptr<CudaBackend> backend = create(cudaKernelsOf(file), failure);
  if (!backend && failure.kind != CudaFailure::Kind::NoDriver &&
      failure.kind != CudaFailure::Kind::NoGpu)
    failure.message = file.path() + ": " + failure.message;
  return backend;
}

bool CudaBackend::open(CudaFailure &failure) {
  const CudaDriver &cu = *driver_;
  std::string error;
  auto fail = [&](CudaFailure::Kind kind, std::string message) {
    failure = {kind, std::move(message)};
    return false;
  };
  auto attribute = [&](CUdevice_attribute which, int &value) {
    return cu.check(cu.deviceGetAttribute(&value, which, device_),
                    "cuDeviceGetAttribute", error);
  };
  char name[256] = {};
  if (!cu.check(cu.deviceGet(&device_, 0), "cuDeviceGet", error) ||
      !cu.check(cu.deviceGetName(name, sizeof(name) - 1, device_),
                "cuDeviceGetName", error) ||
      !attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, major_) ||
      !attribute(CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, minor_) ||
      !attribute(CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, multiprocessors_) ||
      !attribute(CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, maxBlockThreads_) ||
      !attribute(CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
                 maxSharedBytes_))
    return fail(CudaFailure::Kind::Error, error);
  deviceName_ = name;

  // Every kernel must be loadable here before anything runs.
  std::string missing = findMissingCudaImage(kernels_, major_, minor_);
  if (!missing.empty())
    return fail(CudaFailure::Kind::NoImage, missing);
  for (const CudaKernelSpec &kernel : kernels_) {
    if (kernel.maxBlockThreads > uint32_t(maxBlockThreads_))
      return fail(CudaFailure::Kind::Error,
                  "kernel '" + kernel.symbol + "' is launched with " +
                      std::to_string(kernel.maxBlockThreads) +
                      " threads per block; " + deviceName_ + " allows " +
                      std::to_string(maxBlockThreads_));
    if (kernel.maxSharedBytes > uint32_t(maxSharedBytes_))
      return fail(CudaFailure::Kind::Error,
                  "kernel '" + kernel.symbol + "' is launched with " +
                      std::to_string(kernel.maxSharedBytes) +
                      " bytes of shared memory; " + deviceName_ + " allows " +
                      std::to_string(maxSharedBytes_));
  }

  size_t freeBytes = 0;
  if (!cu.check(cu.devicePrimaryCtxRetain(&context_, device_),
                "cuDevicePrimaryCtxRetain", error) ||
      !cu.check(cu.ctxSetCurrent(context_), "cuCtxSetCurrent", error) ||
      !cu.check(cu.memGetInfo(&freeBytes, &totalBytes_), "cuMemGetInfo_v2",
                error) ||
      !cu.check(cu.streamCreate(&stream_, CU_STREAM_DEFAULT), "cuStreamCreate",
                error))
    return fail(CudaFailure::Kind::Error, error);
  return true;
}

CudaBackend::~CudaBackend() {
  if (!driver_ || !context_)
    return;
  const CudaDriver &cu = *driver_;
  cu.ctxSetCurrent(context_);
  if (stream_)
    cu.streamSynchronize(stream_);
  for (LoadedKernel &kernel : loaded_)
    if (kernel.module)
      cu.moduleUnload(kernel.module);
  if (arena_)
    cu.memFree(arena_);
  if (stream_)
    cu.streamDestroy(stream_);
  cu.devicePrimaryCtxRelease(device_);
}

std::string CudaBackend::description() const {
  return "CUDA, " + deviceName_ + " (" + arch() + ", " +
         std::to_string(multiprocessors_) + " SMs, " + gibibytes(totalBytes_) +
         ")";
}

const std::string &CudaBackend::imageArch(uint32_t kernel) const {
  return kernels_[kernel].images[loaded_[kernel].image].arch;
}

bool CudaBackend::allocateArena(uint64_t bytes, std::string &error) {
  if (arena_) {
    error = "the arena is already allocated";
    return false;
  }
  if (bytes == 0)
    return true;
  const CudaDriver &cu = *driver_;
  std::string why;
  if (!cu.check(cu.memAlloc(&arena_, bytes), "cuMemAlloc_v2", why)) {
    size_t freeBytes = 0, totalBytes = 0;
    cu.memGetInfo(&freeBytes, &totalBytes);
    error = "cannot allocate the " + std::to_string(bytes) + "-byte arena on " +
            deviceName_ + " (" + gibibytes(freeBytes) + " free of " +
            gibibytes(totalBytes) + "): " + why;
    arena_ = 0;
    return false;
  }
  arenaBytes_ = bytes;
  // The executor relies on a zero-filled arena (AdamW's moments start at 0).
  if (!cu.check(cu.memsetD8(arena_, 0, bytes), "cuMemsetD8_v2", error))
    return false;
  return true;
}

bool CudaBackend::loadKernel(uint32_t kernel, std::string &error) {
  const CudaDriver &cu = *driver_;
  const CudaKernelSpec &spec = kernels_[kernel];
  LoadedKernel &loaded = loaded_[kernel];
  loaded.image = *pickCudaImage(spec.images, major_, minor_);
  const CudaKernelImage &image = spec.images[loaded.image];
  std::string why;
  CUresult result;
  if (image.arch == "ptx") {
    // cuModuleLoadData reads PTX as a NUL-terminated string.
    std::string text(reinterpret_cast<const char *>(image.bytes.data()),
                     image.bytes.size());
    result = cu.moduleLoadData(&loaded.module, text.c_str());
  } else {
    result = cu.moduleLoadData(&loaded.module, image.bytes.data());
  }
  if (!cu.check(result, "cuModuleLoadData", why)) {
    loaded.module = nullptr;
    error = "cannot load its " + image.arch + " image on " + deviceName_ +
            " (" + arch() + "): " + why;
    return false;
  }
  if (!getFunction(kernel, spec.symbol, loaded.function, error))
    return false;
  loaded.then.resize(spec.then.size());
  for (size_t i = 0; i < spec.then.size(); ++i)
    if (!getFunction(kernel, spec.then[i].entry, loaded.then[i], error))
      return false;
  return true;
}

bool CudaBackend::getFunction(uint32_t kernel, const std::string &entry,
                              CUfunction &function, std::string &error) {
  const CudaDriver &cu = *driver_;
  const CudaKernelSpec &spec = kernels_[kernel];
  const std::string &arch = spec.images[loaded_[kernel].image].arch;
  std::string why;
  if (!cu.check(cu.moduleGetFunction(&function, loaded_[kernel].module,
                                     entry.c_str()),
                "cuModuleGetFunction", why)) {
    function = nullptr;
    error = "its " + arch + " image has no function '" + entry + "': " + why;
    return false;
  }
  if (spec.maxSharedBytes > kDefaultSharedBytes &&
      !cu.check(cu.funcSetAttribute(
                    function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    int(spec.maxSharedBytes)),
                "cuFuncSetAttribute", why)) {
    error = "cannot give '" + entry + "' " +
            std::to_string(spec.maxSharedBytes) +
            " bytes of shared memory: " + why;
    return false;
  }
  return true;
}

bool CudaBackend::prepareLaunch(uint32_t kernel, std::string_view templateName,
                                const format::KernelParams &params,
                                std::span<const exec::ArenaRange> args,
                                std::string &error) {
  (void)params; // compiled into the image (see the launch ABI)
  if (kernel >= kernels_.size()) {
    error = "kernel index " + std::to_string(kernel) + " is not below " +
            std::to_string(kernels_.size());
    return false;
  }
  for (const exec::ArenaRange &arg : args)
    if (arg.offset > arenaBytes_ || arg.bytes > arenaBytes_ - arg.offset) {
      error = "an argument [" + std::to_string(arg.offset) + ", +" +
              std::to_string(arg.bytes) + ") lies outside the " +
              std::to_string(arenaBytes_) + "-byte arena";
      return false;
    }
  if (kernels_[kernel].templateName != templateName) {
    error = "template '" + std::string(templateName) +
            "' does not match the backend's '" + kernels_[kernel].templateName +
            "'";
    return false;
  }
  return loaded_[kernel].function || loadKernel(kernel, error);
}

void CudaBackend::keep(CUresult result, std::string_view entry) {
  if (result != CUDA_SUCCESS && pendingError_.empty())
    pendingError_ = driver_->errorMessage(entry, result);
}

void CudaBackend::launch(uint32_t kernel,
                         std::span<const exec::ArenaRange> args) {
  launchOnGrid(kernel, kernels_[kernel].geometry, args);
}

void CudaBackend::launchOnGrid(uint32_t kernel,
                               const exec::LaunchGeometry &geometry,
                               std::span<const exec::ArenaRange> args) {
  if (!pendingError_.empty())
    return;
  // Values first, then pointers to them: argValues_ must not grow after.
  argValues_.clear();
  for (const exec::ArenaRange &arg : args)
    argValues_.push_back(arena_ + arg.offset);
  argPointers_.clear();
  for (CUdeviceptr &value : argValues_)
    argPointers_.push_back(&value);
  launchFunction(kernel, loaded_[kernel].function, geometry);
  const std::vector<CudaKernelPhaseSpec> &then = kernels_[kernel].then;
  for (size_t i = 0; i < then.size(); ++i)
    launchFunction(kernel, loaded_[kernel].then[i], then[i].geometry);
}

void CudaBackend::launchFunction(uint32_t kernel, CUfunction function,
                                 const exec::LaunchGeometry &geometry) {
  const auto &grid = geometry.grid;
  const auto &block = geometry.block;
  CUresult result = driver_->launchKernel(
      function, grid[0], grid[1], grid[2], block[0], block[1], block[2],
      geometry.sharedBytes, stream_, argPointers_.data(), nullptr);
  if (result != CUDA_SUCCESS && pendingError_.empty())
    pendingError_ = "kernel '" + kernels_[kernel].symbol +
                    "': " + driver_->errorMessage("cuLaunchKernel", result);
}

void CudaBackend::upload(uint64_t offset, std::span<const std::byte> bytes) {
  if (!bytes.empty())
    keep(driver_->memcpyHtoD(arena_ + offset, bytes.data(), bytes.size()),
         "cuMemcpyHtoD_v2");
}

void CudaBackend::download(uint64_t offset, std::span<std::byte> bytes) {
  if (!bytes.empty())
    keep(driver_->memcpyDtoH(bytes.data(), arena_ + offset, bytes.size()),
         "cuMemcpyDtoH_v2");
}

void CudaBackend::copy(uint64_t srcOffset, uint64_t dstOffset, uint64_t bytes) {
  if (bytes != 0)
    keep(driver_->memcpyDtoD(arena_ + dstOffset, arena_ + srcOffset, bytes),
         "cuMemcpyDtoD_v2");
}

bool CudaBackend::synchronize(std::string &error) {
  keep(driver_->streamSynchronize(stream_), "cuStreamSynchronize");
  if (pendingError_.empty())
    return true;
  error = pendingError_;
  return false;
}

} // namespace qlora::cuda
