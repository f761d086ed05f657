//===- TextFormat.h - Numbers as people read them ---------------*- C++ -*-===//
//
// The spellings of sizes, counts and durations in qlora-run's progress line
// and memory report.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_TRAIN_TEXTFORMAT_H
#define QLORACC_RUNTIME_TRAIN_TEXTFORMAT_H

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace qlora::train {

/// Binary units with two decimals: "512 B", "1.50 KiB", "5.82 GiB" (up to
/// EiB). The unit is chosen so that the rounded number stays below 1024.
std::string formatBytes(uint64_t bytes);

/// A size as users write it: a number (decimals allowed) and an optional
/// unit, binary (KiB, MiB, GiB, TiB) or decimal (KB, MB, GB, TB; K, M, G, T
/// are binary), with an optional space: "24GiB", "1.5 GiB", "48GB",
/// "4096". std::nullopt for anything else or more than 2^64 - 1 bytes.
std::optional<uint64_t> parseBytes(std::string_view text);

/// An integer with comma thousands separators: "12,345", "-1,000".
std::string formatThousands(int64_t value);

/// Whole seconds (rounded to nearest) as H:MM:SS, e.g. "0:01:12",
/// "27:46:40"; "-:--:--" when `seconds` is negative or not finite.
std::string formatDuration(double seconds);

} // namespace qlora::train

#endif // QLORACC_RUNTIME_TRAIN_TEXTFORMAT_H
