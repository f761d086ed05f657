// RUN: qlora-opt %s --qlora-lower-to-qrt=nf4-gemm=dequantize | FileCheck %s
// RUN: qlora-opt %s --qlora-lower-to-qrt="activation-type=bf16 nf4-gemm=dequantize" | FileCheck %s --check-prefix=BF16
// RUN: qlora-opt %s --qlora-lower-to-qrt | FileCheck %s --check-prefix=FUSED
// RUN: not qlora-opt %s --qlora-lower-to-qrt=nf4-gemm=tiles 2>&1 | FileCheck %s --check-prefix=BAD

// nf4-gemm=dequantize: each linear reading an NF4 weight gets a
// dequantize_nf4 launch right before it, into a workspace of its own in the
// activation type (rounded through the dequantize's bf16 first, as the fused
// kernel rounds), and reads that as a dense weight: w_dtype is the
// workspace's, with no [nf4] params. The NF4 buffer stays the only weight.

// CHECK: qrt.kernel @[[DQ:.*]] template "dequantize_nf4" params {n = 128 : i64, to = "F32", w_block_size = 64 : i64, w_dequant_dtype = "BF16", w_dq_block_size = 256 : i64}
// CHECK: qrt.kernel @[[FWD:.*]] template "linear_fwd" params {in = 8 : i64, out = 16 : i64, rank = 4 : i64, rows = 8 : i64, scaling = 2.000000e+00 : f64, w_dtype = "F32"}
// CHECK: qrt.kernel @[[GIN:.*]] template "linear_grad_input" params {accumulate = 0 : i64, in = 8 : i64, out = 16 : i64, rank = 4 : i64, rows = 8 : i64, scaling = 2.000000e+00 : f64, w_dtype = "F32"}
// CHECK-LABEL: func.func @nf4_linears()
// CHECK: %[[W:.*]] = qrt.buffer size 112 align 64 class <quantized_weight> {{.*}} name "q.weight"
// CHECK-DAG: %[[WS1:.*]] = qrt.buffer size 512 align 64 class <workspace> placement <device> type tensor<16x8xf32>
// CHECK-DAG: %[[WS2:.*]] = qrt.buffer size 512 align 64 class <workspace> placement <device> type tensor<16x8xf32>
// CHECK: qrt.launch @[[DQ]](%[[W]], %[[WS1]])
// CHECK-NEXT: qrt.launch @[[FWD]](%{{.*}}, %[[WS1]], %{{.*}})
// CHECK-NEXT: qrt.launch @[[DQ]](%[[W]], %[[WS2]])
// CHECK-NEXT: qrt.launch @[[GIN]](%{{.*}}, %[[WS2]], %{{.*}})
// CHECK-NEXT: return

// BF16: template "dequantize_nf4" params {n = 128 : i64, to = "BF16", w_block_size = 64 : i64, w_dequant_dtype = "BF16", w_dq_block_size = 256 : i64}
// BF16: template "linear_fwd" params {{{.*}}w_dtype = "BF16"}
// BF16: qrt.buffer size 256 align 64 class <workspace> placement <device> type tensor<16x8xbf16>

// FUSED-NOT: dequantize_nf4
// FUSED: template "linear_fwd" params {{{.*}}w_dtype = "NF4"}
// FUSED-NOT: dequantize_nf4

// BAD: for the --nf4-gemm option: Cannot find option named 'tiles'!

func.func @nf4_linears(%x: tensor<2x4x8xf32> {qlora.input = "x"},
                       %dy: tensor<2x4x16xf32> {qlora.input = "dy"},
                       %a: tensor<4x8xf32> {qlora.input = "a"},
                       %b: tensor<16x4xf32> {qlora.input = "b"}) {
  %q = nf4.constant codes(dense<119> : tensor<64x1xui8>)
         absmax(dense<[1, 2]> : tensor<2xui8>)
         nested_absmax(dense<0.5> : tensor<1xf32>) offset(1.0)
         name "q.weight" : !nf4.tensor<16x8, block = 64, dq = 256>
  %w = nf4.dequantize %q : !nf4.tensor<16x8, block = 64, dq = 256>
         -> tensor<16x8xbf16>
  %y = qlora.linear %x, %w lora(%a, %b) {scaling = 2.0}
         : tensor<2x4x8xf32>, tensor<16x8xbf16>, tensor<4x8xf32>, tensor<16x4xf32>
  %dx = qlora.linear_grad_input %dy, %w lora(%a, %b) {scaling = 2.0}
          : tensor<2x4x16xf32>, tensor<16x8xbf16>, tensor<4x8xf32>, tensor<16x4xf32>
          -> tensor<2x4x8xf32>
  return
}
