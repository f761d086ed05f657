//===- ProgressTest.cpp - Progress line, metrics file and text formats ----===//
#include "runtime/train/MetricsWriter.h"
#include "runtime/train/ProgressBar.h"
#include "runtime/train/TextFormat.h"

#include "test/runtime/TempDirTest.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <unistd.h>

namespace qlora::train {
namespace {

namespace fs = std::filesystem;

//===----------------------------------------------------------------------===//
// Text formats
//===----------------------------------------------------------------------===//

TEST(TextFormatTest, ParsesSizesAsUsersWriteThem) {
  EXPECT_EQ(parseBytes("4096"), 4096u);
  EXPECT_EQ(parseBytes("24GiB"), 24ull << 30);
  EXPECT_EQ(parseBytes("24 GiB"), 24ull << 30);
  EXPECT_EQ(parseBytes("24G"), 24ull << 30);
  EXPECT_EQ(parseBytes("48GB"), 48000000000ull);
  EXPECT_EQ(parseBytes("1.5MiB"), 1572864u);
  EXPECT_EQ(parseBytes("512KiB"), 512u << 10);
  EXPECT_EQ(parseBytes("1TiB"), 1ull << 40);
  EXPECT_EQ(parseBytes(""), std::nullopt);
  EXPECT_EQ(parseBytes("GiB"), std::nullopt);
  EXPECT_EQ(parseBytes("24 gigs"), std::nullopt);
  EXPECT_EQ(parseBytes("-1GiB"), std::nullopt);
  EXPECT_EQ(parseBytes("0.3B"), std::nullopt);
  EXPECT_EQ(parseBytes("20000000TiB"), std::nullopt);
}

TEST(TextFormatTest, FormatsBytesInBinaryUnits) {
  EXPECT_EQ(formatBytes(0), "0 B");
  EXPECT_EQ(formatBytes(1023), "1023 B");
  EXPECT_EQ(formatBytes(1024), "1.00 KiB");
  EXPECT_EQ(formatBytes(1536), "1.50 KiB");
  EXPECT_EQ(formatBytes(6249177743), "5.82 GiB");
  EXPECT_EQ(formatBytes(uint64_t{3} << 40), "3.00 TiB");
  // 1023.999 KiB would round to "1024.00 KiB".
  EXPECT_EQ(formatBytes(1048575), "1.00 MiB");
  EXPECT_EQ(formatBytes(1048064), "1023.50 KiB");
  EXPECT_EQ(formatBytes(std::numeric_limits<uint64_t>::max()), "16.00 EiB");
}

TEST(TextFormatTest, FormatsThousands) {
  EXPECT_EQ(formatThousands(0), "0");
  EXPECT_EQ(formatThousands(999), "999");
  EXPECT_EQ(formatThousands(1000), "1,000");
  EXPECT_EQ(formatThousands(12345), "12,345");
  EXPECT_EQ(formatThousands(1234567), "1,234,567");
  EXPECT_EQ(formatThousands(-1234), "-1,234");
  EXPECT_EQ(formatThousands(std::numeric_limits<int64_t>::min()),
            "-9,223,372,036,854,775,808");
}

TEST(TextFormatTest, FormatsDurations) {
  EXPECT_EQ(formatDuration(0), "0:00:00");
  EXPECT_EQ(formatDuration(72.4), "0:01:12");
  EXPECT_EQ(formatDuration(59.5), "0:01:00");
  EXPECT_EQ(formatDuration(100000), "27:46:40");
  EXPECT_EQ(formatDuration(-1), "-:--:--");
  EXPECT_EQ(formatDuration(std::nan("")), "-:--:--");
  EXPECT_EQ(formatDuration(HUGE_VAL), "-:--:--");
}

//===----------------------------------------------------------------------===//
// Progress line
//===----------------------------------------------------------------------===//

TEST(ProgressLineTest, ShowsStepBarLossSpeedAndEta) {
  // 37 steps in 18.5 s: 0.5 s per step, 163 steps left, 81.5 s -> 0:01:22.
  EXPECT_EQ(renderProgressLine({37, 200, 2.31414, 12345.4, 18.5}),
            "step 37/200 [###.................]  18% | loss 2.3141 | 12,345 "
            "tok/s | ETA 0:01:22");
}

TEST(ProgressLineTest, FirstAndLastSteps) {
  EXPECT_EQ(renderProgressLine({1, 3, 10.0, 0.4, 2.0}),
            "step 1/3 [######..............]  33% | loss 10.0000 | 0 tok/s | "
            "ETA 0:00:04");
  // The last step shows the elapsed time instead of an ETA.
  EXPECT_EQ(renderProgressLine({3, 3, 1.5, 999.5, 3725.0}),
            "step 3/3 [####################] 100% | loss 1.5000 | 1,000 tok/s "
            "| elapsed 1:02:05");
}

TEST(ProgressLineTest, UnknownValues) {
  EXPECT_EQ(renderProgressLine({0, 10, std::nan(""), std::nan(""), 0}),
            "step 0/10 [....................]   0% | loss nan | - tok/s | ETA "
            "-:--:--");
  EXPECT_EQ(renderProgressLine({5, 10, HUGE_VAL, -1, 1}),
            "step 5/10 [##########..........]  50% | loss inf | - tok/s | ETA "
            "0:00:01");
}

/// Runs `drive` on a ProgressBar writing to a temporary file and returns
/// what it wrote.
template <typename Drive>
std::string captureProgress(int64_t total, bool tty, Drive drive) {
  std::FILE *file = std::tmpfile();
  EXPECT_NE(file, nullptr);
  {
    ProgressBar bar(file, total, tty);
    drive(bar);
  }
  std::string text;
  std::rewind(file);
  for (int c; (c = std::fgetc(file)) != EOF;)
    text += static_cast<char>(c);
  std::fclose(file);
  return text;
}

TEST(ProgressBarTest, RedrawsInPlaceOnATerminal) {
  std::string text = captureProgress(2, /*tty=*/true, [](ProgressBar &bar) {
    bar.update(1, 2.5, 12345, 1.0);
    bar.update(2, 2.25, 5, 2.0);
    bar.finish();
    bar.finish(); // idempotent
  });
  std::string first = "step 1/2 [##########..........]  50% | loss 2.5000 | "
                      "12,345 tok/s | ETA 0:00:01";
  std::string second = "step 2/2 [####################] 100% | loss 2.2500 | "
                       "5 tok/s | elapsed 0:00:02";
  // The second line is shorter: spaces cover the rest of the first.
  ASSERT_LT(second.size(), first.size());
  EXPECT_EQ(text, "\r" + first + "\r" + second +
                      std::string(first.size() - second.size(), ' ') + "\n");
}

TEST(ProgressBarTest, TerminalLineIsEndedWhenTheBarIsDestroyed) {
  std::string text = captureProgress(
      4, /*tty=*/true, [](ProgressBar &bar) { bar.update(1, 1.0, 10, 1.0); });
  EXPECT_EQ(text, "\rstep 1/4 [#####...............]  25% | loss 1.0000 | 10 "
                  "tok/s | ETA 0:00:03\n");
}

TEST(ProgressBarTest, LogGetsAPlainLineEveryTwentiethOfTheRun) {
  // 40 steps: a line every 2 steps; stopped after step 5, finish() adds it.
  std::string text = captureProgress(40, /*tty=*/false, [](ProgressBar &bar) {
    for (int step = 1; step <= 5; ++step)
      bar.update(step, 1.0, 100, step * 1.0);
    bar.finish();
    bar.finish();
  });
  EXPECT_EQ(text,
            "step 2/40 [#...................]   5% | loss 1.0000 | 100 tok/s | "
            "ETA 0:00:38\n"
            "step 4/40 [##..................]  10% | loss 1.0000 | 100 tok/s | "
            "ETA 0:00:36\n"
            "step 5/40 [##..................]  12% | loss 1.0000 | 100 tok/s | "
            "ETA 0:00:35\n");
}

TEST(ProgressBarTest, ShortRunsLogEveryStep) {
  std::string text = captureProgress(3, /*tty=*/false, [](ProgressBar &bar) {
    for (int step = 1; step <= 3; ++step)
      bar.update(step, 0.5, 1000, step * 2.0);
    bar.finish();
  });
  EXPECT_EQ(text,
            "step 1/3 [######..............]  33% | loss 0.5000 | 1,000 tok/s "
            "| ETA 0:00:04\n"
            "step 2/3 [#############.......]  66% | loss 0.5000 | 1,000 tok/s "
            "| ETA 0:00:02\n"
            "step 3/3 [####################] 100% | loss 0.5000 | 1,000 tok/s "
            "| elapsed 0:00:06\n");
}

TEST(ProgressBarTest, LastStepIsAlwaysLogged) {
  // 45 steps: every 2 steps, and step 45 too although it is odd.
  std::string text = captureProgress(45, /*tty=*/false, [](ProgressBar &bar) {
    for (int step = 1; step <= 45; ++step)
      bar.update(step, 0.5, 1000, step * 1.0);
  });
  size_t lines =
      static_cast<size_t>(std::count(text.begin(), text.end(), '\n'));
  EXPECT_EQ(lines, 23u);
  EXPECT_NE(text.find("step 45/45 [####################] 100%"),
            std::string::npos);
}

TEST(ProgressBarTest, MeasuresElapsedTimeItself) {
  std::string text = captureProgress(
      2, /*tty=*/false, [](ProgressBar &bar) { bar.update(2, 1.0, 10); });
  EXPECT_EQ(text, "step 2/2 [####################] 100% | loss 1.0000 | 10 "
                  "tok/s | elapsed 0:00:00\n");
}

//===----------------------------------------------------------------------===//
// Metrics file
//===----------------------------------------------------------------------===//

class MetricsTest : public qlora::testing::TempDirTest {
protected:
  MetricsTest() : TempDirTest("metrics") {}
};

TEST_F(MetricsTest, LineHasTheKeysInOrder) {
  EXPECT_EQ(metricsLine({1, 2.5, 2e-4, 1.25, 1000.5, 0.75}),
            R"({"step":1,"loss":2.5,"lr":0.0002,"grad_norm":1.25,)"
            R"("tokens_per_s":1000.5,"elapsed_s":0.75})");
  // Shortest round-trip doubles; NaN and infinity become null.
  EXPECT_EQ(metricsLine({12, 0.1 + 0.2, 0, std::nan(""), HUGE_VAL, 1e-7}),
            R"({"step":12,"loss":0.30000000000000004,"lr":0.0,)"
            R"("grad_norm":null,"tokens_per_s":null,"elapsed_s":1e-07})");
  // The measured high-water mark comes last when the runtime has one.
  EXPECT_EQ(
      metricsLine({3, 1.0, 0, 0.5, 10, 2, 361152}),
      R"({"step":3,"loss":1.0,"lr":0.0,"grad_norm":0.5,)"
      R"("tokens_per_s":10.0,"elapsed_s":2.0,"measured_peak_bytes":361152})");
}

TEST_F(MetricsTest, WritesOneFlushedLinePerStepAndTruncates) {
  std::string path = (dir / "metrics.jsonl").string();
  {
    std::ofstream old(path);
    old << "old contents that must go\n";
  }
  std::string error;
  std::unique_ptr<MetricsWriter> writer = MetricsWriter::open(path, error);
  ASSERT_TRUE(writer) << error;
  EXPECT_EQ(writer->path(), path);
  EXPECT_EQ(readFile(path), "");
  ASSERT_TRUE(writer->write({1, 3.0, 1e-4, 0.5, 100, 1}, error)) << error;
  // Flushed: readable before close.
  EXPECT_EQ(readFile(path), metricsLine({1, 3.0, 1e-4, 0.5, 100, 1}) + "\n");
  ASSERT_TRUE(writer->write({2, 2.0, 1e-4, 0.25, 200, 2}, error)) << error;
  ASSERT_TRUE(writer->close(error)) << error;
  EXPECT_TRUE(writer->close(error));
  EXPECT_EQ(readFile(path),
            R"({"step":1,"loss":3.0,"lr":0.0001,"grad_norm":0.5,)"
            R"("tokens_per_s":100.0,"elapsed_s":1.0})"
            "\n"
            R"({"step":2,"loss":2.0,"lr":0.0001,"grad_norm":0.25,)"
            R"("tokens_per_s":200.0,"elapsed_s":2.0})"
            "\n");
  EXPECT_FALSE(writer->write({3, 1, 1, 1, 1, 1}, error));
  EXPECT_EQ(error, path + ": cannot write the metrics of step 3: the file is "
                          "closed");
}

TEST_F(MetricsTest, OpenErrorNamesTheFile) {
  std::string path = (dir / "missing" / "metrics.jsonl").string();
  std::string error;
  EXPECT_EQ(MetricsWriter::open(path, error), nullptr);
  EXPECT_EQ(error, path + ": cannot open for writing: No such file or "
                          "directory");
}

TEST_F(MetricsTest, WriteErrorNamesTheFileAndStep) {
  if (!fs::exists("/dev/full"))
    GTEST_SKIP() << "no /dev/full to fill";
  std::string error;
  std::unique_ptr<MetricsWriter> writer =
      MetricsWriter::open("/dev/full", error);
  ASSERT_TRUE(writer) << error;
  EXPECT_FALSE(writer->write({7, 1, 1, 1, 1, 1}, error));
  EXPECT_EQ(error, "/dev/full: cannot write the metrics of step 7: No space "
                   "left on device");
}

} // namespace
} // namespace qlora::train
