//===- CudaParityPack.cpp - The GPU parity cases, compiled ahead of time --===//
//
//   qlora-cuda-parity-pack OUT_DIR [SOURCES_DIR]
//
// Instantiates every CudaParityCases.h case from kernels/ (with the case's
// activation type, f32 or bf16) and compiles it with NVRTC for sm_80, sm_90 and
// PTX, where this project is built; writes OUT_DIR/index.json ({case: {entry,
// grid, block, then, images: {arch: file}}}) and the images beside it, which
// qlora-cuda-tests loads where there is a GPU (no NVRTC needed there). Without
// NVRTC it writes an index that says so, and the GPU test skips with that
// reason. SOURCES_DIR receives each case's CUDA source as <entry>.cu, for
// the emulated driver (test/emu/driver), which runs them in place of the
// images.
//
//===----------------------------------------------------------------------===//
#include "kernels/CudaKernelSource.h"
#include "kernels/NvrtcCompiler.h"
#include "test/runtime/CudaParityCases.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iostream>

namespace {

using nlohmann::json;
namespace parity = qlora::cuda::parity;

json dims(const std::array<uint32_t, 3> &grid) {
  return json::array({grid[0], grid[1], grid[2]});
}

bool writeFile(const std::filesystem::path &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  return bool(out);
}

} // namespace

int main(int argc, char **argv) {
  if (argc != 2 && argc != 3) {
    std::cerr << "usage: qlora-cuda-parity-pack OUT_DIR [SOURCES_DIR]\n";
    return 2;
  }
  std::filesystem::path dir = argv[1];
  std::filesystem::path sources = argc == 3 ? argv[2] : "";
  // Images of cases that no longer exist must not linger in the pack.
  for (const std::filesystem::path &out : {dir, sources})
    if (!out.empty()) {
      std::filesystem::remove_all(out);
      std::filesystem::create_directories(out);
    }
  json index = {{"nvrtc", qlora::cuda::nvrtcAvailable()},
                {"nvrtc_version", qlora::cuda::nvrtcVersionString()},
                {"cases", json::object()}};
  if (qlora::cuda::nvrtcAvailable()) {
    const std::vector<std::string> archs = {"sm_80", "sm_90", "compute_80"};
    for (const parity::ParityCase &c : parity::parityCases()) {
      std::string error;
      auto source = qlora::cuda::instantiateCudaKernel(c.kernel, c.params,
                                                       c.activationType, error);
      if (!source) {
        std::cerr << "qlora-cuda-parity-pack: " << c.name << ": " << error
                  << "\n";
        return 1;
      }
      if (!sources.empty() &&
          !writeFile(sources / (source->entry + ".cu"), source->source)) {
        std::cerr << "qlora-cuda-parity-pack: cannot write "
                  << sources / (source->entry + ".cu") << "\n";
        return 1;
      }
      auto images =
          qlora::cuda::compileCudaKernel(source->source, c.name, archs, error);
      if (!images) {
        std::cerr << "qlora-cuda-parity-pack: " << c.name << ": " << error
                  << "\n";
        return 1;
      }
      json entry = {{"entry", source->entry},
                    {"grid", dims(source->grid)},
                    {"block", json::array({source->blockThreads, 1, 1})},
                    {"then", json::array()},
                    {"images", json::object()}};
      for (const qlora::cuda::CudaKernelPhase &phase : source->then)
        entry["then"].push_back(
            {{"entry", phase.entry},
             {"grid", dims(phase.grid)},
             {"block", json::array({phase.blockThreads, 1, 1})}});
      for (const qlora::cuda::NvrtcImage &image : *images) {
        std::string arch = image.isPtx ? "ptx" : image.arch;
        std::string file = c.name + "." + arch;
        if (!writeFile(dir / file, image.bytes)) {
          std::cerr << "qlora-cuda-parity-pack: cannot write " << dir / file
                    << "\n";
          return 1;
        }
        entry["images"][arch] = file;
      }
      index["cases"][c.name] = entry;
    }
  }
  std::filesystem::path tmp = dir / "index.json.tmp";
  if (!writeFile(tmp, index.dump(1))) {
    std::cerr << "qlora-cuda-parity-pack: cannot write " << tmp << "\n";
    return 1;
  }
  std::filesystem::rename(tmp, dir / "index.json");
  return 0;
}
