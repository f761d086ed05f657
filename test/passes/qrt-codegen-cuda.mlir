// REQUIRES: nvrtc
// RUN: qlora-opt %s -split-input-file --qrt-codegen-cuda --mlir-elide-resource-strings-if-larger=16 | FileCheck %s
// RUN: qlora-opt %s -split-input-file --qrt-codegen-cuda="archs=sm_90 ptx=false activation-type=bf16" --mlir-elide-resource-strings-if-larger=16 | FileCheck %s --check-prefix=BF16
// The images are kept in the module's resources: the output parses back.
// RUN: qlora-opt %s -split-input-file --qrt-codegen-cuda | qlora-opt -split-input-file | FileCheck %s --check-prefix=ROUNDTRIP

// Every kernel is renamed to its CUDA entry (what the CUDA backend looks up
// by the train.bin symbol), carries a CUBIN per arch and PTX, and every
// launch follows the rename and gets the instantiation's grid and block.
// Identical instantiations (@add_0, @add_1) become one kernel.

// CHECK-LABEL: qrt.kernel @fill_f32_{{[0-9a-f]+}} template "fill"
// CHECK-SAME: cuda.images = {ptx = dense_resource<{{.*}}> : tensor<{{[0-9]+}}xui8>, sm_80 = dense_resource<{{.*}}> : tensor<{{[0-9]+}}xui8>, sm_90 = dense_resource<{{.*}}> : tensor<{{[0-9]+}}xui8>}
// CHECK: qrt.kernel @[[ADD:add_f32_[0-9a-f]+]] template "add"
// CHECK-SAME: cuda.images = {ptx = {{.*}}, sm_80 = {{.*}}, sm_90 = {{.*}}}
// CHECK-NOT: template "add"
// CHECK: qrt.kernel @[[SILU:silu_fwd_f32_[0-9a-f]+]] template "silu_fwd"
// CHECK-SAME: cuda.images = {ptx = {{.*}}, sm_80 = {{.*}}, sm_90 = {{.*}}}
// CHECK: qrt.kernel @[[NORM:rms_norm_fwd_f32_[0-9a-f]+]] template "rms_norm_fwd"
// CHECK-SAME: cuda.images = {ptx = {{.*}}, sm_80 = {{.*}}, sm_90 = {{.*}}}
// CHECK: qrt.kernel @[[ADAMW:adamw_f32_[0-9a-f]+]] template "adamw"
// CHECK-SAME: cuda.images = {ptx = {{.*}}, sm_80 = {{.*}}, sm_90 = {{.*}}}
// CHECK-LABEL: func.func @train_step
// CHECK: qrt.launch @fill_f32_{{.*}}(%{{.*}}) grid [1, 1, 1] block [256, 1, 1]
// CHECK-NEXT: qrt.launch @[[ADD]](%{{.*}}) grid [1, 1, 1] block [256, 1, 1]
// CHECK-NEXT: qrt.launch @[[ADD]](%{{.*}}) grid [1, 1, 1] block [256, 1, 1]
// CHECK-NEXT: qrt.launch @[[SILU]](%{{.*}}) grid [1, 1, 1] block [256, 1, 1]
// CHECK-NEXT: qrt.launch @[[NORM]](%{{.*}}) grid [8, 1, 1] block [32, 1, 1]
// CHECK-NEXT: qrt.launch @[[ADAMW]](%{{.*}}) grid [1, 1, 1] block [256, 1, 1]
// CHECK-NOT: qrt.kernel
// CHECK-NOT: @add_0
// CHECK-NOT: @add_1

// With one arch, no PTX and bf16 activations: one image each, other entries.
// BF16: qrt.kernel @fill_bf16_{{[0-9a-f]+}} template "fill"
// BF16-SAME: cuda.images = {sm_90 = dense_resource<{{.*}}> : tensor<{{[0-9]+}}xui8>}
// BF16: qrt.kernel @add_bf16_{{[0-9a-f]+}}
// BF16-NOT: sm_80

// ROUNDTRIP: qrt.kernel @fill_f32_
// ROUNDTRIP: dialect_resources
// ROUNDTRIP: fill_f32_{{[0-9a-f]+}}_sm_90: "0x

module {
  qrt.kernel @fill_0 template "fill" params {n = 64 : i64, value = 0.0 : f64}
  qrt.kernel @add_0 template "add" params {n = 64 : i64}
  qrt.kernel @add_1 template "add" params {n = 64 : i64}
  qrt.kernel @silu_fwd_0 template "silu_fwd" params {n = 64 : i64}
  qrt.kernel @rms_norm_fwd_0 template "rms_norm_fwd"
    params {eps = 1.0e-05 : f64, hidden = 8 : i64, rows = 8 : i64, w_dtype = "BF16"}
  qrt.kernel @adamw_0 template "adamw"
    params {beta1 = 0.9 : f64, beta2 = 0.999 : f64, epsilon = 1.0e-08 : f64, n = 64 : i64}
  func.func @train_step() {
    %a = qrt.buffer size 256 align 64 class <activation> placement <device> : !qrt.buffer
    %b = qrt.buffer size 256 align 64 class <activation> placement <device> : !qrt.buffer
    %c = qrt.buffer size 256 align 64 class <activation> placement <device> : !qrt.buffer
    %w = qrt.buffer size 16 align 64 class <weight> placement <device> : !qrt.buffer
    %s = qrt.buffer size 4 align 64 class <io> placement <device> : !qrt.buffer
    %i = qrt.buffer size 8 align 64 class <io> placement <device> : !qrt.buffer
    qrt.launch @fill_0(%a) grid [1, 1, 1] block [1, 1, 1]
    qrt.launch @add_0(%a, %a, %b) grid [1, 1, 1] block [1, 1, 1]
    qrt.launch @add_1(%b, %a, %b) grid [1, 1, 1] block [1, 1, 1]
    qrt.launch @silu_fwd_0(%b, %c) grid [1, 1, 1] block [1, 1, 1]
    qrt.launch @rms_norm_fwd_0(%c, %w, %a) grid [1, 1, 1] block [1, 1, 1]
    qrt.launch @adamw_0(%a, %b, %c, %c, %s, %s, %i, %s) grid [1, 1, 1] block [1, 1, 1]
    return
  }
}

// -----

// Multi-phase kernels: attention_bwd's second phase and linear_fwd's LoRA-up
// GEMM are further entries of the same images (`cuda.then`), launched after
// the main entry with the same arguments; the launch gets the main entry's
// grid and block. attention_bwd: per (query tile, q head, batch), then per
// (key tile, kv head, batch). linear_fwd's main entry runs x·Wᵀ (one 64x64
// tile of 16x64) and the LoRA-down xd·Aᵀ (one more column of blocks) side
// by side: grid [2, 1, 1].

// CHECK-LABEL: qrt.kernel @attention_bwd_f32_{{[0-9a-f]+}} template "attention_bwd"
// CHECK-SAME: cuda.then = [{block = array<i64: {{[0-9]+}}, 1, 1>, entry = "attention_bwd_f32_{{[0-9a-f]+}}_p1", grid = array<i64: {{[0-9]+}}, 2, 2>}]
// CHECK-LABEL: qrt.kernel @linear_fwd_f32_{{[0-9a-f]+}} template "linear_fwd"
// CHECK-SAME: cuda.then = [{block = array<i64: 256, 1, 1>, entry = "linear_fwd_f32_{{[0-9a-f]+}}_p1", grid = array<i64: 1, 1, 1>}]
// CHECK: qrt.launch @attention_bwd_f32_{{[0-9a-f]+}}({{.*}}) grid [{{[0-9]+}}, 4, 2] block [{{[0-9]+}}, 1, 1]
// CHECK: qrt.launch @linear_fwd_f32_{{[0-9a-f]+}}({{.*}}) grid [2, 1, 1] block [256, 1, 1]
module {
  qrt.kernel @attention_bwd_0 template "attention_bwd"
    params {accumulate = 0 : i64, batch = 2 : i64, causal = 1 : i64, head_dim = 16 : i64, heads = 4 : i64, kv_heads = 2 : i64, scale = 2.500000e-01 : f64, seq = 8 : i64}
  qrt.kernel @linear_fwd_0 template "linear_fwd"
    params {in = 64 : i64, out = 64 : i64, rank = 4 : i64, rows = 16 : i64, scaling = 2.0 : f64, w_dtype = "F32"}
  func.func @train_step() {
    %q = qrt.buffer size 4096 align 64 class <activation> placement <device> : !qrt.buffer
    %k = qrt.buffer size 2048 align 64 class <activation> placement <device> : !qrt.buffer
    qrt.launch @attention_bwd_0(%q, %q, %k, %k, %q, %q, %k, %k) grid [1, 1, 1] block [1, 1, 1]
    qrt.launch @linear_fwd_0(%q, %q, %k, %k, %k, %q) grid [1, 1, 1] block [1, 1, 1]
    return
  }
}
