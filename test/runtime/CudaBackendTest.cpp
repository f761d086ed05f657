//===- CudaBackendTest.cpp - The CUDA backend with and without a GPU ------===//
//
// Suites CudaDriverTest and CudaImageTest need no GPU: they run everywhere
// (ctest label `runtime`). Suite CudaGpuTest needs libcuda.so.1 and a GPU
// (ctest label `gpu`); where there is none each test is skipped with the
// reason. scripts/gpu-check.sh runs them on a machine with a GPU.
//
//===----------------------------------------------------------------------===//
#include "runtime/backends/cuda/CudaBackend.h"
#include "runtime/backends/cuda/CudaDriver.h"
#include "runtime/exec/Executor.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <vector>

#if defined(QLORA_HAVE_CUDA_H)
#include <cuda.h>
// Our declarations (CudaDriverApi.h) against the toolkit's.
static_assert(sizeof(qlora::cuda::CUdeviceptr) == sizeof(::CUdeviceptr));
static_assert(sizeof(qlora::cuda::CUdevice) == sizeof(::CUdevice));
static_assert(qlora::cuda::CUDA_SUCCESS == ::CUDA_SUCCESS);
static_assert(qlora::cuda::CUDA_ERROR_NO_DEVICE == ::CUDA_ERROR_NO_DEVICE);
static_assert(qlora::cuda::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK ==
              ::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK);
static_assert(qlora::cuda::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT ==
              ::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT);
static_assert(qlora::cuda::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR ==
              ::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR);
static_assert(qlora::cuda::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR ==
              ::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR);
static_assert(
    qlora::cuda::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN ==
    ::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN);
static_assert(qlora::cuda::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES ==
              ::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES);
static_assert(qlora::cuda::CU_STREAM_DEFAULT == ::CU_STREAM_DEFAULT);
#endif

namespace qlora::cuda {
namespace {

/// The tiny preset's train.bin (CPU-only: its kernels carry no images).
/// QLORA_TINY_TRAIN_BIN in the environment overrides the build's path, for
/// runs on another machine (scripts/gpu-check.sh).
std::string tinyTrainBin() {
  if (const char *path = std::getenv("QLORA_TINY_TRAIN_BIN"))
    return path;
  return QLORA_TINY_TRAIN_BIN;
}

bool haveDriverLibrary() {
  void *handle = dlopen(CudaDriver::kLibrary, RTLD_NOW | RTLD_LOCAL);
  if (handle)
    dlclose(handle);
  return handle != nullptr;
}

TEST(CudaDriverTest, MissingDriverIsReportedWithDlopensReason) {
  if (haveDriverLibrary())
    GTEST_SKIP() << "libcuda.so.1 is installed here";
  CudaFailure failure;
  EXPECT_EQ(CudaDriver::load(failure), nullptr);
  EXPECT_EQ(failure.kind, CudaFailure::Kind::NoDriver);
  EXPECT_EQ(failure.message,
            "no CUDA driver: libcuda.so.1 not found (dlopen: libcuda.so.1: "
            "cannot open shared object file: No such file or directory)");
  EXPECT_EQ(failure.summary(), "no CUDA driver (libcuda.so.1 not found)");
}

TEST(CudaDriverTest, AnyMissingLibraryIsNoDriver) {
  CudaFailure failure;
  EXPECT_EQ(CudaDriver::load(failure, "libqlora-no-such-cuda.so.1"), nullptr);
  EXPECT_EQ(failure.kind, CudaFailure::Kind::NoDriver);
  EXPECT_EQ(failure.message,
            "no CUDA driver: libqlora-no-such-cuda.so.1 not found (dlopen: "
            "libqlora-no-such-cuda.so.1: cannot open shared object file: No "
            "such file or directory)");
}

TEST(CudaDriverTest, LibraryWithoutTheEntryPointsIsRefused) {
  // libm exists everywhere and exports no cu* symbol.
  CudaFailure failure;
  EXPECT_EQ(CudaDriver::load(failure, "libm.so.6"), nullptr);
  EXPECT_EQ(failure.kind, CudaFailure::Kind::Error);
  EXPECT_EQ(failure.message, "CUDA driver libm.so.6 lacks cuInit; it is older "
                             "than this qlora-run needs (CUDA 12 or newer)");
  EXPECT_EQ(failure.summary(), failure.message);
}

TEST(CudaDriverTest, NoGpuSummary) {
  CudaFailure failure{CudaFailure::Kind::NoGpu,
                      "CUDA driver found but no GPU (cuDeviceGetCount = 0)"};
  EXPECT_EQ(failure.summary(), "CUDA driver found but no GPU");
}

TEST(CudaDriverTest, BackendCannotBeCreatedWithoutADriver) {
  if (haveDriverLibrary())
    GTEST_SKIP() << "libcuda.so.1 is installed here";
  std::string error;
  std::unique_ptr<format::TrainBinFile> file =
      format::TrainBinFile::open(tinyTrainBin(), error);
  ASSERT_TRUE(file) << error;
  CudaFailure failure;
  EXPECT_EQ(CudaBackend::create(*file, failure), nullptr);
  EXPECT_EQ(failure.kind, CudaFailure::Kind::NoDriver);
  EXPECT_TRUE(failure.message.starts_with("no CUDA driver: libcuda.so.1"))
      << failure.message;
}

std::vector<CudaKernelImage> images(std::initializer_list<const char *> archs) {
  std::vector<CudaKernelImage> result;
  for (const char *arch : archs)
    result.push_back({arch, {}});
  return result;
}

TEST(CudaImageTest, ArchNames) {
  EXPECT_EQ(cudaArchName(8, 0), "sm_80");
  EXPECT_EQ(cudaArchName(9, 0), "sm_90");
  EXPECT_EQ(cudaArchName(10, 0), "sm_100");
}

TEST(CudaImageTest, ExactCubinFirst) {
  auto all = images({"ptx", "sm_80", "sm_86", "sm_89", "sm_90"});
  EXPECT_EQ(pickCudaImage(all, 9, 0), 4u);
  EXPECT_EQ(pickCudaImage(all, 8, 6), 2u);
  EXPECT_EQ(pickCudaImage(all, 8, 0), 1u);
}

TEST(CudaImageTest, CompatibleCubinOfTheSameMajor) {
  // sm_80 code runs on 8.6 and 8.9; never across majors or upwards.
  auto some = images({"sm_80", "sm_86", "ptx"});
  EXPECT_EQ(pickCudaImage(some, 8, 9), 1u);
  EXPECT_EQ(pickCudaImage(images({"sm_86"}), 8, 0), std::nullopt);
  EXPECT_EQ(pickCudaImage(images({"sm_80"}), 9, 0), std::nullopt);
  // Arch-specific CUBINs are not picked for another arch.
  EXPECT_EQ(pickCudaImage(images({"sm_90a"}), 9, 0), std::nullopt);
}

TEST(CudaImageTest, PtxIsTheFallback) {
  EXPECT_EQ(pickCudaImage(images({"sm_80", "ptx"}), 9, 0), 1u);
  EXPECT_EQ(pickCudaImage(images({}), 9, 0), std::nullopt);
}

TEST(CudaImageTest, PtxIsNotPickedForAnOlderGpuThanItsTarget) {
  std::string_view text = ".version 7.0\n.target sm_80\n.address_size 64\n";
  std::vector<CudaKernelImage> ptx = {
      {"ptx", std::as_bytes(std::span(text.data(), text.size()))}};
  EXPECT_EQ(pickCudaImage(ptx, 8, 0), 0u);
  EXPECT_EQ(pickCudaImage(ptx, 9, 0), 0u);
  EXPECT_EQ(pickCudaImage(ptx, 7, 5), std::nullopt);
  EXPECT_NE(findMissingCudaImage({{CudaKernelSpec{"k", "t", ptx}}}, 7, 5), "");
}

TEST(CudaImageTest, CpuOnlyTrainBinHasNoImage) {
  std::string error;
  std::unique_ptr<format::TrainBinFile> file =
      format::TrainBinFile::open(tinyTrainBin(), error);
  ASSERT_TRUE(file) << error;
  std::vector<CudaKernelSpec> kernels = cudaKernelsOf(*file);
  ASSERT_FALSE(kernels.empty());
  EXPECT_EQ(findMissingCudaImage(kernels, 9, 0),
            "train.bin has no CUDA image for kernel '" + kernels[0].symbol +
                "' (template '" + kernels[0].templateName +
                "'): compile it with --qrt-codegen-cuda (arch sm_90)");
  // With an image for every kernel, nothing is missing.
  for (CudaKernelSpec &kernel : kernels)
    kernel.images = images({"sm_90"});
  EXPECT_EQ(findMissingCudaImage(kernels, 9, 0), "");
  EXPECT_NE(findMissingCudaImage(kernels, 8, 0), "");
}

//===----------------------------------------------------------------------===//
// With a GPU
//===----------------------------------------------------------------------===//

/// y[i] = 2 * x[i] + y[i] for i < 256, from `nvcc -ptx -arch=compute_80`
/// (lowered to .version 7.0). Its parameters follow the launch ABI: the
/// buffers' device pointers, nothing else.
constexpr const char *kScaleAddPtx = R"(
.version 7.0
.target sm_80
.address_size 64

.visible .entry scale_add(
	.param .u64 scale_add_param_0,
	.param .u64 scale_add_param_1
)
{
	.reg .pred 	%p<2>;
	.reg .f32 	%f<4>;
	.reg .b32 	%r<5>;
	.reg .b64 	%rd<8>;

	ld.param.u64 	%rd1, [scale_add_param_0];
	ld.param.u64 	%rd2, [scale_add_param_1];
	mov.u32 	%r2, %ctaid.x;
	mov.u32 	%r3, %ntid.x;
	mov.u32 	%r4, %tid.x;
	mad.lo.s32 	%r1, %r2, %r3, %r4;
	setp.gt.u32 	%p1, %r1, 255;
	@%p1 bra 	$L__BB0_2;

	cvta.to.global.u64 	%rd3, %rd2;
	cvta.to.global.u64 	%rd4, %rd1;
	mul.wide.u32 	%rd5, %r1, 4;
	add.s64 	%rd6, %rd4, %rd5;
	ld.global.f32 	%f1, [%rd6];
	add.s64 	%rd7, %rd3, %rd5;
	ld.global.f32 	%f2, [%rd7];
	fma.rn.f32 	%f3, %f1, 0f40000000, %f2;
	st.global.f32 	[%rd7], %f3;

$L__BB0_2:
	ret;
}
)";

class CudaGpuTest : public ::testing::Test {
protected:
  /// The backend over `kernels`, or a skip naming why there is none.
  std::unique_ptr<CudaBackend> open(std::vector<CudaKernelSpec> kernels = {}) {
    CudaFailure failure;
    std::unique_ptr<CudaBackend> backend =
        CudaBackend::create(std::move(kernels), failure);
    if (!backend && (failure.kind == CudaFailure::Kind::NoDriver ||
                     failure.kind == CudaFailure::Kind::NoGpu))
      skipReason_ = "no CUDA driver/GPU: " + failure.message;
    else if (!backend)
      ADD_FAILURE() << failure.message;
    return backend;
  }
  std::string skipReason_;
};

#define OPEN_OR_SKIP(backend, ...)                                             \
  std::unique_ptr<CudaBackend> backend = open(__VA_ARGS__);                    \
  if (!skipReason_.empty())                                                    \
    GTEST_SKIP() << skipReason_;                                               \
  ASSERT_TRUE(backend)

TEST_F(CudaGpuTest, OpensTheFirstDevice) {
  OPEN_OR_SKIP(backend);
  EXPECT_EQ(backend->name(), "cuda");
  EXPECT_TRUE(backend->arch().starts_with("sm_")) << backend->arch();
  EXPECT_NE(backend->description().find(backend->deviceName()),
            std::string::npos);
  std::printf("device: %s\n", backend->description().c_str());
}

TEST_F(CudaGpuTest, ArenaStartsZeroedAndCopiesRoundTrip) {
  OPEN_OR_SKIP(backend);
  constexpr uint64_t kBytes = 1 << 20;
  std::string error;
  ASSERT_TRUE(backend->allocateArena(kBytes, error)) << error;
  std::vector<std::byte> zeros(kBytes, std::byte{0xff});
  backend->download(0, zeros);
  ASSERT_TRUE(backend->synchronize(error)) << error;
  for (std::byte b : zeros)
    ASSERT_EQ(b, std::byte{0});

  std::vector<std::byte> pattern(4096);
  for (size_t i = 0; i < pattern.size(); ++i)
    pattern[i] = std::byte(i * 7 + 3);
  backend->upload(8192, pattern);
  backend->copy(8192, 65536, pattern.size());
  std::vector<std::byte> back(pattern.size());
  backend->download(65536, back);
  ASSERT_TRUE(backend->synchronize(error)) << error;
  EXPECT_EQ(back, pattern);
}

TEST_F(CudaGpuTest, ArenaLargerThanTheGpuIsRefused) {
  OPEN_OR_SKIP(backend);
  std::string error;
  EXPECT_FALSE(backend->allocateArena(uint64_t(1) << 50, error));
  EXPECT_NE(error.find("cuMemAlloc_v2 failed: CUDA_ERROR_OUT_OF_MEMORY"),
            std::string::npos)
      << error;
}

TEST_F(CudaGpuTest, LaunchPassesBufferPointersInArgumentOrder) {
  CudaKernelSpec spec;
  spec.symbol = "scale_add";
  spec.templateName = "test_scale_add";
  spec.images.push_back({"ptx", std::as_bytes(std::span(
                                    kScaleAddPtx, std::strlen(kScaleAddPtx)))});
  spec.maxBlockThreads = 128;
  OPEN_OR_SKIP(backend, {spec});

  std::string error;
  ASSERT_TRUE(backend->allocateArena(4 * 4096, error)) << error;
  std::vector<float> x(256), y(256);
  for (int i = 0; i < 256; ++i) {
    x[i] = float(i);
    y[i] = 1000.0f - float(i);
  }
  const std::array<exec::ArenaRange, 2> args = {exec::ArenaRange{4096, 1024},
                                                exec::ArenaRange{8192, 1024}};
  backend->upload(args[0].offset, std::as_bytes(std::span(x)));
  backend->upload(args[1].offset, std::as_bytes(std::span(y)));
  ASSERT_TRUE(backend->prepareLaunch(0, "test_scale_add", {}, args, error))
      << error;
  EXPECT_EQ(backend->imageArch(0), "ptx");
  exec::LaunchGeometry geometry;
  geometry.grid = {2, 1, 1};
  geometry.block = {128, 1, 1};
  backend->launchOnGrid(0, geometry, args);
  std::vector<float> out(256);
  ASSERT_TRUE(backend->synchronize(error)) << error;
  backend->download(args[1].offset, std::as_writable_bytes(std::span(out)));
  ASSERT_TRUE(backend->synchronize(error)) << error;
  for (int i = 0; i < 256; ++i)
    ASSERT_EQ(out[i], 2.0f * x[i] + y[i]) << "at " << i;
}

TEST_F(CudaGpuTest, MissingFunctionIsReportedAtPrepare) {
  CudaKernelSpec spec;
  spec.symbol = "not_in_the_image";
  spec.templateName = "t";
  spec.images.push_back({"ptx", std::as_bytes(std::span(
                                    kScaleAddPtx, std::strlen(kScaleAddPtx)))});
  OPEN_OR_SKIP(backend, {spec});
  std::string error;
  EXPECT_FALSE(backend->prepareLaunch(0, "t", {}, {}, error));
  EXPECT_NE(error.find("no function 'not_in_the_image': cuModuleGetFunction "
                       "failed: CUDA_ERROR_NOT_FOUND"),
            std::string::npos)
      << error;
}

TEST_F(CudaGpuTest, CpuOnlyTrainBinIsRefusedBeforeAnythingRuns) {
  CudaFailure failure;
  if (CudaDriver::load(failure) == nullptr)
    GTEST_SKIP() << "no CUDA driver/GPU: " << failure.message;
  std::string error;
  std::unique_ptr<format::TrainBinFile> file =
      format::TrainBinFile::open(tinyTrainBin(), error);
  ASSERT_TRUE(file) << error;
  EXPECT_EQ(CudaBackend::create(*file, failure), nullptr);
  EXPECT_EQ(failure.kind, CudaFailure::Kind::NoImage);
  EXPECT_NE(failure.message.find(": train.bin has no CUDA image for kernel '"),
            std::string::npos)
      << failure.message;
}

} // namespace
} // namespace qlora::cuda
