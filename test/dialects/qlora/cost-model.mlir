// RUN: qlora-opt %s -split-input-file --qlora-test-cost-model -verify-diagnostics -o /dev/null

// Every op of the tiny preset's whole training step has a cost: the pass
// fails on a qlora or nf4 op without one.
// RUN: qloracc-import --preset tiny --lora r=4,alpha=8,targets=all-linear --batch 2 --seq 8 -o %t.tiny.mlir
// RUN: qlora-opt %t.tiny.mlir --qlora-build-training-step --qlora-test-cost-model -o /dev/null 2>&1 | FileCheck %s --check-prefix=TINY
// TINY-NOT: error
// TINY: remark: flops=0 bytes=0 phase=forward
// TINY: remark: flops={{[0-9]+}} bytes={{[0-9]+}} phase=backward
// TINY: remark: flops={{[0-9]+}} bytes={{[0-9]+}} phase=optimizer
// TINY-NOT: error

// CostModelOpInterface on small shapes: FLOPs, bytes read + written and the
// step phase of one execution, as QloraCost.cpp counts them. T = 16 tokens
// (batch 2 x seq 8) throughout; f32 is 4 bytes, bf16 2, i32 4, i64 8.

// Parameters and views cost nothing; gathers and conversions only move bytes.
func.func @data_movement(%tokens: tensor<2x8xi32>) -> tensor<2x8x4x4xbf16> {
  // expected-remark@+1 {{flops=0 bytes=0 phase=forward}}
  %table = qlora.weight "embed" : tensor<32x16xf32>
  // expected-remark@+1 {{flops=0 bytes=0 phase=forward}}
  %a = qlora.lora_param "a" init <kaiming_uniform> seed 0 : tensor<4x16xf32>
  // Tokens 64 B, the 16 gathered rows 1024 B, the result 1024 B.
  // expected-remark@+1 {{flops=0 bytes=2112 phase=forward}}
  %e = qlora.embedding %table, %tokens : tensor<32x16xf32>, tensor<2x8xi32>
  // 1024 B of f32 in, 512 B of bf16 out.
  // expected-remark@+1 {{flops=0 bytes=1536 phase=forward}}
  %c = qlora.cast %e to bf16 : tensor<2x8x16xf32>
  // expected-remark@+1 {{flops=0 bytes=0 phase=forward}}
  %r = qlora.reshape %c to [2, 8, 4, 4] : tensor<2x8x16xbf16>
  return %r : tensor<2x8x4x4xbf16>
}

// -----

// 256 elements of f32 (1024 B).
func.func @elementwise(%x: tensor<2x8x16xf32>, %y: tensor<2x8x16xf32>) -> tensor<2x8x16xf32> {
  // expected-remark@+1 {{flops=256 bytes=3072 phase=forward}}
  %0 = qlora.add %x, %y : tensor<2x8x16xf32>
  // expected-remark@+1 {{flops=256 bytes=3072 phase=forward}}
  %1 = qlora.mul %0, %y : tensor<2x8x16xf32>
  // 4 per element.
  // expected-remark@+1 {{flops=1024 bytes=2048 phase=forward}}
  %2 = qlora.silu %1 : tensor<2x8x16xf32>
  // 8 per element.
  // expected-remark@+1 {{flops=2048 bytes=3072 phase=backward}}
  %3 = qlora.silu_grad %2, %x : tensor<2x8x16xf32>
  return %3 : tensor<2x8x16xf32>
}

// -----

// 256 elements in 16 rows of 16, weight 64 B.
func.func @rms_norm(%x: tensor<2x8x16xf32>, %dy: tensor<2x8x16xf32>, %g: tensor<16xf32>) -> tensor<2x8x16xf32> {
  // Statistics 2*256 + 3*16, normalise and scale 2*256.
  // expected-remark@+1 {{flops=1072 bytes=2112 phase=forward}}
  %0 = qlora.rms_norm %x, %g {eps = 1.0e-5 : f64} : tensor<2x8x16xf32>, tensor<16xf32>
  // Statistics 560, then 6*256 + 3*16.
  // expected-remark@+1 {{flops=2144 bytes=3136 phase=backward}}
  %1 = qlora.rms_norm_grad %dy, %0, %g {eps = 1.0e-5 : f64} : tensor<2x8x16xf32>, tensor<16xf32>
  return %1 : tensor<2x8x16xf32>
}

// -----

// in = 16, out = 32, r = 4: x 1024 B, W 1024 B (bf16), A 256 B, B 512 B,
// y 2048 B.
func.func @linear(%x: tensor<2x8x16xf32>, %dy: tensor<2x8x32xf32>) -> (tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<4x16xf32>, tensor<32x4xf32>) {
  %w = qlora.weight "w" : tensor<32x16xbf16> // expected-remark {{flops=0 bytes=0 phase=forward}}
  %a = qlora.lora_param "a" init <kaiming_uniform> seed 0 : tensor<4x16xf32> // expected-remark {{flops=0 bytes=0 phase=forward}}
  %b = qlora.lora_param "b" init <zeros> seed 0 : tensor<32x4xf32> // expected-remark {{flops=0 bytes=0 phase=forward}}
  // 2*16*16*32 = 16384.
  // expected-remark@+1 {{flops=16384 bytes=4096 phase=forward}}
  %0 = qlora.linear %x, %w : tensor<2x8x16xf32>, tensor<32x16xbf16>
  // Plus 2*16*4*(16+32) = 6144; dropout is not counted.
  // expected-remark@+1 {{flops=22528 bytes=4864 phase=forward}}
  %1 = qlora.linear %x, %w lora(%a, %b) {scaling = 2.0 : f64, dropout = 0.1 : f64, dropout_stream = "a#0"} : tensor<2x8x16xf32>, tensor<32x16xbf16>, tensor<4x16xf32>, tensor<32x4xf32>
  // The same products, transposed.
  // expected-remark@+1 {{flops=16384 bytes=4096 phase=backward}}
  %2 = qlora.linear_grad_input %dy, %w : tensor<2x8x32xf32>, tensor<32x16xbf16> -> tensor<2x8x16xf32>
  // expected-remark@+1 {{flops=22528 bytes=4864 phase=backward}}
  %3 = qlora.linear_grad_input %dy, %w lora(%a, %b) {scaling = 2.0 : f64} : tensor<2x8x32xf32>, tensor<32x16xbf16>, tensor<4x16xf32>, tensor<32x4xf32> -> tensor<2x8x16xf32>
  // Twice the LoRA path: 2*6144. dy 2048 B, x 1024 B, A, B and their
  // gradients 2*(256 + 512) B.
  // expected-remark@+1 {{flops=12288 bytes=4608 phase=backward}}
  %ga, %gb = qlora.lora_grad %dy, %x, %a, %b {scaling = 2.0 : f64} : tensor<2x8x32xf32>, tensor<2x8x16xf32>, tensor<4x16xf32>, tensor<32x4xf32>
  return %0, %1, %2, %3, %ga, %gb : tensor<2x8x32xf32>, tensor<2x8x32xf32>, tensor<2x8x16xf32>, tensor<2x8x16xf32>, tensor<4x16xf32>, tensor<32x4xf32>
}

// -----

// [2, 8, 4 heads, 4]: 256 elements, 3 each, plus the tables 8*2 entries x 3.
func.func @rope(%x: tensor<2x8x4x4xf32>) -> tensor<2x8x4x4xf32> {
  // expected-remark@+1 {{flops=816 bytes=2048 phase=forward}}
  %0 = qlora.rope %x {theta = 10000.0 : f64} : tensor<2x8x4x4xf32>
  // expected-remark@+1 {{flops=816 bytes=2048 phase=backward}}
  %1 = qlora.rope_grad %0 {theta = 10000.0 : f64} : tensor<2x8x4x4xf32>
  return %1 : tensor<2x8x4x4xf32>
}

// -----

// B = 2, S = 8, 4 query heads over 2 KV heads, D = 4. Within one 64-row
// block the causal kernel scores all 8*8 pairs: 2*4*64 pairs per op.
func.func @attention(%q: tensor<2x8x4x4xf32>, %kv: tensor<2x8x2x4xf32>) -> (tensor<2x8x4x4xf32>, tensor<2x8x4x4xf32>, tensor<2x8x4x4xf32>) {
  // (4*D + 6) per pair; q and o 1024 B each, k and v 512 B each.
  // expected-remark@+1 {{flops=11264 bytes=3072 phase=forward}}
  %o = qlora.attention %q, %kv, %kv : tensor<2x8x4x4xf32>, tensor<2x8x2x4xf32>, tensor<2x8x2x4xf32>
  // expected-remark@+1 {{flops=11264 bytes=3072 phase=forward}}
  %o2 = qlora.attention %q, %kv, %kv {causal = false} : tensor<2x8x4x4xf32>, tensor<2x8x2x4xf32>, tensor<2x8x2x4xf32>
  // (10*D + 11) per pair; reads do, q, k, v, o and writes dq, dk, dv.
  // expected-remark@+1 {{flops=26112 bytes=6144 phase=backward}}
  %dq, %dk, %dv = qlora.attention_grad %o, %q, %kv, %kv, %o : tensor<2x8x4x4xf32>, tensor<2x8x2x4xf32>, tensor<2x8x2x4xf32>
  return %o, %o2, %dq : tensor<2x8x4x4xf32>, tensor<2x8x4x4xf32>, tensor<2x8x4x4xf32>
}

// S = 128 is two row blocks of 64: causal scores 64*64 + 64*128 = 12288
// pairs, not 128*128 = 16384 (nor 128*129/2 = 8256). B = H = 1, D = 2.
func.func @attention_blocks(%q: tensor<1x128x1x2xf32>) -> (tensor<1x128x1x2xf32>, tensor<1x128x1x2xf32>) {
  // expected-remark@+1 {{flops=172032 bytes=4096 phase=forward}}
  %0 = qlora.attention %q, %q, %q : tensor<1x128x1x2xf32>, tensor<1x128x1x2xf32>, tensor<1x128x1x2xf32>
  // expected-remark@+1 {{flops=229376 bytes=4096 phase=forward}}
  %1 = qlora.attention %q, %q, %q {causal = false} : tensor<1x128x1x2xf32>, tensor<1x128x1x2xf32>, tensor<1x128x1x2xf32>
  return %0, %1 : tensor<1x128x1x2xf32>, tensor<1x128x1x2xf32>
}

// -----

// Logits [2, 8, 32] (2048 B): 2*7 = 14 shifted positions of 32 logits.
func.func @loss(%logits: tensor<2x8x32xf32>, %labels: tensor<2x8xi32>, %seed: f32) -> (f32, tensor<2x8x32xf32>) {
  // Integer work only: the labels 64 B, the count 4 B.
  // expected-remark@+1 {{flops=0 bytes=68 phase=forward}}
  %n = qlora.count_targets %labels : tensor<2x8xi32>
  // 14*(4*32 + 2) + 1.
  // expected-remark@+1 {{flops=1821 bytes=2116 phase=forward}}
  %loss = qlora.cross_entropy %logits, %labels : tensor<2x8x32xf32>, tensor<2x8xi32>
  // expected-remark@+1 {{flops=1821 bytes=2120 phase=forward}}
  %loss2 = qlora.cross_entropy %logits, %labels normalizer %n : tensor<2x8x32xf32>, tensor<2x8xi32>
  // 14*(6*32 + 1) + 1.
  // expected-remark@+1 {{flops=2703 bytes=4164 phase=backward}}
  %d = qlora.cross_entropy_grad %logits, %labels, %seed : tensor<2x8x32xf32>, tensor<2x8xi32>
  return %loss2, %d : f32, tensor<2x8x32xf32>
}

// -----

// Gradients of A [4, 16] (256 B) and B [32, 4] (512 B): 192 elements.
func.func @optimizer(%ga: tensor<4x16xf32>, %gb: tensor<32x4xf32>, %lr: f32, %step: i64, %wd: f32, %max: f32) {
  %a = qlora.lora_param "a" init <kaiming_uniform> seed 0 : tensor<4x16xf32> // expected-remark {{flops=0 bytes=0 phase=forward}}
  // 2*192 + 1.
  // expected-remark@+1 {{flops=385 bytes=772 phase=optimizer}}
  %norm = qlora.global_norm %ga, %gb : tensor<4x16xf32>, tensor<32x4xf32>
  // expected-remark@+1 {{flops=4 bytes=12 phase=optimizer}}
  %c = qlora.clip_coefficient %norm, %max
  // 15*64. Operands 2*256 + 4 + 4 + 8 + 4 B, then the parameter written
  // and both moments read and written: 5*256 B.
  // expected-remark@+1 {{flops=960 bytes=1812 phase=optimizer}}
  qlora.adamw %a, %ga scale %c lr %lr step %step weight_decay %wd : tensor<4x16xf32>
  return
}

// -----

// nf4 ops, through the models qlora attaches. 8x16 = 128 elements in 2
// blocks of 64; with dq 256, 64 code bytes + 2 absmax bytes + a 4-byte
// nested scale + a 4-byte offset = 74 B of storage; without dq the two
// absmax are f32: 72 B.
func.func @nf4(%w: tensor<64x64xbf16>) -> (tensor<8x16xbf16>, tensor<8x16xbf16>, !nf4.tensor<64x64, block = 64, dq = 256>) {
  // expected-remark@+1 {{flops=0 bytes=0 phase=forward}}
  %q = nf4.constant codes(dense<119> : tensor<64x1xui8>) absmax(dense<[0, 255]> : tensor<2xui8>) nested_absmax(dense<0.5> : tensor<1xf32>) offset(1.0) : !nf4.tensor<8x16, block = 64, dq = 256>
  // One multiply per element, the two block scales decoded (2 each); the
  // storage read and 256 B of bf16 written.
  // expected-remark@+1 {{flops=132 bytes=330 phase=forward}}
  %d = nf4.dequantize %q : !nf4.tensor<8x16, block = 64, dq = 256> -> tensor<8x16xbf16>
  // expected-remark@+1 {{flops=0 bytes=0 phase=forward}}
  %p = nf4.constant codes(dense<119> : tensor<64x1xui8>) absmax(dense<[0.5, 1.0]> : tensor<2xf32>) : !nf4.tensor<8x16, block = 64>
  // expected-remark@+1 {{flops=128 bytes=328 phase=forward}}
  %e = nf4.dequantize %p : !nf4.tensor<8x16, block = 64> -> tensor<8x16xbf16>
  // 4096 elements (8192 B of bf16) in 64 blocks: 7*4096 + 13*64 FLOPs;
  // 2048 + 64 + 4 + 4 B of storage written.
  // expected-remark@+1 {{flops=29504 bytes=10312 phase=forward}}
  %n = nf4.quantize %w : tensor<64x64xbf16> -> !nf4.tensor<64x64, block = 64, dq = 256>
  return %d, %e, %n : tensor<8x16xbf16>, tensor<8x16xbf16>, !nf4.tensor<64x64, block = 64, dq = 256>
}
