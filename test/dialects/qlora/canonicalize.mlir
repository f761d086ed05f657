// RUN: qlora-opt %s --canonicalize --split-input-file | FileCheck %s

// CHECK-LABEL: func @reshape_identity
// CHECK-SAME: (%[[X:.*]]: tensor<2x8xf32>)
// CHECK-NOT: qlora.reshape
// CHECK: return %[[X]]
func.func @reshape_identity(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  %0 = qlora.reshape %x to [2, 8] : tensor<2x8xf32>
  return %0 : tensor<2x8xf32>
}

// -----

// CHECK-LABEL: func @reshape_chain
// CHECK-SAME: (%[[X:.*]]: tensor<2x8xf32>)
// CHECK: %[[R:.*]] = qlora.reshape %[[X]] to [4, 2, 2] : tensor<2x8xf32>
// CHECK-NOT: qlora.reshape
// CHECK: return %[[R]]
func.func @reshape_chain(%x: tensor<2x8xf32>) -> tensor<4x2x2xf32> {
  %0 = qlora.reshape %x to [16] : tensor<2x8xf32>
  %1 = qlora.reshape %0 to [4, 2, 2] : tensor<16xf32>
  return %1 : tensor<4x2x2xf32>
}

// -----

// A reshape that goes back to the original shape disappears entirely.
// CHECK-LABEL: func @reshape_round_trip
// CHECK-SAME: (%[[X:.*]]: tensor<2x8xf32>)
// CHECK-NOT: qlora.reshape
// CHECK: return %[[X]]
func.func @reshape_round_trip(%x: tensor<2x8xf32>) -> tensor<2x8xf32> {
  %0 = qlora.reshape %x to [16] : tensor<2x8xf32>
  %1 = qlora.reshape %0 to [2, 8] : tensor<16xf32>
  return %1 : tensor<2x8xf32>
}

// -----

// CHECK-LABEL: func @cast_identity
// CHECK-SAME: (%[[X:.*]]: tensor<4xbf16>)
// CHECK-NOT: qlora.cast
// CHECK: return %[[X]]
func.func @cast_identity(%x: tensor<4xbf16>) -> tensor<4xbf16> {
  %0 = qlora.cast %x to bf16 : tensor<4xbf16>
  return %0 : tensor<4xbf16>
}

// -----

// A widening cast is kept: it changes the values' type.
// CHECK-LABEL: func @cast_kept
// CHECK: qlora.cast %{{.*}} to f32 : tensor<4xbf16>
func.func @cast_kept(%x: tensor<4xbf16>) -> tensor<4xf32> {
  %0 = qlora.cast %x to f32 : tensor<4xbf16>
  return %0 : tensor<4xf32>
}

// -----

// Unused pure parameters are dead code.
// CHECK-LABEL: func @dead_weight
// CHECK-NOT: qlora.weight
func.func @dead_weight() {
  %0 = qlora.weight "unused" : tensor<4xf32>
  return
}
