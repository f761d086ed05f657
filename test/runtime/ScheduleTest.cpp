//===- ScheduleTest.cpp - Learning-rate schedule tests --------------------===//
//
// Expected values are what transformers' lr lambdas return, evaluated with
// CPython 3 (repr of the float), e.g. for cosine:
//
//   def cos(step, w, t, c=0.5):
//       if step < w: return float(step) / float(max(1, w))
//       p = float(step - w) / float(max(1, t - w))
//       return max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(c) * 2.0 * p)))
//
// and are compared exactly: the schedule must be bit-identical to HF's.
//
//===----------------------------------------------------------------------===//
#include "runtime/train/LrSchedule.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace qlora::train {
namespace {

LrSchedule make(ScheduleKind kind, double lr, int64_t warmup, int64_t total) {
  std::string error;
  std::optional<LrSchedule> schedule =
      LrSchedule::create(kind, lr, warmup, total, error);
  EXPECT_TRUE(schedule) << error;
  return *schedule;
}

std::vector<double> multipliers(const LrSchedule &schedule, int64_t count) {
  std::vector<double> values;
  for (int64_t step = 0; step < count; ++step)
    values.push_back(schedule.multiplierAt(step));
  return values;
}

TEST(ScheduleTest, ConstantWithWarmup) {
  LrSchedule schedule = make(ScheduleKind::Constant, 1e-4, 4, 10);
  EXPECT_EQ(multipliers(schedule, 7),
            (std::vector<double>{0.0, 0.25, 0.5, 0.75, 1.0, 1.0, 1.0}));
  // Constant ignores the total: still 1 past it.
  EXPECT_EQ(schedule.multiplierAt(100), 1.0);
}

TEST(ScheduleTest, LinearWithWarmup) {
  LrSchedule schedule = make(ScheduleKind::Linear, 1e-4, 3, 10);
  EXPECT_EQ(
      multipliers(schedule, 12),
      (std::vector<double>{0.0, 0.3333333333333333, 0.6666666666666666, 1.0,
                           0.8571428571428571, 0.7142857142857143,
                           0.5714285714285714, 0.42857142857142855,
                           0.2857142857142857, 0.14285714285714285, 0.0, 0.0}));
}

TEST(ScheduleTest, CosineWithWarmup) {
  LrSchedule schedule = make(ScheduleKind::Cosine, 1e-4, 2, 10);
  // Past the total the cosine rises again, as transformers computes it.
  EXPECT_EQ(multipliers(schedule, 13),
            (std::vector<double>{0.0, 0.5, 1.0, 0.9619397662556434,
                                 0.8535533905932737, 0.6913417161825449, 0.5,
                                 0.30865828381745514, 0.14644660940672627,
                                 0.03806023374435663, 0.0, 0.038060233744356575,
                                 0.14644660940672616}));
}

TEST(ScheduleTest, CosineWithoutWarmupStartsAtTheBaseRate) {
  LrSchedule schedule = make(ScheduleKind::Cosine, 1e-4, 0, 7);
  EXPECT_EQ(
      multipliers(schedule, 8),
      (std::vector<double>{1.0, 0.9504844339512095, 0.8117449009293668,
                           0.6112604669781572, 0.38873953302184283,
                           0.18825509907063326, 0.04951556604879048, 0.0}));
}

TEST(ScheduleTest, NoWarmupMeansTheFirstStepUsesTheBaseRate) {
  for (ScheduleKind kind :
       {ScheduleKind::Constant, ScheduleKind::Linear, ScheduleKind::Cosine}) {
    SCOPED_TRACE(scheduleKindName(kind));
    EXPECT_EQ(make(kind, 2e-4, 0, 5).lrAt(0), 2e-4);
  }
}

TEST(ScheduleTest, WarmupOfOneStepMakesTheFirstStepZero) {
  for (ScheduleKind kind :
       {ScheduleKind::Constant, ScheduleKind::Linear, ScheduleKind::Cosine}) {
    SCOPED_TRACE(scheduleKindName(kind));
    LrSchedule schedule = make(kind, 2e-4, 1, 5);
    EXPECT_EQ(schedule.multiplierAt(0), 0.0);
    EXPECT_EQ(schedule.multiplierAt(1), 1.0);
  }
}

TEST(ScheduleTest, WarmupLongerThanTraining) {
  // transformers does not refuse it: the warmup never finishes.
  LrSchedule linear = make(ScheduleKind::Linear, 1e-4, 10, 5);
  EXPECT_EQ(multipliers(linear, 5),
            (std::vector<double>{0.0, 0.1, 0.2, 0.3, 0.4}));
  // At the end of warmup max(1, 5 - 10) = 1 and (5 - 10) / 1 < 0, so 0.
  EXPECT_EQ(linear.multiplierAt(10), 0.0);
  LrSchedule cosine = make(ScheduleKind::Cosine, 1e-4, 5, 5);
  EXPECT_EQ(cosine.multiplierAt(4), 0.8);
  EXPECT_EQ(cosine.multiplierAt(5), 1.0);
}

TEST(ScheduleTest, SingleStepRuns) {
  EXPECT_EQ(make(ScheduleKind::Linear, 1e-4, 0, 1).multiplierAt(0), 1.0);
  EXPECT_EQ(make(ScheduleKind::Cosine, 1e-4, 0, 1).multiplierAt(0), 1.0);
}

TEST(ScheduleTest, LrIsBaseTimesMultiplierAsLambdaLRComputesIt) {
  // Python: 2e-4 * cos(5, 2, 10), 3e-4 * lin(4, 3, 10), 1e-4 * const(1, 3).
  EXPECT_EQ(make(ScheduleKind::Cosine, 2e-4, 2, 10).lrAt(5),
            0.000138268343236509);
  EXPECT_EQ(make(ScheduleKind::Linear, 3e-4, 3, 10).lrAt(4),
            0.0002571428571428571);
  EXPECT_EQ(make(ScheduleKind::Constant, 1e-4, 3, 10).lrAt(1),
            3.3333333333333335e-05);
}

TEST(ScheduleTest, ParsesScheduleNames) {
  std::string error;
  EXPECT_EQ(parseScheduleKind("constant", error), ScheduleKind::Constant);
  EXPECT_EQ(parseScheduleKind("linear", error), ScheduleKind::Linear);
  EXPECT_EQ(parseScheduleKind("cosine", error), ScheduleKind::Cosine);
  EXPECT_EQ(parseScheduleKind("Cosine", error), std::nullopt);
  EXPECT_EQ(error, "unknown LR schedule 'Cosine', expected constant, linear "
                   "or cosine");
  EXPECT_EQ(parseScheduleKind("", error), std::nullopt);
  EXPECT_EQ(error, "unknown LR schedule '', expected constant, linear or "
                   "cosine");
}

TEST(ScheduleTest, RejectsBadArguments) {
  std::string error;
  EXPECT_FALSE(LrSchedule::create(ScheduleKind::Linear, -1e-4, 0, 10, error));
  EXPECT_EQ(error, "learning rate -0.0001, expected a finite number >= 0");
  EXPECT_FALSE(
      LrSchedule::create(ScheduleKind::Linear, std::nan(""), 0, 10, error));
  EXPECT_EQ(error, "learning rate nan, expected a finite number >= 0");
  EXPECT_FALSE(LrSchedule::create(ScheduleKind::Cosine, 1e-4, -1, 10, error));
  EXPECT_EQ(error, "warmup steps -1, expected an integer >= 0");
  EXPECT_FALSE(LrSchedule::create(ScheduleKind::Constant, 1e-4, 0, 0, error));
  EXPECT_EQ(error, "total steps 0, expected an integer >= 1");

  std::optional<LrSchedule> schedule =
      LrSchedule::create(ScheduleKind::Cosine, 0.0, 3, 9, error);
  ASSERT_TRUE(schedule);
  EXPECT_EQ(schedule->kind(), ScheduleKind::Cosine);
  EXPECT_EQ(schedule->baseLr(), 0.0);
  EXPECT_EQ(schedule->warmupSteps(), 3);
  EXPECT_EQ(schedule->totalSteps(), 9);
}

} // namespace
} // namespace qlora::train
