// RUN: qlora-opt %s | qlora-opt | FileCheck %s
// RUN: qlora-opt %s --mlir-print-op-generic | qlora-opt | FileCheck %s

// CHECK: module attributes
// CHECK-SAME: qlora.lora = #qlora.lora_config<r = 8, alpha = 1.600000e+01, dropout = 5.000000e-02, use_rslora = false, targets = ["q_proj", "v_proj"], seed = 7>
// CHECK-SAME: qlora.model = #qlora.model_config<architecture = "LlamaForCausalLM", name_or_path = "tiny", vocab_size = 256, hidden_size = 64, intermediate_size = 128, num_hidden_layers = 2, num_attention_heads = 4, num_key_value_heads = 2, head_dim = 16, rms_norm_eps = 1.000000e-05, rope_theta = 1.000000e+04, tie_word_embeddings = false>
module attributes {
  qlora.model = #qlora.model_config<architecture = "LlamaForCausalLM", name_or_path = "tiny", vocab_size = 256, hidden_size = 64, intermediate_size = 128, num_hidden_layers = 2, num_attention_heads = 4, num_key_value_heads = 2, head_dim = 16, rms_norm_eps = 1.0e-5, rope_theta = 10000.0, tie_word_embeddings = false>,
  qlora.lora = #qlora.lora_config<r = 8, alpha = 16.0, dropout = 0.05, use_rslora = false, targets = ["q_proj", "v_proj"], seed = 7>
} {

// CHECK-LABEL: func @parameters
func.func @parameters() -> (tensor<64x64xbf16>, tensor<4xf32>, tensor<2x2xf16>, tensor<8x64xf32>, tensor<64x8xf32>) {
  // CHECK: qlora.weight "model.layers.0.self_attn.q_proj.weight" source <"/m/model.safetensors", "model.layers.0.self_attn.q_proj.weight"> : tensor<64x64xbf16>
  %w = qlora.weight "model.layers.0.self_attn.q_proj.weight" source <"/m/model.safetensors", "model.layers.0.self_attn.q_proj.weight"> : tensor<64x64xbf16>
  // CHECK: qlora.weight "norm" value dense<[1.000000e+00, 2.000000e+00, 3.000000e+00, 4.000000e+00]> : tensor<4xf32> : tensor<4xf32>
  %n = qlora.weight "norm" value dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32> : tensor<4xf32>
  // Shape-only: no bytes.
  // CHECK: qlora.weight "shape_only" : tensor<2x2xf16>
  %s = qlora.weight "shape_only" : tensor<2x2xf16>
  // CHECK: qlora.lora_param "a" init <kaiming_uniform> seed 7 : tensor<8x64xf32>
  %a = qlora.lora_param "a" init <kaiming_uniform> seed 7 : tensor<8x64xf32>
  // CHECK: qlora.lora_param "b" init <zeros> seed 7 : tensor<64x8xf32>
  %b = qlora.lora_param "b" init <zeros> seed 7 : tensor<64x8xf32>
  return %w, %n, %s, %a, %b : tensor<64x64xbf16>, tensor<4xf32>, tensor<2x2xf16>, tensor<8x64xf32>, tensor<64x8xf32>
}

// CHECK-LABEL: func @attention_block
// CHECK-SAME: (%[[X:.*]]: tensor<1x16x64xf32>, %[[WQ:.*]]: tensor<64x64xbf16>, %[[WK:.*]]: tensor<32x64xbf16>, %[[A:.*]]: tensor<8x64xf32>, %[[B:.*]]: tensor<64x8xf32>, %[[G:.*]]: tensor<64xf32>)
func.func @attention_block(%x: tensor<1x16x64xf32>, %wq: tensor<64x64xbf16>, %wk: tensor<32x64xbf16>,
                           %a: tensor<8x64xf32>, %b: tensor<64x8xf32>, %g: tensor<64xf32>) -> tensor<1x16x4x16xf32> {
  // CHECK: %[[N:.*]] = qlora.rms_norm %[[X]], %[[G]] {eps = 1.000000e-05 : f64} : tensor<1x16x64xf32>, tensor<64xf32>
  %n = qlora.rms_norm %x, %g {eps = 1.0e-5 : f64} : tensor<1x16x64xf32>, tensor<64xf32>
  // CHECK: %[[Q:.*]] = qlora.linear %[[N]], %[[WQ]] lora(%[[A]], %[[B]]) {dropout = 5.000000e-02 : f64, scaling = 2.000000e+00 : f64} : tensor<1x16x64xf32>, tensor<64x64xbf16>, tensor<8x64xf32>, tensor<64x8xf32>
  %q = qlora.linear %n, %wq lora(%a, %b) {scaling = 2.0 : f64, dropout = 0.05 : f64} : tensor<1x16x64xf32>, tensor<64x64xbf16>, tensor<8x64xf32>, tensor<64x8xf32>
  // CHECK: %[[K:.*]] = qlora.linear %[[N]], %[[WK]] : tensor<1x16x64xf32>, tensor<32x64xbf16>
  %k = qlora.linear %n, %wk : tensor<1x16x64xf32>, tensor<32x64xbf16>
  // CHECK: %[[Q4:.*]] = qlora.reshape %[[Q]] to [1, 16, 4, 16] : tensor<1x16x64xf32>
  %q4 = qlora.reshape %q to [1, 16, 4, 16] : tensor<1x16x64xf32>
  // CHECK: %[[K4:.*]] = qlora.reshape %[[K]] to [1, 16, 2, 16] : tensor<1x16x32xf32>
  %k4 = qlora.reshape %k to [1, 16, 2, 16] : tensor<1x16x32xf32>
  // CHECK: %[[QR:.*]] = qlora.rope %[[Q4]] {theta = 1.000000e+04 : f64} : tensor<1x16x4x16xf32>
  %qr = qlora.rope %q4 {theta = 10000.0 : f64} : tensor<1x16x4x16xf32>
  // CHECK: %[[KR:.*]] = qlora.rope %[[K4]] {scaling = #qlora.llama3_rope_scaling<factor = 8.000000e+00, low_freq_factor = 1.000000e+00, high_freq_factor = 4.000000e+00, original_max_position_embeddings = 8192>, theta = 5.000000e+05 : f64} : tensor<1x16x2x16xf32>
  %kr = qlora.rope %k4 {theta = 500000.0 : f64, scaling = #qlora.llama3_rope_scaling<factor = 8.0, low_freq_factor = 1.0, high_freq_factor = 4.0, original_max_position_embeddings = 8192>} : tensor<1x16x2x16xf32>
  // CHECK: qlora.attention %[[QR]], %[[KR]], %[[KR]] : tensor<1x16x4x16xf32>, tensor<1x16x2x16xf32>, tensor<1x16x2x16xf32>
  %o = qlora.attention %qr, %kr, %kr : tensor<1x16x4x16xf32>, tensor<1x16x2x16xf32>, tensor<1x16x2x16xf32>
  return %o : tensor<1x16x4x16xf32>
}

// CHECK-LABEL: func @mlp_and_loss
func.func @mlp_and_loss(%tokens: tensor<2x8xi32>, %table: tensor<256x64xbf16>, %h: tensor<2x8x64xf32>, %wh: tensor<256x64xf32>) -> f32 {
  // CHECK: %[[E:.*]] = qlora.embedding %{{.*}}, %{{.*}} : tensor<256x64xbf16>, tensor<2x8xi32>
  %e = qlora.embedding %table, %tokens : tensor<256x64xbf16>, tensor<2x8xi32>
  // CHECK: %[[C:.*]] = qlora.cast %[[E]] to f32 : tensor<2x8x64xbf16>
  %c = qlora.cast %e to f32 : tensor<2x8x64xbf16>
  // CHECK: %[[S:.*]] = qlora.silu %[[C]] : tensor<2x8x64xf32>
  %s = qlora.silu %c : tensor<2x8x64xf32>
  // CHECK: %[[M:.*]] = qlora.mul %[[S]], %{{.*}} : tensor<2x8x64xf32>
  %m = qlora.mul %s, %h : tensor<2x8x64xf32>
  // CHECK: %[[R:.*]] = qlora.add %[[M]], %{{.*}} : tensor<2x8x64xf32>
  %r = qlora.add %m, %h : tensor<2x8x64xf32>
  // CHECK: %[[L:.*]] = qlora.linear %[[R]], %{{.*}} : tensor<2x8x64xf32>, tensor<256x64xf32>
  %logits = qlora.linear %r, %wh : tensor<2x8x64xf32>, tensor<256x64xf32>
  // CHECK: qlora.cross_entropy %[[L]], %{{.*}} {ignore_index = -1 : i64} : tensor<2x8x256xf32>, tensor<2x8xi32>
  %loss = qlora.cross_entropy %logits, %tokens {ignore_index = -1 : i64} : tensor<2x8x256xf32>, tensor<2x8xi32>
  return %loss : f32
}

// CHECK-LABEL: func @backward_ops
// CHECK-SAME: (%[[DY:.*]]: tensor<1x16x64xf32>, %[[X:.*]]: tensor<1x16x64xf32>, %[[G:.*]]: tensor<64xf32>, %[[W:.*]]: tensor<64x64xbf16>, %[[A:.*]]: tensor<8x64xf32>, %[[B:.*]]: tensor<64x8xf32>, %[[Q:.*]]: tensor<1x16x4x16xf32>, %[[K:.*]]: tensor<1x16x2x16xf32>, %[[O:.*]]: tensor<1x16x4x16xf32>)
func.func @backward_ops(%dy: tensor<1x16x64xf32>, %x: tensor<1x16x64xf32>, %g: tensor<64xf32>, %w: tensor<64x64xbf16>,
                        %a: tensor<8x64xf32>, %b: tensor<64x8xf32>, %q: tensor<1x16x4x16xf32>, %k: tensor<1x16x2x16xf32>,
                        %o: tensor<1x16x4x16xf32>) {
  // CHECK: qlora.rms_norm_grad %[[DY]], %[[X]], %[[G]] {eps = 1.000000e-05 : f64} : tensor<1x16x64xf32>, tensor<64xf32>
  %0 = qlora.rms_norm_grad %dy, %x, %g {eps = 1.0e-5 : f64} : tensor<1x16x64xf32>, tensor<64xf32>
  // CHECK: qlora.rope_grad %[[Q]] {theta = 1.000000e+04 : f64} : tensor<1x16x4x16xf32>
  %1 = qlora.rope_grad %q {theta = 10000.0 : f64} : tensor<1x16x4x16xf32>
  // CHECK: qlora.rope_grad %[[K]] {scaling = #qlora.llama3_rope_scaling<factor = 8.000000e+00, low_freq_factor = 1.000000e+00, high_freq_factor = 4.000000e+00, original_max_position_embeddings = 8192>, theta = 5.000000e+05 : f64} : tensor<1x16x2x16xf32>
  %2 = qlora.rope_grad %k {theta = 500000.0 : f64, scaling = #qlora.llama3_rope_scaling<factor = 8.0, low_freq_factor = 1.0, high_freq_factor = 4.0, original_max_position_embeddings = 8192>} : tensor<1x16x2x16xf32>
  // CHECK: %{{.*}}, %{{.*}}, %{{.*}} = qlora.attention_grad %[[O]], %[[Q]], %[[K]], %[[K]], %[[O]] : tensor<1x16x4x16xf32>, tensor<1x16x2x16xf32>, tensor<1x16x2x16xf32>
  %dq, %dk, %dv = qlora.attention_grad %o, %q, %k, %k, %o : tensor<1x16x4x16xf32>, tensor<1x16x2x16xf32>, tensor<1x16x2x16xf32>
  // CHECK: qlora.attention_grad %[[O]], %[[Q]], %[[K]], %[[K]], %[[O]] {causal = false, scale = 2.500000e-01 : f64}
  %3:3 = qlora.attention_grad %o, %q, %k, %k, %o {causal = false, scale = 0.25 : f64} : tensor<1x16x4x16xf32>, tensor<1x16x2x16xf32>, tensor<1x16x2x16xf32>
  // CHECK: qlora.silu_grad %[[DY]], %[[X]] : tensor<1x16x64xf32>
  %4 = qlora.silu_grad %dy, %x : tensor<1x16x64xf32>
  // CHECK: qlora.linear_grad_input %[[DY]], %[[W]] : tensor<1x16x64xf32>, tensor<64x64xbf16> -> tensor<1x16x64xf32>
  %5 = qlora.linear_grad_input %dy, %w : tensor<1x16x64xf32>, tensor<64x64xbf16> -> tensor<1x16x64xf32>
  // CHECK: qlora.linear_grad_input %[[DY]], %[[W]] lora(%[[A]], %[[B]]) {scaling = 2.000000e+00 : f64} : tensor<1x16x64xf32>, tensor<64x64xbf16>, tensor<8x64xf32>, tensor<64x8xf32> -> tensor<1x16x64xf32>
  %6 = qlora.linear_grad_input %dy, %w lora(%a, %b) {scaling = 2.0 : f64} : tensor<1x16x64xf32>, tensor<64x64xbf16>, tensor<8x64xf32>, tensor<64x8xf32> -> tensor<1x16x64xf32>
  // CHECK: %{{.*}}, %{{.*}} = qlora.lora_grad %[[DY]], %[[X]], %[[A]], %[[B]] {scaling = 2.000000e+00 : f64} : tensor<1x16x64xf32>, tensor<1x16x64xf32>, tensor<8x64xf32>, tensor<64x8xf32>
  %ga, %gb = qlora.lora_grad %dy, %x, %a, %b {scaling = 2.0 : f64} : tensor<1x16x64xf32>, tensor<1x16x64xf32>, tensor<8x64xf32>, tensor<64x8xf32>
  // LoRA dropout: the forward and both gradients name the same mask stream.
  // CHECK: qlora.linear %[[X]], %[[W]] lora(%[[A]], %[[B]]) {dropout = 1.000000e-01 : f64, dropout_stream = "q.lora_A.weight#0", scaling = 2.000000e+00 : f64} : tensor<1x16x64xf32>, tensor<64x64xbf16>, tensor<8x64xf32>, tensor<64x8xf32>
  %yd = qlora.linear %x, %w lora(%a, %b) {scaling = 2.0 : f64, dropout = 0.1 : f64, dropout_stream = "q.lora_A.weight#0"} : tensor<1x16x64xf32>, tensor<64x64xbf16>, tensor<8x64xf32>, tensor<64x8xf32>
  // CHECK: qlora.linear_grad_input %[[DY]], %[[W]] lora(%[[A]], %[[B]]) {dropout = 1.000000e-01 : f64, dropout_stream = "q.lora_A.weight#0", scaling = 2.000000e+00 : f64} : tensor<1x16x64xf32>, tensor<64x64xbf16>, tensor<8x64xf32>, tensor<64x8xf32> -> tensor<1x16x64xf32>
  %dxd = qlora.linear_grad_input %dy, %w lora(%a, %b) {scaling = 2.0 : f64, dropout = 0.1 : f64, dropout_stream = "q.lora_A.weight#0"} : tensor<1x16x64xf32>, tensor<64x64xbf16>, tensor<8x64xf32>, tensor<64x8xf32> -> tensor<1x16x64xf32>
  // CHECK: qlora.lora_grad %[[DY]], %[[X]], %[[A]], %[[B]] {dropout = 1.000000e-01 : f64, dropout_stream = "q.lora_A.weight#0", scaling = 2.000000e+00 : f64} : tensor<1x16x64xf32>, tensor<1x16x64xf32>, tensor<8x64xf32>, tensor<64x8xf32>
  %gad, %gbd = qlora.lora_grad %dy, %x, %a, %b {scaling = 2.0 : f64, dropout = 0.1 : f64, dropout_stream = "q.lora_A.weight#0"} : tensor<1x16x64xf32>, tensor<1x16x64xf32>, tensor<8x64xf32>, tensor<64x8xf32>
  return
}

// CHECK-LABEL: func @loss_normalizer
// CHECK-SAME: (%[[LOGITS:.*]]: tensor<2x8x256xf32>, %[[LABELS:.*]]: tensor<2x8xi32>, %[[ALL:.*]]: tensor<4x8xi32>, %[[SEED:.*]]: f32)
func.func @loss_normalizer(%logits: tensor<2x8x256xf32>, %labels: tensor<2x8xi32>, %all: tensor<4x8xi32>, %seed: f32) -> f32 {
  // CHECK: %[[N:.*]] = qlora.count_targets %[[ALL]] : tensor<4x8xi32>
  %n = qlora.count_targets %all : tensor<4x8xi32>
  // CHECK: qlora.count_targets %[[ALL]] {ignore_index = -1 : i64} : tensor<4x8xi32>
  %n1 = qlora.count_targets %all {ignore_index = -1 : i64} : tensor<4x8xi32>
  // CHECK: %[[L:.*]] = qlora.cross_entropy %[[LOGITS]], %[[LABELS]] normalizer %[[N]] : tensor<2x8x256xf32>, tensor<2x8xi32>
  %loss = qlora.cross_entropy %logits, %labels normalizer %n : tensor<2x8x256xf32>, tensor<2x8xi32>
  // CHECK: qlora.cross_entropy_grad %[[LOGITS]], %[[LABELS]], %[[SEED]] : tensor<2x8x256xf32>, tensor<2x8xi32>
  %d0 = qlora.cross_entropy_grad %logits, %labels, %seed : tensor<2x8x256xf32>, tensor<2x8xi32>
  // CHECK: qlora.cross_entropy_grad %[[LOGITS]], %[[LABELS]], %[[SEED]] normalizer %[[N]] {ignore_index = -1 : i64} : tensor<2x8x256xf32>, tensor<2x8xi32>
  %d1 = qlora.cross_entropy_grad %logits, %labels, %seed normalizer %n {ignore_index = -1 : i64} : tensor<2x8x256xf32>, tensor<2x8xi32>
  return %loss : f32
}

// CHECK-LABEL: func @optimizer
// CHECK-SAME: (%[[GA:.*]]: tensor<8x64xf32>, %[[GB:.*]]: tensor<64x8xf32>, %[[LR:.*]]: f32, %[[STEP:.*]]: i64, %[[WD:.*]]: f32, %[[MAX:.*]]: f32)
func.func @optimizer(%ga: tensor<8x64xf32>, %gb: tensor<64x8xf32>, %lr: f32, %step: i64, %wd: f32, %max: f32) -> f32 {
  // CHECK: %[[A:.*]] = qlora.lora_param "a"
  %a = qlora.lora_param "a" init <kaiming_uniform> seed 0 : tensor<8x64xf32>
  // CHECK: %[[B:.*]] = qlora.lora_param "b"
  %b = qlora.lora_param "b" init <zeros> seed 0 : tensor<64x8xf32>
  // CHECK: %[[NORM:.*]] = qlora.global_norm %[[GA]], %[[GB]] : tensor<8x64xf32>, tensor<64x8xf32>
  %norm = qlora.global_norm %ga, %gb : tensor<8x64xf32>, tensor<64x8xf32>
  // CHECK: %[[C:.*]] = qlora.clip_coefficient %[[NORM]], %[[MAX]]
  %c = qlora.clip_coefficient %norm, %max
  // Default hyper-parameters are not printed.
  // CHECK: qlora.adamw %[[A]], %[[GA]] scale %[[C]] lr %[[LR]] step %[[STEP]] weight_decay %[[WD]] : tensor<8x64xf32>
  qlora.adamw %a, %ga scale %c lr %lr step %step weight_decay %wd : tensor<8x64xf32>
  // CHECK: qlora.adamw %[[B]], %[[GB]] scale %[[C]] lr %[[LR]] step %[[STEP]] weight_decay %[[WD]] {beta1 = 8.000000e-01 : f64, beta2 = 0.98999999999999999 : f64, epsilon = 9.9999999999999995E-7 : f64} : tensor<64x8xf32>
  qlora.adamw %b, %gb scale %c lr %lr step %step weight_decay %wd {beta1 = 0.8 : f64, beta2 = 0.99 : f64, epsilon = 1.0e-6 : f64} : tensor<64x8xf32>
  return %norm : f32
}

}
