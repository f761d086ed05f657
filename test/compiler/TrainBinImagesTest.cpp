//===- TrainBinImagesTest.cpp - Kernel images through train.bin -----------===//
//
// What --qrt-codegen-cuda attaches (`cuda.images`) survives the train.bin
// writer as 4 KiB-aligned sections listed in Kernel.images, the loader
// accepts the file, and the CUDA backend's image selection sees them. The
// images here are stand-in bytes written in the IR: no NVRTC, no GPU.
//
//===----------------------------------------------------------------------===//
#include "compiler/Registration/InitQloracc.h"
#include "compiler/TrainBinWriter/TrainBinWriter.h"
#include "runtime/backends/cuda/CudaBackend.h"
#include "runtime/format/TrainBin.h"
#include "runtime/format/train_generated.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <unistd.h>

namespace {

// One LoRA module, one fill kernel with three images. Resource blobs are
// hex: a little-endian u32 alignment, then the bytes.
constexpr const char *kModule = R"mlir(
module attributes {
  qlora.lora = #qlora.lora_config<r = 1, alpha = 1.0, dropout = 0.0,
    use_rslora = false, targets = ["q_proj"], seed = 0>,
  qlora.model = #qlora.model_config<architecture = "LlamaForCausalLM",
    name_or_path = "test", vocab_size = 16, hidden_size = 4,
    intermediate_size = 8, num_hidden_layers = 1, num_attention_heads = 1,
    num_key_value_heads = 1, head_dim = 4, rms_norm_eps = 1.0e-05,
    rope_theta = 1.0e+04, tie_word_embeddings = false>,
  qrt.memory_plan = {arena_size = 320 : i64, peak_bytes = 320 : i64,
                     peak_by_class = {}, total_by_class = {}}} {
  qrt.kernel @fill_f32_0123456789abcdef template "fill"
    params {n = 4 : i64, value = 0.0 : f64}
    {cuda.images = {ptx = dense_resource<fill_ptx> : tensor<5xui8>,
                    sm_80 = dense_resource<fill_sm_80> : tensor<4xui8>,
                    sm_90 = dense_resource<fill_sm_90> : tensor<3xui8>},
     cuda.then = [{entry = "fill_f32_0123456789abcdef_p1",
                   grid = array<i64: 7, 2, 1>, block = array<i64: 64, 1, 1>}]}
  func.func @train_step() attributes {qlora.grad_accum = 1 : i64,
      qlora.optimizer = {beta1 = 0.9 : f64, beta2 = 0.999 : f64,
                         epsilon = 1.0e-08 : f64, max_grad_norm = 1.0 : f64,
                         weight_decay = 0.0 : f64}} {
    %t = qrt.buffer size 16 align 64 class <io> placement <device> offset 0
           name "tokens" type tensor<1x4xi32> : !qrt.buffer
    %a = qrt.buffer size 16 align 64 class <lora> placement <device>
           offset 64 name "m.q_proj.lora_A.weight" type tensor<1x4xf32>
           init(#qlora.init<zeros>) seed 0 : !qrt.buffer
    %b = qrt.buffer size 16 align 64 class <lora> placement <device>
           offset 128 name "m.q_proj.lora_B.weight" type tensor<4x1xf32>
           init(#qlora.init<zeros>) seed 0 : !qrt.buffer
    %ga = qrt.buffer size 16 align 64 class <gradient> placement <device>
           offset 192 name "m.q_proj.lora_A.weight.grad" type tensor<1x4xf32>
           : !qrt.buffer
    %gb = qrt.buffer size 16 align 64 class <gradient> placement <device>
           offset 256 name "m.q_proj.lora_B.weight.grad" type tensor<4x1xf32>
           : !qrt.buffer
    qrt.launch @fill_f32_0123456789abcdef(%ga) grid [1, 1, 1] block [32, 1, 1]
    return
  }
}
{-#
  dialect_resources: {
    builtin: {
      fill_ptx: "0x010000002E76657273",
      fill_sm_80: "0x010000007F454C46",
      fill_sm_90: "0x01000000AABBCC"
    }
  }
#-}
)mlir";

std::string bytesOf(std::span<const std::byte> bytes) {
  return std::string(reinterpret_cast<const char *>(bytes.data()),
                     bytes.size());
}

TEST(TrainBinImages, WrittenAsAlignedSectionsAndSelectedByArch) {
  mlir::DialectRegistry registry;
  qloracc::registerQloraccDialects(registry);
  mlir::MLIRContext context(registry);
  mlir::OwningOpRef<mlir::ModuleOp> module =
      mlir::parseSourceString<mlir::ModuleOp>(kModule, &context);
  ASSERT_TRUE(module);
  mlir::FailureOr<qloracc::TrainBinContents> contents =
      qloracc::translateToTrainBin(*module);
  ASSERT_TRUE(mlir::succeeded(contents));

  std::filesystem::path path =
      std::filesystem::path(::testing::TempDir()) /
      ("qlora-images-" + std::to_string(::getpid()) + ".bin");
  std::string error;
  ASSERT_TRUE(
      qlora::format::writeTrainBin(path.string(), contents->desc, error))
      << error;
  std::unique_ptr<qlora::format::TrainBinFile> file =
      qlora::format::TrainBinFile::open(path.string(), error);
  std::filesystem::remove(path);
  ASSERT_TRUE(file) << error;

  // Kernel.images {arch, section}, in the dictionary's (sorted) order.
  const auto *kernels = file->root().kernels();
  ASSERT_EQ(kernels->size(), 1u);
  const auto *images = kernels->Get(0)->images();
  ASSERT_TRUE(images);
  ASSERT_EQ(images->size(), 3u);
  std::vector<std::string> archs;
  for (const auto *image : *images) {
    archs.push_back(image->arch()->str());
    std::span<const std::byte> bytes =
        file->section(uint32_t(image->section()));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(bytes.data()) % 4096, 0u);
  }
  EXPECT_EQ(archs, (std::vector<std::string>{"ptx", "sm_80", "sm_90"}));

  // What the CUDA backend sees: the bytes, and the image it would load.
  std::vector<qlora::cuda::CudaKernelSpec> specs =
      qlora::cuda::cudaKernelsOf(*file);
  ASSERT_EQ(specs.size(), 1u);
  EXPECT_EQ(specs[0].symbol, "fill_f32_0123456789abcdef");
  ASSERT_EQ(specs[0].images.size(), 3u);
  EXPECT_EQ(bytesOf(specs[0].images[0].bytes), ".vers");
  EXPECT_EQ(bytesOf(specs[0].images[1].bytes), "\x7f"
                                               "ELF");
  EXPECT_EQ(bytesOf(specs[0].images[2].bytes), "\xaa\xbb\xcc");
  // The further phase: its entry and geometry (64 threads > the launch's 32).
  ASSERT_EQ(specs[0].then.size(), 1u);
  EXPECT_EQ(specs[0].then[0].entry, "fill_f32_0123456789abcdef_p1");
  EXPECT_EQ(specs[0].then[0].geometry.grid,
            (std::array<uint32_t, 3>{7, 2, 1}));
  EXPECT_EQ(specs[0].then[0].geometry.block,
            (std::array<uint32_t, 3>{64, 1, 1}));
  EXPECT_EQ(specs[0].maxBlockThreads, 64u);
  auto pick = [&](int major, int minor) {
    std::optional<size_t> index =
        qlora::cuda::pickCudaImage(specs[0].images, major, minor);
    return index ? specs[0].images[*index].arch : std::string("none");
  };
  EXPECT_EQ(pick(9, 0), "sm_90");
  EXPECT_EQ(pick(8, 6), "sm_80");
  EXPECT_EQ(pick(10, 0), "ptx");
  EXPECT_EQ(qlora::cuda::findMissingCudaImage(specs, 12, 0), "");

  // Without a driver (as on a build machine) the backend says so.
  qlora::cuda::CudaFailure failure;
  std::unique_ptr<qlora::cuda::CudaBackend> backend =
      qlora::cuda::CudaBackend::create(*file, failure);
  if (!backend && failure.kind == qlora::cuda::CudaFailure::Kind::NoDriver) {
    EXPECT_NE(failure.message.find("no CUDA driver"), std::string::npos)
        << failure.message;
  }
}

} // namespace
