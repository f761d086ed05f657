//===- QloraCost.cpp - CostModelOpInterface of qlora and nf4 ops ----------===//
//
// FLOPs and bytes of one execution of each op, from static shapes
// (QloraInterfaces.td states the counting rules). One comment per op family
// says what its formula counts; forward and backward ops of a family share
// their helpers, so a change to what is counted changes both.
//
// Where a kernel does less than the mathematical definition, we count the
// work the CPU reference kernels (runtime/backends/cpu) really do: causal
// attention skips whole key blocks right of the diagonal, nothing finer.
//
//===----------------------------------------------------------------------===//
#include "dialects/qlora/QloraDialect.h"

using namespace mlir;
using namespace mlir::qlora;

//===----------------------------------------------------------------------===//
// Sizes
//===----------------------------------------------------------------------===//

/// Bytes of one value of type `type`: the storage (codes and scales) of an
/// `!nf4.tensor`, `ceil(elements * bit width / 8)` of a ranked tensor or a
/// scalar, 0 for anything else.
static int64_t typeBytes(Type type) {
  if (auto nf4 = dyn_cast<nf4::Nf4TensorType>(type))
    return (nf4.getStorageBits() + 7) / 8;
  auto tensor = dyn_cast<RankedTensorType>(type);
  Type element = tensor ? tensor.getElementType() : type;
  if (!element.isIntOrFloat())
    return 0;
  int64_t count = tensor ? tensor.getNumElements() : 1;
  return (count * element.getIntOrFloatBitWidth() + 7) / 8;
}

/// Every operand read once and every result written once.
static int64_t operandAndResultBytes(Operation *op) {
  int64_t bytes = 0;
  for (Type type : op->getOperandTypes())
    bytes += typeBytes(type);
  for (Type type : op->getResultTypes())
    bytes += typeBytes(type);
  return bytes;
}

static RankedTensorType tensorType(Value value) {
  return cast<RankedTensorType>(value.getType());
}

static double numElements(Value value) {
  return double(tensorType(value).getNumElements());
}

//===----------------------------------------------------------------------===//
// Parameters: defining one reads and writes nothing; its users read it.
//===----------------------------------------------------------------------===//

double WeightOp::getFlops() { return 0; }
int64_t WeightOp::getBytesAccessed() { return 0; }
double LoraParamOp::getFlops() { return 0; }
int64_t LoraParamOp::getBytesAccessed() { return 0; }

//===----------------------------------------------------------------------===//
// Data movement: embedding (a gather of the rows the tokens select: the
// tokens, those rows and the result), cast (a conversion: no arithmetic),
// reshape (a view of its input: nothing moves).
//===----------------------------------------------------------------------===//

double EmbeddingOp::getFlops() { return 0; }
int64_t EmbeddingOp::getBytesAccessed() {
  return typeBytes(getTokens().getType()) + 2 * typeBytes(getType());
}

double CastOp::getFlops() { return 0; }
int64_t CastOp::getBytesAccessed() { return operandAndResultBytes(*this); }

double ReshapeOp::getFlops() { return 0; }
int64_t ReshapeOp::getBytesAccessed() { return 0; }

//===----------------------------------------------------------------------===//
// Elementwise: add and mul 1 per element; silu = x / (1 + exp(-x)) 4 per
// element (exp, add, divide, multiply; the negation is a sign flip);
// silu_grad = dy * s * (1 + x * (1 - s)) 8 per element (s as in silu: 3,
// then subtract, multiply, add, multiply, multiply).
//===----------------------------------------------------------------------===//

constexpr double kSiluFlops = 4, kSiluGradFlops = 8;

double AddOp::getFlops() { return numElements(getResult()); }
int64_t AddOp::getBytesAccessed() { return operandAndResultBytes(*this); }
double MulOp::getFlops() { return numElements(getResult()); }
int64_t MulOp::getBytesAccessed() { return operandAndResultBytes(*this); }

double SiluOp::getFlops() { return kSiluFlops * numElements(getResult()); }
int64_t SiluOp::getBytesAccessed() { return operandAndResultBytes(*this); }
double SiluGradOp::getFlops() {
  return kSiluGradFlops * numElements(getResult());
}
int64_t SiluGradOp::getBytesAccessed() { return operandAndResultBytes(*this); }

//===----------------------------------------------------------------------===//
// RMSNorm over rows of `n` features. The statistics, which the gradient
// recomputes: square and accumulate (2 per element), then mean, + eps and
// rsqrt (3 per row). The forward then normalises and scales by the weight
// (2 per element; the cast between is free). The gradient forms g = dy * w
// (1), the row dot sum(g * x) (2), c = rstd^3 * dot / n (3 per row) and
// dx = rstd * g - x * c (3 per element).
//===----------------------------------------------------------------------===//

namespace {
struct RowShape {
  double elements, rows;
};
} // namespace

static RowShape rowShape(Value input) {
  RankedTensorType type = tensorType(input);
  double elements = double(type.getNumElements());
  return {elements, elements / double(type.getShape().back())};
}

static double rmsStatisticsFlops(RowShape shape) {
  return 2 * shape.elements + 3 * shape.rows;
}

double RmsNormOp::getFlops() {
  RowShape shape = rowShape(getInput());
  return rmsStatisticsFlops(shape) + 2 * shape.elements;
}
int64_t RmsNormOp::getBytesAccessed() { return operandAndResultBytes(*this); }

double RmsNormGradOp::getFlops() {
  RowShape shape = rowShape(getInput());
  return rmsStatisticsFlops(shape) + 6 * shape.elements + 3 * shape.rows;
}
int64_t RmsNormGradOp::getBytesAccessed() {
  return operandAndResultBytes(*this);
}

//===----------------------------------------------------------------------===//
// Linear, for `tokens` rows of `in` features, W: [out, in], LoRA rank r:
// - forward   x Wᵀ: 2·T·in·out, plus (x Aᵀ) Bᵀ: 2·T·r·(in + out);
// - d input   dy W: 2·T·out·in, plus (dy B) A: 2·T·r·(out + in);
// - lora_grad x Aᵀ and dy B (recomputed), then dyᵀ (x Aᵀ) and (dy B)ᵀ x:
//             4·T·r·(in + out).
// The LoRA scaling and the sum with the base product are the second GEMM's
// alpha and beta, and the dropout mask is not counted.
//===----------------------------------------------------------------------===//

namespace {
struct LinearShape {
  double tokens, in, out, rank;

  /// One matrix product of every token with W (or Wᵀ).
  double baseFlops() const { return 2 * tokens * in * out; }
  /// One pass through both LoRA matrices.
  double loraFlops() const { return 2 * tokens * rank * (in + out); }
};
} // namespace

/// `activation` holds tokens of `features` features each; W is [out, in].
static LinearShape linearShape(Value activation, Value weight, Value loraA) {
  RankedTensorType w = tensorType(weight);
  RankedTensorType x = tensorType(activation);
  double rank = loraA ? double(tensorType(loraA).getDimSize(0)) : 0;
  return {double(x.getNumElements()) / double(x.getShape().back()),
          double(w.getDimSize(1)), double(w.getDimSize(0)), rank};
}

double LinearOp::getFlops() {
  LinearShape shape = linearShape(getInput(), getWeight(), getLoraA());
  return shape.baseFlops() + shape.loraFlops();
}
int64_t LinearOp::getBytesAccessed() { return operandAndResultBytes(*this); }

double LinearGradInputOp::getFlops() {
  LinearShape shape = linearShape(getGradOutput(), getWeight(), getLoraA());
  return shape.baseFlops() + shape.loraFlops();
}
int64_t LinearGradInputOp::getBytesAccessed() {
  return operandAndResultBytes(*this);
}

double LoraGradOp::getFlops() {
  // W is not an operand: A: [r, in] and B: [out, r] give its shape.
  RankedTensorType a = tensorType(getLoraA()), b = tensorType(getLoraB());
  RankedTensorType x = tensorType(getInput());
  LinearShape shape{double(x.getNumElements()) / double(x.getShape().back()),
                    double(a.getDimSize(1)), double(b.getDimSize(0)),
                    double(a.getDimSize(0))};
  return 2 * shape.loraFlops();
}
int64_t LoraGradOp::getBytesAccessed() { return operandAndResultBytes(*this); }

//===----------------------------------------------------------------------===//
// RoPE on [batch, seq, heads, head_dim]: y = x·cos ± x'·sin is 3 per element
// (two products, one sum) in either direction, plus the cos/sin tables the
// kernel builds per call: seq·head_dim/2 entries of pos·inv_freq, cos and
// sin (3 each).
//===----------------------------------------------------------------------===//

static double ropeFlops(Value input) {
  RankedTensorType type = tensorType(input);
  double tableEntries = double(type.getDimSize(1) * (type.getDimSize(3) / 2));
  return 3 * double(type.getNumElements()) + 3 * tableEntries;
}

double RopeOp::getFlops() { return ropeFlops(getInput()); }
int64_t RopeOp::getBytesAccessed() { return operandAndResultBytes(*this); }
double RopeGradOp::getFlops() { return ropeFlops(getGradOutput()); }
int64_t RopeGradOp::getBytesAccessed() { return operandAndResultBytes(*this); }

//===----------------------------------------------------------------------===//
// Attention, query: [B, S, H, D]. Per (batch, query head) the CPU kernel
// scores P query-key pairs (attentionPairs). Per pair:
// - forward:  Q·Kᵀ and P·V (2·D each), the scale (1) and the softmax (max,
//             subtract, exp, sum, normalise: 5): 4·D + 6;
// - backward: the forward's scores and softmax again (2·D + 6), dP = dO·Vᵀ
//             (2·D), dS = (dP − rowsum(dP·P))·P·scale (2 + 3), and dQ, dK,
//             dV (2·D each): 10·D + 11.
// GQA changes no count: each query head reads its KV head.
//===----------------------------------------------------------------------===//

/// Query rows per block of the CPU kernel (runtime/backends/cpu/
/// AttentionKernels.cpp, kRowBlock); with a causal mask a block scores the
/// keys up to its last row, so the work between S(S+1)/2 and S² is what it
/// does, not what flash attention's finer tiles would.
constexpr int64_t kAttentionRowBlock = 64;

/// Query-key pairs scored per (batch, query head).
static double attentionPairs(int64_t seq, bool causal) {
  if (!causal)
    return double(seq) * double(seq);
  double pairs = 0;
  for (int64_t first = 0; first < seq; first += kAttentionRowBlock) {
    int64_t rows = std::min(kAttentionRowBlock, seq - first);
    pairs += double(rows) * double(first + rows);
  }
  return pairs;
}

/// `perPairPerDim · D + perPair` flops for each scored pair of every (batch,
/// query head).
static double attentionFlops(Value query, bool causal, double perPairPerDim,
                             double perPair) {
  RankedTensorType q = tensorType(query);
  double headDim = double(q.getDimSize(3));
  return double(q.getDimSize(0)) * double(q.getDimSize(2)) *
         attentionPairs(q.getDimSize(1), causal) *
         (perPairPerDim * headDim + perPair);
}

double AttentionOp::getFlops() {
  return attentionFlops(getQuery(), getCausal(), 4, 6);
}
int64_t AttentionOp::getBytesAccessed() { return operandAndResultBytes(*this); }
double AttentionGradOp::getFlops() {
  return attentionFlops(getQuery(), getCausal(), 10, 11);
}
int64_t AttentionGradOp::getBytesAccessed() {
  return operandAndResultBytes(*this);
}

//===----------------------------------------------------------------------===//
// Cross entropy on logits [B, S, V], over the B·(S − 1) shifted positions.
// Forward per position: max, subtract, exp, sum over V (4·V), then log and
// the target's subtraction (2); one division by the count at the end.
// Backward per position: the softmax again (max, subtract, exp, sum,
// normalise: 5·V), minus the one-hot (1) and times d loss / n (V); d loss / n
// once. The last position of each sequence is written as zeros.
// count_targets compares integers: no flops.
//===----------------------------------------------------------------------===//

namespace {
struct LossShape {
  double positions, vocab;
};
} // namespace

static LossShape lossShape(Value logits) {
  RankedTensorType type = tensorType(logits);
  int64_t rank = type.getRank();
  int64_t seq = type.getDimSize(rank - 2), vocab = type.getDimSize(rank - 1);
  double sequences = double(type.getNumElements()) / double(seq * vocab);
  return {sequences * double(seq - 1), double(vocab)};
}

double CrossEntropyOp::getFlops() {
  LossShape shape = lossShape(getLogits());
  return shape.positions * (4 * shape.vocab + 2) + 1;
}
int64_t CrossEntropyOp::getBytesAccessed() {
  return operandAndResultBytes(*this);
}

double CrossEntropyGradOp::getFlops() {
  LossShape shape = lossShape(getLogits());
  return shape.positions * (6 * shape.vocab + 1) + 1;
}
int64_t CrossEntropyGradOp::getBytesAccessed() {
  return operandAndResultBytes(*this);
}

double CountTargetsOp::getFlops() { return 0; }
int64_t CountTargetsOp::getBytesAccessed() {
  return operandAndResultBytes(*this);
}

//===----------------------------------------------------------------------===//
// Optimizer. global_norm: square and accumulate every gradient element (2),
// one sqrt. clip_coefficient: the max_norm <= 0 test, + 1e-6, divide, min
// (4). adamw, per element as torch.optim.AdamW: g = grad·scale (1), decay
// p·(1 − lr·wd) (1), m lerp (3), v = β2·v + (1 − β2)·g² (4), denominator
// sqrt(v)/sqrt(bc2) + eps (3), p −= step·m/denominator (3): 15. Its bytes are
// its operands, plus the parameter written back and the two fp32 moments
// (parameter-sized) read and written.
//===----------------------------------------------------------------------===//

constexpr double kAdamWFlops = 15;

double GlobalNormOp::getFlops() {
  double elements = 0;
  for (Value grad : getGrads())
    elements += numElements(grad);
  return 2 * elements + 1;
}
int64_t GlobalNormOp::getBytesAccessed() {
  return operandAndResultBytes(*this);
}

double ClipCoefficientOp::getFlops() { return 4; }
int64_t ClipCoefficientOp::getBytesAccessed() {
  return operandAndResultBytes(*this);
}

double AdamWOp::getFlops() { return kAdamWFlops * numElements(getParam()); }
int64_t AdamWOp::getBytesAccessed() {
  return operandAndResultBytes(*this) + 5 * typeBytes(getParam().getType());
}

//===----------------------------------------------------------------------===//
// Step phases (forward ops keep the interface's default)
//===----------------------------------------------------------------------===//

StepPhase RmsNormGradOp::getStepPhase() { return StepPhase::Backward; }
StepPhase RopeGradOp::getStepPhase() { return StepPhase::Backward; }
StepPhase AttentionGradOp::getStepPhase() { return StepPhase::Backward; }
StepPhase SiluGradOp::getStepPhase() { return StepPhase::Backward; }
StepPhase LinearGradInputOp::getStepPhase() { return StepPhase::Backward; }
StepPhase LoraGradOp::getStepPhase() { return StepPhase::Backward; }
StepPhase CrossEntropyGradOp::getStepPhase() { return StepPhase::Backward; }
StepPhase GlobalNormOp::getStepPhase() { return StepPhase::Optimizer; }
StepPhase ClipCoefficientOp::getStepPhase() { return StepPhase::Optimizer; }
StepPhase AdamWOp::getStepPhase() { return StepPhase::Optimizer; }

//===----------------------------------------------------------------------===//
// nf4 ops, as external models: nf4 does not depend on qlora.
// constant: bytes that are already there (its users read them): 0.
// dequantize: code value · block scale per element (1); with double
// quantization each block scale is first decoded, 8-bit code · nested scale
// + offset (2 per block). Reads the NF4 storage, writes the float tensor.
// quantize: per element |x| and the block max (2), x / absmax (1) and the
// binary search over the 16 NF4 values (4 compares): 7. With double
// quantization the block scales are quantized again: mean offset and its
// subtraction (2), nested absmax (2), divide (1) and the binary search over
// 256 codes (8): 13 per block.
//===----------------------------------------------------------------------===//

namespace {

struct Nf4ConstantCost
    : CostModelOpInterface::ExternalModel<Nf4ConstantCost, nf4::ConstantOp> {
  double getFlops(Operation *) const { return 0; }
  int64_t getBytesAccessed(Operation *) const { return 0; }
};

struct Nf4DequantizeCost
    : CostModelOpInterface::ExternalModel<Nf4DequantizeCost,
                                          nf4::DequantizeOp> {
  double getFlops(Operation *op) const {
    auto type = cast<nf4::Nf4TensorType>(op->getOperand(0).getType());
    double blockScales = type.isDoubleQuantized() ? type.getNumBlocks() : 0;
    return double(type.getNumElements()) + 2 * blockScales;
  }
  int64_t getBytesAccessed(Operation *op) const {
    return operandAndResultBytes(op);
  }
};

struct Nf4QuantizeCost
    : CostModelOpInterface::ExternalModel<Nf4QuantizeCost, nf4::QuantizeOp> {
  double getFlops(Operation *op) const {
    auto type = cast<nf4::Nf4TensorType>(op->getResult(0).getType());
    double blockScales = type.isDoubleQuantized() ? type.getNumBlocks() : 0;
    return 7 * double(type.getNumElements()) + 13 * blockScales;
  }
  int64_t getBytesAccessed(Operation *op) const {
    return operandAndResultBytes(op);
  }
};

} // namespace

namespace mlir::qlora {
/// Called by QloraDialect::initialize(); nf4 is a dependent dialect, so it is
/// loaded by then.
void attachNf4CostModels(MLIRContext *context) {
  context->getOrLoadDialect<nf4::Nf4Dialect>();
  nf4::ConstantOp::attachInterface<Nf4ConstantCost>(*context);
  nf4::DequantizeOp::attachInterface<Nf4DequantizeCost>(*context);
  nf4::QuantizeOp::attachInterface<Nf4QuantizeCost>(*context);
}
} // namespace mlir::qlora
