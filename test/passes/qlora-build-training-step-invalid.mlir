// RUN: qlora-opt %s -split-input-file -verify-diagnostics --qlora-build-training-step

// Bad options are reported before anything else, at @loss.
// RUN: not qlora-opt %s -split-input-file --qlora-build-training-step="grad-accum=0" 2>&1 | FileCheck %s --check-prefix=ACCUM0
// RUN: not qlora-opt %s -split-input-file --qlora-build-training-step="beta1=1.0" 2>&1 | FileCheck %s --check-prefix=BETA1
// RUN: not qlora-opt %s -split-input-file --qlora-build-training-step="beta2=-0.5" 2>&1 | FileCheck %s --check-prefix=BETA2
// RUN: not qlora-opt %s -split-input-file --qlora-build-training-step="epsilon=0" 2>&1 | FileCheck %s --check-prefix=EPS
// RUN: not qlora-opt %s -split-input-file --qlora-build-training-step="weight-decay=-0.1" 2>&1 | FileCheck %s --check-prefix=WD
// RUN: not qlora-opt %s -split-input-file --qlora-build-training-step="max-grad-norm=-1" 2>&1 | FileCheck %s --check-prefix=CLIP
// ACCUM0: error: grad-accum must be at least 1, got 0
// BETA1: error: beta1 must be in [0, 1), got 1.000000e+00
// BETA2: error: beta2 must be in [0, 1), got -5.000000e-01
// EPS: error: epsilon must be positive, got 0.000000e+00
// WD: error: weight-decay must be non-negative, got -1.000000e-01
// CLIP: error: max-grad-norm must be non-negative (0 disables clipping), got -1.000000e+00

// Errors that only gradient accumulation has (the cases at the end).
// RUN: not qlora-opt %s -split-input-file --qlora-build-training-step="grad-accum=2" 2>&1 | FileCheck %s --check-prefix=ACCUM
// ACCUM: error: 'qlora.cross_entropy' op already has a normalizer; grad-accum > 1 sets its own
// ACCUM: error: 'qlora.cross_entropy' op must compare against @loss's labels argument when grad-accum > 1, to be normalised by the whole step's target count

// expected-error@+1 {{expected a func.func @loss to build @train_step from}}
module {
  func.func @forward(%x: f32) -> f32 {
    return %x : f32
  }
}

// -----

// expected-error@+1 {{'func.func' op @loss must return one f32 (the loss), got 'tensor<f32>'}}
func.func @loss(%tokens: tensor<1x4xi32>, %labels: tensor<1x4xi32>) -> tensor<f32> {
  %0 = arith.constant dense<0.0> : tensor<f32>
  return %0 : tensor<f32>
}

// -----

// expected-error@+1 {{'func.func' op @loss must return one f32 (the loss), got 'f32', 'f32'}}
func.func @loss(%tokens: tensor<1x4xi32>, %labels: tensor<1x4xi32>) -> (f32, f32) {
  %0 = arith.constant 0.0 : f32
  return %0, %0 : f32, f32
}

// -----

// expected-error@+1 {{'func.func' op @loss must take (tokens, labels) as two static integer tensors with the same number of rows, got 'tensor<1x4xi32>'}}
func.func @loss(%tokens: tensor<1x4xi32>) -> f32 {
  %0 = arith.constant 0.0 : f32
  return %0 : f32
}

// -----

// expected-error@+1 {{'func.func' op @loss must have a body of one block}}
func.func private @loss(tensor<1x4xi32>, tensor<1x4xi32>) -> f32

// -----

// expected-error@+1 {{'func.func' op has no qlora.lora_param: nothing to train}}
func.func @loss(%tokens: tensor<1x4xi32>, %labels: tensor<1x4xi32>) -> f32 {
  %table = qlora.weight "embed" : tensor<16x8xf32>
  %x = qlora.embedding %table, %tokens : tensor<16x8xf32>, tensor<1x4xi32>
  %wh = qlora.weight "lm_head" : tensor<16x8xf32>
  %logits = qlora.linear %x, %wh : tensor<1x4x8xf32>, tensor<16x8xf32>
  %loss = qlora.cross_entropy %logits, %labels : tensor<1x4x16xf32>, tensor<1x4xi32>
  return %loss : f32
}

// -----

// expected-error@+1 {{'func.func' op has no qlora.lora_param that reaches the loss: nothing to train}}
func.func @loss(%tokens: tensor<1x4xi32>, %labels: tensor<1x4xi32>) -> f32 {
  %table = qlora.weight "embed" : tensor<16x8xf32>
  %x = qlora.embedding %table, %tokens : tensor<16x8xf32>, tensor<1x4xi32>
  %w = qlora.weight "w" : tensor<8x8xf32>
  // expected-warning@+1 {{'w.lora_A' does not reach the loss: it gets no gradient and no update}}
  %a = qlora.lora_param "w.lora_A" init <kaiming_uniform> seed 0 : tensor<2x8xf32>
  // expected-warning@+1 {{'w.lora_B' does not reach the loss: it gets no gradient and no update}}
  %b = qlora.lora_param "w.lora_B" init <zeros> seed 0 : tensor<8x2xf32>
  %unused = qlora.linear %x, %w lora(%a, %b) : tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<2x8xf32>, tensor<8x2xf32>
  %wh = qlora.weight "lm_head" : tensor<16x8xf32>
  %logits = qlora.linear %x, %wh : tensor<1x4x8xf32>, tensor<16x8xf32>
  %loss = qlora.cross_entropy %logits, %labels : tensor<1x4x16xf32>, tensor<1x4xi32>
  return %loss : f32
}

// -----

// A LoRA matrix outside the loss's graph is only a warning: the others train.
func.func @loss(%tokens: tensor<1x4xi32>, %labels: tensor<1x4xi32>) -> f32 {
  %table = qlora.weight "embed" : tensor<16x8xf32>
  %x = qlora.embedding %table, %tokens : tensor<16x8xf32>, tensor<1x4xi32>
  %w = qlora.weight "w" : tensor<16x8xf32>
  %a = qlora.lora_param "w.lora_A" init <kaiming_uniform> seed 0 : tensor<2x8xf32>
  %b = qlora.lora_param "w.lora_B" init <zeros> seed 0 : tensor<16x2xf32>
  // expected-warning@+1 {{'dead.lora_A' does not reach the loss: it gets no gradient and no update}}
  %dead = qlora.lora_param "dead.lora_A" init <kaiming_uniform> seed 0 : tensor<2x8xf32>
  %logits = qlora.linear %x, %w lora(%a, %b) : tensor<1x4x8xf32>, tensor<16x8xf32>, tensor<2x8xf32>, tensor<16x2xf32>
  %loss = qlora.cross_entropy %logits, %labels : tensor<1x4x16xf32>, tensor<1x4xi32>
  return %loss : f32
}

// -----

func.func @loss(%tokens: tensor<1x4xi32>, %labels: tensor<1x4xi32>) -> f32 {
  %table = qlora.weight "embed" : tensor<16x8xf32>
  %x = qlora.embedding %table, %tokens : tensor<16x8xf32>, tensor<1x4xi32>
  %w = qlora.weight "w" : tensor<8x8xf32>
  %a = qlora.lora_param "w.lora_A" init <kaiming_uniform> seed 0 : tensor<2x8xf32>
  %b = qlora.lora_param "w.lora_B" init <zeros> seed 0 : tensor<8x2xf32>
  %y = qlora.linear %x, %w lora(%a, %b) : tensor<1x4x8xf32>, tensor<8x8xf32>, tensor<2x8xf32>, tensor<8x2xf32>
  // expected-error@+1 {{'tensor.extract_slice' is on a path from a LoRA parameter to the loss but has no gradient rule (DifferentiableOpInterface)}}
  %half = tensor.extract_slice %y[0, 0, 0] [1, 4, 4] [1, 1, 1] : tensor<1x4x8xf32> to tensor<1x4x4xf32>
  %wh = qlora.weight "lm_head" : tensor<16x4xf32>
  %logits = qlora.linear %half, %wh : tensor<1x4x4xf32>, tensor<16x4xf32>
  %loss = qlora.cross_entropy %logits, %labels : tensor<1x4x16xf32>, tensor<1x4xi32>
  return %loss : f32
}

// -----

// A LoRA matrix as an embedding table: embedding's rule gives its table no
// gradient (tables are frozen), but this one needs it.
func.func @loss(%tokens: tensor<1x4xi32>, %labels: tensor<1x4xi32>) -> f32 {
  %table = qlora.lora_param "embed.lora" init <kaiming_uniform> seed 0 : tensor<16x8xf32>
  // expected-error@+1 {{'qlora.embedding' op gradient rule returned no gradient for operand #0, which depends on a LoRA parameter and reaches the loss}}
  %x = qlora.embedding %table, %tokens : tensor<16x8xf32>, tensor<1x4xi32>
  %wh = qlora.weight "lm_head" : tensor<16x8xf32>
  %logits = qlora.linear %x, %wh : tensor<1x4x8xf32>, tensor<16x8xf32>
  %loss = qlora.cross_entropy %logits, %labels : tensor<1x4x16xf32>, tensor<1x4xi32>
  return %loss : f32
}

// -----

// expected-error@+1 {{'func.func' op cannot be replaced: the module already has a @train_step}}
func.func @loss(%tokens: tensor<1x4xi32>, %labels: tensor<1x4xi32>) -> f32 {
  %0 = arith.constant 0.0 : f32
  return %0 : f32
}
func.func @train_step() {
  return
}

// -----

// With grad-accum > 1 (see the ACCUM run): a normalizer of its own.
func.func @loss(%tokens: tensor<1x4xi32>, %labels: tensor<1x4xi32>) -> f32 {
  %table = qlora.weight "embed" : tensor<16x8xf32>
  %x = qlora.embedding %table, %tokens : tensor<16x8xf32>, tensor<1x4xi32>
  %w = qlora.weight "w" : tensor<16x8xf32>
  %a = qlora.lora_param "w.lora_A" init <kaiming_uniform> seed 0 : tensor<2x8xf32>
  %b = qlora.lora_param "w.lora_B" init <zeros> seed 0 : tensor<16x2xf32>
  %logits = qlora.linear %x, %w lora(%a, %b) : tensor<1x4x8xf32>, tensor<16x8xf32>, tensor<2x8xf32>, tensor<16x2xf32>
  %count = qlora.count_targets %labels : tensor<1x4xi32>
  %loss = qlora.cross_entropy %logits, %labels normalizer %count : tensor<1x4x16xf32>, tensor<1x4xi32>
  return %loss : f32
}

// -----

// With grad-accum > 1 (see the ACCUM run): labels that are not @loss's.
func.func @loss(%tokens: tensor<1x4xi32>, %labels: tensor<1x4xi32>) -> f32 {
  %table = qlora.weight "embed" : tensor<16x8xf32>
  %x = qlora.embedding %table, %tokens : tensor<16x8xf32>, tensor<1x4xi32>
  %w = qlora.weight "w" : tensor<16x8xf32>
  %a = qlora.lora_param "w.lora_A" init <kaiming_uniform> seed 0 : tensor<2x8xf32>
  %b = qlora.lora_param "w.lora_B" init <zeros> seed 0 : tensor<16x2xf32>
  %logits = qlora.linear %x, %w lora(%a, %b) : tensor<1x4x8xf32>, tensor<16x8xf32>, tensor<2x8xf32>, tensor<16x2xf32>
  %loss = qlora.cross_entropy %logits, %tokens : tensor<1x4x16xf32>, tensor<1x4xi32>
  return %loss : f32
}
