//===- CpuBackend.cpp - The reference backend
//------------------------------===//
#include "runtime/backends/cpu/CpuBackend.h"

#include <cstring>
#include <sys/mman.h>

namespace qlora::cpu {

CpuBackend::CpuBackend(unsigned threads) : pool_(threads) {}

CpuBackend::~CpuBackend() {
  if (arena_)
    munmap(arena_, arenaBytes_);
}

std::string CpuBackend::description() const {
  return "CPU, " + std::to_string(pool_.size()) + " threads";
}

bool CpuBackend::allocateArena(uint64_t bytes, std::string &error) {
  if (arena_) {
    error = "the arena is already allocated";
    return false;
  }
  if (bytes == 0)
    return true;
  // Anonymous pages come zero-filled and page-aligned.
  void *memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED) {
    error = "cannot allocate the " + std::to_string(bytes) +
            "-byte arena: " + std::strerror(errno);
    return false;
  }
  arena_ = static_cast<std::byte *>(memory);
  arenaBytes_ = bytes;
  return true;
}

bool CpuBackend::prepareLaunch(uint32_t kernel, std::string_view templateName,
                               const format::KernelParams &params,
                               std::span<const exec::ArenaRange> args,
                               std::string &error) {
  const CpuKernel *cpuKernel = findCpuKernel(templateName);
  if (!cpuKernel) {
    error = "the CPU backend has no kernel '" + std::string(templateName) + "'";
    return false;
  }
  argBytes_.clear();
  for (const exec::ArenaRange &arg : args) {
    if (arg.offset > arenaBytes_ || arg.bytes > arenaBytes_ - arg.offset) {
      error = "an argument [" + std::to_string(arg.offset) + ", +" +
              std::to_string(arg.bytes) + ") lies outside the " +
              std::to_string(arenaBytes_) + "-byte arena";
      return false;
    }
    argBytes_.push_back(arg.bytes);
  }
  std::string why = cpuKernel->validate(params, argBytes_);
  if (!why.empty()) {
    error = why;
    return false;
  }
  if (kernel >= kernels_.size())
    kernels_.resize(kernel + 1);
  kernels_[kernel] = {cpuKernel, params};
  return true;
}

void CpuBackend::launch(uint32_t kernel,
                        std::span<const exec::ArenaRange> args) {
  const PreparedKernel &prepared = kernels_[kernel];
  argPointers_.clear();
  argBytes_.clear();
  for (const exec::ArenaRange &arg : args) {
    argPointers_.push_back(arena_ + arg.offset);
    argBytes_.push_back(arg.bytes);
  }
  prepared.kernel->run({prepared.params, argPointers_, argBytes_, pool_});
}

void CpuBackend::upload(uint64_t offset, std::span<const std::byte> bytes) {
  std::memcpy(arena_ + offset, bytes.data(), bytes.size());
}

void CpuBackend::download(uint64_t offset, std::span<std::byte> bytes) {
  std::memcpy(bytes.data(), arena_ + offset, bytes.size());
}

void CpuBackend::copy(uint64_t srcOffset, uint64_t dstOffset, uint64_t bytes) {
  std::memmove(arena_ + dstOffset, arena_ + srcOffset, bytes);
}

} // namespace qlora::cpu
