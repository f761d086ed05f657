//===- CudaLinearSource.cpp - linear_fwd, linear_grad_input, lora_grad ----===//
//
// The builders of the three LoRA linear kernels (kernels/Gemm.cuh): the
// GEMMs of KernelAbi.h's formula, with tiles chosen per GEMM shape, in
// phases launched in order with the kernel's arguments; GEMMs that do not
// depend on each other share a phase (comma), side by side in its grid:
//   linear_fwd         y = x·Wᵀ, [lora] t_ws = xd·Aᵀ ; y += s·(t_ws·Bᵀ)
//   linear_grad_input  dx (+)= dy·W, [lora] dt_ws = dy·B ;
//                      dx += m ⊙ (s·(dt_ws·A))
//   lora_grad          da (+)= s·(dt_wsᵀ·xd), db (+)= s·(dyᵀ·t_ws)
//
//===----------------------------------------------------------------------===//
#include "kernels/CudaKernelBuilder.h"
#include "runtime/format/CounterRng.h"
#include "runtime/format/KernelAbi.h"

#include <cmath>
#include <tuple>
#include <utility>

namespace qlora::cuda::detail {
namespace {

/// The block tile of one GEMM phase (Gemm.cuh's GemmTiles).
struct Tiles {
  int tileM, tileN, warpsM, warpsN, tileK;

  uint32_t threads() const { return uint32_t(warpsM * warpsN * 32); }
  std::string type() const {
    return "qlora::cuda::GemmTiles<" + std::to_string(tileM) + ", " +
           std::to_string(tileN) + ", " + std::to_string(warpsM) + ", " +
           std::to_string(warpsN) + ", " + std::to_string(tileK) + ">";
  }
};

/// 128x128x32 tiles on 8 warps (64x32 each) where C has enough of them to
/// fill the GPU and K is deep enough to reuse them, else 64x64x32 tiles on
/// 8 warps (32x16 each). A GEMM over K <= 64 (the LoRA-up's K = r) does 2k
/// flops per element of C it reads and writes back: bound by memory, it
/// wants the smaller tiles' occupancy (~80 registers, 2-3 blocks a SM,
/// against ~172 and one) more than the larger ones' reuse.
Tiles chooseTiles(int64_t m, int64_t n, int64_t k) {
  if (k > 64 && m >= 128 && n >= 128 &&
      int64_t(ceilDiv(m, 128)) * ceilDiv(n, 128) >= 64)
    return {128, 128, 2, 4, 32};
  return {64, 64, 2, 4, 32};
}

/// One GEMM: `function<Config, tiles>(block, arguments)` over C[m, n],
/// K deep.
struct Gemm {
  std::string function, arguments;
  int64_t m, n, k;
};

/// A phase of independent GEMMs, each with its own tiles, in one grid
/// (Gemm.cuh's gemmGroup): the first GEMM's tiles, then columns of as many
/// blocks as it has rows of tiles for the others.
InstancePhase gemmPhase(Reader &r, const std::vector<Gemm> &gemms) {
  InstancePhase phase;
  phase.body = "qlora::cuda::gemmGroup(";
  int64_t tilesM = 0, tilesN = 0, restBlocks = 0;
  for (const Gemm &gemm : gemms) {
    Tiles tiles = chooseTiles(gemm.m, gemm.n, gemm.k);
    bool first = &gemm == &gemms.front();
    if (!first) {
      phase.body += ",";
      if (tiles.threads() != phase.threads)
        r.fail("the GEMMs of one phase need one block size");
    }
    phase.threads = tiles.threads();
    phase.body += "\n    qlora::cuda::gemmPart<" + tiles.type() + ", " +
                  std::to_string(gemm.m) + ", " + std::to_string(gemm.n) +
                  ">([&](const qlora::cuda::GemmBlock &block) {\n" +
                  "      qlora::cuda::" + gemm.function + "<Config, " +
                  tiles.type() + ">(block, " + gemm.arguments + ");\n    })";
    int64_t m = ceilDiv(gemm.m, tiles.tileM), n = ceilDiv(gemm.n, tiles.tileN);
    if (first)
      std::tie(tilesM, tilesN) = std::pair(m, n);
    else
      restBlocks += m * n;
  }
  phase.body += ");";
  constexpr int64_t kMaxGridY = 65535;
  if (tilesM > kMaxGridY)
    r.fail("GEMM of " + std::to_string(gemms.front().m) +
           " rows needs more than " + std::to_string(kMaxGridY) + " row tiles");
  phase.grid = {uint32_t(tilesN + ceilDiv(restBlocks, tilesM)),
                uint32_t(tilesM), 1};
  return phase;
}

/// The phase of the frozen-weight GEMM (x·Wᵀ or dy·W, the LoRA-down beside
/// it): two 128x128 blocks a SM on sm_90, whose ptxas fits it into 128
/// registers without spills when asked, where left alone it lands on 130
/// (one block a SM) or on 128 with a few bytes spilled. sm_80 needs ~170.
InstancePhase frozenWeightPhase(Reader &r, const std::vector<Gemm> &gemms) {
  InstancePhase phase = gemmPhase(r, gemms);
  phase.minBlocksSm90 = 2;
  return phase;
}

/// The phases as the instance's entry and its `then` list.
void setPhases(Instance &out, std::vector<InstancePhase> phases) {
  out.body = phases.front().body;
  out.threads = phases.front().threads;
  out.grid = phases.front().grid;
  out.minBlocks = phases.front().minBlocks;
  out.minBlocksSm90 = phases.front().minBlocksSm90;
  out.then.assign(phases.begin() + 1, phases.end());
}

struct LinearShape {
  int64_t rows, in, out, rank;
};

/// rows in out rank scaling [accumulate] and the optional dropout as Config
/// lines; true when dropout > 0 (the kernel takes `step` last).
bool linearConfig(Reader &r, const std::string &T, bool needsRank,
                  bool hasAccumulate, Instance &out, LinearShape &shape) {
  shape = {r.dim("rows"), r.dim("in"), r.dim("out"),
           r.dim("rank", needsRank ? 1 : 0)};
  double scaling = r.real("scaling");
  bool accumulate = hasAccumulate && r.flag("accumulate");
  double p = r.all().getFloat("dropout").value_or(0.0);
  if (!(p >= 0 && p < 1))
    r.fail("parameter 'dropout' must be in [0, 1), found " + std::to_string(p));
  bool dropout = p > 0;
  uint64_t key = 0;
  uint32_t threshold = 0;
  if (dropout) {
    if (shape.rank == 0)
      r.fail("dropout > 0 needs the LoRA path (rank > 0)");
    auto stream = r.all().getString("dropout_stream");
    auto seed = r.all().getInt("dropout_seed");
    if (!stream)
      r.fail("missing string parameter 'dropout_stream'");
    if (!seed)
      r.fail("missing integer parameter 'dropout_seed'");
    key = format::CounterRng(uint64_t(seed.value_or(0)), stream.value_or(""))
              .streamKey();
    // uniform = bits · 2^-24 >= p  <=>  bits >= ceil(p · 2^24) (exact).
    threshold = uint32_t(std::ceil(p * 16777216.0));
  }
  out.family = "Gemm.cuh";
  out.uses = {"Nf4.cuh", "GemmOperands.cuh"};
  out.config = {
      typeLine("T", T),
      intLine("kRows", shape.rows),
      intLine("kIn", shape.in),
      intLine("kOut", shape.out),
      intLine("kRank", shape.rank),
      floatLine("kScaling", float(scaling)),
      boolLine("kAccumulate", accumulate),
      boolLine("kDropout", dropout),
      "static constexpr unsigned long long kDropoutKey = " +
          std::to_string(key) + "ull;",
      "static constexpr unsigned kDropoutThreshold = " +
          std::to_string(threshold) + "u;",
      floatLine("kDropoutScale", dropout ? float(1.0 / (1.0 - p)) : 1.0f)};
  return dropout;
}

/// W and kNf4 (with the [nf4] lines) of an [out, in] frozen weight.
void weightConfig(Reader &r, const LinearShape &shape, Instance &out) {
  std::string dtype =
      r.oneOf("w_dtype", {"F32", "BF16", "F16", kernels::kNf4WeightDType});
  bool nf4 = dtype == kernels::kNf4WeightDType;
  out.config.push_back(
      typeLine("W", nf4 ? "unsigned char" : r.cudaType("w_dtype")));
  out.config.push_back(boolLine("kNf4", nf4));
  if (!nf4)
    return;
  std::vector<std::string> lines = nf4WeightConfig(r, shape.out * shape.in);
  out.config.insert(out.config.end(), lines.begin(), lines.end());
}

/// The entry parameters of linear_fwd / linear_grad_input: input, w,
/// [lora] a, b, workspace, output, [dropout] step.
std::string linearArguments(const std::string &input,
                            const std::string &workspace,
                            const std::string &output, int64_t rank,
                            bool dropout) {
  std::string arguments =
      "const Config::T *" + input + ", const Config::W *w, ";
  if (rank > 0)
    arguments +=
        "const float *a, const float *b, Config::T *" + workspace + ", ";
  arguments += "Config::T *" + output;
  if (dropout)
    arguments += ", const long long *step";
  return arguments;
}

} // namespace

void buildLinearFwd(Reader &r, const std::string &T, Instance &out) {
  LinearShape s;
  bool dropout = linearConfig(r, T, false, false, out, s);
  weightConfig(r, s, out);
  if (!r.ok())
    return;
  std::string step = dropout ? "step" : "nullptr";
  out.arguments = linearArguments("x", "t_ws", "y", s.rank, dropout);
  std::vector<Gemm> first = {{"linearFwdBase", "x, w, y", s.rows, s.out, s.in}};
  if (s.rank > 0)
    first.push_back(
        {"linearFwdLoraDown", "x, a, t_ws, " + step, s.rows, s.rank, s.in});
  InstancePhase base = frozenWeightPhase(r, first);
  if (s.rank == 0)
    return setPhases(out, {base});
  setPhases(out, {base, gemmPhase(r, {{"linearFwdLoraUp", "t_ws, b, y", s.rows,
                                       s.out, s.rank}})});
}

void buildLinearGradInput(Reader &r, const std::string &T, Instance &out) {
  LinearShape s;
  bool dropout = linearConfig(r, T, false, true, out, s);
  weightConfig(r, s, out);
  if (!r.ok())
    return;
  std::string step = dropout ? "step" : "nullptr";
  out.arguments = linearArguments("dy", "dt_ws", "dx", s.rank, dropout);
  std::vector<Gemm> first = {
      {"linearGradInputBase", "dy, w, dx", s.rows, s.in, s.out}};
  if (s.rank > 0)
    first.push_back(
        {"linearGradInputLoraDown", "dy, b, dt_ws", s.rows, s.rank, s.out});
  InstancePhase base = frozenWeightPhase(r, first);
  if (s.rank == 0)
    return setPhases(out, {base});
  setPhases(out, {base, gemmPhase(r, {{"linearGradInputLoraUp",
                                       "dt_ws, a, dx, " + step, s.rows, s.in,
                                       s.rank}})});
}

void buildLoraGrad(Reader &r, const std::string &T, Instance &out) {
  LinearShape s;
  bool dropout = linearConfig(r, T, true, true, out, s);
  if (!r.ok())
    return;
  std::string step = dropout ? "step" : "nullptr";
  out.arguments =
      "const Config::T *dy, const Config::T *x, const float *a, const float "
      "*b, const Config::T *t_ws, const Config::T *dt_ws, float *da, float "
      "*db";
  if (dropout)
    out.arguments += ", const long long *step";
  setPhases(
      out, {gemmPhase(
               r, {{"loraGradA", "dt_ws, x, da, " + step, s.rank, s.in, s.rows},
                   {"loraGradB", "dy, t_ws, db", s.out, s.rank, s.rows}})});
}

} // namespace qlora::cuda::detail
