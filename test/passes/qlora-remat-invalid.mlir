// RUN: qlora-opt %s -verify-diagnostics --qlora-remat="policy=budget budget=64"

// A budget below what recomputing every layer can reach is an error at the module,
// with both sizes. (This step has no decoder layer to recompute.)
// expected-error@below {{qlora-remat: the budget of 64 B is below the smallest planned peak, 1.25 KiB (every layer recomputed); raise the budget or lower the batch or sequence length}}
module {
  func.func @train_step(%x: tensor<2x4x8xf32> {qlora.input = "x"}) {
    %w = qlora.weight "q.weight" value dense<0.5> : tensor<16x8xf32> : tensor<16x8xf32>
    %y = qlora.linear %x, %w : tensor<2x4x8xf32>, tensor<16x8xf32>
    return
  }
}

// Bad options, reported at the module before anything changes.
// RUN: qloracc-import --preset tiny --lora r=4,alpha=8,targets=all-linear --seq 8 -o %t.mlir
// RUN: not qlora-opt %t.mlir --qlora-build-training-step --qlora-remat=policy=sometimes 2>&1 | FileCheck %s --check-prefix=POLICY
// RUN: not qlora-opt %t.mlir --qlora-build-training-step --qlora-remat=policy=budget 2>&1 | FileCheck %s --check-prefix=NO-BUDGET
// RUN: not qlora-opt %t.mlir --qlora-build-training-step --qlora-remat="policy=per-layer budget=1000" 2>&1 | FileCheck %s --check-prefix=UNUSED
// POLICY: error: qlora-remat: policy must be none, per-layer, selective or budget, got 'sometimes'
// NO-BUDGET: error: qlora-remat: policy=budget needs a positive budget (bytes), got 0
// UNUSED: error: qlora-remat: a budget is only used by policy=budget, not 'per-layer'

// A budget below what recomputing every layer can reach says so, with both sizes.
// RUN: not qlora-opt %t.mlir --qlora-build-training-step --qlora-remat="policy=budget budget=1000" 2>&1 | FileCheck %s --check-prefix=SMALL
// SMALL: error: qlora-remat: the budget of 1000 B is below the smallest planned peak, {{[0-9.]+}} KiB (every layer recomputed); raise the budget or lower the batch or sequence length

// A budget the step fits without recomputation keeps everything; one in between
// recomputes the fewest FLOPs that fit, checked with the planner.
// RUN: qlora-opt %t.mlir --qlora-build-training-step --qlora-remat="policy=budget budget=100000000 report=true" -o /dev/null | FileCheck %s --check-prefix=ROOMY
// ROOMY: remat: policy budget: 0 of 2 layer segments recomputed fully, 0 selectively; recompute 0.000 GFLOP per step
// RUN: qlora-opt %t.mlir --qlora-build-training-step --qlora-remat="policy=budget budget=590000 report=true" -o /dev/null | FileCheck %s --check-prefix=TIGHT
// TIGHT: remat: budget {{.*}}: planned peak {{.*}} keeping everything
// TIGHT: remat: budget {{.*}}: chose {{[0-2]}} full, {{[0-2]}} selective: planned peak
// TIGHT: remat: policy budget:
