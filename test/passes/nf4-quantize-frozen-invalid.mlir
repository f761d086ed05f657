// RUN: sed "s|GOLDEN_DIR|%golden|g" %s | qlora-opt -split-input-file -verify-diagnostics --nf4-quantize-frozen

// Bad options are reported at the module before any weight is read.
// RUN: not qlora-opt %s -split-input-file --nf4-quantize-frozen="block-size=48" 2>&1 | FileCheck %s --check-prefix=BLOCK
// RUN: not qlora-opt %s -split-input-file --nf4-quantize-frozen="block-size=8192" 2>&1 | FileCheck %s --check-prefix=BLOCK-BIG
// RUN: not qlora-opt %s -split-input-file --nf4-quantize-frozen="dq-block-size=128" 2>&1 | FileCheck %s --check-prefix=NESTED
// BLOCK: error: nf4-quantize-frozen: block-size must be a power of two in [32, 4096] (bitsandbytes' block sizes), got 48
// BLOCK-BIG: error: nf4-quantize-frozen: block-size must be a power of two in [32, 4096] (bitsandbytes' block sizes), got 8192
// NESTED: error: nf4-quantize-frozen: dq-block-size must be 256 (bitsandbytes' nested blocksize), got 128
// Without double quantization the nested block size is not used.
// RUN: qlora-opt %S/nf4-quantize-frozen.mlir -split-input-file --nf4-quantize-frozen="double-quant=false dq-block-size=128" -o /dev/null 2>&1 | FileCheck %s --check-prefix=NO-DQ --allow-empty
// NO-DQ-NOT: dq-block-size

// A NaN or an infinity in a weight names the weight and the element.
func.func @nan(%x: tensor<2x64xf32>) {
  // expected-error@+1 {{'qlora.weight' op cannot quantize 'w': element 0 is not finite (nan)}}
  %w = qlora.weight "w" value dense<0x7FC00000> : tensor<8x64xf32> : tensor<8x64xf32>
  %y = qlora.linear %x, %w : tensor<2x64xf32>, tensor<8x64xf32>
  return
}

// -----

func.func @inf_bf16(%x: tensor<2x64xf32>) {
  // expected-error@+1 {{'qlora.weight' op cannot quantize 'w': element 0 is not finite (inf)}}
  %w = qlora.weight "w" value dense<0x7F80> : tensor<8x64xbf16> : tensor<8x64xbf16>
  %y = qlora.linear %x, %w : tensor<2x64xf32>, tensor<8x64xbf16>
  return
}

// -----

// The checkpoint a source names must exist and hold the weight's dtype and shape.
func.func @missing_file(%x: tensor<2x64xf32>) {
  // expected-error@+1 {{cannot read the bytes of weight 'w': /nonexistent/model.safetensors}}
  %w = qlora.weight "w" source <"/nonexistent/model.safetensors", "w"> : tensor<32x64xf32>
  %y = qlora.linear %x, %w : tensor<2x64xf32>, tensor<32x64xf32>
  return
}

// -----

func.func @wrong_dtype(%x: tensor<2x64xf32>) {
  // expected-error@+1 {{'k': tensor 'model.layers.0.self_attn.k_proj.weight' in 'GOLDEN_DIR/tiny-llama/model.safetensors' is F32 [32, 64], expected 'tensor<32x64xbf16>'}}
  %w = qlora.weight "k" source <"GOLDEN_DIR/tiny-llama/model.safetensors", "model.layers.0.self_attn.k_proj.weight"> : tensor<32x64xbf16>
  %y = qlora.linear %x, %w : tensor<2x64xf32>, tensor<32x64xbf16>
  return
}

// -----

func.func @wrong_shape(%x: tensor<2x32xf32>) {
  // expected-error@+1 {{is F32 [32, 64], expected 'tensor<64x32xf32>'}}
  %w = qlora.weight "k" source <"GOLDEN_DIR/tiny-llama/model.safetensors", "model.layers.0.self_attn.k_proj.weight"> : tensor<64x32xf32>
  %y = qlora.linear %x, %w : tensor<2x32xf32>, tensor<64x32xf32>
  return
}

// -----

func.func @missing_tensor(%x: tensor<2x64xf32>) {
  // expected-error@+1 {{'k': 'GOLDEN_DIR/tiny-llama/model.safetensors' has no tensor 'nope.weight'}}
  %w = qlora.weight "k" source <"GOLDEN_DIR/tiny-llama/model.safetensors", "nope.weight"> : tensor<32x64xf32>
  %y = qlora.linear %x, %w : tensor<2x64xf32>, tensor<32x64xf32>
  return
}

// -----

// A pre-quantized weight must be what the checkpoint stores.
func.func @prequantized_wrong_block(%x: tensor<2x64xf32>) {
  // expected-error@+1 {{'model.layers.0.self_attn.k_proj.weight' is '!nf4.tensor<32x64, block = 128, dq = 256>' but 'model.layers.0.self_attn.k_proj.weight' in 'GOLDEN_DIR/bnb4bit/model.safetensors' has shape [32, 64], blocksize 64 and nested blocksize 256}}
  %q = qlora.weight "model.layers.0.self_attn.k_proj.weight" source <"GOLDEN_DIR/bnb4bit/model.safetensors", "model.layers.0.self_attn.k_proj.weight"> : !nf4.tensor<32x64, block = 128, dq = 256>
  %w = nf4.dequantize %q : !nf4.tensor<32x64, block = 128, dq = 256> -> tensor<32x64xf32>
  %y = qlora.linear %x, %w : tensor<2x64xf32>, tensor<32x64xf32>
  return
}

// -----

func.func @prequantized_not_bnb(%x: tensor<2x64xf32>) {
  // expected-error@+1 {{'qlora.weight' op 'k':}}
  %q = qlora.weight "k" source <"GOLDEN_DIR/tiny-llama/model.safetensors", "model.layers.0.self_attn.k_proj.weight"> : !nf4.tensor<32x64, block = 64, dq = 256>
  %w = nf4.dequantize %q : !nf4.tensor<32x64, block = 64, dq = 256> -> tensor<32x64xf32>
  %y = qlora.linear %x, %w : tensor<2x64xf32>, tensor<32x64xf32>
  return
}
