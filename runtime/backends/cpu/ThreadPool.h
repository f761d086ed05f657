//===- ThreadPool.h - Persistent worker threads -----------------*- C++ -*-===//
//
// A fixed set of threads that run `parallelFor` ranges. The range is cut into
// chunks of `grain` indices that depend only on (begin, end, grain), never on
// the number of threads, and `fn` is called once per chunk; which thread runs
// a chunk is not specified. A kernel whose chunks write disjoint outputs, and
// that reduces across chunks only after parallelFor returns and in chunk
// order, therefore gives bit-identical results with 1 or N threads.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_RUNTIME_BACKENDS_CPU_THREADPOOL_H
#define QLORACC_RUNTIME_BACKENDS_CPU_THREADPOOL_H

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace qlora::cpu {

class ThreadPool {
public:
  /// `numThreads` threads take part in each parallelFor, the calling thread
  /// being one of them; 0 means std::thread::hardware_concurrency().
  explicit ThreadPool(unsigned numThreads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  /// Threads taking part in a parallelFor, the caller included.
  unsigned size() const { return numThreads; }

  /// Calls fn(lo, hi) for every chunk [lo, hi) of [begin, end) cut every
  /// `grain` indices (grain < 1 reads as 1), and returns when all are done.
  /// The first exception thrown by fn is rethrown here after the others
  /// finish. A parallelFor called from inside fn runs its chunks in order in
  /// the calling thread.
  template <typename Fn>
  void parallelFor(int64_t begin, int64_t end, int64_t grain, Fn &&fn) {
    using FnType = std::remove_reference_t<Fn>;
    run(begin, end, grain, const_cast<void *>(static_cast<const void *>(&fn)),
        [](void *f, int64_t lo, int64_t hi) {
          (*static_cast<FnType *>(f))(lo, hi);
        });
  }

private:
  using Trampoline = void (*)(void *, int64_t, int64_t);
  struct Job;

  void run(int64_t begin, int64_t end, int64_t grain, void *fn,
           Trampoline call);
  void workerLoop();

  unsigned numThreads;
  std::vector<std::thread> workers;
  std::mutex runMutex; // one parallelFor at a time
  std::mutex mutex;    // guards everything below
  std::condition_variable wake;
  std::condition_variable idle;
  Job *current = nullptr;
  uint64_t generation = 0;
  unsigned active = 0;
  bool stopping = false;
};

} // namespace qlora::cpu

#endif // QLORACC_RUNTIME_BACKENDS_CPU_THREADPOOL_H
