// RUN: qlora-opt %s -canonicalize -cse | FileCheck %s

// The memory effects keep what the runtime must execute: launches, copies
// and paging stay in order, two equal buffer declarations stay two buffers,
// and only a buffer nothing uses goes away.

qrt.kernel @k template "silu_fwd" params {n = 64 : i64}

// CHECK-LABEL: func @effects_are_kept
// CHECK: %[[A:.*]] = qrt.buffer size 256 align 256 class <activation> placement <device>
// CHECK: %[[B:.*]] = qrt.buffer size 256 align 256 class <activation> placement <device>
// CHECK: %[[W:.*]] = qrt.buffer size 256 align 256 class <weight> placement <paged>
// CHECK-NOT: = qrt.buffer
// CHECK: qrt.prefetch %[[W]]
// CHECK: qrt.launch @k(%[[W]], %[[A]])
// CHECK: qrt.launch @k(%[[W]], %[[A]])
// CHECK: qrt.copy %[[A]][0], %[[B]][0], bytes 256
// CHECK: qrt.evict %[[W]]
// CHECK: return
func.func @effects_are_kept() {
  %a = qrt.buffer size 256 align 256 class <activation> placement <device>
         : !qrt.buffer
  %b = qrt.buffer size 256 align 256 class <activation> placement <device>
         : !qrt.buffer
  %w = qrt.buffer size 256 align 256 class <weight> placement <paged>
         : !qrt.buffer
  %unused = qrt.buffer size 64 align 64 class <workspace> placement <device>
         : !qrt.buffer
  qrt.prefetch %w
  qrt.launch @k(%w, %a) grid [1, 1, 1] block [64, 1, 1]
  qrt.launch @k(%w, %a) grid [1, 1, 1] block [64, 1, 1]
  qrt.copy %a[0], %b[0], bytes 256
  qrt.evict %w
  return
}
