//===- ThreadPool.cpp - Persistent worker threads for the CPU backend -----===//
#include "runtime/backends/cpu/ThreadPool.h"

#include <algorithm>
#include <atomic>
#include <exception>

namespace qlora::cpu {

namespace {
/// Set in pool workers and in a caller while it runs a job: a nested
/// parallelFor then runs inline instead of waiting on busy threads.
thread_local bool insideParallelFor = false;
} // namespace

struct ThreadPool::Job {
  void *fn;
  Trampoline call;
  int64_t begin, end, grain, numChunks;
  std::atomic<int64_t> next{0};
  std::mutex errorMutex;
  std::exception_ptr error;

  /// Claims and runs chunks until none is left or one has failed.
  void runChunks() {
    for (;;) {
      int64_t chunk = next.fetch_add(1, std::memory_order_relaxed);
      if (chunk >= numChunks)
        return;
      int64_t lo = begin + chunk * grain;
      int64_t hi = std::min(end, lo + grain);
      try {
        call(fn, lo, hi);
      } catch (...) {
        std::lock_guard<std::mutex> lock(errorMutex);
        if (!error)
          error = std::current_exception();
        next.store(numChunks, std::memory_order_relaxed);
        return;
      }
    }
  }
};

ThreadPool::ThreadPool(unsigned requested) {
  numThreads = requested ? requested : std::thread::hardware_concurrency();
  numThreads = std::max(numThreads, 1u);
  workers.reserve(numThreads - 1);
  for (unsigned i = 1; i < numThreads; ++i)
    workers.emplace_back([this] { workerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex);
    stopping = true;
  }
  wake.notify_all();
  for (std::thread &worker : workers)
    worker.join();
}

void ThreadPool::workerLoop() {
  insideParallelFor = true;
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lock(mutex);
  for (;;) {
    wake.wait(lock, [&] { return stopping || generation != seen; });
    if (stopping)
      return;
    seen = generation;
    // The caller clears `current` before waiting for workers to go idle, so
    // a worker that wakes late never touches a finished job.
    Job *job = current;
    if (!job)
      continue;
    ++active;
    lock.unlock();
    job->runChunks();
    lock.lock();
    if (--active == 0)
      idle.notify_all();
  }
}

void ThreadPool::run(int64_t begin, int64_t end, int64_t grain, void *fn,
                     Trampoline call) {
  if (end <= begin)
    return;
  grain = std::max<int64_t>(grain, 1);
  int64_t numChunks = (end - begin + grain - 1) / grain;
  if (numThreads == 1 || numChunks == 1 || insideParallelFor) {
    for (int64_t lo = begin; lo < end; lo += grain)
      call(fn, lo, std::min(end, lo + grain));
    return;
  }

  std::lock_guard<std::mutex> runLock(runMutex);
  Job job;
  job.fn = fn;
  job.call = call;
  job.begin = begin;
  job.end = end;
  job.grain = grain;
  job.numChunks = numChunks;
  {
    std::lock_guard<std::mutex> lock(mutex);
    current = &job;
    ++generation;
  }
  wake.notify_all();

  insideParallelFor = true;
  job.runChunks();
  insideParallelFor = false;

  {
    std::unique_lock<std::mutex> lock(mutex);
    current = nullptr;
    idle.wait(lock, [&] { return active == 0; });
  }
  if (job.error)
    std::rethrow_exception(job.error);
}

} // namespace qlora::cpu
