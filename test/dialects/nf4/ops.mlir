// RUN: qlora-opt %s | qlora-opt | FileCheck %s
// RUN: qlora-opt %s --mlir-print-op-generic | qlora-opt | FileCheck %s

// CHECK-LABEL: func @quantize_dequantize
// CHECK-SAME: (%[[W:.*]]: tensor<8x16xbf16>)
func.func @quantize_dequantize(%w: tensor<8x16xbf16>) -> tensor<8x16xbf16> {
  // CHECK: %[[Q:.*]] = nf4.quantize %[[W]] : tensor<8x16xbf16> -> !nf4.tensor<8x16, block = 64, dq = 256>
  %q = nf4.quantize %w : tensor<8x16xbf16> -> !nf4.tensor<8x16, block = 64, dq = 256>
  // Quantization is lossy: dequantize(quantize(x)) is never folded.
  // CHECK: %[[D:.*]] = nf4.dequantize %[[Q]] : <8x16, block = 64, dq = 256> -> tensor<8x16xbf16>
  %d = nf4.dequantize %q : !nf4.tensor<8x16, block = 64, dq = 256> -> tensor<8x16xbf16>
  // CHECK: return %[[D]]
  return %d : tensor<8x16xbf16>
}

// CHECK-LABEL: func @double_quantized_constant
func.func @double_quantized_constant() -> tensor<8x16xf32> {
  // 128 elements: 64 code bytes, 2 absmax codes, 1 nested block.
  // CHECK: %[[C:.*]] = nf4.constant codes(dense<119> : tensor<64x1xui8>) absmax(dense<[0, 255]> : tensor<2xui8>) nested_absmax(dense<5.000000e-01> : tensor<1xf32>) offset(1.000000e+00) : !nf4.tensor<8x16, block = 64, dq = 256>
  %c = nf4.constant codes(dense<119> : tensor<64x1xui8>) absmax(dense<[0, 255]> : tensor<2xui8>) nested_absmax(dense<0.5> : tensor<1xf32>) offset(1.0) : !nf4.tensor<8x16, block = 64, dq = 256>
  // CHECK: nf4.dequantize %[[C]] : <8x16, block = 64, dq = 256> -> tensor<8x16xf32>
  %e = nf4.dequantize %c : !nf4.tensor<8x16, block = 64, dq = 256> -> tensor<8x16xf32>
  return %e : tensor<8x16xf32>
}

// CHECK-LABEL: func @plain_constant_odd_size
func.func @plain_constant_odd_size() -> tensor<99xf16> {
  // 99 elements: 50 code bytes (one padding nibble), 4 blocks of 32 with fp32
  // absmax; dq = 0 is printed as no dq at all.
  // CHECK: nf4.constant codes(dense<0> : tensor<50x1xui8>) absmax(dense<[1.000000e+00, 2.000000e+00, 3.000000e+00, 4.000000e+00]> : tensor<4xf32>) : !nf4.tensor<99, block = 32>
  %p = nf4.constant codes(dense<0> : tensor<50x1xui8>) absmax(dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32>) : !nf4.tensor<99, block = 32, dq = 0>
  %d = nf4.dequantize %p : !nf4.tensor<99, block = 32> -> tensor<99xf16>
  return %d : tensor<99xf16>
}

// CHECK-LABEL: func @large_shape
// CHECK-SAME: !nf4.tensor<4096x11008, block = 64, dq = 256>
func.func @large_shape(%q: !nf4.tensor<4096x11008, block = 64, dq = 256>) -> tensor<4096x11008xbf16> {
  %d = nf4.dequantize %q : !nf4.tensor<4096x11008, block = 64, dq = 256> -> tensor<4096x11008xbf16>
  return %d : tensor<4096x11008xbf16>
}
