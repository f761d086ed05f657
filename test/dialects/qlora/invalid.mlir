// RUN: qlora-opt %s -split-input-file -verify-diagnostics

func.func @weight_source_and_value() {
  // expected-error@+1 {{has both a source and an inline value for 'w'; expected at most one}}
  %0 = qlora.weight "w" source <"a.safetensors", "w"> value dense<1.0> : tensor<2xf32> : tensor<2xf32>
  return
}

// -----

func.func @weight_value_type_mismatch() {
  // expected-error@+1 {{inline value of 'w' has type 'tensor<3xf32>', expected 'tensor<2xf32>'}}
  %0 = qlora.weight "w" value dense<1.0> : tensor<3xf32> : tensor<2xf32>
  return
}

// -----

func.func @weight_empty_name() {
  // expected-error@+1 {{needs a non-empty parameter name}}
  %0 = qlora.weight "" : tensor<2xf32>
  return
}

// -----

func.func @weight_not_float() {
  // expected-error@+1 {{result #0 must be ranked tensor of floating-point values}}
  %0 = qlora.weight "w" : tensor<2xi8>
  return
}

// -----

func.func @lora_param_not_f32() {
  // expected-error@+1 {{'a' is a trainable master weight and must be f32, got 'bf16'}}
  %0 = qlora.lora_param "a" init <zeros> seed 0 : tensor<8x64xbf16>
  return
}

// -----

func.func @lora_param_not_matrix() {
  // expected-error@+1 {{'a' must be a static 2-D matrix, got 'tensor<8xf32>'}}
  %0 = qlora.lora_param "a" init <zeros> seed 0 : tensor<8xf32>
  return
}

// -----

func.func @embedding_table_rank(%table: tensor<256xf32>, %tokens: tensor<1x8xi32>) {
  // expected-error@+1 {{'qlora.embedding' table must be [vocab, hidden], got 'tensor<256xf32>'}}
  %0 = qlora.embedding %table, %tokens : tensor<256xf32>, tensor<1x8xi32>
  return
}

// -----

func.func @rms_norm_weight_size(%x: tensor<1x8x64xf32>, %w: tensor<32xf32>) {
  // expected-error@+1 {{'qlora.rms_norm' weight must be [64] to match the input's last dimension, got 'tensor<32xf32>'}}
  %0 = qlora.rms_norm %x, %w {eps = 1.0e-5 : f64} : tensor<1x8x64xf32>, tensor<32xf32>
  return
}

// -----

func.func @rms_norm_eps(%x: tensor<1x8x64xf32>, %w: tensor<64xf32>) {
  // expected-error@+1 {{eps must be positive, got 0}}
  %0 = qlora.rms_norm %x, %w {eps = 0.0 : f64} : tensor<1x8x64xf32>, tensor<64xf32>
  return
}

// -----

func.func @linear_in_features(%x: tensor<1x8x64xf32>, %w: tensor<128x32xbf16>) {
  // expected-error@+1 {{'qlora.linear' weight must be [128, 64] to match the input's 64 features, got 'tensor<128x32xbf16>'}}
  %0 = qlora.linear %x, %w : tensor<1x8x64xf32>, tensor<128x32xbf16>
  return
}

// -----

func.func @linear_weight_rank(%x: tensor<1x8x64xf32>, %w: tensor<64xbf16>) {
  // expected-error@+1 {{'qlora.linear' weight must be [out, in], got 'tensor<64xbf16>'}}
  %0 = qlora.linear %x, %w : tensor<1x8x64xf32>, tensor<64xbf16>
  return
}

// -----

func.func @linear_lora_a(%x: tensor<1x8x64xf32>, %w: tensor<128x64xbf16>, %a: tensor<8x32xf32>, %b: tensor<128x8xf32>) {
  // expected-error@+1 {{'qlora.linear' lora_a must be [r, 64], got 'tensor<8x32xf32>'}}
  %0 = qlora.linear %x, %w lora(%a, %b) : tensor<1x8x64xf32>, tensor<128x64xbf16>, tensor<8x32xf32>, tensor<128x8xf32>
  return
}

// -----

func.func @linear_lora_b(%x: tensor<1x8x64xf32>, %w: tensor<128x64xbf16>, %a: tensor<8x64xf32>, %b: tensor<128x4xf32>) {
  // expected-error@+1 {{'qlora.linear' lora_b must be [128, 8] to match the weight and lora_a, got 'tensor<128x4xf32>'}}
  %0 = qlora.linear %x, %w lora(%a, %b) : tensor<1x8x64xf32>, tensor<128x64xbf16>, tensor<8x64xf32>, tensor<128x4xf32>
  return
}

// -----

func.func @linear_scaling_without_lora(%x: tensor<1x8x64xf32>, %w: tensor<128x64xbf16>) {
  // expected-error@+1 {{scaling and dropout apply to the LoRA path; this linear has none}}
  %0 = qlora.linear %x, %w {scaling = 2.0 : f64} : tensor<1x8x64xf32>, tensor<128x64xbf16>
  return
}

// -----

func.func @linear_dropout_range(%x: tensor<1x8x64xf32>, %w: tensor<128x64xbf16>, %a: tensor<8x64xf32>, %b: tensor<128x8xf32>) {
  // expected-error@+1 {{dropout must be in [0, 1), got 1}}
  %0 = qlora.linear %x, %w lora(%a, %b) {dropout = 1.0 : f64} : tensor<1x8x64xf32>, tensor<128x64xbf16>, tensor<8x64xf32>, tensor<128x8xf32>
  return
}

// -----

func.func @rope_odd_head_dim(%x: tensor<1x8x4x15xf32>) {
  // expected-error@+1 {{'qlora.rope' input must be [batch, seq, heads, head_dim] with an even head_dim, got 'tensor<1x8x4x15xf32>'}}
  %0 = qlora.rope %x {theta = 10000.0 : f64} : tensor<1x8x4x15xf32>
  return
}

// -----

func.func @rope_theta(%x: tensor<1x8x4x16xf32>) {
  // expected-error@+1 {{theta must be positive, got -1}}
  %0 = qlora.rope %x {theta = -1.0 : f64} : tensor<1x8x4x16xf32>
  return
}

// -----

func.func @rope_scaling_bands(%x: tensor<1x8x4x16xf32>) {
  // expected-error@+1 {{expected 0 < low_freq_factor < high_freq_factor, got low_freq_factor = 4.000000e+00, high_freq_factor = 1.000000e+00}}
  %0 = qlora.rope %x {theta = 10000.0 : f64, scaling = #qlora.llama3_rope_scaling<factor = 8.0, low_freq_factor = 4.0, high_freq_factor = 1.0, original_max_position_embeddings = 8192>} : tensor<1x8x4x16xf32>
  return
}

// -----

func.func @attention_key_shape(%q: tensor<1x8x4x16xf32>, %k: tensor<1x4x2x16xf32>) {
  // expected-error@+1 {{'qlora.attention' key must be [1, 8, kv_heads, 16] to match the query, got 'tensor<1x4x2x16xf32>'}}
  %0 = qlora.attention %q, %k, %k : tensor<1x8x4x16xf32>, tensor<1x4x2x16xf32>, tensor<1x4x2x16xf32>
  return
}

// -----

func.func @attention_value_type(%q: tensor<1x8x4x16xf32>, %k: tensor<1x8x2x16xf32>, %v: tensor<1x8x1x16xf32>) {
  // expected-error@+1 {{'qlora.attention' value must have the key's type 'tensor<1x8x2x16xf32>', got 'tensor<1x8x1x16xf32>'}}
  %0 = qlora.attention %q, %k, %v : tensor<1x8x4x16xf32>, tensor<1x8x2x16xf32>, tensor<1x8x1x16xf32>
  return
}

// -----

func.func @attention_gqa_groups(%q: tensor<1x8x4x16xf32>, %k: tensor<1x8x3x16xf32>) {
  // expected-error@+1 {{'qlora.attention' query heads (4) must be a multiple of key/value heads (3)}}
  %0 = qlora.attention %q, %k, %k : tensor<1x8x4x16xf32>, tensor<1x8x3x16xf32>, tensor<1x8x3x16xf32>
  return
}

// -----

func.func @reshape_count(%x: tensor<2x8xf32>) {
  // expected-error@+1 {{'qlora.reshape' cannot reshape 'tensor<2x8xf32>' to 'tensor<3x5xf32>': element counts differ}}
  %0 = qlora.reshape %x to [3, 5] : tensor<2x8xf32>
  return
}

// -----

func.func @cross_entropy_labels(%logits: tensor<2x8x256xf32>, %labels: tensor<2x7xi32>) {
  // expected-error@+1 {{labels must be [2, 8] to match the logits, got 'tensor<2x7xi32>'}}
  %0 = qlora.cross_entropy %logits, %labels : tensor<2x8x256xf32>, tensor<2x7xi32>
  return
}

// -----

func.func @cross_entropy_logits_rank(%logits: tensor<16x256xf32>, %labels: tensor<16xi32>) {
  // expected-error@+1 {{logits must be [batch, seq, vocab], got 'tensor<16x256xf32>'}}
  %0 = qlora.cross_entropy %logits, %labels : tensor<16x256xf32>, tensor<16xi32>
  return
}

// -----

// expected-error@+1 {{'qlora.model' belongs on the module, not on 'func.func'}}
func.func @model_config_on_func() attributes {qlora.model = #qlora.model_config<architecture = "LlamaForCausalLM", name_or_path = "x", vocab_size = 256, hidden_size = 64, intermediate_size = 128, num_hidden_layers = 2, num_attention_heads = 4, num_key_value_heads = 2, head_dim = 16, rms_norm_eps = 1.0e-5, rope_theta = 10000.0, tie_word_embeddings = false>} {
  return
}

// -----

// expected-error@+1 {{'qlora.lora' must be a #qlora.lora_config, got 3 : i64}}
module attributes {qlora.lora = 3} {
}

// -----

// expected-error@+1 {{unknown qlora attribute 'qlora.other'; expected 'qlora.model', 'qlora.lora', 'qlora.grad_accum', 'qlora.optimizer' or 'qlora.recompute'}}
module attributes {qlora.other = 1} {
}

// -----

// expected-error@+1 {{num_attention_heads (4) must be a multiple of num_key_value_heads (3)}}
module attributes {qlora.model = #qlora.model_config<architecture = "LlamaForCausalLM", name_or_path = "x", vocab_size = 256, hidden_size = 64, intermediate_size = 128, num_hidden_layers = 2, num_attention_heads = 4, num_key_value_heads = 3, head_dim = 16, rms_norm_eps = 1.0e-5, rope_theta = 10000.0, tie_word_embeddings = false>} {
}

// -----

// expected-error@+1 {{LoRA rank r must be positive, got 0}}
module attributes {qlora.lora = #qlora.lora_config<r = 0, alpha = 16.0, dropout = 0.0, use_rslora = false, targets = ["q_proj"], seed = 0>} {
}

// -----

// expected-error@+1 {{lora_dropout must be in [0, 1), got 1.5}}
module attributes {qlora.lora = #qlora.lora_config<r = 8, alpha = 16.0, dropout = 1.5, use_rslora = false, targets = ["q_proj"], seed = 0>} {
}

// -----

// expected-error@+1 {{LoRA needs at least one target module}}
module attributes {qlora.lora = #qlora.lora_config<r = 8, alpha = 16.0, dropout = 0.0, use_rslora = false, targets = [], seed = 0>} {
}

// -----

func.func @linear_grad_input_result(%dy: tensor<1x8x128xf32>, %w: tensor<128x64xbf16>) {
  // expected-error@+1 {{result must be 'tensor<1x8x64xf32>' (grad_output's shape with the weight's 64 input features), got 'tensor<1x8x128xf32>'}}
  %0 = qlora.linear_grad_input %dy, %w : tensor<1x8x128xf32>, tensor<128x64xbf16> -> tensor<1x8x128xf32>
  return
}

// -----

func.func @linear_grad_input_features(%dy: tensor<1x8x64xf32>, %w: tensor<128x64xbf16>) {
  // expected-error@+1 {{grad_output must end in the weight's 128 output features, got 'tensor<1x8x64xf32>'}}
  %0 = qlora.linear_grad_input %dy, %w : tensor<1x8x64xf32>, tensor<128x64xbf16> -> tensor<1x8x64xf32>
  return
}

// -----

func.func @linear_grad_input_lora(%dy: tensor<1x8x128xf32>, %w: tensor<128x64xbf16>, %a: tensor<8x64xf32>, %b: tensor<128x4xf32>) {
  // expected-error@+1 {{lora_b must be [128, 8], got 'tensor<128x4xf32>'}}
  %0 = qlora.linear_grad_input %dy, %w lora(%a, %b) : tensor<1x8x128xf32>, tensor<128x64xbf16>, tensor<8x64xf32>, tensor<128x4xf32> -> tensor<1x8x64xf32>
  return
}

// -----

func.func @linear_grad_input_dropout_without_lora(%dy: tensor<1x8x128xf32>, %w: tensor<128x64xbf16>) {
  // expected-error@+1 {{dropout applies to the LoRA path; this op has none}}
  %0 = qlora.linear_grad_input %dy, %w {dropout = 0.1 : f64} : tensor<1x8x128xf32>, tensor<128x64xbf16> -> tensor<1x8x64xf32>
  return
}

// -----

func.func @lora_grad_empty_dropout_stream(%dy: tensor<1x8x128xf32>, %x: tensor<1x8x64xf32>, %a: tensor<8x64xf32>, %b: tensor<128x8xf32>) {
  // expected-error@+1 {{dropout_stream must not be empty}}
  %0:2 = qlora.lora_grad %dy, %x, %a, %b {dropout = 0.1 : f64, dropout_stream = ""} : tensor<1x8x128xf32>, tensor<1x8x64xf32>, tensor<8x64xf32>, tensor<128x8xf32>
  return
}

// -----

func.func @lora_grad_leading_dims(%dy: tensor<1x8x128xf32>, %x: tensor<2x8x64xf32>, %a: tensor<8x64xf32>, %b: tensor<128x8xf32>) {
  // expected-error@+1 {{input 'tensor<2x8x64xf32>' and grad_output 'tensor<1x8x128xf32>' must have the same leading dimensions}}
  %0:2 = qlora.lora_grad %dy, %x, %a, %b : tensor<1x8x128xf32>, tensor<2x8x64xf32>, tensor<8x64xf32>, tensor<128x8xf32>
  return
}

// -----

func.func @lora_grad_lora_a(%dy: tensor<1x8x128xf32>, %x: tensor<1x8x64xf32>, %a: tensor<8x32xf32>, %b: tensor<128x8xf32>) {
  // expected-error@+1 {{lora_a must be [r, 64], got 'tensor<8x32xf32>'}}
  %0:2 = qlora.lora_grad %dy, %x, %a, %b : tensor<1x8x128xf32>, tensor<1x8x64xf32>, tensor<8x32xf32>, tensor<128x8xf32>
  return
}

// -----

func.func @cross_entropy_grad_labels(%logits: tensor<2x8x256xf32>, %labels: tensor<2x7xi32>, %seed: f32) {
  // expected-error@+1 {{labels must be [2, 8] to match the logits, got 'tensor<2x7xi32>'}}
  %0 = qlora.cross_entropy_grad %logits, %labels, %seed : tensor<2x8x256xf32>, tensor<2x7xi32>
  return
}

// -----

func.func @cross_entropy_grad_logits_rank(%logits: tensor<16x256xf32>, %labels: tensor<16xi32>, %seed: f32) {
  // expected-error@+1 {{logits must be [batch, seq, vocab], got 'tensor<16x256xf32>'}}
  %0 = qlora.cross_entropy_grad %logits, %labels, %seed : tensor<16x256xf32>, tensor<16xi32>
  return
}

// -----

func.func @adamw_param_not_lora(%p: tensor<8x64xf32>, %g: tensor<8x64xf32>, %c: f32, %lr: f32, %step: i64, %wd: f32) {
  // expected-error@+1 {{param must be a qlora.lora_param (the value it updates in place), got a block argument}}
  qlora.adamw %p, %g scale %c lr %lr step %step weight_decay %wd : tensor<8x64xf32>
  return
}

// -----

func.func @adamw_beta(%g: tensor<8x64xf32>, %c: f32, %lr: f32, %step: i64, %wd: f32) {
  %p = qlora.lora_param "a" init <kaiming_uniform> seed 0 : tensor<8x64xf32>
  // expected-error@+1 {{betas must be in [0, 1), got (9.000000e-01, 1.000000e+00)}}
  qlora.adamw %p, %g scale %c lr %lr step %step weight_decay %wd {beta2 = 1.0 : f64} : tensor<8x64xf32>
  return
}

// -----

func.func @adamw_epsilon(%g: tensor<8x64xf32>, %c: f32, %lr: f32, %step: i64, %wd: f32) {
  %p = qlora.lora_param "a" init <kaiming_uniform> seed 0 : tensor<8x64xf32>
  // expected-error@+1 {{epsilon must be positive, got 0}}
  qlora.adamw %p, %g scale %c lr %lr step %step weight_decay %wd {epsilon = 0.0 : f64} : tensor<8x64xf32>
  return
}

// -----

func.func @adamw_param_frozen(%g: tensor<8x64xf32>, %c: f32, %lr: f32, %step: i64, %wd: f32) {
  %p = qlora.weight "w" : tensor<8x64xf32>
  // expected-error@+1 {{param must be a qlora.lora_param (the value it updates in place), got a result of 'qlora.weight'}}
  qlora.adamw %p, %g scale %c lr %lr step %step weight_decay %wd : tensor<8x64xf32>
  return
}
