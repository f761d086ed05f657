// RUN: qlora-opt %s | qlora-opt | FileCheck %s
// RUN: qlora-opt %s --mlir-print-op-generic | qlora-opt | FileCheck %s

// CHECK: qrt.kernel @rms_norm_fwd_4096 template "rms_norm_fwd" params {dtype = bf16, eps = 1.000000e-05 : f64, hidden = 4096 : i64}
qrt.kernel @rms_norm_fwd_4096 template "rms_norm_fwd"
  params {hidden = 4096 : i64, eps = 1.0e-05 : f64, dtype = bf16}
// CHECK: qrt.kernel @gemm_nf4 template "dequant_gemm_lora" params {causal = true, name = "q_proj", tile = array<i64: 128, 128, 32>}
qrt.kernel @gemm_nf4 template "dequant_gemm_lora"
  params {tile = array<i64: 128, 128, 32>, causal = true, name = "q_proj"}
// CHECK: qrt.kernel @fill template "fill_zero" params {}
qrt.kernel @fill template "fill_zero" params {}

// Every class and placement; `offset` only once planned.
// CHECK-LABEL: func @buffers
// CHECK: %[[W:.*]] = qrt.buffer size 8388608 align 256 class <weight> placement <paged> : !qrt.buffer
// CHECK: %[[L:.*]] = qrt.buffer size 262144 align 256 class <lora> placement <device> offset 0 : !qrt.buffer
// CHECK: %[[G:.*]] = qrt.buffer size 262144 align 256 class <gradient> placement <device> offset 262144 : !qrt.buffer
// CHECK: %[[O:.*]] = qrt.buffer size 524288 align 256 class <optimizer> placement <device> offset 524288 : !qrt.buffer
// CHECK: %[[A:.*]] = qrt.buffer size 4096 align 256 class <activation> placement <device> offset 1048576 : !qrt.buffer
// CHECK: %[[S:.*]] = qrt.buffer size 64 align 16 class <workspace> placement <device> offset 1052672 : !qrt.buffer
// CHECK: %[[I:.*]] = qrt.buffer size 1024 align 64 class <io> placement <host_pinned> : !qrt.buffer
// CHECK: return %[[W]], %[[L]], %[[G]], %[[O]], %[[A]], %[[S]], %[[I]]
func.func @buffers() -> (!qrt.buffer, !qrt.buffer, !qrt.buffer, !qrt.buffer,
                         !qrt.buffer, !qrt.buffer, !qrt.buffer) {
  %w = qrt.buffer size 8388608 align 256 class <weight> placement <paged>
         : !qrt.buffer
  %l = qrt.buffer size 262144 align 256 class <lora> placement <device>
         offset 0 : !qrt.buffer
  %g = qrt.buffer size 262144 align 256 class <gradient> placement <device>
         offset 262144 : !qrt.buffer
  %o = qrt.buffer size 524288 align 256 class <optimizer> placement <device>
         offset 524288 : !qrt.buffer
  %a = qrt.buffer size 4096 align 256 class <activation> placement <device>
         offset 1048576 : !qrt.buffer
  %s = qrt.buffer size 64 align 16 class <workspace> placement <device>
         offset 1052672 : !qrt.buffer
  %i = qrt.buffer size 1024 align 64 class <io> placement <host_pinned>
         : !qrt.buffer
  return %w, %l, %g, %o, %a, %s, %i : !qrt.buffer, !qrt.buffer, !qrt.buffer,
         !qrt.buffer, !qrt.buffer, !qrt.buffer, !qrt.buffer
}

// What the lowering records: name, stored type, initial contents and seed.
// CHECK-LABEL: func @buffer_contents
// CHECK: qrt.buffer size 1024 align 64 class <lora> placement <device> name "q.lora_A.weight" type tensor<4x64xf32> init(#qlora.init<kaiming_uniform>) seed 3 : !qrt.buffer
// CHECK: qrt.buffer size 8192 align 64 class <weight> placement <device> offset 1024 name "q.weight" type tensor<64x64xbf16> init(#qlora.source<"/m/model.safetensors", "q.weight">) : !qrt.buffer
// CHECK: qrt.buffer size 4 align 64 class <io> placement <device> name "constant_0" type f32 init(1.000000e+00 : f32) : !qrt.buffer
// CHECK: qrt.buffer size 16 align 64 class <weight> placement <device> type tensor<4xf32> init(dense<[1.000000e+00, 2.000000e+00, 3.000000e+00, 4.000000e+00]> : tensor<4xf32>) : !qrt.buffer
// CHECK: qrt.buffer size 8 align 64 class <io> placement <device> name "step" type i64 : !qrt.buffer
func.func @buffer_contents() {
  %a = qrt.buffer size 1024 align 64 class <lora> placement <device>
         name "q.lora_A.weight" type tensor<4x64xf32>
         init(#qlora.init<kaiming_uniform>) seed 3 : !qrt.buffer
  %w = qrt.buffer size 8192 align 64 class <weight> placement <device>
         offset 1024 name "q.weight" type tensor<64x64xbf16>
         init(#qlora.source<"/m/model.safetensors", "q.weight">) : !qrt.buffer
  %c = qrt.buffer size 4 align 64 class <io> placement <device>
         name "constant_0" type f32 init(1.0 : f32) : !qrt.buffer
  %d = qrt.buffer size 16 align 64 class <weight> placement <device>
         type tensor<4xf32> init(dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32>)
         : !qrt.buffer
  %s = qrt.buffer size 8 align 64 class <io> placement <device> name "step"
         type i64 : !qrt.buffer
  return
}

// `smem` is printed only when non-zero; a launch may take function
// arguments, whose sizes are the caller's business.
// CHECK-LABEL: func @launch
// CHECK-SAME: (%[[IN:.*]]: !qrt.buffer)
// CHECK: %[[X:.*]] = qrt.buffer size 8192
// CHECK: %[[Y:.*]] = qrt.buffer size 8192
// CHECK: qrt.launch @rms_norm_fwd_4096(%[[IN]], %[[X]], %[[Y]]) grid [1, 1, 1] block [256, 1, 1] smem 1024{{$}}
// CHECK: qrt.launch @gemm_nf4(%[[X]], %[[Y]]) grid [32, 2, 1] block [128, 2, 4]{{$}}
// CHECK: qrt.launch @fill(%[[Y]]) grid [2147483647, 65535, 65535] block [1, 1, 64] smem 232448{{$}}
// CHECK: qrt.launch @fill(%[[Y]]) grid [1, 1, 1] block [1024, 1, 1]{{$}}
func.func @launch(%in: !qrt.buffer) {
  %x = qrt.buffer size 8192 align 256 class <activation> placement <device>
         : !qrt.buffer
  %y = qrt.buffer size 8192 align 256 class <activation> placement <device>
         : !qrt.buffer
  qrt.launch @rms_norm_fwd_4096(%in, %x, %y) grid [1, 1, 1] block [256, 1, 1]
    smem 1024
  qrt.launch @gemm_nf4(%x, %y) grid [32, 2, 1] block [128, 2, 4] smem 0
  qrt.launch @fill(%y) grid [2147483647, 65535, 65535] block [1, 1, 64]
    smem 232448
  qrt.launch @fill(%y) grid [1, 1, 1] block [1024, 1, 1]
  return
}

// Ranges up to the last byte, disjoint ranges of one buffer, and unchecked
// function arguments.
// CHECK-LABEL: func @copy
// CHECK-SAME: (%[[SRC:.*]]: !qrt.buffer, %[[DST:.*]]: !qrt.buffer)
// CHECK: %[[H:.*]] = qrt.buffer size 4096
// CHECK: %[[D:.*]] = qrt.buffer size 8192
// CHECK: qrt.copy %[[H]][0], %[[D]][4096], bytes 4096
// CHECK: qrt.copy %[[D]][0], %[[D]][4096], bytes 4096
// CHECK: qrt.copy %[[SRC]][1048576], %[[DST]][0], bytes 65536
func.func @copy(%src: !qrt.buffer, %dst: !qrt.buffer) {
  %h = qrt.buffer size 4096 align 64 class <io> placement <host_pinned>
         : !qrt.buffer
  %d = qrt.buffer size 8192 align 256 class <activation> placement <device>
         : !qrt.buffer
  qrt.copy %h[0], %d[4096], bytes 4096
  qrt.copy %d[0], %d[4096], bytes 4096
  qrt.copy %src[1048576], %dst[0], bytes 65536
  return
}

// CHECK-LABEL: func @paging
// CHECK-SAME: (%[[ARG:.*]]: !qrt.buffer)
// CHECK: %[[W:.*]] = qrt.buffer size 8388608 align 256 class <weight> placement <paged>
// CHECK: qrt.prefetch %[[W]]
// CHECK: qrt.launch @gemm_nf4(%[[W]], %[[ARG]])
// CHECK: qrt.evict %[[W]]
// CHECK: qrt.prefetch %[[ARG]]
// CHECK: qrt.evict %[[ARG]]
func.func @paging(%arg: !qrt.buffer) {
  %w = qrt.buffer size 8388608 align 256 class <weight> placement <paged>
         : !qrt.buffer
  qrt.prefetch %w
  qrt.launch @gemm_nf4(%w, %arg) grid [1, 1, 1] block [128, 1, 1]
  qrt.evict %w
  qrt.prefetch %arg
  qrt.evict %arg
  return
}

// The enum attributes also stand alone.
// CHECK-LABEL: func @enum_attrs
// CHECK: buffer_class = #qrt.class<optimizer>
// CHECK-SAME: placement = #qrt.placement<host_pinned>
func.func @enum_attrs() attributes {buffer_class = #qrt.class<optimizer>,
                                    placement = #qrt.placement<host_pinned>} {
  return
}
