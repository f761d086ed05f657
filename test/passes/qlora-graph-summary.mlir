// RUN: qlora-opt %s --qlora-graph-summary -o %t.mlir | FileCheck %s
// The pass only reports: the IR is unchanged.
// RUN: qlora-opt %s -o %t.ref.mlir
// RUN: diff %t.mlir %t.ref.mlir
// A whole training step: the gradient sums (qlora.add) and the VJP of
// qlora.mul read backward values, so their work is backward work.
// RUN: qloracc-import --preset tiny --lora r=4,alpha=8,targets=all-linear --batch 2 --seq 8 -o %t.tiny.mlir
// RUN: qlora-opt %t.tiny.mlir --qlora-build-training-step --qlora-graph-summary -o /dev/null | FileCheck %s --check-prefix=STEP
// Forward, per layer: norms 2*4144, q/o 2*147456, k/v 2*77824, MLP
// 3*286720, rope 3264 + 1728, attention 35840, silu 8192, mul 2048, the
// residual adds 2*1024; then the final norm 4144, lm_head 524288 and the
// loss 14365: 3287053 FLOP.
// STEP: cost: 3.29 MFLOP forward, 3.65 MFLOP backward, 139.27 KFLOP optimizer, 2.03 MiB accessed

// CHECK: qlora graph summary: LlamaForCausalLM 'tiny', 1 layers, hidden 64, vocab 256
// CHECK-NEXT: LoRA r=8 alpha=16 scaling=2 on 1 module kind(s)
// 64x64 bf16 (8 KiB) + 64 f32 (256 B), one of them without bytes.
// CHECK-NEXT: frozen weights 2 tensors 4160 elements 8.25 KiB (1 shape-only)
// CHECK-NEXT:   of f32 1 tensors 64 elements 256 B
// CHECK-NEXT:   of bf16 1 tensors 4096 elements 8.00 KiB
// 8x64 + 64x8 f32 = 1024 elements.
// CHECK-NEXT: LoRA parameters (f32) 2 tensors 1024 elements 4.00 KiB
// CHECK-NEXT: LoRA gradients (f32) 2 tensors 1024 elements 4.00 KiB
// CHECK-NEXT: AdamW state (f32, m + v) 4 tensors 2048 elements 8.00 KiB
// Two [1, 16, 64] f32 values: the norm and the linear.
// CHECK-NEXT: forward values 2 tensors 2048 elements 8.00 KiB
// 8.25 + 4 * 4 + 8 KiB
// CHECK-NEXT: total before planning: 32.25 KiB
// rms_norm 4144 FLOP (2+2 per element, 3 per row) and 8448 B; the LoRA linear
// 2*16*64*64 + 2*16*8*(64+64) = 163840 FLOP and 20480 B; parameters cost 0.
// CHECK-NEXT: cost: 167.98 KFLOP forward, 0 FLOP backward, 0 FLOP optimizer, 28.25 KiB accessed
// CHECK-NEXT: ops: qlora.weight=2 qlora.lora_param=2 qlora.rms_norm=1 qlora.linear=1
module attributes {
  qlora.model = #qlora.model_config<architecture = "LlamaForCausalLM", name_or_path = "tiny", vocab_size = 256, hidden_size = 64, intermediate_size = 128, num_hidden_layers = 1, num_attention_heads = 4, num_key_value_heads = 2, head_dim = 16, rms_norm_eps = 1.0e-5, rope_theta = 10000.0, tie_word_embeddings = false>,
  qlora.lora = #qlora.lora_config<r = 8, alpha = 16.0, dropout = 0.0, use_rslora = false, targets = ["q_proj"], seed = 0>
} {
  func.func @block(%x: tensor<1x16x64xf32>) -> tensor<1x16x64xf32> {
    %g = qlora.weight "norm" value dense<1.0> : tensor<64xf32> : tensor<64xf32>
    %w = qlora.weight "q_proj" : tensor<64x64xbf16>
    %a = qlora.lora_param "a" init <kaiming_uniform> seed 0 : tensor<8x64xf32>
    %b = qlora.lora_param "b" init <zeros> seed 0 : tensor<64x8xf32>
    %n = qlora.rms_norm %x, %g {eps = 1.0e-5 : f64} : tensor<1x16x64xf32>, tensor<64xf32>
    %y = qlora.linear %n, %w lora(%a, %b) {scaling = 2.0 : f64} : tensor<1x16x64xf32>, tensor<64x64xbf16>, tensor<8x64xf32>, tensor<64x8xf32>
    return %y : tensor<1x16x64xf32>
  }
}
