//===- TrainBinWriter.cpp - A planned qrt module as a train.bin -----------===//
#include "compiler/TrainBinWriter/TrainBinWriter.h"

#include "compiler/TrainBinWriter/InitSections.h"

#include "dialects/qlora/QloraDialect.h"
#include "dialects/qrt/QrtDialect.h"
#include "runtime/format/TrainBin.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectResourceBlobManager.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/TypeSwitch.h"

#include <limits>

using namespace mlir;

namespace format = ::qlora::format;

namespace qloracc {

#ifndef QLORACC_VERSION
#error "QLORACC_VERSION must be defined by the build"
#endif

StringRef getTrainBinProducer() { return "qloracc " QLORACC_VERSION; }

static constexpr StringLiteral kStepFunction = "train_step";
static constexpr StringLiteral kMemoryPlanAttr = "qrt.memory_plan";
static constexpr StringLiteral kGradAccumAttr = "qlora.grad_accum";
static constexpr StringLiteral kOptimizerAttr = "qlora.optimizer";
static constexpr StringLiteral kTokensBuffer = "tokens";
static constexpr StringLiteral kLoraASuffix = ".lora_A.weight";
static constexpr StringLiteral kLoraBSuffix = ".lora_B.weight";
static constexpr StringLiteral kGradSuffix = ".grad";
/// Set by --qrt-codegen-cuda: arch ("sm_80", "ptx") to the image's bytes.
static constexpr StringLiteral kCudaImagesAttr = "cuda.images";
static constexpr StringLiteral kCudaThenAttr = "cuda.then";

//===----------------------------------------------------------------------===//
// Memory plan
//===----------------------------------------------------------------------===//

FailureOr<format::TrainBinMemoryPlan> readMemoryPlan(ModuleOp module) {
  auto plan = module->getAttrOfType<DictionaryAttr>(kMemoryPlanAttr);
  if (!plan)
    return module.emitError("the module has no '")
           << kMemoryPlanAttr << "': run --qrt-plan-memory first";
  auto getBytes = [&](DictionaryAttr dict, StringRef key,
                      StringRef where) -> FailureOr<uint64_t> {
    auto value = dict.getAs<IntegerAttr>(key);
    if (!value || value.getValue().isNegative())
      return module.emitError("'")
             << kMemoryPlanAttr << "' needs a non-negative integer '" << where
             << key << "', got " << dict.get(key);
    return value.getValue().getZExtValue();
  };

  format::TrainBinMemoryPlan result;
  FailureOr<uint64_t> arena = getBytes(plan, "arena_size", "");
  FailureOr<uint64_t> peak = getBytes(plan, "peak_bytes", "");
  if (failed(arena) || failed(peak))
    return failure();
  result.arenaSize = *arena;
  result.peakBytes = *peak;

  // Both tables are keyed by class name; a class a table leaves out has no
  // bytes.
  std::array<format::TrainBinMemoryClass, format::kNumBufferClasses> classes;
  for (unsigned i = 0; i < format::kNumBufferClasses; ++i)
    classes[i].cls = format::BufferClass(i);
  for (auto [table, isPeak] : {std::pair{StringRef("peak_by_class"), true},
                               {"total_by_class", false}}) {
    auto dict = plan.getAs<DictionaryAttr>(table);
    if (!dict)
      return module.emitError("'")
             << kMemoryPlanAttr << "' needs a dictionary '" << table << "'";
    for (NamedAttribute entry : dict) {
      std::optional<format::BufferClass> cls =
          format::parseBufferClass(entry.getName().getValue());
      if (!cls)
        return module.emitError("'")
               << kMemoryPlanAttr << "' has an unknown buffer class '"
               << entry.getName().getValue() << "' in '" << table
               << "' (expected weight, lora, gradient, optimizer, "
                  "activation, workspace or io)";
      FailureOr<uint64_t> bytes =
          getBytes(dict, entry.getName(), (table + ".").str());
      if (failed(bytes))
        return failure();
      (isPeak ? classes[unsigned(*cls)].peakBytes
              : classes[unsigned(*cls)].totalBytes) = *bytes;
    }
  }
  result.byClass.assign(classes.begin(), classes.end());
  return result;
}

//===----------------------------------------------------------------------===//
// Translation
//===----------------------------------------------------------------------===//

namespace {

class TrainBinTranslator {
public:
  TrainBinTranslator(ModuleOp module, TrainBinContents &contents,
                     const TrainBinOptions &options)
      : module(module), desc(contents.desc), inits(contents), options(options) {
  }

  LogicalResult translate();

private:
  LogicalResult addKernels();
  LogicalResult addKernelImages(qrt::KernelOp kernel,
                                format::TrainBinKernelDesc &out);
  LogicalResult addKernelPhases(qrt::KernelOp kernel,
                                format::TrainBinKernelDesc &out);
  LogicalResult addProgram(func::FuncOp step);
  LogicalResult addBuffer(qrt::BufferOp op);
  LogicalResult addLaunch(qrt::LaunchOp op, format::TrainBinProgramDesc &out);
  LogicalResult addCopy(qrt::CopyOp op, format::TrainBinProgramDesc &out);
  LogicalResult addModelInfo(func::FuncOp step);
  LogicalResult addLoraInfo();
  LogicalResult addLoraModule(uint32_t loraA);
  LogicalResult addOptimizerInfo(func::FuncOp step);

  /// The train.bin index of the buffer `value`, which `user` uses.
  FailureOr<uint32_t> getBufferIndex(Operation *user, Value value);
  /// The index of the buffer called `name`; std::nullopt when none is.
  std::optional<uint32_t> findBuffer(StringRef name) const {
    auto it = bufferByName.find(name);
    return it == bufferByName.end() ? std::nullopt : std::optional(it->second);
  }

  ModuleOp module;
  format::TrainBinDesc &desc;
  InitSectionBuilder inits;
  const TrainBinOptions &options;
  /// The ops behind desc.buffers, for diagnostics.
  SmallVector<qrt::BufferOp> bufferOps;
  llvm::DenseMap<Value, uint32_t> bufferByValue;
  llvm::StringMap<uint32_t> bufferByName;
  llvm::StringMap<uint32_t> kernelBySymbol;
};

} // namespace

/// Narrows `values` to u32; fails (after an error on `op`) when one is out
/// of range.
static FailureOr<std::vector<uint32_t>> toU32(Operation *op, StringRef what,
                                              ArrayRef<int64_t> values) {
  std::vector<uint32_t> result;
  for (int64_t value : values) {
    if (value < 0 || value > std::numeric_limits<uint32_t>::max())
      return op->emitOpError("'")
             << what << "' value " << value << " does not fit in 32 bits";
    result.push_back(uint32_t(value));
  }
  return result;
}

LogicalResult TrainBinTranslator::addKernels() {
  for (qrt::KernelOp kernel : module.getOps<qrt::KernelOp>()) {
    format::TrainBinKernelDesc out;
    out.symbol = kernel.getSymName().str();
    out.templateName = kernel.getTemplateName().str();
    FailureOr<format::KernelParams> params = qrt::getKernelParams(kernel);
    if (failed(params))
      return failure();
    out.params = std::move(*params);
    if (failed(addKernelImages(kernel, out)) ||
        failed(addKernelPhases(kernel, out)))
      return failure();
    kernelBySymbol[kernel.getSymName()] = desc.kernels.size();
    desc.kernels.push_back(std::move(out));
  }
  return success();
}

/// Each image becomes a section (borrowing the resource blob's bytes, which
/// the module keeps alive) named `<symbol>.<arch>`.
LogicalResult
TrainBinTranslator::addKernelImages(qrt::KernelOp kernel,
                                    format::TrainBinKernelDesc &out) {
  Attribute attr = kernel->getAttr(kCudaImagesAttr);
  if (!attr)
    return success();
  auto images = dyn_cast<DictionaryAttr>(attr);
  if (!images)
    return kernel.emitOpError("'")
           << kCudaImagesAttr << "' must be a dictionary from arch to image "
           << "bytes (set by --qrt-codegen-cuda), got " << attr;
  for (NamedAttribute image : images) {
    StringRef arch = image.getName().getValue();
    auto resource = dyn_cast<DenseResourceElementsAttr>(image.getValue());
    AsmResourceBlob *blob =
        resource ? resource.getRawHandle().getBlob() : nullptr;
    if (!blob || !resource.getElementType().isUnsignedInteger(8))
      return kernel.emitOpError("'")
             << kCudaImagesAttr << "' image '" << arch
             << "' must be a dense_resource of ui8 with its bytes, got "
             << image.getValue();
    if (arch != "ptx" && !arch.starts_with("sm_"))
      return kernel.emitOpError("'")
             << kCudaImagesAttr << "' has an image for '" << arch
             << "'; expected sm_NN or ptx";
    ArrayRef<char> bytes = blob->getData();
    format::TrainBinSectionData section;
    section.name = (kernel.getSymName() + "." + arch).str();
    section.borrowed = std::as_bytes(std::span(bytes.data(), bytes.size()));
    out.images.push_back({arch.str(), int32_t(desc.sections.size())});
    desc.sections.push_back(std::move(section));
  }
  return success();
}

/// `cuda.then`: the entries launched after the kernel's own, in order.
LogicalResult
TrainBinTranslator::addKernelPhases(qrt::KernelOp kernel,
                                    format::TrainBinKernelDesc &out) {
  Attribute attr = kernel->getAttr(kCudaThenAttr);
  if (!attr)
    return success();
  auto phases = dyn_cast<ArrayAttr>(attr);
  auto invalid = [&]() {
    return kernel.emitOpError("'")
           << kCudaThenAttr
           << "' must be an array of {entry: string, grid: array<i64: x, y, "
              "z>, block: array<i64: x, y, z>} (set by --qrt-codegen-cuda), "
              "got "
           << attr;
  };
  if (!phases)
    return invalid();
  for (Attribute element : phases) {
    auto phase = dyn_cast<DictionaryAttr>(element);
    auto entry = phase ? phase.getAs<StringAttr>("entry") : StringAttr();
    auto grid = phase ? phase.getAs<DenseI64ArrayAttr>("grid") : nullptr;
    auto block = phase ? phase.getAs<DenseI64ArrayAttr>("block") : nullptr;
    if (!entry || !grid || !block || grid.size() != 3 || block.size() != 3)
      return invalid();
    FailureOr<std::vector<uint32_t>> gridU32 =
        toU32(kernel, "grid", grid.asArrayRef());
    FailureOr<std::vector<uint32_t>> blockU32 =
        toU32(kernel, "block", block.asArrayRef());
    if (failed(gridU32) || failed(blockU32))
      return failure();
    out.then.push_back({entry.str(), *gridU32, *blockU32});
  }
  return success();
}

/// What --random-weights draws at load time for `buffer`: frozen weights
/// without bytes (std 0.02, RMSNorm weights 1, NF4 with absmax 0.04, whose
/// elements then have about the same spread) and PEFT's kaiming-uniform
/// lora_A (the same values as its section); std::nullopt for the rest.
static std::optional<format::TrainBinRandomInit>
getRandomInit(qrt::BufferOp buffer, StringRef name,
              const StoredLayout &layout) {
  using Kind = format::TrainBinRandomInit::Kind;
  format::TrainBinRandomInit random;
  random.stream = name.str();
  std::optional<Attribute> init = buffer.getInit();
  if (auto loraInit =
          dyn_cast_or_null<mlir::qlora::LoraInitAttr>(init.value_or(nullptr))) {
    if (loraInit.getValue() != mlir::qlora::LoraInit::kaiming_uniform ||
        layout.dtype != format::DType::F32 || layout.shape.size() != 2 ||
        !buffer.getSeed())
      return std::nullopt;
    random.kind = Kind::KaimingUniform;
    random.seed = uint64_t(*buffer.getSeed());
    random.scale = float(1.0 / std::sqrt(double(layout.shape[1])));
    return random;
  }
  qrt::BufferClass cls = buffer.getBufferClass();
  if (init || (cls != qrt::BufferClass::weight &&
               cls != qrt::BufferClass::quantized_weight))
    return std::nullopt;
  if (auto nf4 = dyn_cast_or_null<nf4::Nf4TensorType>(layout.elementType)) {
    random.kind = Kind::Nf4;
    random.scale = 0.04f;
    random.elements = nf4.getNumElements();
    random.blockSize = nf4.getBlockSize();
    random.dqBlockSize = nf4.getDqBlockSize();
    return random;
  }
  random.kind = layout.shape.size() == 1 ? Kind::Ones : Kind::Normal;
  random.scale = 0.02f;
  return random;
}

LogicalResult TrainBinTranslator::addBuffer(qrt::BufferOp op) {
  uint32_t index = desc.buffers.size();
  std::string name = op.getName().value_or("").str();
  if (op.getPlacement() != qrt::Placement::device)
    return op.emitOpError("has placement '")
           << qrt::stringifyPlacement(op.getPlacement())
           << "', but train.bin (schema version "
           << format::kTrainBinSchemaVersion
           << ") places every buffer in the device arena";
  std::optional<int64_t> offset = op.getOffset();
  if (!offset)
    return op.emitOpError("has no arena offset: run --qrt-plan-memory first");
  if (!name.empty() && !bufferByName.try_emplace(name, index).second)
    return op.emitOpError("is named '")
           << name << "' like an earlier buffer; the runtime finds "
           << "buffers by name";

  FailureOr<StoredLayout> layout = getStoredLayout(op);
  if (failed(layout))
    return failure();
  std::string sectionName =
      name.empty() ? "buffer." + std::to_string(index) : name;
  std::optional<format::TrainBinRandomInit> randomInit;
  if (options.randomWeights)
    randomInit = getRandomInit(op, sectionName, *layout);
  FailureOr<int32_t> section =
      randomInit ? -1 : inits.addInitSection(op, sectionName, *layout);
  if (failed(section))
    return failure();

  format::TrainBinBufferDesc out;
  out.name = std::move(name);
  out.cls =
      *format::parseBufferClass(qrt::stringifyBufferClass(op.getBufferClass()));
  out.dtype = layout->dtype;
  out.shape.assign(layout->shape.begin(), layout->shape.end());
  out.size = op.getSize();
  out.alignment = op.getAlignment();
  out.offset = *offset;
  out.initSection = *section;
  out.randomInit = std::move(randomInit);
  desc.buffers.push_back(std::move(out));
  bufferOps.push_back(op);
  bufferByValue[op.getResult()] = index;
  return success();
}

FailureOr<uint32_t> TrainBinTranslator::getBufferIndex(Operation *user,
                                                       Value value) {
  auto it = bufferByValue.find(value);
  if (it == bufferByValue.end())
    return user->emitOpError("uses a buffer that no earlier qrt.buffer of @")
           << kStepFunction << " defines";
  return it->second;
}

LogicalResult TrainBinTranslator::addLaunch(qrt::LaunchOp op,
                                            format::TrainBinProgramDesc &out) {
  auto kernel = kernelBySymbol.find(op.getKernel());
  if (kernel == kernelBySymbol.end())
    return op.emitOpError("launches @")
           << op.getKernel() << ", which is not a qrt.kernel of the module";
  std::vector<uint32_t> args;
  for (Value arg : op.getArgs()) {
    FailureOr<uint32_t> index = getBufferIndex(op, arg);
    if (failed(index))
      return failure();
    args.push_back(*index);
  }
  FailureOr<std::vector<uint32_t>> grid = toU32(op, "grid", op.getGrid());
  FailureOr<std::vector<uint32_t>> block = toU32(op, "block", op.getBlock());
  FailureOr<std::vector<uint32_t>> smem = toU32(op, "smem", {op.getSmem()});
  if (failed(grid) || failed(block) || failed(smem))
    return failure();
  out.instrs.push_back(format::TrainBinInstrDesc::launch(
      kernel->second, std::move(args), std::move(*grid), std::move(*block),
      smem->front()));
  return success();
}

LogicalResult TrainBinTranslator::addCopy(qrt::CopyOp op,
                                          format::TrainBinProgramDesc &out) {
  FailureOr<uint32_t> src = getBufferIndex(op, op.getSrc());
  FailureOr<uint32_t> dst = getBufferIndex(op, op.getDst());
  if (failed(src) || failed(dst))
    return failure();
  // The verifier checked that offsets and byte counts are non-negative.
  out.instrs.push_back(format::TrainBinInstrDesc::copy(
      *src, uint64_t(op.getSrcOffset()), *dst, uint64_t(op.getDstOffset()),
      uint64_t(op.getBytes())));
  return success();
}

LogicalResult TrainBinTranslator::addProgram(func::FuncOp step) {
  if (step.getNumArguments() != 0 || step.getNumResults() != 0)
    return step.emitOpError("still has arguments or results: lower it with "
                            "--qlora-lower-to-qrt first");
  if (!llvm::hasSingleElement(step.getBody()))
    return step.emitOpError("has more than one block; a train.bin program is "
                            "one straight-line sequence");
  format::TrainBinProgramDesc program;
  program.name = kStepFunction.str();
  for (Operation &op : step.getBody().front()) {
    LogicalResult result =
        llvm::TypeSwitch<Operation *, LogicalResult>(&op)
            .Case([&](qrt::BufferOp buffer) { return addBuffer(buffer); })
            .Case([&](qrt::LaunchOp launch) {
              return addLaunch(launch, program);
            })
            .Case([&](qrt::CopyOp copy) { return addCopy(copy, program); })
            .Case([&](func::ReturnOp) { return success(); })
            .Default([&](Operation *other) {
              return other->emitOpError(
                  "has no train.bin instruction; after --qrt-plan-memory "
                  "@train_step holds only qrt.buffer, qrt.launch and "
                  "qrt.copy");
            });
    if (failed(result))
      return failure();
  }
  desc.programs.push_back(std::move(program));
  return success();
}

/// The configuration qloracc-import stores in module attribute `name`.
template <typename AttrT>
static FailureOr<AttrT> getImportedConfig(ModuleOp module, StringRef name,
                                          StringRef what) {
  if (auto config = module->getAttrOfType<AttrT>(name))
    return config;
  return module.emitError("the module has no '")
         << name << "' " << what << " configuration (written by "
         << "qloracc-import)";
}

LogicalResult TrainBinTranslator::addModelInfo(func::FuncOp step) {
  auto config = getImportedConfig<mlir::qlora::ModelConfigAttr>(
      module, mlir::qlora::QloraDialect::kModelAttrName, "model");
  if (failed(config))
    return failure();
  auto gradAccum = step->getAttrOfType<IntegerAttr>(kGradAccumAttr);
  if (!gradAccum || gradAccum.getInt() < 1)
    return step.emitOpError("needs a positive integer '")
           << kGradAccumAttr << "' (set by --qlora-build-training-step)";
  std::optional<uint32_t> tokens = findBuffer(kTokensBuffer);
  if (!tokens)
    return step.emitOpError("has no io buffer named '")
           << kTokensBuffer << "' for the runtime to bind token ids to";
  qrt::BufferOp tokensOp = bufferOps[*tokens];
  auto type = dyn_cast_if_present<RankedTensorType>(tokensOp.getStoredType());
  if (!type || type.getRank() != 2 ||
      type.getDimSize(0) % gradAccum.getInt() != 0)
    return tokensOp.emitOpError("'")
           << kTokensBuffer
           << "' must be a [grad_accum * batch, seq] tensor with "
              "grad_accum = "
           << gradAccum.getInt() << ", got " << tokensOp.getStoredType();

  format::TrainBinModelInfo &model = desc.model;
  model.architecture = config->getArchitecture().str();
  model.nameOrPath = config->getNameOrPath().str();
  model.vocabSize = config->getVocabSize();
  model.hiddenSize = config->getHiddenSize();
  model.numHiddenLayers = config->getNumHiddenLayers();
  model.gradAccum = gradAccum.getInt();
  model.batch = type.getDimSize(0) / gradAccum.getInt();
  model.seq = type.getDimSize(1);
  return success();
}

LogicalResult TrainBinTranslator::addLoraModule(uint32_t loraA) {
  qrt::BufferOp opA = bufferOps[loraA];
  StringRef nameA = desc.buffers[loraA].name;
  StringRef module = nameA.drop_back(kLoraASuffix.size());
  std::string nameB = (module + kLoraBSuffix).str();
  std::string gradNameA = (nameA + kGradSuffix).str();
  std::string gradNameB = nameB + kGradSuffix.str();
  std::optional<uint32_t> loraB = findBuffer(nameB);
  if (!loraB || desc.buffers[*loraB].cls != format::BufferClass::Lora)
    return opA.emitOpError("LoRA matrix '")
           << nameA << "' has no partner: no lora buffer '" << nameB << "'";
  std::optional<uint32_t> gradA = findBuffer(gradNameA);
  std::optional<uint32_t> gradB = findBuffer(gradNameB);
  if (!gradA || !gradB)
    return opA.emitOpError("LoRA module '")
           << module << "' has no gradient buffer '"
           << (gradA ? gradNameB : gradNameA)
           << "' (does the loss depend on it?)";
  desc.lora.modules.push_back({module.str(), loraA, *loraB, *gradA, *gradB});
  return success();
}

LogicalResult TrainBinTranslator::addLoraInfo() {
  auto config = getImportedConfig<mlir::qlora::LoraConfigAttr>(
      module, mlir::qlora::QloraDialect::kLoraAttrName, "LoRA");
  if (failed(config))
    return failure();
  format::TrainBinLoraInfo &lora = desc.lora;
  lora.r = int32_t(config->getR());
  lora.alpha = config->getAlpha().convertToDouble();
  lora.dropout = config->getDropout().convertToDouble();
  lora.useRslora = config->getUseRslora();
  for (Attribute target : config->getTargets())
    lora.targetModules.push_back(cast<StringAttr>(target).str());

  // Every LoRA buffer is one half of a module; modules follow the order of
  // their lora_A buffers, i.e. of the parameters in the graph.
  for (auto [index, buffer] : llvm::enumerate(desc.buffers)) {
    if (buffer.cls != format::BufferClass::Lora)
      continue;
    StringRef name = buffer.name;
    if (name.ends_with(kLoraASuffix)) {
      if (failed(addLoraModule(index)))
        return failure();
      continue;
    }
    std::optional<uint32_t> partner =
        name.ends_with(kLoraBSuffix)
            ? findBuffer(
                  (name.drop_back(kLoraBSuffix.size()) + kLoraASuffix).str())
            : std::nullopt;
    if (!partner || desc.buffers[*partner].cls != format::BufferClass::Lora)
      return bufferOps[index].emitOpError("LoRA buffer '")
             << name << "' is not the lora_B of a module with a lora_A "
             << "(expected '<module>" << kLoraASuffix << "' and '<module>"
             << kLoraBSuffix << "')";
  }
  return success();
}

LogicalResult TrainBinTranslator::addOptimizerInfo(func::FuncOp step) {
  auto optimizer = step->getAttrOfType<DictionaryAttr>(kOptimizerAttr);
  if (!optimizer)
    return step.emitOpError("has no '")
           << kOptimizerAttr << "' (set by --qlora-build-training-step)";
  format::TrainBinOptimizerInfo &out = desc.optimizer;
  for (auto [key, field] : {std::pair{StringRef("beta1"), &out.beta1},
                            {"beta2", &out.beta2},
                            {"epsilon", &out.epsilon},
                            {"weight_decay", &out.weightDecay},
                            {"max_grad_norm", &out.maxGradNorm}}) {
    auto value = optimizer.getAs<FloatAttr>(key);
    if (!value)
      return step.emitOpError("'")
             << kOptimizerAttr << "' needs a float '" << key << "'";
    *field = value.getValueAsDouble();
  }
  return success();
}

LogicalResult TrainBinTranslator::translate() {
  desc.producer = getTrainBinProducer().str();
  auto step = module.lookupSymbol<func::FuncOp>(kStepFunction);
  if (!step)
    return module.emitError("the module has no @")
           << kStepFunction
           << ": run --qlora-build-training-step and --qlora-lower-to-qrt "
              "first";
  FailureOr<format::TrainBinMemoryPlan> memory = readMemoryPlan(module);
  if (failed(memory))
    return failure();
  desc.memory = std::move(*memory);
  if (failed(addKernels()) || failed(addProgram(step)) ||
      failed(addModelInfo(step)) || failed(addLoraInfo()) ||
      failed(addOptimizerInfo(step)))
    return failure();
  for (auto [buffer, op] : llvm::zip_equal(desc.buffers, bufferOps))
    if (buffer.offset + buffer.size > desc.memory.arenaSize)
      return op.emitOpError("ends at arena byte ")
             << buffer.offset + buffer.size << ", past the planned arena of "
             << desc.memory.arenaSize << " bytes";
  return success();
}

FailureOr<TrainBinContents>
translateToTrainBin(ModuleOp module, const TrainBinOptions &options) {
  TrainBinContents contents;
  if (failed(TrainBinTranslator(module, contents, options).translate()))
    return failure();
  return contents;
}

} // namespace qloracc
