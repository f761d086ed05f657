// RUN: qlora-opt %s -split-input-file -verify-diagnostics --qlora-lower-to-qrt | FileCheck %s
// RUN: qlora-opt %s -split-input-file -verify-diagnostics --qlora-lower-to-qrt=activation-type=bf16 | FileCheck %s --check-prefix=BF16

// Linear with and without LoRA, in KernelAbi.h order: x, w, [a, b, t_ws], y.
// A bf16 weight keeps its dtype (w_dtype "BF16"); the LoRA path adds a
// [rows, rank] workspace; without LoRA, rank is 0. Arguments become io
// buffers named by qlora.input.

// CHECK: qrt.kernel @[[LORA:.*]] template "linear_fwd" params {in = 8 : i64, out = 16 : i64, rank = 2 : i64, rows = 8 : i64, scaling = 2.000000e+00 : f64, w_dtype = "BF16"}
// CHECK: qrt.kernel @[[PLAIN:.*]] template "linear_fwd" params {in = 16 : i64, out = 32 : i64, rank = 0 : i64, rows = 8 : i64, scaling = 1.000000e+00 : f64, w_dtype = "F32"}
// CHECK-LABEL: func.func @linear_with_and_without_lora()
// CHECK: %[[X:.*]] = qrt.buffer size 256 align 64 class <io> placement <device> name "x" type tensor<2x4x8xf32> : !qrt.buffer
// CHECK: %[[W:.*]] = qrt.buffer size 256 align 64 class <weight> placement <device> name "q.weight" type tensor<16x8xbf16> init(#qlora.source<"/m/model.safetensors", "q.weight">) : !qrt.buffer
// CHECK: %[[A:.*]] = qrt.buffer size 64 align 64 class <lora> placement <device> name "q.lora_A.weight" type tensor<2x8xf32> init(#qlora.init<kaiming_uniform>) seed 7 : !qrt.buffer
// CHECK: %[[B:.*]] = qrt.buffer size 128 align 64 class <lora> placement <device> name "q.lora_B.weight" type tensor<16x2xf32> init(#qlora.init<zeros>) seed 7 : !qrt.buffer
// CHECK: %[[HEAD:.*]] = qrt.buffer size 2048 align 64 class <weight> placement <device> name "lm_head.weight" type tensor<32x16xf32> init(dense<5.000000e-01> : tensor<32x16xf32>) : !qrt.buffer
// CHECK: %[[Y:.*]] = qrt.buffer size 512 align 64 class <activation> placement <device> type tensor<2x4x16xf32> : !qrt.buffer
// CHECK: %[[T:.*]] = qrt.buffer size 64 align 64 class <workspace> placement <device> type tensor<8x2xf32> : !qrt.buffer
// CHECK: %[[LOGITS:.*]] = qrt.buffer size 1024 align 64 class <activation> placement <device> type tensor<2x4x32xf32> : !qrt.buffer
// CHECK-NEXT: qrt.launch @[[LORA]](%[[X]], %[[W]], %[[A]], %[[B]], %[[T]], %[[Y]]) grid [1, 1, 1] block [1, 1, 1]
// CHECK-NEXT: qrt.launch @[[PLAIN]](%[[Y]], %[[HEAD]], %[[LOGITS]]) grid [1, 1, 1] block [1, 1, 1]
// CHECK-NEXT: return

// With bf16 activations, activations, workspaces and io tensors are bf16;
// weights and LoRA matrices keep their types.
// BF16-LABEL: func.func @linear_with_and_without_lora()
// BF16: name "x" type tensor<2x4x8xbf16>
// BF16: name "q.weight" type tensor<16x8xbf16>
// BF16: name "q.lora_A.weight" type tensor<2x8xf32>
// BF16: name "lm_head.weight" type tensor<32x16xf32>
// BF16: size 256 align 64 class <activation> placement <device> type tensor<2x4x16xbf16>
// BF16: size 32 align 64 class <workspace> placement <device> type tensor<8x2xbf16>
func.func @linear_with_and_without_lora(
    %x: tensor<2x4x8xf32> {qlora.input = "x"}) {
  %w = qlora.weight "q.weight" source <"/m/model.safetensors", "q.weight">
         : tensor<16x8xbf16>
  %a = qlora.lora_param "q.lora_A.weight" init <kaiming_uniform> seed 7
         : tensor<2x8xf32>
  %b = qlora.lora_param "q.lora_B.weight" init <zeros> seed 7
         : tensor<16x2xf32>
  %head = qlora.weight "lm_head.weight" value dense<0.5> : tensor<32x16xf32>
            : tensor<32x16xf32>
  %y = qlora.linear %x, %w lora(%a, %b) {scaling = 2.0}
         : tensor<2x4x8xf32>, tensor<16x8xbf16>, tensor<2x8xf32>,
           tensor<16x2xf32>
  %logits = qlora.linear %y, %head : tensor<2x4x16xf32>, tensor<32x16xf32>
  return
}

// -----

// Backward of a LoRA linear: linear_grad_input(dy, w, [a, b, dt_ws], dx),
// and lora_grad(dy, x, a, b, t_ws, dt_ws, da, db) reading the t_ws the
// forward linear_fwd left (x·Aᵀ) and the dt_ws linear_grad_input left
// (dy·B). The gradients of the LoRA matrices keep their f32 whatever the
// activation type.

// CHECK: qrt.kernel @[[FWD:.*]] template "linear_fwd" params {in = 8 : i64, out = 16 : i64, rank = 4 : i64, rows = 8 : i64, scaling = 5.000000e-01 : f64, w_dtype = "F32"}
// CHECK: qrt.kernel @[[GIN:.*]] template "linear_grad_input" params {accumulate = 0 : i64, in = 8 : i64, out = 16 : i64, rank = 4 : i64, rows = 8 : i64, scaling = 5.000000e-01 : f64, w_dtype = "F32"}
// CHECK: qrt.kernel @[[GIN_PLAIN:.*]] template "linear_grad_input" params {accumulate = 0 : i64, in = 8 : i64, out = 16 : i64, rank = 0 : i64, rows = 8 : i64, scaling = 1.000000e+00 : f64, w_dtype = "F32"}
// CHECK: qrt.kernel @[[LGRAD:.*]] template "lora_grad" params {accumulate = 0 : i64, in = 8 : i64, out = 16 : i64, rank = 4 : i64, rows = 8 : i64, scaling = 5.000000e-01 : f64}
// CHECK-NOT: qrt.kernel
// CHECK-LABEL: func.func @linear_backward()
// CHECK: %[[DY:.*]] = qrt.buffer {{.*}} name "dy"
// CHECK: %[[X:.*]] = qrt.buffer {{.*}} name "x"
// CHECK: %[[W:.*]] = qrt.buffer {{.*}} name "q.weight"
// CHECK: %[[A:.*]] = qrt.buffer {{.*}} name "q.lora_A.weight"
// CHECK: %[[B:.*]] = qrt.buffer {{.*}} name "q.lora_B.weight"
// CHECK: %[[Y:.*]] = qrt.buffer size 512 align 64 class <activation> placement <device> type tensor<8x16xf32>
// CHECK: %[[T:.*]] = qrt.buffer size 128 align 64 class <workspace> placement <device> type tensor<8x4xf32>
// CHECK: %[[DX:.*]] = qrt.buffer size 256 align 64 class <gradient> placement <device> type tensor<8x8xf32>
// CHECK: %[[DT:.*]] = qrt.buffer size 128 align 64 class <workspace> placement <device> type tensor<8x4xf32>
// CHECK: %[[DX2:.*]] = qrt.buffer size 256 align 64 class <gradient> placement <device> type tensor<8x8xf32>
// CHECK: %[[DA:.*]] = qrt.buffer size 128 align 64 class <gradient> placement <device> type tensor<4x8xf32>
// CHECK: %[[DB:.*]] = qrt.buffer size 256 align 64 class <gradient> placement <device> type tensor<16x4xf32>
// CHECK-NEXT: qrt.launch @[[FWD]](%[[X]], %[[W]], %[[A]], %[[B]], %[[T]], %[[Y]])
// CHECK-NEXT: qrt.launch @[[GIN]](%[[DY]], %[[W]], %[[A]], %[[B]], %[[DT]], %[[DX]])
// CHECK-NEXT: qrt.launch @[[GIN_PLAIN]](%[[DY]], %[[W]], %[[DX2]])
// CHECK-NEXT: qrt.launch @[[LGRAD]](%[[DY]], %[[X]], %[[A]], %[[B]], %[[T]], %[[DT]], %[[DA]], %[[DB]])
// CHECK-NEXT: return

// BF16-LABEL: func.func @linear_backward()
// BF16: class <workspace> placement <device> type tensor<8x4xbf16>
// BF16: class <gradient> placement <device> type tensor<8x8xbf16>
// BF16: class <gradient> placement <device> type tensor<4x8xf32>
// BF16: class <gradient> placement <device> type tensor<16x4xf32>
func.func @linear_backward(%dy: tensor<8x16xf32> {qlora.input = "dy"},
                           %x: tensor<8x8xf32> {qlora.input = "x"}) {
  %w = qlora.weight "q.weight" value dense<1.0> : tensor<16x8xf32>
         : tensor<16x8xf32>
  %a = qlora.lora_param "q.lora_A.weight" init <kaiming_uniform> seed 0
         : tensor<4x8xf32>
  %b = qlora.lora_param "q.lora_B.weight" init <zeros> seed 0
         : tensor<16x4xf32>
  %y = qlora.linear %x, %w lora(%a, %b) {scaling = 0.5}
         : tensor<8x8xf32>, tensor<16x8xf32>, tensor<4x8xf32>, tensor<16x4xf32>
  %dx = qlora.linear_grad_input %dy, %w lora(%a, %b) {scaling = 0.5}
          : tensor<8x16xf32>, tensor<16x8xf32>, tensor<4x8xf32>,
            tensor<16x4xf32> -> tensor<8x8xf32>
  %dx2 = qlora.linear_grad_input %dy, %w : tensor<8x16xf32>, tensor<16x8xf32>
           -> tensor<8x8xf32>
  %da, %db = qlora.lora_grad %dy, %x, %a, %b {scaling = 0.5}
               : tensor<8x16xf32>, tensor<8x8xf32>, tensor<4x8xf32>,
                 tensor<16x4xf32>
  return
}

// -----

// Without the linear_fwd and linear_grad_input that leave x·Aᵀ and dy·B (the
// lowest LoRA linears need no input gradient), lora_grad gets them from
// rank-0 launches with A or B as the weight: linear_fwd(x, a, t) computes
// x·Aᵀ, linear_grad_input(dy, b, dt) dy·B.

// CHECK: qrt.kernel @[[XA:.*]] template "linear_fwd" params {in = 8 : i64, out = 4 : i64, rank = 0 : i64, rows = 8 : i64, scaling = 1.000000e+00 : f64, w_dtype = "F32"}
// CHECK: qrt.kernel @[[DYB:.*]] template "linear_grad_input" params {accumulate = 0 : i64, in = 4 : i64, out = 16 : i64, rank = 0 : i64, rows = 8 : i64, scaling = 1.000000e+00 : f64, w_dtype = "F32"}
// CHECK: qrt.kernel @[[LGRAD:.*]] template "lora_grad"
// CHECK-LABEL: func.func @lora_grad_alone()
// CHECK: %[[DY:.*]] = qrt.buffer {{.*}} name "dy"
// CHECK: %[[X:.*]] = qrt.buffer {{.*}} name "x"
// CHECK: %[[A:.*]] = qrt.buffer {{.*}} name "q.lora_A.weight"
// CHECK: %[[B:.*]] = qrt.buffer {{.*}} name "q.lora_B.weight"
// CHECK: %[[T:.*]] = qrt.buffer size 128 align 64 class <workspace> placement <device> type tensor<8x4xf32>
// CHECK: %[[DT:.*]] = qrt.buffer size 128 align 64 class <workspace> placement <device> type tensor<8x4xf32>
// CHECK: %[[DA:.*]] = qrt.buffer
// CHECK: %[[DB:.*]] = qrt.buffer
// CHECK-NEXT: qrt.launch @[[XA]](%[[X]], %[[A]], %[[T]])
// CHECK-NEXT: qrt.launch @[[DYB]](%[[DY]], %[[B]], %[[DT]])
// CHECK-NEXT: qrt.launch @[[LGRAD]](%[[DY]], %[[X]], %[[A]], %[[B]], %[[T]], %[[DT]], %[[DA]], %[[DB]])
func.func @lora_grad_alone(%dy: tensor<8x16xf32> {qlora.input = "dy"},
                           %x: tensor<8x8xf32> {qlora.input = "x"}) {
  %a = qlora.lora_param "q.lora_A.weight" init <kaiming_uniform> seed 0
         : tensor<4x8xf32>
  %b = qlora.lora_param "q.lora_B.weight" init <zeros> seed 0
         : tensor<16x4xf32>
  %da, %db = qlora.lora_grad %dy, %x, %a, %b {scaling = 0.5}
               : tensor<8x16xf32>, tensor<8x8xf32>, tensor<4x8xf32>,
                 tensor<16x4xf32>
  return
}

// -----

// Grouped-query attention (4 query heads share 2 KV heads): the scale
// defaults to 1/sqrt(head_dim) = 0.25; the VJP takes do, q, k, v, o and
// writes dq, dk, dv.

// CHECK: qrt.kernel @[[FWD:.*]] template "attention_fwd" params {batch = 1 : i64, causal = 1 : i64, head_dim = 16 : i64, heads = 4 : i64, kv_heads = 2 : i64, scale = 2.500000e-01 : f64, seq = 4 : i64}
// CHECK: qrt.kernel @[[FWD_SCALED:.*]] template "attention_fwd" params {batch = 1 : i64, causal = 0 : i64, head_dim = 16 : i64, heads = 4 : i64, kv_heads = 2 : i64, scale = 1.250000e-01 : f64, seq = 4 : i64}
// CHECK: qrt.kernel @[[BWD:.*]] template "attention_bwd" params {accumulate = 0 : i64, batch = 1 : i64, causal = 1 : i64, head_dim = 16 : i64, heads = 4 : i64, kv_heads = 2 : i64, scale = 2.500000e-01 : f64, seq = 4 : i64}
// CHECK-LABEL: func.func @attention_gqa()
// CHECK: %[[Q:.*]] = qrt.buffer {{.*}} name "q"
// CHECK: %[[K:.*]] = qrt.buffer {{.*}} name "k"
// CHECK: %[[V:.*]] = qrt.buffer {{.*}} name "v"
// CHECK: %[[O:.*]] = qrt.buffer size 1024 align 64 class <activation> placement <device> type tensor<1x4x4x16xf32>
// CHECK: %[[S:.*]] = qrt.buffer size 1024 align 64 class <activation>
// CHECK: %[[DQ:.*]] = qrt.buffer size 1024 align 64 class <gradient> placement <device> type tensor<1x4x4x16xf32>
// CHECK: %[[DK:.*]] = qrt.buffer size 512 align 64 class <gradient> placement <device> type tensor<1x4x2x16xf32>
// CHECK: %[[DV:.*]] = qrt.buffer size 512 align 64 class <gradient> placement <device> type tensor<1x4x2x16xf32>
// CHECK: qrt.launch @[[FWD]](%[[Q]], %[[K]], %[[V]], %[[O]])
// CHECK: qrt.launch @[[FWD_SCALED]](%[[Q]], %[[K]], %[[V]], %[[S]])
// CHECK: qrt.launch @[[BWD]](%[[O]], %[[Q]], %[[K]], %[[V]], %[[O]], %[[DQ]], %[[DK]], %[[DV]])
func.func @attention_gqa(%q: tensor<1x4x4x16xf32> {qlora.input = "q"},
                         %k: tensor<1x4x2x16xf32> {qlora.input = "k"},
                         %v: tensor<1x4x2x16xf32> {qlora.input = "v"}) {
  %o = qlora.attention %q, %k, %v
         : tensor<1x4x4x16xf32>, tensor<1x4x2x16xf32>, tensor<1x4x2x16xf32>
  %s = qlora.attention %q, %k, %v {scale = 0.125, causal = false}
         : tensor<1x4x4x16xf32>, tensor<1x4x2x16xf32>, tensor<1x4x2x16xf32>
  %dq, %dk, %dv = qlora.attention_grad %o, %q, %k, %v, %o
         : tensor<1x4x4x16xf32>, tensor<1x4x2x16xf32>, tensor<1x4x2x16xf32>
  return
}

// -----

// RoPE with LLaMA-3 scaling passes rope_type "llama3" and the four scaling
// parameters; its VJP is the same template with inverse = 1.

// CHECK: qrt.kernel @[[ROPE:.*]] template "rope" params {batch = 1 : i64, factor = 8.000000e+00 : f64, head_dim = 8 : i64, heads = 2 : i64, high_freq_factor = 4.000000e+00 : f64, inverse = 0 : i64, low_freq_factor = 1.000000e+00 : f64, original_max_position = 8192 : i64, rope_type = "llama3", seq = 4 : i64, theta = 5.000000e+05 : f64}
// CHECK: qrt.kernel @[[ROPE_BWD:.*]] template "rope" params {batch = 1 : i64, head_dim = 8 : i64, heads = 2 : i64, inverse = 1 : i64, rope_type = "default", seq = 4 : i64, theta = 5.000000e+05 : f64}
// CHECK-LABEL: func.func @rope_llama3()
// CHECK: %[[X:.*]] = qrt.buffer {{.*}} name "x"
// CHECK: %[[Y:.*]] = qrt.buffer size 256 align 64 class <activation>
// CHECK: %[[DX:.*]] = qrt.buffer size 256 align 64 class <gradient>
// CHECK: qrt.launch @[[ROPE]](%[[X]], %[[Y]])
// CHECK: qrt.launch @[[ROPE_BWD]](%[[Y]], %[[DX]])
func.func @rope_llama3(%x: tensor<1x4x2x8xf32> {qlora.input = "x"}) {
  %y = qlora.rope %x {theta = 500000.0, scaling = #qlora.llama3_rope_scaling<
         factor = 8.0, low_freq_factor = 1.0, high_freq_factor = 4.0,
         original_max_position_embeddings = 8192>} : tensor<1x4x2x8xf32>
  %dx = qlora.rope_grad %y {theta = 500000.0} : tensor<1x4x2x8xf32>
  return
}

// -----

// RMSNorm, SiLU, mul and add with their VJPs. Equal (template, params)
// pairs share one qrt.kernel: both 64-element adds launch one add kernel,
// the 128-element add another. A sum with a gradient is a gradient.

// CHECK: qrt.kernel @[[NORM:.*]] template "rms_norm_fwd" params {eps = 1.000000e-05 : f64, hidden = 8 : i64, rows = 8 : i64, w_dtype = "BF16"}
// CHECK: qrt.kernel @[[NORM_BWD:.*]] template "rms_norm_bwd" params {accumulate = 0 : i64, eps = 1.000000e-05 : f64, hidden = 8 : i64, rows = 8 : i64, w_dtype = "BF16"}
// CHECK: qrt.kernel @[[SILU:.*]] template "silu_fwd" params {dtype = "F32", n = 128 : i64}
// CHECK: qrt.kernel @[[MUL:.*]] template "mul" params {dtype = "F32", n = 128 : i64}
// CHECK: qrt.kernel @[[SILU_BWD:.*]] template "silu_bwd" params {accumulate = 0 : i64, dtype = "F32", n = 128 : i64}
// CHECK: qrt.kernel @[[ADD64:.*]] template "add" params {dtype = "F32", n = 64 : i64}
// CHECK: qrt.kernel @[[ADD128:.*]] template "add" params {dtype = "F32", n = 128 : i64}
// CHECK-NOT: qrt.kernel
// CHECK-LABEL: func.func @norm_and_elementwise()
// CHECK: %[[X:.*]] = qrt.buffer {{.*}} name "x"
// CHECK: %[[H:.*]] = qrt.buffer {{.*}} name "h"
// CHECK: %[[W:.*]] = qrt.buffer size 16 align 64 class <weight> {{.*}} type tensor<8xbf16>
// CHECK: %[[N:.*]] = qrt.buffer size 256 align 64 class <activation>
// CHECK: %[[DN:.*]] = qrt.buffer size 256 align 64 class <gradient>
// CHECK: %[[S:.*]] = qrt.buffer size 512 align 64 class <activation>
// CHECK: %[[M:.*]] = qrt.buffer size 512 align 64 class <activation>
// CHECK: %[[DS:.*]] = qrt.buffer size 512 align 64 class <gradient>
// CHECK: %[[A1:.*]] = qrt.buffer size 256 align 64 class <activation>
// CHECK: %[[A2:.*]] = qrt.buffer size 256 align 64 class <gradient>
// CHECK: %[[A3:.*]] = qrt.buffer size 512 align 64 class <activation>
// CHECK: qrt.launch @[[NORM]](%[[X]], %[[W]], %[[N]])
// CHECK: qrt.launch @[[NORM_BWD]](%[[N]], %[[X]], %[[W]], %[[DN]])
// CHECK: qrt.launch @[[SILU]](%[[H]], %[[S]])
// CHECK: qrt.launch @[[MUL]](%[[S]], %[[H]], %[[M]])
// CHECK: qrt.launch @[[SILU_BWD]](%[[M]], %[[H]], %[[DS]])
// CHECK: qrt.launch @[[ADD64]](%[[X]], %[[N]], %[[A1]])
// CHECK: qrt.launch @[[ADD64]](%[[A1]], %[[DN]], %[[A2]])
// CHECK: qrt.launch @[[ADD128]](%[[S]], %[[M]], %[[A3]])
func.func @norm_and_elementwise(%x: tensor<2x4x8xf32> {qlora.input = "x"},
                                %h: tensor<2x4x16xf32> {qlora.input = "h"}) {
  %w = qlora.weight "norm.weight" value dense<1.0> : tensor<8xbf16>
         : tensor<8xbf16>
  %n = qlora.rms_norm %x, %w {eps = 1.0e-05} : tensor<2x4x8xf32>, tensor<8xbf16>
  %dn = qlora.rms_norm_grad %n, %x, %w {eps = 1.0e-05}
          : tensor<2x4x8xf32>, tensor<8xbf16>
  %s = qlora.silu %h : tensor<2x4x16xf32>
  %m = qlora.mul %s, %h : tensor<2x4x16xf32>
  %ds = qlora.silu_grad %m, %h : tensor<2x4x16xf32>
  %a1 = qlora.add %x, %n : tensor<2x4x8xf32>
  %a2 = qlora.add %a1, %dn : tensor<2x4x8xf32>
  %a3 = qlora.add %s, %m : tensor<2x4x16xf32>
  return
}

// -----

// A reshape is a view of its input's buffer, and so is a cast between two
// types stored alike (bf16 and f32 activations on the f32 backend): neither
// allocates. Casting a bf16 weight to f32 changes the stored type: a cast
// launch. With bf16 activations that cast is free as well.

// CHECK: qrt.kernel @[[ROPE:.*]] template "rope" params {batch = 2 : i64, head_dim = 4 : i64, heads = 2 : i64, inverse = 0 : i64, rope_type = "default", seq = 4 : i64, theta = 1.000000e+04 : f64}
// CHECK: qrt.kernel @[[SILU:.*]] template "silu_fwd" params {dtype = "F32", n = 64 : i64}
// CHECK: qrt.kernel @[[CAST:.*]] template "cast" params {from = "BF16", n = 128 : i64, to = "F32"}
// CHECK-LABEL: func.func @reshape_and_cast()
// CHECK: %[[X:.*]] = qrt.buffer {{.*}} name "x"
// CHECK-NEXT: %[[W:.*]] = qrt.buffer {{.*}} name "emb"
// CHECK-NEXT: %[[Y:.*]] = qrt.buffer size 256 align 64 class <activation> placement <device> type tensor<2x4x2x4xf32>
// CHECK-NEXT: %[[Z:.*]] = qrt.buffer size 256 align 64 class <activation> placement <device> type tensor<2x4x2x4xf32>
// CHECK-NEXT: %[[WF:.*]] = qrt.buffer size 512 align 64 class <activation> placement <device> type tensor<16x8xf32>
// CHECK-NEXT: qrt.launch @[[ROPE]](%[[X]], %[[Y]])
// CHECK-NEXT: qrt.launch @[[SILU]](%[[Y]], %[[Z]])
// CHECK-NEXT: qrt.launch @[[CAST]](%[[W]], %[[WF]])
// CHECK-NEXT: return

// BF16-LABEL: func.func @reshape_and_cast()
// BF16-NOT: qrt.launch @cast
// BF16: return
func.func @reshape_and_cast(%x: tensor<2x4x8xf32> {qlora.input = "x"}) {
  %w = qlora.weight "emb" value dense<1.0> : tensor<16x8xbf16>
         : tensor<16x8xbf16>
  %r = qlora.reshape %x to [2, 4, 2, 4] : tensor<2x4x8xf32>
  %y = qlora.rope %r {theta = 10000.0} : tensor<2x4x2x4xf32>
  %c = qlora.cast %y to bf16 : tensor<2x4x2x4xf32>
  %c2 = qlora.cast %c to f32 : tensor<2x4x2x4xbf16>
  %z = qlora.silu %c2 : tensor<2x4x2x4xf32>
  %wf = qlora.cast %w to f32 : tensor<16x8xbf16>
  return
}

// -----

// Two micro-batches of 2 rows: token and label rows are copied out of the
// io buffers (rows 2..3 start at byte 2 * 4 * 4 = 32); each loss divides by
// the count of targets over the whole batch (has_normalizer = 1, the count
// after the labels); the scalar losses are summed by scalar_binary into the
// `loss` output. The autodiff seed is a constant io buffer.

// CHECK: qrt.kernel @[[COUNT:.*]] template "count_targets" params {batch = 4 : i64, ignore_index = -100 : i64, seq = 4 : i64}
// CHECK: qrt.kernel @[[EMB:.*]] template "embedding_fwd" params {hidden = 8 : i64, rows = 8 : i64, vocab = 16 : i64, w_dtype = "F32"}
// CHECK: qrt.kernel @[[CE:.*]] template "cross_entropy_fwd" params {batch = 2 : i64, has_normalizer = 1 : i64, ignore_index = -100 : i64, seq = 4 : i64, vocab = 8 : i64}
// CHECK: qrt.kernel @[[CE_BWD:.*]] template "cross_entropy_bwd" params {batch = 2 : i64, has_normalizer = 1 : i64, ignore_index = -100 : i64, seq = 4 : i64, vocab = 8 : i64}
// CHECK: qrt.kernel @[[SUM:.*]] template "scalar_binary" params {op = "add"}
// CHECK-LABEL: func.func @train_step()
// CHECK: %[[TOKENS:.*]] = qrt.buffer size 64 align 64 class <io> placement <device> name "tokens" type tensor<4x4xi32>
// CHECK: %[[LABELS:.*]] = qrt.buffer size 64 align 64 class <io> placement <device> name "labels" type tensor<4x4xi32>
// CHECK: %[[EMBED:.*]] = qrt.buffer {{.*}} name "embed"
// CHECK: %[[N:.*]] = qrt.buffer size 4 align 64 class <activation> placement <device> type f32
// CHECK: %[[ONE:.*]] = qrt.buffer size 4 align 64 class <io> placement <device> name "constant_0" type f32 init(1.000000e+00 : f32)
// CHECK: %[[T0:.*]] = qrt.buffer size 32 align 64 class <activation> placement <device> type tensor<2x4xi32>
// CHECK: %[[L0:.*]] = qrt.buffer size 32 align 64 class <activation> placement <device> type tensor<2x4xi32>
// CHECK: %[[X0:.*]] = qrt.buffer size 256 align 64 class <activation>
// CHECK: %[[CE0:.*]] = qrt.buffer size 4 align 64 class <activation> placement <device> type f32
// CHECK: %[[D0:.*]] = qrt.buffer size 256 align 64 class <gradient>
// CHECK: %[[T1:.*]] = qrt.buffer size 32
// CHECK: %[[L1:.*]] = qrt.buffer size 32
// CHECK: %[[X1:.*]] = qrt.buffer size 256
// CHECK: %[[CE1:.*]] = qrt.buffer size 4
// CHECK: %[[LOSS:.*]] = qrt.buffer size 4 align 64 class <io> placement <device> name "loss" type f32
// CHECK: qrt.launch @[[COUNT]](%[[LABELS]], %[[N]])
// CHECK: qrt.copy %[[TOKENS]][0], %[[T0]][0], bytes 32
// CHECK: qrt.copy %[[LABELS]][0], %[[L0]][0], bytes 32
// CHECK: qrt.launch @[[EMB]](%[[EMBED]], %[[T0]], %[[X0]])
// CHECK: qrt.launch @[[CE]](%[[X0]], %[[L0]], %[[N]], %[[CE0]])
// CHECK: qrt.launch @[[CE_BWD]](%[[X0]], %[[L0]], %[[ONE]], %[[N]], %[[D0]])
// CHECK: qrt.copy %[[TOKENS]][32], %[[T1]][0], bytes 32
// CHECK: qrt.copy %[[LABELS]][32], %[[L1]][0], bytes 32
// CHECK: qrt.launch @[[EMB]](%[[EMBED]], %[[T1]], %[[X1]])
// CHECK: qrt.launch @[[CE]](%[[X1]], %[[L1]], %[[N]], %[[CE1]])
// CHECK: qrt.launch @[[SUM]](%[[CE0]], %[[CE1]], %[[LOSS]])
// CHECK-NEXT: return
func.func @train_step(%tokens: tensor<4x4xi32> {qlora.input = "tokens"},
                      %labels: tensor<4x4xi32> {qlora.input = "labels"})
    -> (f32 {qlora.output = "loss"}) {
  %emb = qlora.weight "embed" value dense<0.5> : tensor<16x8xf32>
           : tensor<16x8xf32>
  %count = qlora.count_targets %labels : tensor<4x4xi32>
  %one = arith.constant 1.0 : f32
  %t0 = tensor.extract_slice %tokens[0, 0] [2, 4] [1, 1]
          : tensor<4x4xi32> to tensor<2x4xi32>
  %l0 = tensor.extract_slice %labels[0, 0] [2, 4] [1, 1]
          : tensor<4x4xi32> to tensor<2x4xi32>
  %x0 = qlora.embedding %emb, %t0 : tensor<16x8xf32>, tensor<2x4xi32>
  %ce0 = qlora.cross_entropy %x0, %l0 normalizer %count
           : tensor<2x4x8xf32>, tensor<2x4xi32>
  %d0 = qlora.cross_entropy_grad %x0, %l0, %one normalizer %count
          : tensor<2x4x8xf32>, tensor<2x4xi32>
  %t1 = tensor.extract_slice %tokens[2, 0] [2, 4] [1, 1]
          : tensor<4x4xi32> to tensor<2x4xi32>
  %l1 = tensor.extract_slice %labels[2, 0] [2, 4] [1, 1]
          : tensor<4x4xi32> to tensor<2x4xi32>
  %x1 = qlora.embedding %emb, %t1 : tensor<16x8xf32>, tensor<2x4xi32>
  %ce1 = qlora.cross_entropy %x1, %l1 normalizer %count
           : tensor<2x4x8xf32>, tensor<2x4xi32>
  %loss = arith.addf %ce0, %ce1 : f32
  return %loss : f32
}

// -----

// The optimizer: global_norm over the gradients with their element counts,
// the clip coefficient, and one adamw(p, g, m, v, grad_scale, lr, step,
// weight_decay) per parameter with its two zeroed moments. The gradient
// each update reads is named `<param>.grad`; the global norm becomes the
// `grad_norm` output. Both updates share one kernel.

// CHECK: qrt.kernel @[[LGRAD:.*]] template "lora_grad"
// CHECK: qrt.kernel @[[ADD:.*]] template "add" params {dtype = "F32", n = 16 : i64}
// CHECK: qrt.kernel @[[NORM:.*]] template "global_norm" params {count = 2 : i64, sizes = array<i64: 16, 16>}
// CHECK: qrt.kernel @[[CLIP:.*]] template "clip_coefficient" params {}
// CHECK: qrt.kernel @[[ADAMW:.*]] template "adamw" params {beta1 = 9.000000e-01 : f64, beta2 = 0.94999999999999996 : f64, epsilon = 9.9999999999999995E-7 : f64, n = 16 : i64}
// CHECK: qrt.kernel @[[MUL:.*]] template "scalar_binary" params {op = "mul"}
// CHECK-NOT: qrt.kernel
// CHECK-LABEL: func.func @train_step()
// CHECK: %[[X:.*]] = qrt.buffer {{.*}} name "x"
// CHECK: %[[LR:.*]] = qrt.buffer size 4 align 64 class <io> placement <device> name "lr" type f32
// CHECK: %[[STEP:.*]] = qrt.buffer size 8 align 64 class <io> placement <device> name "step" type i64
// CHECK: %[[WD:.*]] = qrt.buffer size 4 align 64 class <io> placement <device> name "weight_decay" type f32
// CHECK: %[[MAX:.*]] = qrt.buffer size 4 align 64 class <io> placement <device> name "max_grad_norm" type f32
// CHECK: %[[A:.*]] = qrt.buffer {{.*}} class <lora> {{.*}} name "p.lora_A.weight"
// CHECK: %[[B:.*]] = qrt.buffer {{.*}} class <lora> {{.*}} name "p.lora_B.weight"
// CHECK: %[[SEED:.*]] = qrt.buffer {{.*}} class <io> {{.*}} name "constant_0"
// CHECK: %[[T:.*]] = qrt.buffer {{.*}} class <workspace>
// CHECK: %[[DT:.*]] = qrt.buffer {{.*}} class <workspace>
// CHECK: %[[GA:.*]] = qrt.buffer size 64 align 64 class <gradient> placement <device> name "p.lora_A.weight.grad" type tensor<2x8xf32>
// CHECK: %[[GB:.*]] = qrt.buffer size 64 align 64 class <gradient> placement <device> type tensor<8x2xf32>
// CHECK: %[[GB2:.*]] = qrt.buffer size 64 align 64 class <gradient> placement <device> name "p.lora_B.weight.grad" type tensor<8x2xf32>
// CHECK: %[[GNORM:.*]] = qrt.buffer size 4 align 64 class <io> placement <device> name "grad_norm" type f32
// CHECK: %[[C:.*]] = qrt.buffer size 4 align 64 class <gradient> placement <device> type f32
// CHECK: %[[MA:.*]] = qrt.buffer size 64 align 64 class <optimizer> placement <device> name "p.lora_A.weight.exp_avg" type tensor<2x8xf32> init(#qlora.init<zeros>)
// CHECK: %[[VA:.*]] = qrt.buffer size 64 align 64 class <optimizer> placement <device> name "p.lora_A.weight.exp_avg_sq" type tensor<2x8xf32> init(#qlora.init<zeros>)
// CHECK: %[[MB:.*]] = qrt.buffer {{.*}} name "p.lora_B.weight.exp_avg"
// CHECK: %[[VB:.*]] = qrt.buffer {{.*}} name "p.lora_B.weight.exp_avg_sq"
// CHECK: %[[LOSS:.*]] = qrt.buffer size 4 align 64 class <io> placement <device> name "loss" type f32
// CHECK: qrt.launch @[[LGRAD]](%[[X]], %[[X]], %[[A]], %[[B]], %[[T]], %[[DT]], %[[GA]], %[[GB]])
// CHECK: qrt.launch @[[ADD]](%[[GB]], %[[GB]], %[[GB2]])
// CHECK: qrt.launch @[[NORM]](%[[GA]], %[[GB2]], %[[GNORM]])
// CHECK: qrt.launch @[[CLIP]](%[[GNORM]], %[[MAX]], %[[C]])
// CHECK: qrt.launch @[[ADAMW]](%[[A]], %[[GA]], %[[MA]], %[[VA]], %[[C]], %[[LR]], %[[STEP]], %[[WD]])
// CHECK: qrt.launch @[[ADAMW]](%[[B]], %[[GB2]], %[[MB]], %[[VB]], %[[C]], %[[LR]], %[[STEP]], %[[WD]])
// CHECK: qrt.launch @[[MUL]](%[[SEED]], %[[C]], %[[LOSS]])
// CHECK-NEXT: return

// The sum of two f32 LoRA gradients stays f32 with bf16 activations.
// BF16-LABEL: func.func @train_step()
// BF16: name "p.lora_B.weight.grad" type tensor<8x2xf32>
func.func @train_step(%x: tensor<4x8xf32> {qlora.input = "x"},
                      %lr: f32 {qlora.input = "lr"},
                      %step: i64 {qlora.input = "step"},
                      %wd: f32 {qlora.input = "weight_decay"},
                      %max_norm: f32 {qlora.input = "max_grad_norm"})
    -> (f32 {qlora.output = "loss"}, f32 {qlora.output = "grad_norm"}) {
  %a = qlora.lora_param "p.lora_A.weight" init <kaiming_uniform> seed 0
         : tensor<2x8xf32>
  %b = qlora.lora_param "p.lora_B.weight" init <zeros> seed 0
         : tensor<8x2xf32>
  %seed = arith.constant 1.0 : f32
  %ga, %gb = qlora.lora_grad %x, %x, %a, %b {scaling = 1.0}
               : tensor<4x8xf32>, tensor<4x8xf32>, tensor<2x8xf32>,
                 tensor<8x2xf32>
  %gb2 = qlora.add %gb, %gb : tensor<8x2xf32>
  %norm = qlora.global_norm %ga, %gb2 : tensor<2x8xf32>, tensor<8x2xf32>
  %c = qlora.clip_coefficient %norm, %max_norm
  qlora.adamw %a, %ga scale %c lr %lr step %step weight_decay %wd
    {beta1 = 0.9, beta2 = 0.95, epsilon = 1.0e-06} : tensor<2x8xf32>
  qlora.adamw %b, %gb2 scale %c lr %lr step %step weight_decay %wd
    {beta1 = 0.9, beta2 = 0.95, epsilon = 1.0e-06} : tensor<8x2xf32>
  %loss = arith.mulf %seed, %c : f32
  return %loss, %norm : f32, f32
}

// -----

// A result that already has a buffer of its own (here an argument) is
// copied into the output buffer.

// CHECK-LABEL: func.func @output_copied()
// CHECK: %[[IN:.*]] = qrt.buffer size 4 align 64 class <io> placement <device> name "lr" type f32
// CHECK: %[[OUT:.*]] = qrt.buffer size 4 align 64 class <io> placement <device> name "loss" type f32
// CHECK: qrt.copy %[[IN]][0], %[[OUT]][0], bytes 4
// CHECK-NEXT: return
func.func @output_copied(%lr: f32 {qlora.input = "lr"})
    -> (f32 {qlora.output = "loss"}) {
  return %lr : f32
}

// -----

// A shape-only weight gets a buffer with no init: its memory is planned and
// reported; the train.bin writer refuses it.
// CHECK-LABEL: func.func @shape_only_weight
// CHECK: qrt.buffer size 256 align 64 class <weight> placement <device> name "q.weight" type tensor<8x8xf32> : !qrt.buffer
func.func @shape_only_weight(%x: tensor<4x8xf32> {qlora.input = "x"}) {
  %w = qlora.weight "q.weight" : tensor<8x8xf32>
  %y = qlora.linear %x, %w : tensor<4x8xf32>, tensor<8x8xf32>
  return
}

// -----

// LoRA dropout: linear_fwd, linear_grad_input and lora_grad get `dropout`,
// `dropout_stream` and `dropout_seed` (lora_A's seed), and the `step` io
// buffer as their last argument, from which each recomputes the same mask.
// lora_grad reads the t_ws (dropout(x)·Aᵀ) the linear_fwd left.
// CHECK: qrt.kernel @[[DFWD:.*]] template "linear_fwd" params {dropout = 1.000000e-01 : f64, dropout_seed = 7 : i64, dropout_stream = "q.lora_A.weight#0", in = 8 : i64, out = 8 : i64, rank = 2 : i64, rows = 4 : i64, scaling = 2.000000e+00 : f64, w_dtype = "F32"}
// CHECK: qrt.kernel @[[DGIN:.*]] template "linear_grad_input" params {accumulate = 0 : i64, dropout = 1.000000e-01 : f64, dropout_seed = 7 : i64, dropout_stream = "q.lora_A.weight#0", in = 8 : i64, out = 8 : i64, rank = 2 : i64, rows = 4 : i64, scaling = 2.000000e+00 : f64, w_dtype = "F32"}
// CHECK: qrt.kernel @[[DLG:.*]] template "lora_grad" params {accumulate = 0 : i64, dropout = 1.000000e-01 : f64, dropout_seed = 7 : i64, dropout_stream = "q.lora_A.weight#0", in = 8 : i64, out = 8 : i64, rank = 2 : i64, rows = 4 : i64, scaling = 2.000000e+00 : f64}
// CHECK-NOT: qrt.kernel
// CHECK-LABEL: func.func @lora_dropout()
// CHECK: %[[X:.*]] = qrt.buffer {{.*}} name "x"
// CHECK: %[[DY:.*]] = qrt.buffer {{.*}} name "dy"
// CHECK: %[[STEP:.*]] = qrt.buffer {{.*}} name "step" type i64
// CHECK: %[[W:.*]] = qrt.buffer {{.*}} name "q.weight"
// CHECK: %[[A:.*]] = qrt.buffer {{.*}} name "q.lora_A.weight"
// CHECK: %[[B:.*]] = qrt.buffer {{.*}} name "q.lora_B.weight"
// CHECK: %[[Y:.*]] = qrt.buffer {{.*}} type tensor<4x8xf32>
// CHECK: %[[T:.*]] = qrt.buffer {{.*}} class <workspace> {{.*}} type tensor<4x2xf32>
// CHECK: %[[DX:.*]] = qrt.buffer {{.*}} class <gradient> {{.*}} type tensor<4x8xf32>
// CHECK: %[[DT:.*]] = qrt.buffer {{.*}} class <workspace> {{.*}} type tensor<4x2xf32>
// CHECK: %[[DA:.*]] = qrt.buffer {{.*}} class <gradient> {{.*}} type tensor<2x8xf32>
// CHECK: %[[DB:.*]] = qrt.buffer {{.*}} class <gradient> {{.*}} type tensor<8x2xf32>
// CHECK-NEXT: qrt.launch @[[DFWD]](%[[X]], %[[W]], %[[A]], %[[B]], %[[T]], %[[Y]], %[[STEP]])
// CHECK-NEXT: qrt.launch @[[DGIN]](%[[DY]], %[[W]], %[[A]], %[[B]], %[[DT]], %[[DX]], %[[STEP]])
// CHECK-NEXT: qrt.launch @[[DLG]](%[[DY]], %[[X]], %[[A]], %[[B]], %[[T]], %[[DT]], %[[DA]], %[[DB]], %[[STEP]])
// CHECK-NEXT: return
func.func @lora_dropout(%x: tensor<4x8xf32> {qlora.input = "x"},
                        %dy: tensor<4x8xf32> {qlora.input = "dy"},
                        %step: i64 {qlora.input = "step"}) {
  %w = qlora.weight "q.weight" value dense<1.0> : tensor<8x8xf32>
         : tensor<8x8xf32>
  %a = qlora.lora_param "q.lora_A.weight" init <kaiming_uniform> seed 7
         : tensor<2x8xf32>
  %b = qlora.lora_param "q.lora_B.weight" init <zeros> seed 7
         : tensor<8x2xf32>
  %y = qlora.linear %x, %w lora(%a, %b)
         {scaling = 2.0, dropout = 0.1, dropout_stream = "q.lora_A.weight#0"}
         : tensor<4x8xf32>, tensor<8x8xf32>, tensor<2x8xf32>, tensor<8x2xf32>
  %dx = qlora.linear_grad_input %dy, %w lora(%a, %b)
          {scaling = 2.0, dropout = 0.1, dropout_stream = "q.lora_A.weight#0"}
          : tensor<4x8xf32>, tensor<8x8xf32>, tensor<2x8xf32>,
            tensor<8x2xf32> -> tensor<4x8xf32>
  %da, %db = qlora.lora_grad %dy, %x, %a, %b
               {scaling = 2.0, dropout = 0.1,
                dropout_stream = "q.lora_A.weight#0"}
               : tensor<4x8xf32>, tensor<4x8xf32>, tensor<2x8xf32>,
                 tensor<8x2xf32>
  return
}

// -----

func.func @lora_dropout_without_stream(%x: tensor<4x8xf32> {qlora.input = "x"},
                                       %step: i64 {qlora.input = "step"}) {
  %w = qlora.weight "q.weight" value dense<1.0> : tensor<8x8xf32>
         : tensor<8x8xf32>
  %a = qlora.lora_param "q.lora_A.weight" init <kaiming_uniform> seed 0
         : tensor<2x8xf32>
  %b = qlora.lora_param "q.lora_B.weight" init <zeros> seed 0
         : tensor<8x2xf32>
  // expected-error@+1 {{has LoRA dropout 1.000000e-01 but no dropout_stream to key its mask by (set by --qlora-build-training-step)}}
  %y = qlora.linear %x, %w lora(%a, %b) {scaling = 2.0, dropout = 0.1}
         : tensor<4x8xf32>, tensor<8x8xf32>, tensor<2x8xf32>, tensor<8x2xf32>
  return
}

// -----

func.func @lora_dropout_without_step(%x: tensor<4x8xf32> {qlora.input = "x"}) {
  %w = qlora.weight "q.weight" value dense<1.0> : tensor<8x8xf32>
         : tensor<8x8xf32>
  %a = qlora.lora_param "q.lora_A.weight" init <kaiming_uniform> seed 0
         : tensor<2x8xf32>
  %b = qlora.lora_param "q.lora_B.weight" init <zeros> seed 0
         : tensor<8x2xf32>
  // expected-error@+1 {{has LoRA dropout but the function has no i64 'step' input to draw a fresh mask per step from}}
  %y = qlora.linear %x, %w lora(%a, %b)
         {scaling = 2.0, dropout = 0.1, dropout_stream = "q.lora_A.weight#0"}
         : tensor<4x8xf32>, tensor<8x8xf32>, tensor<2x8xf32>, tensor<8x2xf32>
  return
}

// -----

func.func @no_lowering(%step: i64 {qlora.input = "step"}) {
  // expected-error@+1 {{'arith.addi' op has no lowering to qrt}}
  %next = arith.addi %step, %step : i64
  return
}

// -----

func.func @tensor_arithmetic(%x: tensor<4xf32> {qlora.input = "x"}) {
  // expected-error@+2 {{only f32 scalars lower to scalar_binary, got 'tensor<4xf32>'}}
  // expected-error@+1 {{failed to legalize operation 'arith.addf'}}
  %y = arith.addf %x, %x : tensor<4xf32>
  return
}

// -----

func.func @strided_token_slice(%tokens: tensor<4x4xi32> {qlora.input = "tokens"}) {
  // expected-error@+2 {{only a static slice of whole rows (unit strides, full trailing dimensions) lowers to qrt.copy, got offsets [0, 0], sizes [2, 2] and strides [1, 1] of 'tensor<4x4xi32>'}}
  // expected-error@+1 {{failed to legalize operation 'tensor.extract_slice'}}
  %t = tensor.extract_slice %tokens[0, 0] [2, 2] [1, 1]
         : tensor<4x4xi32> to tensor<2x2xi32>
  return
}

// -----

// expected-error@+1 {{dynamic shapes are not supported}}
func.func @dynamic_shape(%x: tensor<?x8xf32> {qlora.input = "x"}) {
  return
}

// -----

// expected-error@+1 {{argument #0 has no 'qlora.input' name for the runtime to bind it by}}
func.func @unnamed_argument(%x: tensor<4x8xf32>) {
  return
}

// -----

// expected-error@+1 {{result #0 has no 'qlora.output' name for the runtime to read it by}}
func.func @unnamed_result(%x: f32 {qlora.input = "x"}) -> f32 {
  return %x : f32
}

// -----

// expected-error@+1 {{token ids and labels must be i32 tensors, got 'tensor<2x4xi64>'}}
func.func @i64_tokens(%tokens: tensor<2x4xi64> {qlora.input = "tokens"}) {
  return
}

// -----

// NF4: an nf4.constant is one `quantized_weight` buffer of its type (the pieces in
// runtime/format/Nf4Layout.h's layout: 64 codes, 2 absmax codes at 64, the
// nested absmax at 80, the offset at 96: 112 bytes; without double
// quantization 64 codes and 2 f32 absmax: 80 bytes), its init the pieces.
// A dequantize read only by linear kernels costs nothing: they take the NF4
// buffer with w_dtype "NF4" and the [nf4] params. Read by anything else, it
// is a dequantize_nf4 launch into a buffer of the result type.

// CHECK: qrt.kernel @[[FWD:.*]] template "linear_fwd" params {in = 8 : i64, out = 16 : i64, rank = 0 : i64, rows = 8 : i64, scaling = 1.000000e+00 : f64, w_block_size = 64 : i64, w_dequant_dtype = "BF16", w_dq_block_size = 256 : i64, w_dtype = "NF4"}
// CHECK: qrt.kernel @[[GIN:.*]] template "linear_grad_input" params {accumulate = 0 : i64, in = 8 : i64, out = 16 : i64, rank = 0 : i64, rows = 8 : i64, scaling = 1.000000e+00 : f64, w_block_size = 64 : i64, w_dequant_dtype = "BF16", w_dq_block_size = 256 : i64, w_dtype = "NF4"}
// CHECK: qrt.kernel @[[DQ:.*]] template "dequantize_nf4" params {n = 128 : i64, to = "F32", w_block_size = 64 : i64, w_dequant_dtype = "F32", w_dq_block_size = 0 : i64}
// CHECK-LABEL: func.func @nf4_weights()
// CHECK: %[[W:.*]] = qrt.buffer size 112 align 64 class <quantized_weight> placement <device> name "q.weight" type !nf4.tensor<16x8, block = 64, dq = 256> init({absmax = dense<[1, 2]> : tensor<2xui8>, codes = dense<119> : tensor<64x1xui8>, nested_absmax = dense<5.000000e-01> : tensor<1xf32>, offset = 1.000000e+00 : f32}) : !qrt.buffer
// CHECK: %[[Y:.*]] = qrt.buffer {{.*}} class <activation> placement <device> type tensor<2x4x16xf32>
// CHECK: %[[DX:.*]] = qrt.buffer {{.*}} class <gradient> placement <device> type tensor<2x4x8xf32>
// CHECK: %[[P:.*]] = qrt.buffer size 80 align 64 class <quantized_weight> placement <device> name "constant_0" type !nf4.tensor<16x8, block = 64> init({absmax = dense<2.000000e+00> : tensor<2xf32>, codes = dense<0> : tensor<64x1xui8>})
// CHECK: %[[D:.*]] = qrt.buffer size 512 align 64 class <activation> placement <device> type tensor<16x8xf32>
// CHECK: qrt.launch @[[FWD]](%{{.*}}, %[[W]], %[[Y]])
// CHECK: qrt.launch @[[GIN]](%{{.*}}, %[[W]], %[[DX]])
// CHECK: qrt.launch @[[DQ]](%[[P]], %[[D]])
func.func @nf4_weights(%x: tensor<2x4x8xf32> {qlora.input = "x"},
                       %dy: tensor<2x4x16xf32> {qlora.input = "dy"}) {
  %q = nf4.constant codes(dense<119> : tensor<64x1xui8>)
         absmax(dense<[1, 2]> : tensor<2xui8>)
         nested_absmax(dense<0.5> : tensor<1xf32>) offset(1.0)
         name "q.weight" : !nf4.tensor<16x8, block = 64, dq = 256>
  %w = nf4.dequantize %q : !nf4.tensor<16x8, block = 64, dq = 256>
         -> tensor<16x8xbf16>
  %y = qlora.linear %x, %w : tensor<2x4x8xf32>, tensor<16x8xbf16>
  %dx = qlora.linear_grad_input %dy, %w : tensor<2x4x16xf32>, tensor<16x8xbf16>
          -> tensor<2x4x8xf32>
  %p = nf4.constant codes(dense<0> : tensor<64x1xui8>)
         absmax(dense<2.0> : tensor<2xf32>)
         : !nf4.tensor<16x8, block = 64>
  %d = nf4.dequantize %p : !nf4.tensor<16x8, block = 64> -> tensor<16x8xf32>
  %s = qlora.add %d, %d : tensor<16x8xf32>
  return
}
