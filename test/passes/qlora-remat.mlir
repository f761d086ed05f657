// The tiny preset's training step (2 decoder layers, LoRA on all linears) under each
// policy. Segments are the decoder layers; each layer's input (the residual stream)
// is kept, so recomputation starts there.
// RUN: qloracc-import --preset tiny --lora r=4,alpha=8,targets=all-linear --seq 8 -o %t.mlir
// RUN: qlora-opt %t.mlir --qlora-build-training-step --qlora-remat=policy=none | FileCheck %s --check-prefix=NONE
// RUN: qlora-opt %t.mlir --qlora-build-training-step --qlora-remat="policy=per-layer report=true" | FileCheck %s --check-prefix=LAYER
// RUN: qlora-opt %t.mlir --qlora-build-training-step --qlora-remat="policy=selective report=true" | FileCheck %s --check-prefix=SELECTIVE
// RUN: qlora-opt %t.mlir --qlora-build-training-step --qlora-remat | FileCheck %s --check-prefix=LAYER-DEFAULT

// NONE-NOT: qlora.recompute

// per-layer: the second layer is recomputed from its input (the first layer's output,
// kept) right before its backward pass first reads a recomputed value (the LoRA
// gradient of its down_proj reads the silu·up product), then the first layer from the
// embedding. 18 clones per layer: every op but the output add (kept: the next layer's
// input) and the down_proj (nothing in the backward reads it).
// LAYER: remat: policy per-layer: 2 of 2 layer segments recomputed fully, 0 selectively; recompute 0.001 GFLOP per step
// LAYER: qlora.cross_entropy_grad
// LAYER: qlora.rms_norm_grad
// LAYER: %[[N:.*]] = qlora.rms_norm {{.*}} {eps = 1.000000e-05 : f64, qlora.recompute}
// LAYER-NEXT: qlora.linear %[[N]], {{.*}}qlora.recompute
// LAYER: qlora.attention {{.*}} {qlora.recompute}
// LAYER: %[[SILU:.*]] = qlora.silu {{.*}} {qlora.recompute}
// LAYER-NEXT: %[[PRODUCT:.*]] = qlora.mul %[[SILU]], {{.*}} {qlora.recompute}
// LAYER-NEXT: qlora.lora_grad %{{.*}}, %[[PRODUCT]],
// LAYER: qlora.rms_norm {{.*}}qlora.recompute
// LAYER: qlora.global_norm

// LAYER-DEFAULT-COUNT-36: qlora.recompute
// LAYER-DEFAULT-NOT: qlora.recompute

// selective: only norms, SiLU, products, sums, RoPE and reshapes; the linears and the
// attention output stay saved.
// SELECTIVE: remat: policy selective: 0 of 2 layer segments recomputed fully, 2 selectively
// SELECTIVE-NOT: qlora.linear {{.*}}qlora.recompute
// SELECTIVE-NOT: qlora.attention {{.*}}qlora.recompute
// SELECTIVE: qlora.rms_norm {{.*}}qlora.recompute
