// RUN: qlora-opt %s | qlora-opt | FileCheck %s
// RUN: qlora-opt %s --mlir-print-op-generic | qlora-opt | FileCheck %s

// CHECK: qrt.kernel @rms_norm_fwd template "rms_norm_fwd" params {eps = 1.000000e-05 : f64, hidden = 64 : i64}
qrt.kernel @rms_norm_fwd template "rms_norm_fwd" params {hidden = 64 : i64, eps = 1.0e-5 : f64}

// CHECK-LABEL: func @step
func.func @step() {
  // CHECK: %[[A:.*]] = qrt.buffer size 4096 align 256 class <activation> placement <device> offset 1024 : !qrt.buffer
  %a = qrt.buffer size 4096 align 256 class <activation> placement <device> offset 1024 : !qrt.buffer
  // CHECK: %[[W:.*]] = qrt.buffer size 8192 align 4096 class <weight> placement <paged> : !qrt.buffer
  %w = qrt.buffer size 8192 align 4096 class <weight> placement <paged> : !qrt.buffer
  // CHECK: %[[IO:.*]] = qrt.buffer size 256 align 64 class <io> placement <host_pinned> : !qrt.buffer
  %io = qrt.buffer size 256 align 64 class <io> placement <host_pinned> : !qrt.buffer
  // CHECK: qrt.prefetch %[[W]]
  qrt.prefetch %w
  // CHECK: qrt.copy %[[IO]][0], %[[A]][128], bytes 256
  qrt.copy %io[0], %a[128], bytes 256
  // CHECK: qrt.launch @rms_norm_fwd(%[[A]], %[[W]]) grid [4, 1, 1] block [128, 1, 1] smem 512
  qrt.launch @rms_norm_fwd(%a, %w) grid [4, 1, 1] block [128, 1, 1] smem 512
  // No dynamic shared memory: smem is not printed.
  // CHECK: qrt.launch @rms_norm_fwd(%[[A]]) grid [1, 1, 1] block [32, 1, 1]{{$}}
  qrt.launch @rms_norm_fwd(%a) grid [1, 1, 1] block [32, 1, 1]
  // CHECK: qrt.evict %[[W]]
  qrt.evict %w
  return
}
