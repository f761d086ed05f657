// RUN: qlora-opt %s | qlora-opt | FileCheck %s
// RUN: qlora-opt %s --mlir-print-op-generic | qlora-opt | FileCheck %s

// The type: QLoRA's default, no double quantization (dq = 0 is the same as
// no dq and is printed without it), every block size bnb accepts, odd counts.

// CHECK-LABEL: func @types
// CHECK-SAME: !nf4.tensor<4096x4096, block = 64, dq = 256>
// CHECK-SAME: !nf4.tensor<11008x4096, block = 64>
// CHECK-SAME: !nf4.tensor<64x64, block = 128>
// CHECK-SAME: !nf4.tensor<7, block = 32>
// CHECK-SAME: !nf4.tensor<2x3x4096, block = 4096, dq = 256>
func.func @types(%a: !nf4.tensor<4096x4096, block = 64, dq = 256>,
                 %b: !nf4.tensor<11008x4096, block = 64>,
                 %c: !nf4.tensor<64x64, block = 128, dq = 0>,
                 %d: !nf4.tensor<7, block = 32>,
                 %e: !nf4.tensor<2x3x4096, block = 4096, dq = 256>) {
  return
}

// 8x16 = 128 elements: 64 code bytes, 2 blocks of 64, 1 nested block.
// CHECK-LABEL: func @constant_double_quantized
// CHECK: %[[Q:.*]] = nf4.constant codes(dense<119> : tensor<64x1xui8>)
// CHECK-SAME: absmax(dense<[0, 255]> : tensor<2xui8>)
// CHECK-SAME: nested_absmax(dense<5.000000e-01> : tensor<1xf32>)
// CHECK-SAME: offset(1.250000e+00)
// CHECK-SAME: : !nf4.tensor<8x16, block = 64, dq = 256>
// CHECK: return %[[Q]]
func.func @constant_double_quantized() -> !nf4.tensor<8x16, block = 64, dq = 256> {
  %q = nf4.constant codes(dense<119> : tensor<64x1xui8>)
                    absmax(dense<[0, 255]> : tensor<2xui8>)
                    nested_absmax(dense<0.5> : tensor<1xf32>)
                    offset(1.25)
                    : !nf4.tensor<8x16, block = 64, dq = 256>
  return %q : !nf4.tensor<8x16, block = 64, dq = 256>
}

// Without dq: fp32 absmax, no nested scales, no offset.
// CHECK-LABEL: func @constant_plain
// CHECK: %[[Q:.*]] = nf4.constant codes(dense<0> : tensor<64x1xui8>) absmax(dense<[1.000000e+00, 2.000000e+00]> : tensor<2xf32>) : !nf4.tensor<8x16, block = 64>{{$}}
// CHECK: return %[[Q]]
func.func @constant_plain() -> !nf4.tensor<8x16, block = 64> {
  %q = nf4.constant codes(dense<0> : tensor<64x1xui8>)
                    absmax(dense<[1.0, 2.0]> : tensor<2xf32>)
                    : !nf4.tensor<8x16, block = 64>
  return %q : !nf4.tensor<8x16, block = 64>
}

// 7 elements: ceil(7 / 2) = 4 code bytes (the last padded with a zero
// nibble), one partial block; signless i8 is accepted for the bytes.
// CHECK-LABEL: func @constant_odd_count
// CHECK: nf4.constant codes(dense<{{\[\[}}1], [35], [69], [96]]> : tensor<4x1xi8>)
// CHECK-SAME: absmax(dense<3.000000e+00> : tensor<1xf32>)
// CHECK-SAME: : !nf4.tensor<7, block = 32>
func.func @constant_odd_count() -> !nf4.tensor<7, block = 32> {
  %q = nf4.constant codes(dense<[[1], [35], [69], [96]]> : tensor<4x1xi8>)
                    absmax(dense<3.0> : tensor<1xf32>)
                    : !nf4.tensor<7, block = 32>
  return %q : !nf4.tensor<7, block = 32>
}

// Real weights carry their bytes as resources.
// CHECK-LABEL: func @constant_resource
// CHECK: nf4.constant codes(dense_resource<[[CODES:.*]]> : tensor<8x1xui8>)
// CHECK-SAME: absmax(dense_resource<[[ABSMAX:.*]]> : tensor<1xf32>)
// CHECK-SAME: : !nf4.tensor<4x4, block = 32>
func.func @constant_resource() -> !nf4.tensor<4x4, block = 32> {
  %q = nf4.constant codes(dense_resource<w_codes> : tensor<8x1xui8>)
                    absmax(dense_resource<w_absmax> : tensor<1xf32>)
                    : !nf4.tensor<4x4, block = 32>
  return %q : !nf4.tensor<4x4, block = 32>
}

// CHECK-LABEL: func @quantize_dequantize
// CHECK-SAME: (%[[W:.*]]: tensor<64x64xbf16>)
// CHECK: %[[Q:.*]] = nf4.quantize %[[W]] : tensor<64x64xbf16> -> !nf4.tensor<64x64, block = 64, dq = 256>
// CHECK: %[[D:.*]] = nf4.dequantize %[[Q]] : !nf4.tensor<64x64, block = 64, dq = 256> -> tensor<64x64xbf16>
// CHECK: return %[[D]]
func.func @quantize_dequantize(%w: tensor<64x64xbf16>) -> tensor<64x64xbf16> {
  %q = nf4.quantize %w : tensor<64x64xbf16>
         -> !nf4.tensor<64x64, block = 64, dq = 256>
  %d = nf4.dequantize %q : !nf4.tensor<64x64, block = 64, dq = 256>
         -> tensor<64x64xbf16>
  return %d : tensor<64x64xbf16>
}

// f16 and f32 on either side; the element types need not match.
// CHECK-LABEL: func @other_float_types
// CHECK-SAME: (%[[W:.*]]: tensor<3x5xf16>)
// CHECK: %[[Q:.*]] = nf4.quantize %[[W]] : tensor<3x5xf16> -> !nf4.tensor<3x5, block = 32>
// CHECK: %[[D:.*]] = nf4.dequantize %[[Q]] : !nf4.tensor<3x5, block = 32> -> tensor<3x5xf32>
// CHECK: return %[[D]]
func.func @other_float_types(%w: tensor<3x5xf16>) -> tensor<3x5xf32> {
  %q = nf4.quantize %w : tensor<3x5xf16> -> !nf4.tensor<3x5, block = 32>
  %d = nf4.dequantize %q : !nf4.tensor<3x5, block = 32> -> tensor<3x5xf32>
  return %d : tensor<3x5xf32>
}

{-#
  dialect_resources: {
    builtin: {
      w_codes: "0x010000000123456789abcdef",
      w_absmax: "0x040000000000803f"
    }
  }
#-}
