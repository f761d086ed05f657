// RUN: qlora-opt %s -split-input-file -verify-diagnostics

func.func @quantize_shape_mismatch(%w: tensor<8x16xbf16>) {
  // expected-error@+1 {{'nf4.quantize' op input shape must equal the nf4 shape [16, 8], got [8, 16]}}
  %q = nf4.quantize %w : tensor<8x16xbf16> -> !nf4.tensor<16x8, block = 64, dq = 256>
  return
}

// -----

func.func @dequantize_shape_mismatch(%q: !nf4.tensor<8x16, block = 64, dq = 256>) {
  // expected-error@+1 {{'nf4.dequantize' op result shape must equal the nf4 shape [8, 16], got [8, 8]}}
  %d = nf4.dequantize %q : !nf4.tensor<8x16, block = 64, dq = 256> -> tensor<8x8xbf16>
  return
}

// -----

// expected-error@+1 {{nf4 block size must be a power of two in [32, 4096] (bitsandbytes' block sizes), got 48}}
func.func @block_size_not_bnb(%q: !nf4.tensor<8x16, block = 48, dq = 256>) {
  return
}

// -----

// expected-error@+1 {{nf4 dq block size must be 256 (bitsandbytes' nested blocksize) or 0 for no double quantization, got 128}}
func.func @dq_block_size_not_256(%q: !nf4.tensor<8x16, block = 64, dq = 128>) {
  return
}

// -----

// expected-error@+1 {{nf4 tensor dimension #1 must be a positive static size, got 0}}
func.func @zero_dimension(%q: !nf4.tensor<8x0, block = 64, dq = 256>) {
  return
}

// -----

func.func @codes_count() {
  // expected-error@+1 {{'nf4.constant' op 'codes' must have shape [64, 1] (ceil(128 / 2) packed bytes), got [63, 1]}}
  %c = nf4.constant codes(dense<119> : tensor<63x1xui8>) absmax(dense<[0, 255]> : tensor<2xui8>) nested_absmax(dense<0.5> : tensor<1xf32>) offset(1.0) : !nf4.tensor<8x16, block = 64, dq = 256>
  return
}

// -----

func.func @absmax_count() {
  // expected-error@+1 {{'nf4.constant' op 'absmax' must have shape [2] (one 8-bit code per block of 64), got [3]}}
  %c = nf4.constant codes(dense<119> : tensor<64x1xui8>) absmax(dense<[0, 255, 3]> : tensor<3xui8>) nested_absmax(dense<0.5> : tensor<1xf32>) offset(1.0) : !nf4.tensor<8x16, block = 64, dq = 256>
  return
}

// -----

func.func @missing_nested_absmax() {
  // expected-error@+1 {{'nf4.constant' op needs 'nested_absmax' because the result type '!nf4.tensor<8x16, block = 64, dq = 256>' is double quantized}}
  %c = nf4.constant codes(dense<119> : tensor<64x1xui8>) absmax(dense<[0, 255]> : tensor<2xui8>) offset(1.0) : !nf4.tensor<8x16, block = 64, dq = 256>
  return
}

// -----

func.func @missing_offset() {
  // expected-error@+1 {{'nf4.constant' op needs 'offset' (the mean of absmax) because the result type '!nf4.tensor<8x16, block = 64, dq = 256>' is double quantized}}
  %c = nf4.constant codes(dense<119> : tensor<64x1xui8>) absmax(dense<[0, 255]> : tensor<2xui8>) nested_absmax(dense<0.5> : tensor<1xf32>) : !nf4.tensor<8x16, block = 64, dq = 256>
  return
}

// -----

func.func @nested_absmax_without_dq() {
  // expected-error@+1 {{'nf4.constant' op 'nested_absmax' is only allowed with double quantization, but the result type '!nf4.tensor<8x16, block = 64>' has no dq}}
  %c = nf4.constant codes(dense<119> : tensor<64x1xui8>) absmax(dense<[1.0, 2.0]> : tensor<2xf32>) nested_absmax(dense<0.5> : tensor<1xf32>) : !nf4.tensor<8x16, block = 64>
  return
}

// -----

func.func @offset_without_dq() {
  // expected-error@+1 {{'nf4.constant' op 'offset' is only allowed with double quantization, but the result type '!nf4.tensor<8x16, block = 64>' has no dq}}
  %c = nf4.constant codes(dense<119> : tensor<64x1xui8>) absmax(dense<[1.0, 2.0]> : tensor<2xf32>) offset(1.0) : !nf4.tensor<8x16, block = 64>
  return
}

// -----

func.func @offset_not_finite() {
  // expected-error@+1 {{'nf4.constant' op 'offset' must be finite, got INF}}
  %c = nf4.constant codes(dense<119> : tensor<64x1xui8>) absmax(dense<[0, 255]> : tensor<2xui8>) nested_absmax(dense<0.5> : tensor<1xf32>) offset(0x7F800000) : !nf4.tensor<8x16, block = 64, dq = 256>
  return
}

// -----

func.func @absmax_codes_without_dq() {
  // expected-error@+1 {{'nf4.constant' op 'absmax' must hold f32 elements, got 'ui8'}}
  %c = nf4.constant codes(dense<119> : tensor<64x1xui8>) absmax(dense<[0, 255]> : tensor<2xui8>) : !nf4.tensor<8x16, block = 64>
  return
}

// -----

func.func @quantize_f64_input(%w: tensor<8x16xf64>) {
  // expected-error@+1 {{'nf4.quantize' op operand #0 must be ranked tensor of bfloat16 type or 16-bit float or 32-bit float values, but got 'tensor<8x16xf64>'}}
  %q = nf4.quantize %w : tensor<8x16xf64> -> !nf4.tensor<8x16, block = 64, dq = 256>
  return
}
