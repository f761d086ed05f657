// RUN: qlora-opt %s -split-input-file --nf4-quantize-frozen | FileCheck %s
// RUN: qlora-opt %s -split-input-file --nf4-quantize-frozen="block-size=128 double-quant=false" | FileCheck %s --check-prefix=PLAIN
// RUN: qlora-opt %s -split-input-file --nf4-quantize-frozen="quantize-lm-head=true" | FileCheck %s --check-prefix=WITH-HEAD
// RUN: qlora-opt %s -split-input-file --nf4-quantize-frozen="report=true" -o /dev/null | FileCheck %s --check-prefix=REPORT

// The linear weights (with and without LoRA, also read by the backward's
// linear_grad_input) become nf4.constant + nf4.dequantize to their own type;
// the embedding table and the LM head (its linear feeds the loss's logits,
// through a reshape) stay as they are. A 16x8 weight has 128 elements: two
// blocks of 64, one nested block. All 0.5 quantizes to code 15 (1.0 * 0.5)
// in both nibbles, absmax 0.5 = offset, so absmax - offset is a nested block
// of zeros: bitsandbytes' CPU kernel gives it nested absmax 0 and code 0.

// CHECK-LABEL: func.func @linears
// CHECK: %[[TABLE:.*]] = qlora.weight "embed.weight" value dense<2.500000e-01> : tensor<32x8xf32>
// CHECK: %[[QQ:.*]] = nf4.constant codes(dense_resource<q.weight.codes> : tensor<64x1xui8>) absmax(dense_resource<q.weight.absmax> : tensor<2xui8>) nested_absmax(dense_resource<q.weight.nested_absmax> : tensor<1xf32>) offset(5.000000e-01) name "q.weight" : !nf4.tensor<16x8, block = 64, dq = 256>
// CHECK: %[[Q:.*]] = nf4.dequantize %[[QQ]] : !nf4.tensor<16x8, block = 64, dq = 256> -> tensor<16x8xbf16>
// CHECK: %[[HEAD:.*]] = qlora.weight "lm_head.weight" value dense<5.000000e-01> : tensor<32x16xf32>
// CHECK: %[[KK:.*]] = nf4.constant {{.*}} name "k.weight" : !nf4.tensor<16x8, block = 64, dq = 256>
// CHECK: %[[K:.*]] = nf4.dequantize %[[KK]] : !nf4.tensor<16x8, block = 64, dq = 256> -> tensor<16x8xf32>
// CHECK: qlora.embedding %[[TABLE]]
// CHECK: qlora.linear %{{.*}}, %[[Q]] lora(
// CHECK: qlora.linear %{{.*}}, %[[K]] :
// CHECK: qlora.linear_grad_input %{{.*}}, %[[K]] :
// CHECK: qlora.linear %{{.*}}, %[[HEAD]] :
// CHECK: dialect_resources
// CHECK: q.weight.codes: "0x01000000FFFF
// CHECK: q.weight.absmax: "0x010000000000"
// CHECK: q.weight.nested_absmax: "0x0400000000000000"

// Without double quantization the absmax stays fp32 (0.5 = 0x3F000000).
// PLAIN-LABEL: func.func @linears
// PLAIN: nf4.constant codes(dense_resource<q.weight.codes> : tensor<64x1xui8>) absmax(dense_resource<q.weight.absmax> : tensor<1xf32>) name "q.weight" : !nf4.tensor<16x8, block = 128>
// PLAIN: q.weight.absmax: "0x040000000000003F"

// WITH-HEAD-LABEL: func.func @linears
// WITH-HEAD: qlora.weight "embed.weight"
// WITH-HEAD: name "q.weight"
// WITH-HEAD: nf4.constant {{.*}} name "lm_head.weight" : !nf4.tensor<32x16, block = 64, dq = 256>
// WITH-HEAD: name "k.weight"

// REPORT: nf4 quantization: block 64, double quantization (nested block 256)
// REPORT: tensor rmse max abs err bytes before bytes after bits/param
// 0.5 is exact in NF4; k's worst element is 3.0 in a block of absmax 4.0.
// After: 64 packed bytes, 2 absmax codes, 1 nested absmax, the offset.
// REPORT: q.weight 0.000e+00 0.000e+00 256 74 4.625
// REPORT: k.weight 8.871e-02 1.437e-01 512 74 4.625
// REPORT: total: 2 tensors, 256 parameters, 768 -> 148 bytes (5.19x smaller), 4.625 bits/param, max abs err 1.437e-01

func.func @linears(%tokens: tensor<2x4xi32>, %dy: tensor<2x4x16xf32>) -> f32 {
  %table = qlora.weight "embed.weight" value dense<0.25> : tensor<32x8xf32>
             : tensor<32x8xf32>
  %q = qlora.weight "q.weight" value dense<0.5> : tensor<16x8xbf16>
         : tensor<16x8xbf16>
  %a = qlora.lora_param "q.lora_A.weight" init <kaiming_uniform> seed 7
         : tensor<2x8xf32>
  %b = qlora.lora_param "q.lora_B.weight" init <zeros> seed 7
         : tensor<16x2xf32>
  %head = qlora.weight "lm_head.weight" value dense<0.5> : tensor<32x16xf32>
            : tensor<32x16xf32>
  %k = qlora.weight "k.weight" value dense<[[1.0, -2.0, 3.0, 0.0, 0.5, 0.25, -0.125, 4.0], [1.0, -2.0, 3.0, 0.0, 0.5, 0.25, -0.125, 4.0], [1.0, -2.0, 3.0, 0.0, 0.5, 0.25, -0.125, 4.0], [1.0, -2.0, 3.0, 0.0, 0.5, 0.25, -0.125, 4.0], [1.0, -2.0, 3.0, 0.0, 0.5, 0.25, -0.125, 4.0], [1.0, -2.0, 3.0, 0.0, 0.5, 0.25, -0.125, 4.0], [1.0, -2.0, 3.0, 0.0, 0.5, 0.25, -0.125, 4.0], [1.0, -2.0, 3.0, 0.0, 0.5, 0.25, -0.125, 4.0], [1.0, -2.0, 3.0, 0.0, 0.5, 0.25, -0.125, 4.0], [1.0, -2.0, 3.0, 0.0, 0.5, 0.25, -0.125, 4.0], [1.0, -2.0, 3.0, 0.0, 0.5, 0.25, -0.125, 4.0], [1.0, -2.0, 3.0, 0.0, 0.5, 0.25, -0.125, 4.0], [1.0, -2.0, 3.0, 0.0, 0.5, 0.25, -0.125, 4.0], [1.0, -2.0, 3.0, 0.0, 0.5, 0.25, -0.125, 4.0], [1.0, -2.0, 3.0, 0.0, 0.5, 0.25, -0.125, 4.0], [1.0, -2.0, 3.0, 0.0, 0.5, 0.25, -0.125, 4.0]]> : tensor<16x8xf32>
         : tensor<16x8xf32>
  %x = qlora.embedding %table, %tokens : tensor<32x8xf32>, tensor<2x4xi32>
  %y = qlora.linear %x, %q lora(%a, %b) {scaling = 2.0}
         : tensor<2x4x8xf32>, tensor<16x8xbf16>, tensor<2x8xf32>,
           tensor<16x2xf32>
  %z = qlora.linear %x, %k : tensor<2x4x8xf32>, tensor<16x8xf32>
  %dx = qlora.linear_grad_input %dy, %k : tensor<2x4x16xf32>, tensor<16x8xf32>
          -> tensor<2x4x8xf32>
  %sum = qlora.add %y, %z : tensor<2x4x16xf32>
  %logits = qlora.linear %sum, %head : tensor<2x4x16xf32>, tensor<32x16xf32>
  %flat = qlora.reshape %logits to [2, 4, 32] : tensor<2x4x32xf32>
  %loss = qlora.cross_entropy %flat, %tokens : tensor<2x4x32xf32>, tensor<2x4xi32>
  return %loss : f32
}

// -----

// A shape-only weight (--no-weights) becomes a shape-only NF4 weight, so
// that memory planning sees its NF4 size.
// CHECK-LABEL: func.func @shape_only
// CHECK: %[[W:.*]] = qlora.weight "w" : !nf4.tensor<64x256, block = 64, dq = 256>
// CHECK: %[[D:.*]] = nf4.dequantize %[[W]] : !nf4.tensor<64x256, block = 64, dq = 256> -> tensor<64x256xbf16>
// CHECK: qlora.linear %{{.*}}, %[[D]]
func.func @shape_only(%x: tensor<4x256xf32>) {
  %w = qlora.weight "w" : tensor<64x256xbf16>
  %y = qlora.linear %x, %w : tensor<4x256xf32>, tensor<64x256xbf16>
  return
}

// -----

// A weight with another use than a linear's weight (here an add) stays.
// CHECK-LABEL: func.func @other_use
// CHECK: qlora.weight "w" value
// CHECK-NOT: nf4.constant
func.func @other_use(%x: tensor<4x64xf32>) {
  %w = qlora.weight "w" value dense<1.0> : tensor<64x64xf32> : tensor<64x64xf32>
  %y = qlora.linear %x, %w : tensor<4x64xf32>, tensor<64x64xf32>
  %s = qlora.add %w, %w : tensor<64x64xf32>
  return
}
