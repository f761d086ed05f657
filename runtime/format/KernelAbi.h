//===- KernelAbi.h - The kernels the step program launches ---*- C++ -*-===//
//
// The contract between `--qlora-lower-to-qrt` (which emits `qrt.kernel`
// instantiations and `qrt.launch`es) and every runtime backend (which runs
// them): for each kernel template, its name, its buffer arguments in order
// and its static parameters. Both sides use these names; nothing else is
// shared. CPU: fp32 everywhere; frozen weights may be stored as f32, bf16 or
// f16 (`w_dtype`) and are widened to fp32 on load inside the kernel.
//
// Conventions
//   - T = rows = batch * seq (tokens); tensors are row-major, contiguous.
//   - Activations and gradients are f32; token ids and labels are i32.
//   - A "scalar" buffer holds one f32 (or one i64 where noted).
//   - `accumulate` = 1 means the kernel adds into its output (+=) instead of
//     overwriting it (used to sum gradients without extra buffers); the
//     lowering emits 0 today.
//   - An argument buffer may be larger than its tensor, never smaller.
//   - Arguments marked [lora] are present only when rank > 0.
//   - Dtype parameters (w_dtype, w_dequant_dtype, from, to) are strings in
//     safetensors' spelling: "F32", "BF16", "F16" (format::parseDType reads
//     them), plus "NF4" for w_dtype ([nf4]).
//   - Integer flags (inverse, causal, accumulate, has_normalizer) are 0 or 1.
//   - [dropout] LoRA dropout of linear_fwd, linear_grad_input and lora_grad:
//     the optional params `dropout` (f64 p in [0, 1); absent means 0),
//     and when p > 0 `dropout_stream` (string, unique per LoRA module and
//     micro-batch, "<lora_A name>#<micro-batch>") and `dropout_seed` (i64,
//     lora_A's seed), plus one extra argument appended after all the others:
//     `step` scalar i64 (the 1-based optimizer step). The mask of input
//     element (t, i) of x[T,in] keeps it when
//       CounterRng(dropout_seed, dropout_stream).uniform(step·T·in + t·in + i)
//         >= p
//     and then scales it by 1/(1 − p) (inverted dropout; format/CounterRng.h).
//     All three kernels of one linear recompute the same mask; none stores
//     it. dropout(x) applies on the LoRA path only.
//   - [nf4] A frozen weight `w` of linear_fwd or linear_grad_input whose
//     `w_dtype` is "NF4" holds an NF4 tensor of out·in elements in the
//     layout of format/Nf4Layout.h (the buffer holds at least its
//     totalBytes), with the params `w_block_size` (i64), `w_dq_block_size`
//     (i64; 0 = f32 absmax, no double quantization) and `w_dequant_dtype`
//     ("F32", "BF16" or "F16"). Element e of W is
//       float(kNf4Code[code(e)] * absmax(e / w_block_size))
//     rounded to w_dequant_dtype (round to nearest even) and widened back to
//     f32, where with double quantization absmax(b) =
//       (dynamicMap[absmax_code(b)] * nested_absmax(b / w_dq_block_size))
//       + offset, each operation rounded to f32 (format/Nf4.h
//     recoverAbsmax): exactly the values nf4.dequantize defines.
//
// clang-format off
// Kernel              arguments (in order)                      params
// ------------------  ----------------------------------------  -------------
// embedding_fwd       table[V,H] w, tokens[T] i32, out[T,H]      rows vocab hidden w_dtype
// cast                in[n], out[n]                              n from to (dtype names)
// rms_norm_fwd        x[T,H], w[H] w, y[T,H]                     rows hidden eps w_dtype
// rms_norm_bwd        dy[T,H], x[T,H], w[H] w, dx[T,H]           rows hidden eps w_dtype accumulate
// linear_fwd          x[T,in], w[out,in] w, [lora] a[r,in],      rows in out rank scaling w_dtype
//                     [lora] b[out,r], [lora] t_ws[T,r], y[T,out], [dropout] dropout dropout_stream
//                     [dropout] step                             dropout_seed
//                     y = x·Wᵀ + s·(xd·Aᵀ)·Bᵀ ; t_ws = xd·Aᵀ (workspace),
//                     xd = dropout(x) (x when p = 0)
// linear_grad_input   dy[T,out], w[out,in] w, [lora] a, [lora] b, rows in out rank scaling w_dtype accumulate
//                     [lora] dt_ws[T,r], dx[T,in],               [dropout] dropout dropout_stream
//                     [dropout] step                             dropout_seed
//                     dx = dy·W + mask ⊙ (s·(dy·B)·A) ; dt_ws = dy·B (workspace),
//                     mask = keep/(1 − p) (1 when p = 0)
// lora_grad           dy[T,out], x[T,in], a[r,in], b[out,r],     rows in out rank scaling accumulate
//                     t_ws[T,r], dt_ws[T,r], da[r,in], db[out,r], [dropout] dropout dropout_stream
//                     [dropout] step                             dropout_seed
//                     da = s·(dy·B)ᵀ·xd ; db = s·dyᵀ·(xd·Aᵀ), reading xd·Aᵀ from the
//                     t_ws its linear_fwd wrote and dy·B from the dt_ws its
//                     linear_grad_input wrote (the lowering keeps both live;
//                     a rank-0 linear_grad_input with B as weight fills dt_ws
//                     where no input gradient is needed; with dropout, t_ws
//                     always comes from the linear_fwd); a and b are only
//                     size-checked.
// rope                x[B,S,N,D], y[B,S,N,D]                     batch seq heads head_dim theta inverse
//                                                                rope_type ("default"|"llama3") and, for
//                                                                llama3: factor low_freq_factor
//                                                                high_freq_factor original_max_position
//                     inverse = 1 applies the transposed rotation (the VJP).
// attention_fwd       q[B,S,Hq,D], k[B,S,Hkv,D], v[B,S,Hkv,D],   batch seq heads kv_heads head_dim scale causal
//                     o[B,S,Hq,D]
// attention_bwd       do, q, k, v, o, dq, dk, dv                 same as attention_fwd, plus accumulate
//                     (the CPU recomputes P from q, k and does not read o)
// silu_fwd            x[n], y[n]                                 n [dtype]
// silu_bwd            dy[n], x[n], dx[n]                         n [dtype] accumulate
// add                 a[n], b[n], y[n]                           n [dtype]
// mul                 a[n], b[n], y[n]                           n [dtype]
//                     dtype: the element type of every argument ("F32",
//                     "BF16", "F16"; absent: the activation type). add also
//                     sums f32 LoRA gradients across micro-batches, whatever
//                     the activation type.
// cross_entropy_fwd   logits[B,S,V], labels[B,S] i32,            batch seq vocab ignore_index has_normalizer
//                     [normalizer scalar], loss scalar
//                     mean over shifted targets (logits[:, :-1] vs labels[:, 1:]), or sum/normalizer
// cross_entropy_bwd   logits, labels, dloss scalar,              batch seq vocab ignore_index has_normalizer
//                     [normalizer scalar], dlogits[B,S,V]
// count_targets       labels[B,S] i32, count scalar              batch seq ignore_index
// scalar_binary       a scalar, b scalar, out scalar             op ("add"|"sub"|"mul"|"div")
// global_norm         g0, g1, ..., g(k-1), norm scalar           count sizes (int array: elements per g)
// clip_coefficient    norm scalar, max_norm scalar, out scalar   (none) out = max_norm > 0 ?
//                                                                min(1, max_norm/(norm+1e-6)) : 1
// adamw               p[n], g[n], m[n], v[n], grad_scale scalar, n beta1 beta2 epsilon
//                     lr scalar, step scalar i64, weight_decay scalar
//                     torch.optim.AdamW (foreach off) on g·grad_scale; step is 1-based;
//                     bias corrections in double.
// fill                out[n]                                     n value
// dequantize_nf4      w [nf4], out[n]                            n w_block_size w_dq_block_size
//                                                                w_dequant_dtype to
//                     out = W's elements as [nf4] defines them, stored as `to`
//
// clang-format on
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_FORMAT_KERNELABI_H
#define QLORACC_RUNTIME_FORMAT_KERNELABI_H

#include <string_view>

namespace qlora::kernels {

inline constexpr std::string_view kEmbeddingFwd = "embedding_fwd";
inline constexpr std::string_view kCast = "cast";
inline constexpr std::string_view kRmsNormFwd = "rms_norm_fwd";
inline constexpr std::string_view kRmsNormBwd = "rms_norm_bwd";
inline constexpr std::string_view kLinearFwd = "linear_fwd";
inline constexpr std::string_view kLinearGradInput = "linear_grad_input";
inline constexpr std::string_view kLoraGrad = "lora_grad";
inline constexpr std::string_view kRope = "rope";
inline constexpr std::string_view kAttentionFwd = "attention_fwd";
inline constexpr std::string_view kAttentionBwd = "attention_bwd";
inline constexpr std::string_view kSiluFwd = "silu_fwd";
inline constexpr std::string_view kSiluBwd = "silu_bwd";
inline constexpr std::string_view kAdd = "add";
inline constexpr std::string_view kMul = "mul";
inline constexpr std::string_view kCrossEntropyFwd = "cross_entropy_fwd";
inline constexpr std::string_view kCrossEntropyBwd = "cross_entropy_bwd";
inline constexpr std::string_view kCountTargets = "count_targets";
inline constexpr std::string_view kScalarBinary = "scalar_binary";
inline constexpr std::string_view kGlobalNorm = "global_norm";
inline constexpr std::string_view kClipCoefficient = "clip_coefficient";
inline constexpr std::string_view kAdamW = "adamw";
inline constexpr std::string_view kFill = "fill";
inline constexpr std::string_view kDequantizeNf4 = "dequantize_nf4";

/// The `w_dtype` of an NF4 weight ([nf4]).
inline constexpr std::string_view kNf4WeightDType = "NF4";

} // namespace qlora::kernels

#endif // QLORACC_RUNTIME_FORMAT_KERNELABI_H
