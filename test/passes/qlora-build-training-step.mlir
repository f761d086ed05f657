// RUN: qlora-opt %s -split-input-file --qlora-build-training-step | FileCheck %s
// RUN: qlora-opt %s -split-input-file --qlora-build-training-step="beta1=0.8 beta2=0.99 epsilon=1e-6 weight-decay=0.01 max-grad-norm=0.5" | FileCheck %s --check-prefix=OPT
// RUN: qlora-opt %s -split-input-file --qlora-build-training-step="grad-accum=2" | FileCheck %s --check-prefix=ACCUM

// The imported tiny preset: 2 layers x 7 targets x (A, B) = 28 LoRA
// parameters and 21 frozen weights.
// RUN: qloracc-import --preset tiny --lora r=4,alpha=8,targets=all-linear --batch 2 --seq 8 -o %t.tiny.mlir
// RUN: qlora-opt %t.tiny.mlir --qlora-build-training-step -o %t.step.mlir
// RUN: FileCheck %s --check-prefix=TINY < %t.step.mlir
// RUN: FileCheck %s --check-prefix=TINYNORM < %t.step.mlir
// RUN: FileCheck %s --check-prefix=TINYDX < %t.step.mlir
// RUN: qlora-opt %t.tiny.mlir --qlora-build-training-step="grad-accum=4" | FileCheck %s --check-prefix=TINY4

// One LoRA linear between a frozen prefix (embedding, norm) and a frozen
// head: the signature, the hoisted parameters, the backward of linear and
// cross_entropy, and the optimizer.

// CHECK-LABEL: module @linear_lora
// CHECK: func.func @train_step(
// CHECK-SAME: %[[TOKENS:[a-z0-9]+]]: tensor<2x8xi32> {qlora.input = "tokens"},
// CHECK-SAME: %[[LABELS:[a-z0-9]+]]: tensor<2x8xi32> {qlora.input = "labels"},
// CHECK-SAME: %[[LR:[a-z0-9]+]]: f32 {qlora.input = "lr"},
// CHECK-SAME: %[[STEP:[a-z0-9]+]]: i64 {qlora.input = "step"},
// CHECK-SAME: %[[WD:[a-z0-9]+]]: f32 {qlora.input = "weight_decay"},
// CHECK-SAME: %[[MAXNORM:[a-z0-9]+]]: f32 {qlora.input = "max_grad_norm"})
// CHECK-SAME: -> (f32 {qlora.output = "loss"}, f32 {qlora.output = "grad_norm"})
// CHECK-SAME: attributes {qlora.grad_accum = 1 : i64, qlora.optimizer = {beta1 = 9.000000e-01 : f64, beta2 = 0.99899999999999999 : f64, epsilon = 1.000000e-08 : f64, max_grad_norm = 1.000000e+00 : f64, weight_decay = 0.000000e+00 : f64}}
// The parameters come first, once, in @loss's order.
// CHECK-NEXT: %[[TABLE:.*]] = qlora.weight "embed"
// CHECK-NEXT: %[[G:.*]] = qlora.weight "norm"
// CHECK-NEXT: %[[W:.*]] = qlora.weight "q"
// CHECK-NEXT: %[[A:.*]] = qlora.lora_param "q.lora_A"
// CHECK-NEXT: %[[B:.*]] = qlora.lora_param "q.lora_B"
// CHECK-NEXT: %[[WH:.*]] = qlora.weight "lm_head"
// CHECK-NEXT: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// CHECK-NOT: tensor.extract_slice
// CHECK-NEXT: %[[E:.*]] = qlora.embedding %[[TABLE]], %[[TOKENS]]
// CHECK-NEXT: %[[N:.*]] = qlora.rms_norm %[[E]], %[[G]]
// CHECK-NEXT: %[[Y:.*]] = qlora.linear %[[N]], %[[W]] lora(%[[A]], %[[B]])
// CHECK-NEXT: %[[LOGITS:.*]] = qlora.linear %[[Y]], %[[WH]]
// Without accumulation the loss is the plain mean: no normalizer.
// CHECK-NEXT: %[[LOSS:.*]] = qlora.cross_entropy %[[LOGITS]], %[[LABELS]] :
// CHECK-NEXT: %[[DLOGITS:.*]] = qlora.cross_entropy_grad %[[LOGITS]], %[[LABELS]], %[[ONE]] :
// CHECK-NEXT: %[[DY:.*]] = qlora.linear_grad_input %[[DLOGITS]], %[[WH]] : tensor<2x8x64xf32>, tensor<64x32xf32> -> tensor<2x8x32xf32>
// The LoRA linear's input is frozen: only its A and B get gradients.
// CHECK-NEXT: %[[GA:.*]], %[[GB:.*]] = qlora.lora_grad %[[DY]], %[[N]], %[[A]], %[[B]] {scaling = 2.000000e+00 : f64}
// CHECK-NEXT: %[[NORM:.*]] = qlora.global_norm %[[GA]], %[[GB]] : tensor<4x32xf32>, tensor<32x4xf32>
// CHECK-NEXT: %[[C:.*]] = qlora.clip_coefficient %[[NORM]], %[[MAXNORM]]
// CHECK-NEXT: qlora.adamw %[[A]], %[[GA]] scale %[[C]] lr %[[LR]] step %[[STEP]] weight_decay %[[WD]] : tensor<4x32xf32>
// CHECK-NEXT: qlora.adamw %[[B]], %[[GB]] scale %[[C]] lr %[[LR]] step %[[STEP]] weight_decay %[[WD]] : tensor<32x4xf32>
// CHECK-NEXT: return %[[LOSS]], %[[NORM]] : f32, f32
// CHECK-NOT: func.func @loss

// Non-default hyper-parameters: recorded on the function, fixed ones on
// every adamw.
// OPT-LABEL: module @linear_lora
// OPT: attributes {qlora.grad_accum = 1 : i64, qlora.optimizer = {beta1 = 8.000000e-01 : f64, beta2 = 0.98999999999999999 : f64, epsilon = 9.9999999999999995E-7 : f64, max_grad_norm = 5.000000e-01 : f64, weight_decay = 1.000000e-02 : f64}}
// OPT-COUNT-2: qlora.adamw {{.*}} {beta1 = 8.000000e-01 : f64, beta2 = 0.98999999999999999 : f64, epsilon = 9.9999999999999995E-7 : f64}

// Gradient accumulation: A = 2 micro-batches of @loss's 2 rows.
// ACCUM-LABEL: module @linear_lora
// ACCUM: func.func @train_step(%[[TOKENS:[a-z0-9]+]]: tensor<4x8xi32> {qlora.input = "tokens"}, %[[LABELS:[a-z0-9]+]]: tensor<4x8xi32> {qlora.input = "labels"}
// ACCUM-SAME: qlora.grad_accum = 2 : i64
// ACCUM: %[[A:.*]] = qlora.lora_param "q.lora_A"
// ACCUM: %[[B:.*]] = qlora.lora_param "q.lora_B"
// ACCUM: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// One target count over the whole step's labels normalises every micro-batch.
// ACCUM-NEXT: %[[COUNT:.*]] = qlora.count_targets %[[LABELS]] : tensor<4x8xi32>
// Micro-batch 0: rows [0, 2), forward then backward.
// ACCUM-NEXT: %[[TOK0:.*]] = tensor.extract_slice %[[TOKENS]][0, 0] [2, 8] [1, 1] : tensor<4x8xi32> to tensor<2x8xi32>
// ACCUM-NEXT: %[[LAB0:.*]] = tensor.extract_slice %[[LABELS]][0, 0] [2, 8] [1, 1] : tensor<4x8xi32> to tensor<2x8xi32>
// ACCUM-NEXT: qlora.embedding %{{.*}}, %[[TOK0]]
// ACCUM-NEXT: %[[N0:.*]] = qlora.rms_norm
// ACCUM-NEXT: qlora.linear %[[N0]]
// ACCUM-NEXT: %[[LOGITS0:.*]] = qlora.linear
// ACCUM-NEXT: %[[LOSS0:.*]] = qlora.cross_entropy %[[LOGITS0]], %[[LAB0]] normalizer %[[COUNT]] :
// ACCUM-NEXT: %[[D0:.*]] = qlora.cross_entropy_grad %[[LOGITS0]], %[[LAB0]], %[[ONE]] normalizer %[[COUNT]] :
// ACCUM-NEXT: %[[DY0:.*]] = qlora.linear_grad_input %[[D0]]
// ACCUM-NEXT: %[[GA0:.*]], %[[GB0:.*]] = qlora.lora_grad %[[DY0]], %[[N0]], %[[A]], %[[B]]
// Micro-batch 1: rows [2, 4), only after micro-batch 0's backward.
// ACCUM-NEXT: %[[TOK1:.*]] = tensor.extract_slice %[[TOKENS]][2, 0] [2, 8] [1, 1]
// ACCUM-NEXT: %[[LAB1:.*]] = tensor.extract_slice %[[LABELS]][2, 0] [2, 8] [1, 1]
// ACCUM-NEXT: qlora.embedding %{{.*}}, %[[TOK1]]
// ACCUM-NEXT: %[[N1:.*]] = qlora.rms_norm
// ACCUM-NEXT: qlora.linear %[[N1]]
// ACCUM-NEXT: %[[LOGITS1:.*]] = qlora.linear
// ACCUM-NEXT: %[[LOSS1:.*]] = qlora.cross_entropy %[[LOGITS1]], %[[LAB1]] normalizer %[[COUNT]] :
// ACCUM-NEXT: %[[D1:.*]] = qlora.cross_entropy_grad %[[LOGITS1]], %[[LAB1]], %[[ONE]] normalizer %[[COUNT]] :
// ACCUM-NEXT: %[[DY1:.*]] = qlora.linear_grad_input %[[D1]]
// ACCUM-NEXT: %[[GA1:.*]], %[[GB1:.*]] = qlora.lora_grad %[[DY1]], %[[N1]], %[[A]], %[[B]]
// The step's loss and gradients are the sums over micro-batches.
// ACCUM-NEXT: %[[LOSS:.*]] = arith.addf %[[LOSS0]], %[[LOSS1]] : f32
// ACCUM-NEXT: %[[GA:.*]] = qlora.add %[[GA0]], %[[GA1]] : tensor<4x32xf32>
// ACCUM-NEXT: %[[GB:.*]] = qlora.add %[[GB0]], %[[GB1]] : tensor<32x4xf32>
// ACCUM-NEXT: %[[NORM:.*]] = qlora.global_norm %[[GA]], %[[GB]]
// ACCUM-NEXT: %[[C:.*]] = qlora.clip_coefficient %[[NORM]]
// ACCUM-NEXT: qlora.adamw %[[A]], %[[GA]] scale %[[C]]
// ACCUM-NEXT: qlora.adamw %[[B]], %[[GB]] scale %[[C]]
// ACCUM-NEXT: return %[[LOSS]], %[[NORM]] : f32, f32
module @linear_lora {
  func.func @loss(%tokens: tensor<2x8xi32>, %labels: tensor<2x8xi32>) -> f32 {
    %table = qlora.weight "embed" : tensor<64x32xf32>
    %e = qlora.embedding %table, %tokens : tensor<64x32xf32>, tensor<2x8xi32>
    %g = qlora.weight "norm" : tensor<32xf32>
    %n = qlora.rms_norm %e, %g {eps = 1.0e-5 : f64} : tensor<2x8x32xf32>, tensor<32xf32>
    %w = qlora.weight "q" : tensor<32x32xf32>
    %a = qlora.lora_param "q.lora_A" init <kaiming_uniform> seed 0 : tensor<4x32xf32>
    %b = qlora.lora_param "q.lora_B" init <zeros> seed 0 : tensor<32x4xf32>
    %y = qlora.linear %n, %w lora(%a, %b) {scaling = 2.0 : f64} : tensor<2x8x32xf32>, tensor<32x32xf32>, tensor<4x32xf32>, tensor<32x4xf32>
    %wh = qlora.weight "lm_head" : tensor<64x32xf32>
    %logits = qlora.linear %y, %wh : tensor<2x8x32xf32>, tensor<64x32xf32>
    %loss = qlora.cross_entropy %logits, %labels : tensor<2x8x64xf32>, tensor<2x8xi32>
    return %loss : f32
  }
}

// -----

// Two residual layers: everything below the first LoRA linear is frozen, so
// the first norm and the first layer's input get no gradient, while the
// second layer's norm does; the residual stream's adjoint sums the skip
// connection and the second layer's branch.

// CHECK-LABEL: module @frozen_prefix
// CHECK: %[[G1:.*]] = qlora.weight "norm1"
// CHECK: %[[W1:.*]] = qlora.weight "w1"
// CHECK-NEXT: %[[A1:.*]] = qlora.lora_param "w1.lora_A"
// CHECK-NEXT: %[[B1:.*]] = qlora.lora_param "w1.lora_B"
// CHECK: %[[E:.*]] = qlora.embedding
// CHECK-NEXT: %[[N0:.*]] = qlora.rms_norm %[[E]]
// CHECK-NEXT: %[[Y0:.*]] = qlora.linear %[[N0]]
// CHECK-NEXT: %[[H0:.*]] = qlora.add %[[E]], %[[Y0]]
// CHECK-NEXT: %[[N1:.*]] = qlora.rms_norm %[[H0]], %[[G1]]
// CHECK: qlora.cross_entropy_grad
// CHECK-NEXT: %[[DH1:.*]] = qlora.linear_grad_input
// The second layer: its input, its A and B, and its norm.
// CHECK-NEXT: %[[DN1:.*]] = qlora.linear_grad_input %[[DH1]], %[[W1]] lora(%[[A1]], %[[B1]]) {scaling = 2.000000e+00 : f64}
// CHECK-NEXT: %[[GA1:.*]], %[[GB1:.*]] = qlora.lora_grad %[[DH1]], %[[N1]], %[[A1]], %[[B1]]
// CHECK-NEXT: %[[DNORM1:.*]] = qlora.rms_norm_grad %[[DN1]], %[[H0]], %[[G1]] {eps = 1.000000e-05 : f64}
// CHECK-NEXT: %[[DH0:.*]] = qlora.add %[[DH1]], %[[DNORM1]]
// The first layer: A and B only.
// CHECK-NEXT: %[[GA0:.*]], %[[GB0:.*]] = qlora.lora_grad %[[DH0]], %[[N0]]
// CHECK-NOT: qlora.linear_grad_input
// CHECK-NOT: qlora.rms_norm_grad
// CHECK-NEXT: qlora.global_norm %[[GA0]], %[[GB0]], %[[GA1]], %[[GB1]]
// CHECK-COUNT-4: qlora.adamw
// CHECK-NOT: qlora.adamw
module @frozen_prefix {
  func.func @loss(%tokens: tensor<1x4xi32>, %labels: tensor<1x4xi32>) -> f32 {
    %table = qlora.weight "embed" : tensor<16x8xf32>
    %e = qlora.embedding %table, %tokens : tensor<16x8xf32>, tensor<1x4xi32>
    %g0 = qlora.weight "norm0" : tensor<8xf32>
    %n0 = qlora.rms_norm %e, %g0 {eps = 1.0e-5 : f64} : tensor<1x4x8xf32>, tensor<8xf32>
    %w0 = qlora.weight "w0" : tensor<8x8xf32>
    %a0 = qlora.lora_param "w0.lora_A" init <kaiming_uniform> seed 0 : tensor<2x8xf32>
    %b0 = qlora.lora_param "w0.lora_B" init <zeros> seed 0 : tensor<8x2xf32>
    %y0 = qlora.linear %n0, %w0 lora(%a0, %b0) {scaling = 2.0 : f64} : tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<2x8xf32>, tensor<8x2xf32>
    %h0 = qlora.add %e, %y0 : tensor<1x4x8xf32>
    %g1 = qlora.weight "norm1" : tensor<8xf32>
    %n1 = qlora.rms_norm %h0, %g1 {eps = 1.0e-5 : f64} : tensor<1x4x8xf32>, tensor<8xf32>
    %w1 = qlora.weight "w1" : tensor<8x8xf32>
    %a1 = qlora.lora_param "w1.lora_A" init <kaiming_uniform> seed 0 : tensor<2x8xf32>
    %b1 = qlora.lora_param "w1.lora_B" init <zeros> seed 0 : tensor<8x2xf32>
    %y1 = qlora.linear %n1, %w1 lora(%a1, %b1) {scaling = 2.0 : f64} : tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<2x8xf32>, tensor<8x2xf32>
    %h1 = qlora.add %h0, %y1 : tensor<1x4x8xf32>
    %wh = qlora.weight "lm_head" : tensor<16x8xf32>
    %logits = qlora.linear %h1, %wh : tensor<1x4x8xf32>, tensor<16x8xf32>
    %loss = qlora.cross_entropy %logits, %labels : tensor<1x4x16xf32>, tensor<1x4xi32>
    return %loss : f32
  }
}

// -----

// Grouped-query attention (4 query heads, 2 KV heads) with LoRA on q and k
// and a frozen v: one attention_grad gives d query and d key, which go back
// through rope and reshape; nothing flows into the frozen v projection.

// CHECK-LABEL: module @attention_gqa
// CHECK: %[[AQ:.*]] = qlora.lora_param "q.lora_A"
// CHECK-NEXT: %[[BQ:.*]] = qlora.lora_param "q.lora_B"
// CHECK: %[[AK:.*]] = qlora.lora_param "k.lora_A"
// CHECK-NEXT: %[[BK:.*]] = qlora.lora_param "k.lora_B"
// CHECK: %[[WH:.*]] = qlora.weight "lm_head"
// CHECK: %[[X:.*]] = qlora.embedding
// CHECK: qlora.reshape %{{.*}} to [1, 4, 4, 8]
// CHECK-NEXT: qlora.reshape %{{.*}} to [1, 4, 2, 8]
// CHECK-NEXT: %[[V4:.*]] = qlora.reshape %{{.*}} to [1, 4, 2, 8]
// CHECK-NEXT: %[[QR:.*]] = qlora.rope
// CHECK-NEXT: %[[KR:.*]] = qlora.rope
// CHECK-NEXT: %[[O:.*]] = qlora.attention %[[QR]], %[[KR]], %[[V4]]
// CHECK: %[[DLOGITS:.*]] = qlora.cross_entropy_grad
// CHECK-NEXT: %[[DO3:.*]] = qlora.linear_grad_input %[[DLOGITS]], %[[WH]]
// CHECK-NEXT: %[[DO:.*]] = qlora.reshape %[[DO3]] to [1, 4, 4, 8] : tensor<1x4x32xf32>
// CHECK-NEXT: %[[DQR:.*]], %[[DKR:.*]], %{{.*}} = qlora.attention_grad %[[DO]], %[[QR]], %[[KR]], %[[V4]], %[[O]] : tensor<1x4x4x8xf32>, tensor<1x4x2x8xf32>, tensor<1x4x2x8xf32>
// CHECK-NEXT: %[[DK4:.*]] = qlora.rope_grad %[[DKR]] {theta = 1.000000e+04 : f64} : tensor<1x4x2x8xf32>
// CHECK-NEXT: %[[DQ4:.*]] = qlora.rope_grad %[[DQR]] {theta = 1.000000e+04 : f64} : tensor<1x4x4x8xf32>
// CHECK-NEXT: %[[DK:.*]] = qlora.reshape %[[DK4]] to [1, 4, 16] : tensor<1x4x2x8xf32>
// CHECK-NEXT: %[[DQ:.*]] = qlora.reshape %[[DQ4]] to [1, 4, 32] : tensor<1x4x4x8xf32>
// CHECK-NEXT: %[[GAK:.*]], %[[GBK:.*]] = qlora.lora_grad %[[DK]], %[[X]], %[[AK]], %[[BK]]
// CHECK-NEXT: %[[GAQ:.*]], %[[GBQ:.*]] = qlora.lora_grad %[[DQ]], %[[X]], %[[AQ]], %[[BQ]]
// CHECK-NEXT: qlora.global_norm %[[GAQ]], %[[GBQ]], %[[GAK]], %[[GBK]]
module @attention_gqa {
  func.func @loss(%tokens: tensor<1x4xi32>, %labels: tensor<1x4xi32>) -> f32 {
    %table = qlora.weight "embed" : tensor<16x32xf32>
    %x = qlora.embedding %table, %tokens : tensor<16x32xf32>, tensor<1x4xi32>
    %wq = qlora.weight "q" : tensor<32x32xf32>
    %aq = qlora.lora_param "q.lora_A" init <kaiming_uniform> seed 0 : tensor<2x32xf32>
    %bq = qlora.lora_param "q.lora_B" init <zeros> seed 0 : tensor<32x2xf32>
    %q = qlora.linear %x, %wq lora(%aq, %bq) {scaling = 2.0 : f64} : tensor<1x4x32xf32>, tensor<32x32xf32>, tensor<2x32xf32>, tensor<32x2xf32>
    %wk = qlora.weight "k" : tensor<16x32xf32>
    %ak = qlora.lora_param "k.lora_A" init <kaiming_uniform> seed 0 : tensor<2x32xf32>
    %bk = qlora.lora_param "k.lora_B" init <zeros> seed 0 : tensor<16x2xf32>
    %k = qlora.linear %x, %wk lora(%ak, %bk) {scaling = 2.0 : f64} : tensor<1x4x32xf32>, tensor<16x32xf32>, tensor<2x32xf32>, tensor<16x2xf32>
    %wv = qlora.weight "v" : tensor<16x32xf32>
    %v = qlora.linear %x, %wv : tensor<1x4x32xf32>, tensor<16x32xf32>
    %q4 = qlora.reshape %q to [1, 4, 4, 8] : tensor<1x4x32xf32>
    %k4 = qlora.reshape %k to [1, 4, 2, 8] : tensor<1x4x16xf32>
    %v4 = qlora.reshape %v to [1, 4, 2, 8] : tensor<1x4x16xf32>
    %qr = qlora.rope %q4 {theta = 10000.0 : f64} : tensor<1x4x4x8xf32>
    %kr = qlora.rope %k4 {theta = 10000.0 : f64} : tensor<1x4x2x8xf32>
    %o = qlora.attention %qr, %kr, %v4 : tensor<1x4x4x8xf32>, tensor<1x4x2x8xf32>, tensor<1x4x2x8xf32>
    %o3 = qlora.reshape %o to [1, 4, 32] : tensor<1x4x4x8xf32>
    %wh = qlora.weight "lm_head" : tensor<16x32xf32>
    %logits = qlora.linear %o3, %wh : tensor<1x4x32xf32>, tensor<16x32xf32>
    %loss = qlora.cross_entropy %logits, %labels : tensor<1x4x16xf32>, tensor<1x4xi32>
    return %loss : f32
  }
}

// -----

// silu and mul of the MLP with LoRA on gate and down and a frozen up: mul
// gives a gradient to its silu operand only.

// CHECK-LABEL: module @silu_mul
// CHECK: %[[AG:.*]] = qlora.lora_param "gate.lora_A"
// CHECK: %[[AD:.*]] = qlora.lora_param "down.lora_A"
// CHECK-NEXT: %[[BD:.*]] = qlora.lora_param "down.lora_B"
// CHECK: %[[X:.*]] = qlora.embedding
// CHECK-NEXT: %[[GATE:.*]] = qlora.linear %[[X]]
// CHECK-NEXT: %[[UP:.*]] = qlora.linear %[[X]]
// CHECK-NEXT: %[[S:.*]] = qlora.silu %[[GATE]]
// CHECK-NEXT: %[[M:.*]] = qlora.mul %[[S]], %[[UP]]
// CHECK: %[[DLOGITS:.*]] = qlora.cross_entropy_grad
// CHECK-NEXT: %[[DM:.*]] = qlora.linear_grad_input %[[DLOGITS]], %{{.*}} lora(%[[AD]], %[[BD]]) {scaling = 2.000000e+00 : f64} : tensor<1x4x16xf32>, tensor<16x12xf32>, tensor<2x12xf32>, tensor<16x2xf32> -> tensor<1x4x12xf32>
// CHECK-NEXT: %[[GAD:.*]], %[[GBD:.*]] = qlora.lora_grad %[[DLOGITS]], %[[M]], %[[AD]], %[[BD]]
// CHECK-NEXT: %[[DS:.*]] = qlora.mul %[[DM]], %[[UP]] : tensor<1x4x12xf32>
// CHECK-NEXT: %[[DGATE:.*]] = qlora.silu_grad %[[DS]], %[[GATE]] : tensor<1x4x12xf32>
// CHECK-NEXT: %[[GAG:.*]], %[[GBG:.*]] = qlora.lora_grad %[[DGATE]], %[[X]], %[[AG]]
// CHECK-NEXT: qlora.global_norm %[[GAG]], %[[GBG]], %[[GAD]], %[[GBD]]
module @silu_mul {
  func.func @loss(%tokens: tensor<1x4xi32>, %labels: tensor<1x4xi32>) -> f32 {
    %table = qlora.weight "embed" : tensor<16x8xf32>
    %x = qlora.embedding %table, %tokens : tensor<16x8xf32>, tensor<1x4xi32>
    %wg = qlora.weight "gate" : tensor<12x8xf32>
    %ag = qlora.lora_param "gate.lora_A" init <kaiming_uniform> seed 0 : tensor<2x8xf32>
    %bg = qlora.lora_param "gate.lora_B" init <zeros> seed 0 : tensor<12x2xf32>
    %gate = qlora.linear %x, %wg lora(%ag, %bg) {scaling = 2.0 : f64} : tensor<1x4x8xf32>, tensor<12x8xf32>, tensor<2x8xf32>, tensor<12x2xf32>
    %wu = qlora.weight "up" : tensor<12x8xf32>
    %up = qlora.linear %x, %wu : tensor<1x4x8xf32>, tensor<12x8xf32>
    %s = qlora.silu %gate : tensor<1x4x12xf32>
    %m = qlora.mul %s, %up : tensor<1x4x12xf32>
    %wd = qlora.weight "down" : tensor<16x12xf32>
    %ad = qlora.lora_param "down.lora_A" init <kaiming_uniform> seed 0 : tensor<2x12xf32>
    %bd = qlora.lora_param "down.lora_B" init <zeros> seed 0 : tensor<16x2xf32>
    %logits = qlora.linear %m, %wd lora(%ad, %bd) {scaling = 2.0 : f64} : tensor<1x4x12xf32>, tensor<16x12xf32>, tensor<2x12xf32>, tensor<16x2xf32>
    %loss = qlora.cross_entropy %logits, %labels : tensor<1x4x16xf32>, tensor<1x4xi32>
    return %loss : f32
  }
}

// -----

// Fan-out: `add %y, %y` gives %y two adjoint contributions, and one pair of
// LoRA matrices used by two linears gets two gradients; both are summed with
// qlora.add, later use first.

// CHECK-LABEL: module @add_fan_out
// CHECK: %[[A:.*]] = qlora.lora_param "w.lora_A"
// CHECK-NEXT: %[[B:.*]] = qlora.lora_param "w.lora_B"
// CHECK: %[[X:.*]] = qlora.embedding
// CHECK-NEXT: %[[Y:.*]] = qlora.linear %[[X]]
// CHECK-NEXT: %[[Z:.*]] = qlora.add %[[Y]], %[[Y]]
// CHECK: qlora.cross_entropy_grad
// CHECK-NEXT: %[[DY2:.*]] = qlora.linear_grad_input
// CHECK-NEXT: %[[DZ:.*]] = qlora.linear_grad_input %[[DY2]], %{{.*}} lora(%[[A]], %[[B]])
// CHECK-NEXT: %[[GA2:.*]], %[[GB2:.*]] = qlora.lora_grad %[[DY2]], %[[Z]], %[[A]], %[[B]]
// CHECK-NEXT: %[[DY:.*]] = qlora.add %[[DZ]], %[[DZ]] : tensor<1x4x8xf32>
// CHECK-NEXT: %[[GA1:.*]], %[[GB1:.*]] = qlora.lora_grad %[[DY]], %[[X]], %[[A]], %[[B]]
// CHECK-NEXT: %[[GA:.*]] = qlora.add %[[GA2]], %[[GA1]] : tensor<2x8xf32>
// CHECK-NEXT: %[[GB:.*]] = qlora.add %[[GB2]], %[[GB1]] : tensor<8x2xf32>
// CHECK-NEXT: %[[NORM:.*]] = qlora.global_norm %[[GA]], %[[GB]]
// CHECK-NEXT: %[[C:.*]] = qlora.clip_coefficient %[[NORM]]
// CHECK-NEXT: qlora.adamw %[[A]], %[[GA]] scale %[[C]]
// CHECK-NEXT: qlora.adamw %[[B]], %[[GB]] scale %[[C]]
module @add_fan_out {
  func.func @loss(%tokens: tensor<1x4xi32>, %labels: tensor<1x4xi32>) -> f32 {
    %table = qlora.weight "embed" : tensor<16x8xf32>
    %x = qlora.embedding %table, %tokens : tensor<16x8xf32>, tensor<1x4xi32>
    %w = qlora.weight "w" : tensor<8x8xf32>
    %a = qlora.lora_param "w.lora_A" init <kaiming_uniform> seed 0 : tensor<2x8xf32>
    %b = qlora.lora_param "w.lora_B" init <zeros> seed 0 : tensor<8x2xf32>
    %y = qlora.linear %x, %w lora(%a, %b) {scaling = 2.0 : f64} : tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<2x8xf32>, tensor<8x2xf32>
    %z = qlora.add %y, %y : tensor<1x4x8xf32>
    %y2 = qlora.linear %z, %w lora(%a, %b) {scaling = 2.0 : f64} : tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<2x8xf32>, tensor<8x2xf32>
    %wh = qlora.weight "lm_head" : tensor<16x8xf32>
    %logits = qlora.linear %y2, %wh : tensor<1x4x8xf32>, tensor<16x8xf32>
    %loss = qlora.cross_entropy %logits, %labels : tensor<1x4x16xf32>, tensor<1x4xi32>
    return %loss : f32
  }
}

// -----

// cast: the gradient goes back to the input's element type.

// CHECK-LABEL: module @cast
// CHECK: %[[A:.*]] = qlora.lora_param "w.lora_A"
// CHECK: %[[X:.*]] = qlora.cast %{{.*}} to f32 : tensor<1x4x8xbf16>
// CHECK-NEXT: %[[Y:.*]] = qlora.linear %[[X]]
// CHECK-NEXT: %[[H:.*]] = qlora.cast %[[Y]] to bf16 : tensor<1x4x8xf32>
// CHECK: qlora.cross_entropy_grad
// CHECK-NEXT: %[[DH:.*]] = qlora.linear_grad_input {{.*}} -> tensor<1x4x8xbf16>
// CHECK-NEXT: %[[DY:.*]] = qlora.cast %[[DH]] to f32 : tensor<1x4x8xbf16>
// CHECK-NEXT: qlora.lora_grad %[[DY]], %[[X]], %[[A]]
// The first cast is on the frozen path.
// CHECK-NOT: qlora.cast
// CHECK: qlora.global_norm
module @cast {
  func.func @loss(%tokens: tensor<1x4xi32>, %labels: tensor<1x4xi32>) -> f32 {
    %table = qlora.weight "embed" : tensor<16x8xbf16>
    %e = qlora.embedding %table, %tokens : tensor<16x8xbf16>, tensor<1x4xi32>
    %x = qlora.cast %e to f32 : tensor<1x4x8xbf16>
    %w = qlora.weight "w" : tensor<8x8xbf16>
    %a = qlora.lora_param "w.lora_A" init <kaiming_uniform> seed 0 : tensor<2x8xf32>
    %b = qlora.lora_param "w.lora_B" init <zeros> seed 0 : tensor<8x2xf32>
    %y = qlora.linear %x, %w lora(%a, %b) {scaling = 2.0 : f64} : tensor<1x4x8xf32>, tensor<8x8xbf16>, tensor<2x8xf32>, tensor<8x2xf32>
    %h = qlora.cast %y to bf16 : tensor<1x4x8xf32>
    %wh = qlora.weight "lm_head" : tensor<16x8xbf16>
    %logits = qlora.linear %h, %wh : tensor<1x4x8xbf16>, tensor<16x8xbf16>
    %loss = qlora.cross_entropy %logits, %labels : tensor<1x4x16xbf16>, tensor<1x4xi32>
    return %loss : f32
  }
}

// -----

// reshape: the gradient is reshaped back, one step at a time.

// CHECK-LABEL: module @reshape
// CHECK: %[[X:.*]] = qlora.embedding
// CHECK: qlora.cross_entropy_grad
// CHECK-NEXT: %[[DR2:.*]] = qlora.linear_grad_input
// CHECK-NEXT: %[[DR:.*]] = qlora.reshape %[[DR2]] to [1, 4, 2, 4] : tensor<1x4x8xf32>
// CHECK-NEXT: %[[DY:.*]] = qlora.reshape %[[DR]] to [1, 4, 8] : tensor<1x4x2x4xf32>
// CHECK-NEXT: qlora.lora_grad %[[DY]], %[[X]]
module @reshape {
  func.func @loss(%tokens: tensor<1x4xi32>, %labels: tensor<1x4xi32>) -> f32 {
    %table = qlora.weight "embed" : tensor<16x8xf32>
    %x = qlora.embedding %table, %tokens : tensor<16x8xf32>, tensor<1x4xi32>
    %w = qlora.weight "w" : tensor<8x8xf32>
    %a = qlora.lora_param "w.lora_A" init <kaiming_uniform> seed 0 : tensor<2x8xf32>
    %b = qlora.lora_param "w.lora_B" init <zeros> seed 0 : tensor<8x2xf32>
    %y = qlora.linear %x, %w lora(%a, %b) {scaling = 2.0 : f64} : tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<2x8xf32>, tensor<8x2xf32>
    %r = qlora.reshape %y to [1, 4, 2, 4] : tensor<1x4x8xf32>
    %r2 = qlora.reshape %r to [1, 4, 8] : tensor<1x4x2x4xf32>
    %wh = qlora.weight "lm_head" : tensor<16x8xf32>
    %logits = qlora.linear %r2, %wh : tensor<1x4x8xf32>, tensor<16x8xf32>
    %loss = qlora.cross_entropy %logits, %labels : tensor<1x4x16xf32>, tensor<1x4xi32>
    return %loss : f32
  }
}

// -----

// A LoRA pair that does not reach the loss (the importer never emits one):
// a warning on stderr, no gradient, no update, not in the global norm.

// CHECK-LABEL: module @unused_lora
// CHECK: %[[A:.*]] = qlora.lora_param "w.lora_A"
// CHECK-NEXT: %[[B:.*]] = qlora.lora_param "w.lora_B"
// CHECK-NEXT: qlora.lora_param "dead.lora_A"
// CHECK: %[[GA:.*]], %[[GB:.*]] = qlora.lora_grad
// CHECK-NEXT: qlora.global_norm %[[GA]], %[[GB]] : tensor<2x8xf32>, tensor<16x2xf32>
// CHECK-NEXT: qlora.clip_coefficient
// CHECK-NEXT: qlora.adamw %[[A]]
// CHECK-NEXT: qlora.adamw %[[B]]
// CHECK-NEXT: return
module @unused_lora {
  func.func @loss(%tokens: tensor<1x4xi32>, %labels: tensor<1x4xi32>) -> f32 {
    %table = qlora.weight "embed" : tensor<16x8xf32>
    %x = qlora.embedding %table, %tokens : tensor<16x8xf32>, tensor<1x4xi32>
    %w = qlora.weight "w" : tensor<16x8xf32>
    %a = qlora.lora_param "w.lora_A" init <kaiming_uniform> seed 0 : tensor<2x8xf32>
    %b = qlora.lora_param "w.lora_B" init <zeros> seed 0 : tensor<16x2xf32>
    %dead = qlora.lora_param "dead.lora_A" init <kaiming_uniform> seed 0 : tensor<2x8xf32>
    %logits = qlora.linear %x, %w lora(%a, %b) {scaling = 2.0 : f64} : tensor<1x4x8xf32>, tensor<16x8xf32>, tensor<2x8xf32>, tensor<16x2xf32>
    %loss = qlora.cross_entropy %logits, %labels : tensor<1x4x16xf32>, tensor<1x4xi32>
    return %loss : f32
  }
}

// -----

// LoRA dropout: every LoRA linear with dropout > 0 of micro-batch i gets the
// mask stream "<lora_A name>#<i>", and its gradients the same one, so that
// the backward recomputes the forward's mask. The step is not part of the
// stream: the kernels draw at an index that includes it.

// CHECK-LABEL: module @lora_dropout
// CHECK: qlora.linear {{.*}} lora({{.*}}) {dropout = 1.000000e-01 : f64, dropout_stream = "w1.lora_A#0", scaling = 2.000000e+00 : f64}
// CHECK: qlora.linear {{.*}} lora({{.*}}) {dropout = 1.000000e-01 : f64, dropout_stream = "w2.lora_A#0", scaling = 2.000000e+00 : f64}
// CHECK: qlora.linear_grad_input {{.*}} {dropout = 1.000000e-01 : f64, dropout_stream = "w2.lora_A#0", scaling = 2.000000e+00 : f64}
// CHECK: qlora.lora_grad {{.*}} {dropout = 1.000000e-01 : f64, dropout_stream = "w2.lora_A#0", scaling = 2.000000e+00 : f64}
// CHECK: qlora.lora_grad {{.*}} {dropout = 1.000000e-01 : f64, dropout_stream = "w1.lora_A#0", scaling = 2.000000e+00 : f64}
// CHECK-NOT: dropout_stream
// CHECK: return

// ACCUM-LABEL: module @lora_dropout
// ACCUM: qlora.linear {{.*}} dropout_stream = "w1.lora_A#0"
// ACCUM: qlora.lora_grad {{.*}} dropout_stream = "w1.lora_A#0"
// ACCUM: qlora.linear {{.*}} dropout_stream = "w1.lora_A#1"
// ACCUM: qlora.linear {{.*}} dropout_stream = "w2.lora_A#1"
// ACCUM: qlora.linear_grad_input {{.*}} dropout_stream = "w2.lora_A#1"
// ACCUM: qlora.lora_grad {{.*}} dropout_stream = "w2.lora_A#1"
// ACCUM: qlora.lora_grad {{.*}} dropout_stream = "w1.lora_A#1"
module @lora_dropout {
  func.func @loss(%tokens: tensor<1x4xi32>, %labels: tensor<1x4xi32>) -> f32 {
    %table = qlora.weight "embed" : tensor<16x8xf32>
    %x = qlora.embedding %table, %tokens : tensor<16x8xf32>, tensor<1x4xi32>
    %w1 = qlora.weight "w1" : tensor<8x8xf32>
    %a1 = qlora.lora_param "w1.lora_A" init <kaiming_uniform> seed 0 : tensor<2x8xf32>
    %b1 = qlora.lora_param "w1.lora_B" init <zeros> seed 0 : tensor<8x2xf32>
    %h = qlora.linear %x, %w1 lora(%a1, %b1) {scaling = 2.0 : f64, dropout = 0.1 : f64} : tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<2x8xf32>, tensor<8x2xf32>
    %w2 = qlora.weight "w2" : tensor<16x8xf32>
    %a2 = qlora.lora_param "w2.lora_A" init <kaiming_uniform> seed 0 : tensor<2x8xf32>
    %b2 = qlora.lora_param "w2.lora_B" init <zeros> seed 0 : tensor<16x2xf32>
    %logits = qlora.linear %h, %w2 lora(%a2, %b2) {scaling = 2.0 : f64, dropout = 0.1 : f64} : tensor<1x4x8xf32>, tensor<16x8xf32>, tensor<2x8xf32>, tensor<16x2xf32>
    %loss = qlora.cross_entropy %logits, %labels : tensor<1x4x16xf32>, tensor<1x4xi32>
    return %loss : f32
  }
}

// The tiny preset, hoisted parameters first, then one forward and backward.
// TINY-LABEL: func.func @train_step(
// TINY-SAME: tensor<2x8xi32> {qlora.input = "tokens"}
// TINY-SAME: qlora.grad_accum = 1 : i64
// TINY-COUNT-49: qlora.{{weight|lora_param}}
// TINY-NEXT: %[[ONE:.*]] = arith.constant 1.000000e+00 : f32
// TINY-NEXT: qlora.embedding
// TINY-NOT: qlora.{{weight|lora_param}}
// TINY: qlora.cross_entropy %{{.*}}, %{{.*}} :
// TINY-NEXT: qlora.cross_entropy_grad %{{.*}}, %{{.*}}, %[[ONE]] :
// TINY-COUNT-14: qlora.lora_grad
// TINY-NOT: qlora.lora_grad
// TINY: %[[NORM:.*]] = qlora.global_norm
// TINY-NEXT: %[[C:.*]] = qlora.clip_coefficient %[[NORM]]
// TINY-COUNT-28: qlora.adamw {{.*}} scale %[[C]]
// TINY-NEXT: return %{{.*}}, %[[NORM]] : f32, f32

// Of the 5 norms only the first layer's input norm, whose input is the
// embedding, has no backward.
// TINYNORM-COUNT-4: qlora.rms_norm_grad
// TINYNORM-NOT: qlora.rms_norm_grad

// The input gradient of every linear but q, k, v of the first layer.
// TINYDX-COUNT-12: qlora.linear_grad_input
// TINYDX-NOT: qlora.linear_grad_input

// Four micro-batches of 2 rows, each forward followed by its backward.
// TINY4-LABEL: func.func @train_step(
// TINY4-SAME: %[[TOKENS:[a-z0-9]+]]: tensor<8x8xi32> {qlora.input = "tokens"}, %[[LABELS:[a-z0-9]+]]: tensor<8x8xi32>
// TINY4-SAME: qlora.grad_accum = 4 : i64
// TINY4: %[[COUNT:.*]] = qlora.count_targets %[[LABELS]] : tensor<8x8xi32>
// TINY4-NOT: qlora.count_targets
// TINY4: tensor.extract_slice %[[TOKENS]][0, 0] [2, 8] [1, 1]
// TINY4: qlora.cross_entropy {{.*}} normalizer %[[COUNT]]
// TINY4: qlora.cross_entropy_grad {{.*}} normalizer %[[COUNT]]
// TINY4-COUNT-14: qlora.lora_grad
// TINY4-NEXT: tensor.extract_slice %[[TOKENS]][2, 0] [2, 8] [1, 1]
// TINY4: qlora.cross_entropy_grad {{.*}} normalizer %[[COUNT]]
// TINY4-COUNT-14: qlora.lora_grad
// TINY4-NEXT: arith.addf
// TINY4-COUNT-28: qlora.add
// TINY4-NEXT: tensor.extract_slice %[[TOKENS]][4, 0] [2, 8] [1, 1]
// TINY4: qlora.cross_entropy_grad {{.*}} normalizer %[[COUNT]]
// TINY4-COUNT-14: qlora.lora_grad
// TINY4-NEXT: arith.addf
// TINY4-COUNT-28: qlora.add
// TINY4-NEXT: tensor.extract_slice %[[TOKENS]][6, 0] [2, 8] [1, 1]
// TINY4: qlora.cross_entropy_grad {{.*}} normalizer %[[COUNT]]
// TINY4-COUNT-14: qlora.lora_grad
// TINY4-NEXT: %[[LOSS:.*]] = arith.addf
// TINY4-COUNT-28: qlora.add
// TINY4-NEXT: %[[NORM:.*]] = qlora.global_norm
// TINY4-COUNT-28: qlora.adamw
// TINY4-NEXT: return %[[LOSS]], %[[NORM]] : f32, f32
