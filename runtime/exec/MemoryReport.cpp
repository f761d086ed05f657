//===- MemoryReport.cpp - The memory plan as a table ----------------------===//
#include "runtime/exec/MemoryReport.h"

#include "runtime/format/train_generated.h"
#include "runtime/train/TextFormat.h"

#include <array>
#include <cstdio>

namespace qlora::exec {

namespace {

struct Row {
  format::BufferClass cls;
  const char *label;
};

// The order users read a QLoRA budget in: what the model is, what training
// adds, what the step needs while it runs.
constexpr std::array<Row, format::kNumBufferClasses> kRows = {{
    {format::BufferClass::QuantizedWeight, "NF4 weights + scales"},
    {format::BufferClass::Weight, "other frozen weights"},
    {format::BufferClass::Lora, "LoRA params"},
    {format::BufferClass::Gradient, "gradients"},
    {format::BufferClass::Optimizer, "AdamW state"},
    {format::BufferClass::Activation, "saved activations"},
    {format::BufferClass::Recompute, "recompute workspace"},
    {format::BufferClass::Workspace, "kernel workspace"},
    {format::BufferClass::Io, "inputs/outputs"},
}};

std::string row(const char *label, const std::string &atPeak,
                const std::string &total) {
  char line[128];
  std::snprintf(line, sizeof(line), "  %-20s %14s %14s\n", label,
                atPeak.c_str(), total.c_str());
  return line;
}

} // namespace

std::string renderMemoryReport(const format::TrainBinMemoryPlan &plan) {
  std::string text = "peak: " + train::formatBytes(plan.peakBytes) + "\n";
  text += row("class", "at peak", "allocated");
  for (const Row &entry : kRows) {
    uint64_t peak = 0, total = 0;
    for (const format::TrainBinMemoryClass &cls : plan.byClass)
      if (cls.cls == entry.cls) {
        peak = cls.peakBytes;
        total = cls.totalBytes;
      }
    text +=
        row(entry.label, train::formatBytes(peak), train::formatBytes(total));
  }
  uint64_t fragmentation =
      plan.arenaSize > plan.peakBytes ? plan.arenaSize - plan.peakBytes : 0;
  text += row("fragmentation", train::formatBytes(fragmentation), "");
  text += row("arena", train::formatBytes(plan.arenaSize), "");
  return text;
}

std::string renderMeasuredPeak(uint64_t measuredBytes, uint64_t plannedBytes) {
  return "measured peak: " + train::formatBytes(measuredBytes) + " (planned " +
         train::formatBytes(plannedBytes) + ")\n";
}

format::TrainBinMemoryPlan memoryPlanOf(const format::TrainBinFile &file) {
  format::TrainBinMemoryPlan plan;
  const fb::MemoryPlan *memory = file.root().memory();
  if (!memory)
    return plan;
  plan.arenaSize = memory->arena_size();
  plan.peakBytes = memory->peak_bytes();
  if (memory->by_class())
    for (const fb::MemoryClassBytes *cls : *memory->by_class())
      plan.byClass.push_back({format::toBufferClass(cls->buffer_class()),
                              cls->peak_bytes(), cls->total_bytes()});
  return plan;
}

} // namespace qlora::exec
