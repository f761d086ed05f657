// RUN: qlora-opt %s -split-input-file -verify-diagnostics

//===----------------------------------------------------------------------===//
// !nf4.tensor
//===----------------------------------------------------------------------===//

// expected-error@+1 {{nf4 tensor needs at least one dimension}}
func.func @type_rank_zero(%q: !nf4.tensor<, block = 64>) {
  return
}

// -----

// expected-error@+1 {{nf4 tensor dimension #1 must be a positive static size, got 0}}
func.func @type_zero_dim(%q: !nf4.tensor<4x0, block = 64>) {
  return
}

// -----

// expected-error@+1 {{expected static shape}}
func.func @type_dynamic_dim(%q: !nf4.tensor<?x64, block = 64>) {
  return
}

// -----

// expected-error@+1 {{nf4 tensor of shape [4294967296, 4294967296] has more than 2^63 elements}}
func.func @type_too_many_elements(%q: !nf4.tensor<4294967296x4294967296, block = 64>) {
  return
}

// -----

// expected-error@+1 {{nf4 block size must be a power of two in [32, 4096] (bitsandbytes' block sizes), got 48}}
func.func @type_block_not_power_of_two(%q: !nf4.tensor<64x64, block = 48>) {
  return
}

// -----

// expected-error@+1 {{nf4 block size must be a power of two in [32, 4096] (bitsandbytes' block sizes), got 16}}
func.func @type_block_too_small(%q: !nf4.tensor<64x64, block = 16>) {
  return
}

// -----

// expected-error@+1 {{nf4 block size must be a power of two in [32, 4096] (bitsandbytes' block sizes), got 8192}}
func.func @type_block_too_large(%q: !nf4.tensor<64x64, block = 8192>) {
  return
}

// -----

// expected-error@+1 {{nf4 dq block size must be 256 (bitsandbytes' nested blocksize) or 0 for no double quantization, got 128}}
func.func @type_bad_dq(%q: !nf4.tensor<64x64, block = 64, dq = 128>) {
  return
}

// -----

// expected-error@+1 {{expected 'dq'}}
func.func @type_unknown_key(%q: !nf4.tensor<64x64, block = 64, nested = 256>) {
  return
}

//===----------------------------------------------------------------------===//
// nf4.constant
//===----------------------------------------------------------------------===//

// -----

func.func @constant_codes_not_bytes() {
  // expected-error@+1 {{'codes' must hold ui8 elements, got 'f32'}}
  %q = nf4.constant codes(dense<0.0> : tensor<8x1xf32>)
         absmax(dense<1.0> : tensor<1xf32>) : !nf4.tensor<16, block = 32>
  return
}

// -----

func.func @constant_codes_signed() {
  // expected-error@+1 {{'codes' must hold ui8 elements, got 'si8'}}
  %q = nf4.constant codes(dense<0> : tensor<8x1xsi8>)
         absmax(dense<1.0> : tensor<1xf32>) : !nf4.tensor<16, block = 32>
  return
}

// -----

func.func @constant_codes_one_dimensional() {
  // expected-error@+1 {{'codes' must have shape [8, 1] (ceil(16 / 2) packed bytes), got [8]}}
  %q = nf4.constant codes(dense<0> : tensor<8xui8>)
         absmax(dense<1.0> : tensor<1xf32>) : !nf4.tensor<16, block = 32>
  return
}

// -----

func.func @constant_codes_unpacked() {
  // expected-error@+1 {{'codes' must have shape [4, 1] (ceil(7 / 2) packed bytes), got [7, 1]}}
  %q = nf4.constant codes(dense<0> : tensor<7x1xui8>)
         absmax(dense<1.0> : tensor<1xf32>) : !nf4.tensor<7, block = 32>
  return
}

// -----

func.func @constant_plain_absmax_not_f32() {
  // expected-error@+1 {{'absmax' must hold f32 elements, got 'ui8'}}
  %q = nf4.constant codes(dense<0> : tensor<64x1xui8>)
         absmax(dense<1> : tensor<2xui8>) : !nf4.tensor<8x16, block = 64>
  return
}

// -----

func.func @constant_absmax_count() {
  // expected-error@+1 {{'absmax' must have shape [2] (one scale per block of 64), got [4]}}
  %q = nf4.constant codes(dense<0> : tensor<64x1xui8>)
         absmax(dense<1.0> : tensor<4xf32>) : !nf4.tensor<8x16, block = 64>
  return
}

// -----

func.func @constant_dq_absmax_not_bytes() {
  // expected-error@+1 {{'absmax' must hold ui8 elements, got 'f32'}}
  %q = nf4.constant codes(dense<0> : tensor<64x1xui8>)
         absmax(dense<1.0> : tensor<2xf32>)
         nested_absmax(dense<1.0> : tensor<1xf32>) offset(0.5)
         : !nf4.tensor<8x16, block = 64, dq = 256>
  return
}

// -----

func.func @constant_dq_absmax_count() {
  // expected-error@+1 {{'absmax' must have shape [2] (one 8-bit code per block of 64), got [1]}}
  %q = nf4.constant codes(dense<0> : tensor<64x1xui8>)
         absmax(dense<1> : tensor<1xui8>)
         nested_absmax(dense<1.0> : tensor<1xf32>) offset(0.5)
         : !nf4.tensor<8x16, block = 64, dq = 256>
  return
}

// -----

func.func @constant_nested_without_dq() {
  // expected-error@+1 {{'nested_absmax' is only allowed with double quantization, but the result type '!nf4.tensor<8x16, block = 64>' has no dq}}
  %q = nf4.constant codes(dense<0> : tensor<64x1xui8>)
         absmax(dense<1.0> : tensor<2xf32>)
         nested_absmax(dense<1.0> : tensor<1xf32>)
         : !nf4.tensor<8x16, block = 64>
  return
}

// -----

func.func @constant_offset_without_dq() {
  // expected-error@+1 {{'offset' is only allowed with double quantization, but the result type '!nf4.tensor<8x16, block = 64>' has no dq}}
  %q = nf4.constant codes(dense<0> : tensor<64x1xui8>)
         absmax(dense<1.0> : tensor<2xf32>) offset(0.5)
         : !nf4.tensor<8x16, block = 64>
  return
}

// -----

func.func @constant_dq_missing_nested() {
  // expected-error@+1 {{needs 'nested_absmax' because the result type '!nf4.tensor<8x16, block = 64, dq = 256>' is double quantized}}
  %q = nf4.constant codes(dense<0> : tensor<64x1xui8>)
         absmax(dense<1> : tensor<2xui8>) offset(0.5)
         : !nf4.tensor<8x16, block = 64, dq = 256>
  return
}

// -----

func.func @constant_nested_not_f32() {
  // expected-error@+1 {{'nested_absmax' must hold f32 elements, got 'bf16'}}
  %q = nf4.constant codes(dense<0> : tensor<64x1xui8>)
         absmax(dense<1> : tensor<2xui8>)
         nested_absmax(dense<1.0> : tensor<1xbf16>) offset(0.5)
         : !nf4.tensor<8x16, block = 64, dq = 256>
  return
}

// -----

// 1024x1024 / 64 = 16384 blocks; ceil(16384 / 256) = 64 nested blocks.
func.func @constant_nested_count() {
  // expected-error@+1 {{'nested_absmax' must have shape [64] (ceil(16384 blocks / 256)), got [65]}}
  %q = nf4.constant codes(dense<0> : tensor<524288x1xui8>)
         absmax(dense<1> : tensor<16384xui8>)
         nested_absmax(dense<1.0> : tensor<65xf32>) offset(0.5)
         : !nf4.tensor<1024x1024, block = 64, dq = 256>
  return
}

// -----

func.func @constant_dq_missing_offset() {
  // expected-error@+1 {{needs 'offset' (the mean of absmax) because the result type '!nf4.tensor<8x16, block = 64, dq = 256>' is double quantized}}
  %q = nf4.constant codes(dense<0> : tensor<64x1xui8>)
         absmax(dense<1> : tensor<2xui8>)
         nested_absmax(dense<1.0> : tensor<1xf32>)
         : !nf4.tensor<8x16, block = 64, dq = 256>
  return
}

// -----

func.func @constant_offset_nan() {
  // expected-error@+1 {{'offset' must be finite, got nan}}
  %q = nf4.constant codes(dense<0> : tensor<64x1xui8>)
         absmax(dense<1> : tensor<2xui8>)
         nested_absmax(dense<1.0> : tensor<1xf32>) offset(0x7FC00000)
         : !nf4.tensor<8x16, block = 64, dq = 256>
  return
}

//===----------------------------------------------------------------------===//
// nf4.quantize / nf4.dequantize
//===----------------------------------------------------------------------===//

// -----

func.func @quantize_shape_mismatch(%w: tensor<64x32xbf16>) {
  // expected-error@+1 {{input shape must equal the nf4 shape [64, 64], got [64, 32]}}
  %q = nf4.quantize %w : tensor<64x32xbf16>
         -> !nf4.tensor<64x64, block = 64, dq = 256>
  return
}

// -----

func.func @quantize_dynamic_input(%w: tensor<?x64xbf16>) {
  // expected-error@+1 {{input must have a static shape, got 'tensor<?x64xbf16>'}}
  %q = nf4.quantize %w : tensor<?x64xbf16>
         -> !nf4.tensor<64x64, block = 64, dq = 256>
  return
}

// -----

func.func @quantize_integer_input(%w: tensor<64x64xi8>) {
  // expected-error@+1 {{operand #0 must be ranked tensor of bfloat16 type or 16-bit float or 32-bit float values}}
  %q = nf4.quantize %w : tensor<64x64xi8>
         -> !nf4.tensor<64x64, block = 64, dq = 256>
  return
}

// -----

func.func @dequantize_shape_mismatch(%q: !nf4.tensor<64x64, block = 64>) {
  // expected-error@+1 {{result shape must equal the nf4 shape [64, 64], got [4096]}}
  %w = nf4.dequantize %q : !nf4.tensor<64x64, block = 64> -> tensor<4096xf32>
  return
}

// -----

func.func @dequantize_dynamic_result(%q: !nf4.tensor<64x64, block = 64>) {
  // expected-error@+1 {{result must have a static shape, got 'tensor<64x?xf32>'}}
  %w = nf4.dequantize %q : !nf4.tensor<64x64, block = 64> -> tensor<64x?xf32>
  return
}
