// RUN: qlora-opt %s -canonicalize -split-input-file | FileCheck %s

// Quantization is lossy: dequantize(quantize(x)) is not x and must survive
// canonicalization.
// CHECK-LABEL: func @no_fold_dequantize_of_quantize
// CHECK-SAME: (%[[W:.*]]: tensor<64x64xbf16>)
// CHECK: %[[Q:.*]] = nf4.quantize %[[W]]
// CHECK: %[[D:.*]] = nf4.dequantize %[[Q]]
// CHECK: return %[[D]]
func.func @no_fold_dequantize_of_quantize(%w: tensor<64x64xbf16>)
    -> tensor<64x64xbf16> {
  %q = nf4.quantize %w : tensor<64x64xbf16>
         -> !nf4.tensor<64x64, block = 64, dq = 256>
  %d = nf4.dequantize %q : !nf4.tensor<64x64, block = 64, dq = 256>
         -> tensor<64x64xbf16>
  return %d : tensor<64x64xbf16>
}

// -----

// nf4.constant is a constant to the folder: equal constants are uniqued,
// different ones are kept, unused ones are erased.
// CHECK-LABEL: func @constants_are_uniqued
// CHECK-DAG: %[[A:.*]] = nf4.constant codes(dense<1> : tensor<8x1xui8>)
// CHECK-DAG: %[[B:.*]] = nf4.constant codes(dense<2> : tensor<8x1xui8>)
// CHECK-NOT: nf4.constant
// CHECK: return %[[A]], %[[A]], %[[B]]
func.func @constants_are_uniqued()
    -> (!nf4.tensor<16, block = 32, dq = 256>,
        !nf4.tensor<16, block = 32, dq = 256>,
        !nf4.tensor<16, block = 32, dq = 256>) {
  %a = nf4.constant codes(dense<1> : tensor<8x1xui8>)
         absmax(dense<7> : tensor<1xui8>)
         nested_absmax(dense<2.0> : tensor<1xf32>) offset(0.5)
         : !nf4.tensor<16, block = 32, dq = 256>
  %unused = nf4.constant codes(dense<3> : tensor<8x1xui8>)
         absmax(dense<7> : tensor<1xui8>)
         nested_absmax(dense<2.0> : tensor<1xf32>) offset(0.5)
         : !nf4.tensor<16, block = 32, dq = 256>
  %b = nf4.constant codes(dense<2> : tensor<8x1xui8>)
         absmax(dense<7> : tensor<1xui8>)
         nested_absmax(dense<2.0> : tensor<1xf32>) offset(0.5)
         : !nf4.tensor<16, block = 32, dq = 256>
  %c = nf4.constant codes(dense<1> : tensor<8x1xui8>)
         absmax(dense<7> : tensor<1xui8>)
         nested_absmax(dense<2.0> : tensor<1xf32>) offset(0.5)
         : !nf4.tensor<16, block = 32, dq = 256>
  return %a, %c, %b : !nf4.tensor<16, block = 32, dq = 256>,
                      !nf4.tensor<16, block = 32, dq = 256>,
                      !nf4.tensor<16, block = 32, dq = 256>
}
