//===- EmulatedDriverTest.cpp - The emulated libcuda.so.1 -----------------===//
//
// The emulated driver (EmulatedGpu.h) through CudaDriver, as the CUDA backend
// loads it: kernels from driver/kernels/ run and compute, and what a GPU
// refuses is refused with a message that says why.
//
//===----------------------------------------------------------------------===//
#include "runtime/backends/cuda/CudaDriver.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <vector>

namespace qlora::cuda {
namespace {

constexpr CUresult kInvalidValue = 1, kNoBinaryForGpu = 209,
                   kInvalidImage = 200, kNotFound = 500,
                   kLaunchOutOfResources = 701;

/// What the emulator reads of PTX: its target and its entries.
constexpr const char *kPtx = ".version 7.0\n.target sm_80\n"
                             ".visible .entry scale_add(\n"
                             ".visible .entry bounded_fill(\n";

/// The part of a CUBIN the emulator reads: an ELF64 header for EM_CUDA
/// whose flags name sm_<sm>, and a string table with `entry`.
std::vector<unsigned char> fakeCubin(unsigned sm, const std::string &entry) {
  std::vector<unsigned char> elf(64, 0);
  std::memcpy(elf.data(),
              "\x7f"
              "ELF",
              4);
  elf[4] = 2; // ELFCLASS64
  uint16_t machine = 190;
  std::memcpy(&elf[18], &machine, 2);
  uint32_t flags = sm << 8;
  std::memcpy(&elf[0x30], &flags, 4);
  uint64_t sections = 64; // section headers right after: none, size 0
  std::memcpy(&elf[0x28], &sections, 8);
  elf.insert(elf.end(), entry.begin(), entry.end());
  elf.push_back(0);
  uint16_t count = 1, size = uint16_t(entry.size() + 1);
  std::memcpy(&elf[0x3c], &count, 2);
  std::memcpy(&elf[0x3a], &size, 2);
  return elf;
}

class EmulatedDriverTest : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    setenv("QLORA_CUDA_EMU_KERNELS", QLORA_EMU_TEST_KERNELS, 1);
    setenv("QLORA_CUDA_EMU_CACHE", QLORA_EMU_TEST_CACHE, 1);
    setenv("QLORA_CUDA_EMU_MEMORY", "64M", 1);
    CudaFailure failure;
    driver = CudaDriver::load(failure, QLORA_EMU_LIBRARY).release();
    ASSERT_NE(driver, nullptr) << failure.message;
    CUcontext context;
    ASSERT_EQ(driver->devicePrimaryCtxRetain(&context, 0), CUDA_SUCCESS);
  }

  /// The detail of the last failure with `result`.
  std::string why(CUresult result) {
    const char *text = nullptr;
    driver->getErrorString(result, &text);
    return text ? text : "";
  }

  CUfunction function(const char *entry) {
    CUmodule module = nullptr;
    EXPECT_EQ(driver->moduleLoadData(&module, kPtx), CUDA_SUCCESS);
    CUfunction f = nullptr;
    EXPECT_EQ(driver->moduleGetFunction(&f, module, entry), CUDA_SUCCESS)
        << why(kNotFound);
    return f;
  }

  CUresult launch(CUfunction f, std::array<unsigned, 3> grid,
                  std::array<unsigned, 3> block, unsigned shared,
                  std::vector<CUdeviceptr> args) {
    std::vector<void *> params;
    for (CUdeviceptr &arg : args)
      params.push_back(&arg);
    return driver->launchKernel(f, grid[0], grid[1], grid[2], block[0],
                                block[1], block[2], shared, nullptr,
                                params.data(), nullptr);
  }

  static CudaDriver *driver;
};
CudaDriver *EmulatedDriverTest::driver = nullptr;

TEST_F(EmulatedDriverTest, KernelsComputeOnTheHost) {
  CUdeviceptr x, y;
  ASSERT_EQ(driver->memAlloc(&x, 256 * 4), CUDA_SUCCESS);
  ASSERT_EQ(driver->memAlloc(&y, 256 * 4), CUDA_SUCCESS);
  std::vector<float> host(256), out(256);
  for (int i = 0; i < 256; ++i)
    host[size_t(i)] = float(i);
  ASSERT_EQ(driver->memcpyHtoD(x, host.data(), 1024), CUDA_SUCCESS);
  ASSERT_EQ(driver->memsetD8(y, 0, 1024), CUDA_SUCCESS);
  ASSERT_EQ(launch(function("scale_add"), {4, 1, 1}, {64, 1, 1}, 0, {x, y}),
            CUDA_SUCCESS);
  ASSERT_EQ(driver->memcpyDtoH(out.data(), y, 1024), CUDA_SUCCESS);
  for (int i = 0; i < 256; ++i)
    EXPECT_EQ(out[size_t(i)], 2.0f * float(i));

  ASSERT_EQ(launch(function("bounded_fill"), {1, 1, 1}, {64, 1, 1}, 0, {y}),
            CUDA_SUCCESS);
  ASSERT_EQ(driver->memcpyDtoH(out.data(), y, 64 * 4), CUDA_SUCCESS);
  EXPECT_EQ(out[0], 63.0f);
  EXPECT_EQ(out[63], 0.0f);
  driver->memFree(x);
  driver->memFree(y);
}

TEST_F(EmulatedDriverTest, LaunchLimitsAreTheGpus) {
  CUdeviceptr y;
  ASSERT_EQ(driver->memAlloc(&y, 1024 * 4), CUDA_SUCCESS);
  CUfunction f = function("bounded_fill");
  EXPECT_EQ(launch(f, {1, 65536, 1}, {64, 1, 1}, 0, {y}), kInvalidValue);
  EXPECT_NE(why(kInvalidValue).find("grid 1x65536x1"), std::string::npos)
      << why(kInvalidValue);
  EXPECT_EQ(launch(f, {1, 1, 1}, {2048, 1, 1}, 0, {y}), kInvalidValue);
  EXPECT_EQ(launch(f, {1, 1, 1}, {128, 1, 1}, 0, {y}), kLaunchOutOfResources);
  EXPECT_NE(why(kLaunchOutOfResources).find("__launch_bounds__ allows 64"),
            std::string::npos)
      << why(kLaunchOutOfResources);
  // Dynamic shared memory past 48 KiB needs the opt-in.
  EXPECT_EQ(launch(f, {1, 1, 1}, {64, 1, 1}, 64 * 1024, {y}), kInvalidValue);
  ASSERT_EQ(driver->funcSetAttribute(
                f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 64 * 1024),
            CUDA_SUCCESS);
  EXPECT_EQ(launch(f, {1, 1, 1}, {64, 1, 1}, 64 * 1024, {y}), CUDA_SUCCESS);
  EXPECT_EQ(driver->funcSetAttribute(
                f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 1 << 20),
            kInvalidValue);
  driver->memFree(y);
}

TEST_F(EmulatedDriverTest, PointersMustLieInsideAnAllocation) {
  CUdeviceptr y;
  ASSERT_EQ(driver->memAlloc(&y, 64), CUDA_SUCCESS);
  std::vector<float> host(32);
  EXPECT_EQ(driver->memcpyHtoD(y + 32, host.data(), 64), kInvalidValue);
  EXPECT_NE(why(kInvalidValue).find("not inside one allocation"),
            std::string::npos);
  EXPECT_EQ(launch(function("bounded_fill"), {1, 1, 1}, {64, 1, 1}, 0,
                   {y + (1 << 20)}),
            kInvalidValue);
  EXPECT_NE(why(kInvalidValue).find("parameter 0"), std::string::npos)
      << why(kInvalidValue);
  ASSERT_EQ(driver->memFree(y), CUDA_SUCCESS);
  EXPECT_EQ(driver->memFree(y), kInvalidValue);
  CUdeviceptr huge;
  EXPECT_EQ(driver->memAlloc(&huge, size_t(1) << 30), 2); // out of memory
}

TEST_F(EmulatedDriverTest, ImagesMustSuitTheDeviceAndNameTheFunction) {
  CUmodule module = nullptr;
  auto sm90 = fakeCubin(90, "scale_add");
  ASSERT_EQ(driver->moduleLoadData(&module, sm90.data()), CUDA_SUCCESS);
  CUfunction f = nullptr;
  EXPECT_EQ(driver->moduleGetFunction(&f, module, "scale_add"), CUDA_SUCCESS);
  EXPECT_EQ(driver->moduleGetFunction(&f, module, "bounded_fill"), kNotFound);
  EXPECT_NE(why(kNotFound).find("CUBIN has no function 'bounded_fill'"),
            std::string::npos)
      << why(kNotFound);
  EXPECT_EQ(driver->moduleUnload(module), CUDA_SUCCESS);

  // The device is an sm_90: an sm_80 or sm_86 CUBIN does not load on it.
  for (unsigned sm : {80u, 86u}) {
    auto cubin = fakeCubin(sm, "scale_add");
    EXPECT_EQ(driver->moduleLoadData(&module, cubin.data()), kNoBinaryForGpu)
        << sm;
  }
  EXPECT_EQ(driver->moduleLoadData(&module, "not an image"), kInvalidImage);
}

} // namespace
} // namespace qlora::cuda
