//===- TempDirTest.h - A fresh directory per test ---------------*- C++ -*-===//
#ifndef QLORACC_TEST_RUNTIME_TEMPDIRTEST_H
#define QLORACC_TEST_RUNTIME_TEMPDIRTEST_H

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <unistd.h>

namespace qlora::testing {

/// A fixture whose `dir` is an empty directory named after the test (and
/// the process, so that parallel ctest runs never share one), removed after.
class TempDirTest : public ::testing::Test {
protected:
  explicit TempDirTest(std::string prefix) : prefix(std::move(prefix)) {}

  void SetUp() override {
    const auto *info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir = std::filesystem::path(::testing::TempDir()) /
          ("qlora-" + prefix + "-" + std::string(info->name()) + "." +
           std::to_string(::getpid()));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }

  /// The whole file, "" where it cannot be read.
  static std::string readFile(const std::filesystem::path &path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in),
            std::istreambuf_iterator<char>()};
  }

  std::string prefix;
  std::filesystem::path dir;
};

} // namespace qlora::testing

#endif // QLORACC_TEST_RUNTIME_TEMPDIRTEST_H
