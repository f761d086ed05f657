//===- CudaAttentionSource.cpp - attention_fwd, attention_bwd builders ----===//
//
// Instantiates kernels/Attention.cuh, whose entries run AttentionFma.cuh
// for f32 activations and AttentionTensorCore.cuh for bf16 ones. Shared
// memory is static (at most 48 KiB, no opt-in). FMA path: fp32 tiles; with
// 4 warps, a forward block takes 16 query rows at head_dim 128 (32 up to
// 64), backward phase 1 8 rows (16), phase 2 8 keys (16); every inner tile
// is 32 keys or queries. Tensor-core path: bf16 tiles, 64-row blocks of 16
// rows a warp (a warp pair in the backward phases), inner tiles of 64 keys
// (32 at head_dim 128).
//
//===----------------------------------------------------------------------===//
#include "kernels/CudaKernelBuilder.h"

namespace qlora::cuda::detail {
namespace {

constexpr int kWarps = 4;
constexpr int kTile = 32;
constexpr int64_t kMaxHeadDim = 128;
constexpr int64_t kMaxGridYz = 65535;
constexpr int64_t kStaticSharedBytes = 48 * 1024;
/// Blocks per SM ptxas sizes registers for: without it, ptxas spilled a few
/// cold values of the f32 instances to reach a higher occupancy step.
constexpr uint32_t kMinBlocks = 4;
/// The tensor-core kernels hold o's (or dq's, dk's, dv's) fp32 accumulators
/// and q's fragments in registers: at head_dim 128 ptxas needs more than
/// 168 a thread (3 blocks), so 2 blocks of 4 warps a SM.
constexpr uint32_t kTensorMinBlocks = 2;
/// The backward phases on tensor cores: 8 warps a block (warp pairs).
constexpr uint32_t kTensorPairMinBlocks = 1;

struct AttentionShape {
  int64_t batch, seq, heads, kvHeads, headDim;
};

/// Reads and checks the shape, writes the Config lines both kernels share.
AttentionShape attentionConfig(Reader &r, const std::string &T, Instance &out) {
  AttentionShape s{r.dim("batch"), r.dim("seq"), r.dim("heads"),
                   r.dim("kv_heads"), r.dim("head_dim")};
  double scale = r.real("scale");
  bool causal = r.flag("causal");
  if (s.heads % s.kvHeads != 0)
    r.fail("parameter 'heads' (" + std::to_string(s.heads) +
           ") must be a multiple of 'kv_heads' (" + std::to_string(s.kvHeads) +
           ")");
  if (s.headDim % 8 != 0 || s.headDim > kMaxHeadDim)
    r.fail("parameter 'head_dim' must be a multiple of 8 and at most " +
           std::to_string(kMaxHeadDim) +
           " (fp32 tiles in 48 KiB of shared memory), found " +
           std::to_string(s.headDim));
  if (s.heads > kMaxGridYz || s.batch > kMaxGridYz)
    r.fail("parameters 'heads' and 'batch' must be at most " +
           std::to_string(kMaxGridYz) + " (grid y and z), found " +
           std::to_string(s.heads) + " and " + std::to_string(s.batch));
  out.family = "Attention.cuh";
  out.uses = {"AttentionShared.cuh", "AttentionFma.cuh",
              "AttentionTensorCore.cuh"};
  out.threads = uint32_t(kWarps * 32);
  out.minBlocks = kMinBlocks;
  out.config = {typeLine("T", T),
                intLine("kBatch", s.batch),
                intLine("kSeq", s.seq),
                intLine("kHeads", s.heads),
                intLine("kKvHeads", s.kvHeads),
                intLine("kHeadDim", int(s.headDim)),
                floatLine("kScale", float(scale)),
                boolLine("kCausal", causal),
                intLine("kVec", vectorWidth(s.headDim, typeBytes(T))),
                intLine("kWarps", kWarps)};
  return s;
}

/// Shared bytes of a block holding `rows` broadcast rows of `tensors`
/// tensors and 32-row padded tiles of `tiles` tensors (AttentionFma.cuh).
int64_t sharedBytes(int64_t headDim, int64_t rows, int tensors, int tiles) {
  return 4 * (rows * headDim * tensors + kTile * (headDim + 4) * tiles);
}

/// Rows per warp: as many as 48 KiB of shared memory allow, at most 8.
int rowsPerWarp(Reader &r, int64_t headDim, int tensors, int tiles) {
  for (int rows = 8; rows >= 1; rows /= 2)
    if (sharedBytes(headDim, rows * kWarps, tensors, tiles) + 256 <=
        kStaticSharedBytes)
      return rows;
  r.fail("head_dim " + std::to_string(headDim) +
         " does not fit 48 KiB of shared memory");
  return 1;
}

/// The tensor-core path's bf16 row stride (AttentionTensorCore.cuh's
/// TensorTiles).
int64_t tensorLd(int64_t headDim) { return (headDim + 15) / 16 * 16 + 8; }

/// Shared bytes of attentionFwdTensorCore: q (then the warps' fp32 score
/// scratch) and a k and a v tile of `keyTile` rows.
int64_t tensorFwdSharedBytes(int64_t headDim, int keyTile) {
  int64_t ld = tensorLd(headDim);
  int64_t region =
      std::max<int64_t>(16 * kWarps * ld * 2, kWarps * 16 * (keyTile + 4) * 4);
  return region + 2 * keyTile * ld * 2 + kWarps * 16 * (keyTile + 8) * 2 +
         kWarps * 16 * 4;
}

/// Shared bytes of attentionBwdQueryTensorCore: q and dO (then two fp32
/// scratch tiles a warp pair), a k and a v tile of `keyTile` rows, two dS
/// tiles a warp pair.
int64_t tensorBwdQuerySharedBytes(int64_t headDim, int keyTile) {
  int64_t ld = tensorLd(headDim);
  int64_t region = std::max<int64_t>(16 * kWarps * ld * 2,
                                     2 * kWarps * 16 * (keyTile + 4) * 4);
  return region + 2 * keyTile * ld * 2 + 2 * kWarps * 16 * (keyTile + 8) * 2 +
         kWarps * 16 * 4;
}

/// Shared bytes of attentionBwdKeyValueTensorCore: a q and a dO tile of
/// `queryTile` rows and two fp32 scratch tiles a warp pair (the block's k
/// and v before), the pairs' P and dS tiles, the tile's lse and D.
int64_t tensorBwdKeyValueSharedBytes(int64_t headDim, int queryTile) {
  int64_t ld = tensorLd(headDim);
  int64_t loop = 2 * queryTile * ld * 2 + 2 * kWarps * 16 * (queryTile + 4) * 4;
  int64_t kv = 2 * 16 * kWarps * ld * 2;
  return std::max(loop, kv) + 2 * kWarps * 16 * (queryTile + 8) * 2 +
         2 * queryTile * 4 + 2 * 16 * 4;
}

/// The largest inner tile of 64, 32 or 16 rows whose block fits 48 KiB.
int largestTile(Reader &r, const std::function<int64_t(int)> &bytes) {
  for (int tile = 64; tile >= 16; tile /= 2)
    if (bytes(tile) <= kStaticSharedBytes)
      return tile;
  r.fail("the tensor-core tiles do not fit 48 KiB of shared memory");
  return 16;
}

} // namespace

void buildAttentionFwd(Reader &r, const std::string &T, Instance &out) {
  AttentionShape s = attentionConfig(r, T, out);
  if (!r.ok())
    return;
  if (T == "__nv_bfloat16") {
    // Tensor cores: 16 query rows a warp, kKeyTile keys a tile.
    int keyTile = largestTile(
        r, [&](int tile) { return tensorFwdSharedBytes(s.headDim, tile); });
    out.config.push_back(intLine("kRowsPerWarp", 16));
    out.config.push_back(intLine("kKeyTile", keyTile));
    out.minBlocks = kTensorMinBlocks;
    out.arguments = "const Config::T *q, const Config::T *k, const Config::T "
                    "*v, Config::T *o";
    out.body = "qlora::cuda::attentionFwd<Config>(q, k, v, o);";
    out.grid = {ceilDiv(s.seq, 16 * kWarps), uint32_t(s.heads),
                uint32_t(s.batch)};
    return;
  }
  // q rows; a padded k tile (v is read by rows: unpadded, counted padded).
  int rows = std::min(rowsPerWarp(r, s.headDim, 1, 2), s.headDim > 64 ? 4 : 8);
  out.config.push_back(intLine("kRowsPerWarp", rows));
  out.config.push_back(intLine("kKeysPerWarp", 1));
  out.arguments = "const Config::T *q, const Config::T *k, const Config::T "
                  "*v, Config::T *o";
  out.body = "qlora::cuda::attentionFwd<Config>(q, k, v, o);";
  out.grid = {ceilDiv(s.seq, rows * kWarps), uint32_t(s.heads),
              uint32_t(s.batch)};
}

void buildAttentionBwd(Reader &r, const std::string &T, Instance &out) {
  AttentionShape s = attentionConfig(r, T, out);
  bool accumulate = r.flag("accumulate");
  if (!r.ok())
    return;
  bool tensorCores = T == "__nv_bfloat16";
  // Phase 1: q and do rows, padded k and v tiles; phase 2: k and v rows,
  // padded q and do tiles. Tensor cores: 16 rows (keys) a warp (pair).
  int rows = tensorCores ? 16 : std::min(rowsPerWarp(r, s.headDim, 2, 2), 4);
  int keys = rows;
  out.config.push_back(intLine("kRowsPerWarp", rows));
  out.config.push_back(intLine("kKeysPerWarp", keys));
  out.config.push_back(boolLine("kAccumulate", accumulate));
  if (tensorCores) {
    out.config.push_back(intLine("kKeyTile", largestTile(r, [&](int tile) {
                                   return tensorBwdQuerySharedBytes(s.headDim,
                                                                    tile);
                                 })));
    out.config.push_back(intLine("kQueryTile", largestTile(r, [&](int tile) {
                                   return tensorBwdKeyValueSharedBytes(
                                       s.headDim, tile);
                                 })));
    // A warp pair a 16 query rows (one holds q, the other dO).
    out.threads = 2 * out.threads;
    out.minBlocks = kTensorPairMinBlocks;
  }
  // lse and D of every (batch, q head, position), phase 1 to phase 2.
  std::string rowCount = std::to_string(s.batch * s.heads * s.seq);
  out.globals = "__device__ float qloraAttentionLse[" + rowCount +
                "];\n__device__ float qloraAttentionDelta[" + rowCount + "];\n";
  out.arguments = "const Config::T *dout, const Config::T *q, const Config::T "
                  "*k, const Config::T *v, const Config::T *o, Config::T *dq, "
                  "Config::T *dk, Config::T *dv";
  out.body = "qlora::cuda::attentionBwdQuery<Config>(dout, q, k, v, o, dq, "
             "qloraAttentionLse, qloraAttentionDelta);";
  out.grid = {ceilDiv(s.seq, rows * kWarps), uint32_t(s.heads),
              uint32_t(s.batch)};
  InstancePhase keyValue;
  // Tensor cores: a warp pair a 16 keys (one for dv, one for dk).
  keyValue.threads = out.threads;
  keyValue.minBlocks = out.minBlocks;
  keyValue.body = "qlora::cuda::attentionBwdKeyValue<Config>(dout, q, k, v, "
                  "dk, dv, qloraAttentionLse, qloraAttentionDelta);";
  keyValue.grid = {ceilDiv(s.seq, keys * kWarps), uint32_t(s.kvHeads),
                   uint32_t(s.batch)};
  out.then.push_back(keyValue);
}

} // namespace qlora::cuda::detail
