// A build without the CUDA toolkit cannot compile kernels, and says so.
// UNSUPPORTED: nvrtc
// RUN: not qlora-opt %s --qrt-codegen-cuda 2>&1 | FileCheck %s

// CHECK: error: --qrt-codegen-cuda: built without NVRTC (no CUDA toolkit was found at configure time)
module {}
