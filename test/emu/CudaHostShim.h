//===- CudaHostShim.h - The CUDA that kernels/ uses, as host C++ -*- C++
//-*-===//
//
// Prepended (-include) to a translation unit that instantiateCudaKernel
// generated, so that g++ compiles it, unchanged, into a host shared library
// that runs the kernels. The runner (CudaEmuTest.cpp) puts empty
// <cuda_bf16.h>, <cuda_fp16.h> and <mma.h> on the include path.
//
// Execution model: the blocks of a launch run one after another (in the
// order $QLORA_EMU_BLOCK_ORDER names: forward, reverse or scattered), so
// __device__ globals, atomics and the last-block-finishes pattern behave as
// on a GPU whose blocks happen to run in order. A block's threads are fibers
// on one OS thread with their own stacks; they switch only at barriers
// (__syncthreads, __syncwarp, a warp shuffle), round robin, upwards and
// downwards in turn, so every thread runs up to its barrier before the
// barrier releases and a missing barrier shows. A warp shuffle is a barrier
// of the warp's lanes around a slot each. __shared__ variables are statics,
// shared by the block's fibers, gathered in a section of their own
// (SharedMemory.ld) that is filled with 0xff bytes before each block: a GPU
// leaves shared memory undefined at a block's start, so a read before the
// block's first write (a tile's missing zero fill) gives NaN here, not what the
// previous block left. WMMA fragments are held whole by lane 0 of the warp,
// which does the warp's work. A barrier that can never release (a thread waits
// on __syncthreads that others skip) aborts with the block and thread.
//
//===----------------------------------------------------------------------===//
#ifndef QLORACC_TEST_EMU_CUDAHOSTSHIM_H
#define QLORACC_TEST_EMU_CUDAHOSTSHIM_H

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <math.h>
#include <numeric>
#include <sys/mman.h>
#include <type_traits>
#include <utility>
#include <vector>
// Fibers switch with a few instructions on x86-64; elsewhere (or with
// -DQLORA_EMU_UCONTEXT) with swapcontext, which also saves the signal mask.
#if defined(__x86_64__) && !defined(QLORA_EMU_UCONTEXT)
#define QLORA_EMU_FAST_SWITCH 1
#else
#include <ucontext.h>
#endif
// Under -fsanitize=address ($QLORA_EMU_CXXFLAGS, with libasan preloaded)
// the fiber switches are announced, so that AddressSanitizer follows the
// stacks and finds kernels reading past __shared__ arrays.
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define QLORA_EMU_ASAN 1
#endif

#define __global__
#define __device__
#define __host__
#define __constant__
#define __shared__ static
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict

//===- vector types -------------------------------------------------------===//

#define QLORA_EMU_VECTOR(name, type, align)                                    \
  struct __attribute__((aligned(align))) name##1 {                             \
    type x;                                                                    \
  };                                                                           \
  struct __attribute__((aligned(2 * align))) name##2 {                         \
    type x, y;                                                                 \
  };                                                                           \
  struct name##3 {                                                             \
    type x, y, z;                                                              \
  };                                                                           \
  struct __attribute__((aligned(4 * align < 16 ? 4 * align : 16))) name##4 {   \
    type x, y, z, w;                                                           \
  };                                                                           \
  inline name##2 make_##name##2(type x, type y) { return {x, y}; }             \
  inline name##3 make_##name##3(type x, type y, type z) { return {x, y, z}; }  \
  inline name##4 make_##name##4(type x, type y, type z, type w) {              \
    return {x, y, z, w};                                                       \
  }
QLORA_EMU_VECTOR(float, float, 4)
QLORA_EMU_VECTOR(int, int, 4)
QLORA_EMU_VECTOR(uint, unsigned, 4)
QLORA_EMU_VECTOR(short, short, 2)
QLORA_EMU_VECTOR(ushort, unsigned short, 2)
QLORA_EMU_VECTOR(char, signed char, 1)
QLORA_EMU_VECTOR(uchar, unsigned char, 1)
QLORA_EMU_VECTOR(double, double, 8)
QLORA_EMU_VECTOR(longlong, long long, 8)
#undef QLORA_EMU_VECTOR

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};
inline constexpr int warpSize = 32;

// The running thread's coordinates, set at every fiber switch.
inline uint3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

//===- bf16 and fp16 ------------------------------------------------------===//

struct __nv_bfloat16 {
  unsigned short __x;
};
struct __align__(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
using nv_bfloat16 = __nv_bfloat16;
using nv_bfloat162 = __nv_bfloat162;

inline float __bfloat162float(__nv_bfloat16 v) {
  return std::bit_cast<float>(uint32_t(v.__x) << 16);
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if (std::isnan(f))
    return {uint16_t((u >> 16) | 0x40)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return {uint16_t(u >> 16)};
}
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return {__float2bfloat16_rn(a), __float2bfloat16_rn(b)};
}
inline __nv_bfloat162 __float2bfloat162_rn(float a) {
  return {__float2bfloat16_rn(a), __float2bfloat16_rn(a)};
}
inline float __low2float(__nv_bfloat162 v) { return __bfloat162float(v.x); }
inline float __high2float(__nv_bfloat162 v) { return __bfloat162float(v.y); }

struct __half {
  unsigned short __x;
};
struct __align__(4) __half2 {
  __half x, y;
};
inline float __half2float(__half h) {
  uint32_t sign = uint32_t(h.__x >> 15) << 31;
  int exponent = (h.__x >> 10) & 0x1f;
  uint32_t mantissa = h.__x & 0x3ffu;
  if (exponent == 0x1f)
    return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) // zero or subnormal: mantissa * 2^-24
    return (sign ? -1.0f : 1.0f) * std::ldexp(float(mantissa), -24);
  return std::bit_cast<float>(sign | uint32_t(exponent - 15 + 127) << 23 |
                              mantissa << 13);
}
inline __half __float2half_rn(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  float a = std::fabs(f);
  if (std::isnan(f))
    return {uint16_t(sign | 0x7e00u)};
  if (a >= 65520.0f) // rounds to infinity
    return {uint16_t(sign | 0x7c00u)};
  if (a < 6.103515625e-05f) // subnormal: a multiple of 2^-24, to nearest even
    return {uint16_t(sign | uint16_t(std::nearbyint(a * 16777216.0f)))};
  uint32_t bits = std::bit_cast<uint32_t>(a);
  bits += 0xfffu + ((bits >> 13) & 1u);
  return {uint16_t(sign | ((bits >> 13) - ((127 - 15) << 10)))};
}

//===- arithmetic intrinsics ----------------------------------------------===//

// One rounding each, as on the GPU (the TU is built with -ffp-contract=off).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __frcp_rn(float a) { return 1.0f / a; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __drcp_rn(double a) { return 1.0 / a; }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }
inline float __expf(float a) { return expf(a); }
inline float __logf(float a) { return logf(a); }
inline float __sinf(float a) { return sinf(a); }
inline float __cosf(float a) { return cosf(a); }
inline float __powf(float a, float b) { return powf(a, b); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float a) {
  return a < 0.0f ? 0.0f : (a > 1.0f ? 1.0f : a);
}
inline float rsqrtf(float a) { return 1.0f / std::sqrt(a); }
inline double rsqrt(double a) { return 1.0 / std::sqrt(a); }
inline float __int_as_float(int v) { return std::bit_cast<float>(v); }
inline float __uint_as_float(unsigned v) { return std::bit_cast<float>(v); }
inline int __float_as_int(float v) { return std::bit_cast<int>(v); }
inline unsigned __float_as_uint(float v) { return std::bit_cast<unsigned>(v); }
inline double __longlong_as_double(long long v) {
  return std::bit_cast<double>(v);
}
inline long long __double_as_longlong(double v) {
  return std::bit_cast<long long>(v);
}
inline int __popc(unsigned v) { return std::popcount(v); }
inline int __popcll(unsigned long long v) { return std::popcount(v); }
inline int __clz(int v) { return std::countl_zero(unsigned(v)); }
inline int __ffs(int v) { return v ? std::countr_zero(unsigned(v)) + 1 : 0; }
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned selector) {
  uint64_t bytes = uint64_t(y) << 32 | x;
  unsigned result = 0;
  for (int i = 0; i < 4; ++i)
    result |= unsigned((bytes >> (8 * ((selector >> (4 * i)) & 7))) & 0xff)
              << (8 * i);
  return result;
}
template <class A, class B> inline auto min(A a, B b) {
  using C = std::common_type_t<A, B>;
  return C(a) < C(b) ? C(a) : C(b);
}
template <class A, class B> inline auto max(A a, B b) {
  using C = std::common_type_t<A, B>;
  return C(a) < C(b) ? C(b) : C(a);
}
template <class T> inline T __ldg(const T *p) { return *p; }

//===- atomics (one OS thread runs every fiber) ---------------------------===//

namespace qlora_emu {
/// Stores next(*p) and returns the old value. One OS thread runs every
/// fiber, so a read-modify-write is atomic; the value parameters do not
/// take part in deduction, as CUDA's overloads convert their arguments.
template <class T, class Next> inline T update(T *p, Next next) {
  T old = *p;
  *p = next(old);
  return old;
}
template <class T> using Value = std::type_identity_t<T>;
} // namespace qlora_emu

template <class T> T atomicAdd(T *p, qlora_emu::Value<T> v) {
  return qlora_emu::update(p, [&](T old) { return T(old + v); });
}
template <class T> T atomicSub(T *p, qlora_emu::Value<T> v) {
  return qlora_emu::update(p, [&](T old) { return T(old - v); });
}
template <class T> T atomicExch(T *p, qlora_emu::Value<T> v) {
  return qlora_emu::update(p, [&](T) { return v; });
}
template <class T> T atomicMax(T *p, qlora_emu::Value<T> v) {
  return qlora_emu::update(p, [&](T old) { return old < v ? v : old; });
}
template <class T> T atomicMin(T *p, qlora_emu::Value<T> v) {
  return qlora_emu::update(p, [&](T old) { return v < old ? v : old; });
}
template <class T>
T atomicCAS(T *p, qlora_emu::Value<T> compare, qlora_emu::Value<T> v) {
  return qlora_emu::update(p, [&](T old) { return old == compare ? v : old; });
}
template <class T> T atomicAnd(T *p, qlora_emu::Value<T> v) {
  return qlora_emu::update(p, [&](T old) { return T(old & v); });
}
template <class T> T atomicOr(T *p, qlora_emu::Value<T> v) {
  return qlora_emu::update(p, [&](T old) { return T(old | v); });
}
template <class T> T atomicXor(T *p, qlora_emu::Value<T> v) {
  return qlora_emu::update(p, [&](T old) { return T(old ^ v); });
}
inline unsigned atomicInc(unsigned *p, unsigned limit) {
  return qlora_emu::update(
      p, [&](unsigned old) { return old >= limit ? 0 : old + 1; });
}
inline unsigned atomicDec(unsigned *p, unsigned limit) {
  return qlora_emu::update(p, [&](unsigned old) {
    return old == 0 || old > limit ? limit : old - 1;
  });
}
inline void __threadfence() {}
inline void __threadfence_block() {}
inline void __threadfence_system() {}

//===- fibers and barriers ------------------------------------------------===//

namespace qlora_emu {

#if QLORA_EMU_FAST_SWITCH
// Saves the callee-saved registers, MXCSR and the x87 control word on the
// current stack, stores the stack pointer in *save, and resumes `next` (a
// stack pointer saved the same way).
extern "C" void qlora_emu_switch(void **save, void *next);
asm(R"(
  .pushsection .text
  .p2align 4
  .hidden qlora_emu_switch
  .type qlora_emu_switch, @function
qlora_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size qlora_emu_switch, .-qlora_emu_switch
  .popsection
)");
#endif

struct Group {
  int count = 0, arrived = 0;
  unsigned generation = 0;
};

struct Fiber {
#if QLORA_EMU_FAST_SWITCH
  void *sp = nullptr;
#else
  ucontext_t context;
#endif
  char *stack = nullptr;
  uint3 id;
  bool done = false;
#if QLORA_EMU_ASAN
  const void *asanBottom = nullptr;
  size_t asanSize = 0;
#endif
};

constexpr size_t kStackBytes = 512 * 1024;

/// A cp.async: `size` bytes at `dst`, the first `read` of them from `src`,
/// the rest zeros.
struct PendingCopy {
  void *dst;
  const void *src;
  int read, size;
};

/// The launch being run.
struct Launch {
  void (*body)(void *) = nullptr;
  void *closure = nullptr;
  int threads = 0, current = 0, finished = 0;
  unsigned long long progress = 0; ///< arrivals so far
  std::vector<Fiber> fibers;
  Fiber scheduler;
  Group block;
  std::vector<Group> warps;
  /// Two slots a lane (a shuffle alternates between them).
  std::vector<uint64_t> slots;
  std::vector<unsigned> shuffles; ///< shuffles done by each warp's lanes
  /// Each thread's copyAsync copies not waited for yet.
  std::vector<std::vector<PendingCopy>> copies;
  Fiber *switchedFrom = nullptr;
};
inline Launch *launch = nullptr;

inline void resume(Fiber &from, Fiber &to) {
  if (&to != &launch->scheduler) {
    threadIdx = to.id;
  }
  launch->switchedFrom = &from;
#if QLORA_EMU_ASAN
  void *fakeStack = nullptr;
  __sanitizer_start_switch_fiber(from.done ? nullptr : &fakeStack,
                                 to.asanBottom, to.asanSize);
#endif
#if QLORA_EMU_FAST_SWITCH
  qlora_emu_switch(&from.sp, to.sp);
#else
  swapcontext(&from.context, &to.context);
#endif
#if QLORA_EMU_ASAN
  Fiber &previous = *launch->switchedFrom;
  __sanitizer_finish_switch_fiber(fakeStack, &previous.asanBottom,
                                  &previous.asanSize);
#endif
}

/// Switches to the next unfinished thread (of its warp when `warpOnly`),
/// upwards or downwards as `generation` of the awaited barrier is even or
/// odd: the threads run the code between two barriers in one order and the
/// next stretch in the reverse, so a missing barrier shows in either
/// direction.
inline void yield(bool warpOnly, unsigned generation) {
  Launch &l = *launch;
  int self = l.current, next = self;
  int first = warpOnly ? self / 32 * 32 : 0;
  int span = warpOnly ? std::min(32, l.threads - first) : l.threads;
  int step = generation % 2 ? span - 1 : 1;
  do
    next = first + (next - first + step) % span;
  while (l.fibers[size_t(next)].done && next != self);
  if (next == self)
    return;
  l.current = next;
  resume(l.fibers[size_t(self)], l.fibers[size_t(next)]);
}

[[noreturn]] inline void deadlock(const char *what) {
  std::fprintf(stderr,
               "cuda emulator: %s never releases: block (%u, %u, %u), "
               "thread %u waits while the others wait elsewhere or exited\n",
               what, blockIdx.x, blockIdx.y, blockIdx.z, threadIdx.x);
  std::abort();
}

/// Arrives at `group` and runs the others until it releases.
inline void arriveAndWait(Group &group, bool warpOnly, const char *what) {
  Launch &l = *launch;
  unsigned generation = group.generation;
  ++l.progress;
  if (++group.arrived == group.count) {
    group.arrived = 0;
    ++group.generation;
    return;
  }
  unsigned long long seen = l.progress;
  int idle = 0;
  while (group.generation == generation) {
    yield(warpOnly, generation);
    if (l.progress != seen) {
      seen = l.progress;
      idle = 0;
    } else if (++idle > 3) { // a full round of switches, nobody arrived
      deadlock(what);
    }
  }
}

inline Group &warpGroup() { return launch->warps[threadIdx.x / 32]; }

/// `value` of lane `source` (this lane's own when `source` < 0).
template <class V> inline V exchange(V value, int source) {
  static_assert(sizeof(V) <= 8, "a shuffle moves at most 8 bytes");
  Launch &l = *launch;
  const int lane = int(threadIdx.x) % 32, warp = int(threadIdx.x) / 32;
  unsigned &round = l.shuffles[size_t(l.current)];
  uint64_t *slots = &l.slots[(size_t(warp) * 2 + round % 2) * 32];
  ++round;
  std::memcpy(&slots[lane], &value, sizeof(V));
  arriveAndWait(warpGroup(), true, "a warp shuffle");
  if (source < 0 || source >= 32 || warp * 32 + source >= l.threads)
    return value;
  V result;
  std::memcpy(&result, &slots[source], sizeof(V));
  return result;
}

inline void runFiber() {
  Launch &l = *launch;
#if QLORA_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &l.switchedFrom->asanBottom,
                                  &l.switchedFrom->asanSize);
#endif
  l.body(l.closure);
  Fiber &self = l.fibers[size_t(l.current)];
  self.done = true;
  ++l.finished;
  ++l.progress;
  // An exited thread no longer holds up its block's or warp's barriers.
  for (Group *group : {&l.block, &warpGroup()}) {
    --group->count;
    if (group->arrived > 0 && group->arrived == group->count) {
      group->arrived = 0;
      ++group->generation;
    }
  }
  if (l.finished < l.threads)
    yield(false, 0);
  resume(self, l.scheduler);
  __builtin_unreachable();
}

#if QLORA_EMU_FAST_SWITCH
extern "C" inline void qlora_emu_fiber_entry() { runFiber(); }
#endif

inline void startFiber(Fiber &fiber) {
  if (!fiber.stack) {
    void *stack = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (stack == MAP_FAILED) {
      std::perror("cuda emulator: a fiber stack");
      std::abort();
    }
    fiber.stack = static_cast<char *>(stack);
  }
#if QLORA_EMU_ASAN
  // A finished thread's frames were never unwound.
  __asan_unpoison_memory_region(fiber.stack, kStackBytes);
  fiber.asanBottom = fiber.stack;
  fiber.asanSize = kStackBytes;
#endif
#if QLORA_EMU_FAST_SWITCH
  // What qlora_emu_switch pops: MXCSR and control word, six registers, and
  // the entry as the return address (16-byte aligned, as at a call).
  auto *top = reinterpret_cast<uint64_t *>(fiber.stack + kStackBytes) - 2;
  top[0] = reinterpret_cast<uint64_t>(&qlora_emu_fiber_entry);
  top[1] = 0;
  uint64_t *sp = top - 7;
  for (int i = 1; i < 7; ++i)
    sp[i] = 0;
  uint32_t control[2];
  __asm__ volatile("stmxcsr %0" : "=m"(control[0]));
  __asm__ volatile("fnstcw %0" : "=m"(control[1]));
  std::memcpy(sp, control, 8);
  fiber.sp = sp;
#else
  getcontext(&fiber.context);
  fiber.context.uc_stack.ss_sp = fiber.stack;
  fiber.context.uc_stack.ss_size = kStackBytes;
  fiber.context.uc_link = nullptr;
  makecontext(&fiber.context, &runFiber, 0);
#endif
  fiber.done = false;
}

/// The order blocks run in: $QLORA_EMU_BLOCK_ORDER `forward` (default),
/// `reverse` or `scattered` (a fixed permutation). A GPU runs blocks in any
/// order, so a kernel must give the same results under all three.
enum class BlockOrder { kForward, kReverse, kScattered };
inline BlockOrder blockOrder() {
  static const BlockOrder order = [] {
    const char *name = std::getenv("QLORA_EMU_BLOCK_ORDER");
    if (!name || !*name || std::strcmp(name, "forward") == 0)
      return BlockOrder::kForward;
    if (std::strcmp(name, "reverse") == 0)
      return BlockOrder::kReverse;
    if (std::strcmp(name, "scattered") == 0)
      return BlockOrder::kScattered;
    std::fprintf(stderr,
                 "cuda emulator: QLORA_EMU_BLOCK_ORDER '%s' is not "
                 "forward, reverse or scattered\n",
                 name);
    std::abort();
  }();
  return order;
}

/// The n-th of `blocks` block indices in a scattered order: n times a
/// stride near blocks / phi that shares no factor with `blocks`.
inline uint64_t scatter(uint64_t n, uint64_t blocks) {
  uint64_t stride = blocks * 618 / 1000 | 1;
  while (std::gcd(stride, blocks) != 1)
    stride += 2;
  return n * stride % blocks;
}

/// The bounds of the __shared__ variables' section, which SharedMemory.ld
/// defines in each kernel library (null where it is not used).
extern "C" char __start_qlora_emu_shared[]
    __attribute__((weak, visibility("hidden")));
extern "C" char __stop_qlora_emu_shared[]
    __attribute__((weak, visibility("hidden")));

/// Fills the __shared__ variables with 0xff bytes. Under AddressSanitizer
/// only their own bytes: its redzones between them must stay untouched.
inline void poisonSharedMemory() {
#if QLORA_EMU_ASAN
  for (char *p = __start_qlora_emu_shared; p < __stop_qlora_emu_shared; ++p)
    if (!__asan_address_is_poisoned(p))
      *p = char(0xff);
#else
  if (__start_qlora_emu_shared != __stop_qlora_emu_shared)
    std::memset(__start_qlora_emu_shared, 0xff,
                size_t(__stop_qlora_emu_shared - __start_qlora_emu_shared));
#endif
}

/// Runs `body` on every thread of every block of `grid`, blocks one after
/// another (in blockOrder()), each with its shared memory filled with 0xff.
template <class Body>
void run(dim3 grid, unsigned threads, Body &body, Launch &l) {
  l.body = [](void *closure) { (*static_cast<Body *>(closure))(); };
  l.closure = &body;
  l.threads = int(threads);
  l.fibers.resize(threads);
  int warps = int(threads + 31) / 32;
  gridDim = grid;
  blockDim = {threads, 1, 1};
  launch = &l;
  const uint64_t blocks = uint64_t(grid.x) * grid.y * grid.z;
  const BlockOrder order = blockOrder();
  for (uint64_t n = 0; n < blocks; ++n) {
    const uint64_t b = order == BlockOrder::kForward   ? n
                       : order == BlockOrder::kReverse ? blocks - 1 - n
                                                       : scatter(n, blocks);
    blockIdx = {unsigned(b % grid.x), unsigned(b / grid.x % grid.y),
                unsigned(b / grid.x / grid.y)};
    l.block = {int(threads), 0, 0};
    l.warps.assign(size_t(warps), Group{});
    for (int w = 0; w < warps; ++w)
      l.warps[size_t(w)].count = std::min(32, int(threads) - 32 * w);
    l.slots.assign(size_t(warps) * 64, 0);
    l.shuffles.assign(threads, 0);
    l.copies.assign(threads, {});
    poisonSharedMemory();
    l.finished = 0;
    for (unsigned t = 0; t < threads; ++t) {
      l.fibers[t].id = {t, 0, 0};
      startFiber(l.fibers[t]);
    }
    l.current = 0;
    resume(l.scheduler, l.fibers[0]);
  }
  launch = nullptr;
}

/// Casts the i-th pointer of `args` to the i-th parameter of `entry`.
template <class... P, size_t... I>
void call(void (*entry)(P...), void *const *args, std::index_sequence<I...>) {
  entry(static_cast<P>(args[I])...);
}

template <class... P>
void launchEntry(void (*entry)(P...), void *const *args, dim3 grid,
                 unsigned threads) {
  static Launch l;
  auto body = [&] { call(entry, args, std::index_sequence_for<P...>()); };
  run(grid, threads, body, l);
}

/// cp.async, deferred to the thread's next waitCopies (the latest a GPU
/// may land it), so that a read of the destination before then sees what
/// was there. Both addresses must be aligned to the copy's size, as PTX
/// requires (a GPU raises a misaligned-address error), even when nothing
/// is read.
inline void copyAsync(void *dst, const void *src, int read, int size) {
  const auto misaligned = [size](const void *p) {
    return reinterpret_cast<uintptr_t>(p) % unsigned(size) != 0;
  };
  if (misaligned(dst) || misaligned(src)) {
    std::fprintf(stderr,
                 "cuda emulator: cp.async of %d bytes from %p to %p: both "
                 "must be %d-byte aligned (block %u, thread %u)\n",
                 size, src, dst, size, blockIdx.x, threadIdx.x);
    std::abort();
  }
  launch->copies[size_t(launch->current)].push_back({dst, src, read, size});
}

inline void waitCopies() {
  for (const PendingCopy &c : launch->copies[size_t(launch->current)]) {
    std::memcpy(c.dst, c.src, size_t(c.read));
    std::memset(static_cast<char *>(c.dst) + c.read, 0,
                size_t(c.size - c.read));
  }
  launch->copies[size_t(launch->current)].clear();
}

} // namespace qlora_emu

inline void __syncthreads() {
  qlora_emu::arriveAndWait(qlora_emu::launch->block, false, "__syncthreads");
}
inline void __syncwarp(unsigned = 0xffffffffu) {
  qlora_emu::arriveAndWait(qlora_emu::warpGroup(), true, "__syncwarp");
}

//===- warp shuffles and votes --------------------------------------------===//

/// The first lane of `lane`'s segment of `width` lanes.
inline int qloraEmuSegment(int width) {
  return int(threadIdx.x) % 32 / width * width;
}
template <class V>
inline V __shfl_sync(unsigned, V v, int source, int width = 32) {
  return qlora_emu::exchange(v, qloraEmuSegment(width) + source % width);
}
template <class V>
inline V __shfl_xor_sync(unsigned, V v, int mask, int width = 32) {
  int lane = int(threadIdx.x) % 32, source = lane ^ mask;
  return qlora_emu::exchange(v, source / width == lane / width ? source : -1);
}
template <class V>
inline V __shfl_down_sync(unsigned, V v, unsigned delta, int width = 32) {
  int lane = int(threadIdx.x) % 32, source = lane + int(delta);
  return qlora_emu::exchange(v, source < qloraEmuSegment(width) + width ? source
                                                                        : -1);
}
template <class V>
inline V __shfl_up_sync(unsigned, V v, unsigned delta, int width = 32) {
  int lane = int(threadIdx.x) % 32, source = lane - int(delta);
  return qlora_emu::exchange(v, source >= qloraEmuSegment(width) ? source : -1);
}
inline unsigned __ballot_sync(unsigned, int predicate) {
  unsigned result = 0;
  int lanes = std::min(32, int(blockDim.x - threadIdx.x / 32 * 32));
  for (int lane = 0; lane < 32; ++lane) {
    int p = qlora_emu::exchange(predicate ? 1 : 0, lane);
    if (lane < lanes && p)
      result |= 1u << lane;
  }
  return result;
}
inline int __any_sync(unsigned mask, int p) {
  return __ballot_sync(mask, p) != 0;
}
inline int __all_sync(unsigned mask, int p) {
  return __ballot_sync(mask, p) == __ballot_sync(mask, 1);
}

//===- WMMA ---------------------------------------------------------------===//

namespace nvcuda::wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
enum layout_t { mem_row_major, mem_col_major };

/// The whole tile, in lane 0 of the warp; row-major [rows][columns].
template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static constexpr int kRows = std::is_same_v<Use, matrix_b> ? K : M;
  static constexpr int kColumns = std::is_same_v<Use, matrix_a> ? K : N;
  static constexpr int num_elements = kRows * kColumns;
  float x[kRows * kColumns];
};

inline bool leader() { return threadIdx.x % 32 == 0; }

inline void checkAligned(const void *p, unsigned ldm, unsigned elementBytes,
                         const char *what) {
  if (reinterpret_cast<uintptr_t>(p) % 32 != 0 ||
      (ldm * elementBytes) % 16 != 0) {
    std::fprintf(stderr,
                 "cuda emulator: %s: pointer %p must be 32-byte aligned and "
                 "ldm %u a multiple of 16 bytes (block %u, thread %u)\n",
                 what, p, ldm, blockIdx.x, threadIdx.x);
    std::abort();
  }
}

inline float wmmaFloat(float v) { return v; }
inline float wmmaFloat(__nv_bfloat16 v) { return __bfloat162float(v); }
inline float wmmaFloat(__half v) { return __half2float(v); }

template <class Use, int M, int N, int K, class T, class Layout, class E>
void fill_fragment(fragment<Use, M, N, K, T, Layout> &f, E value) {
  for (float &e : f.x)
    e = wmmaFloat(value);
}

/// Element (r, c) of a matrix at `p` stored row- or column-major.
template <class E>
float at(const E *p, unsigned ldm, bool rowMajor, int r, int c) {
  return wmmaFloat(rowMajor ? p[size_t(r) * ldm + c] : p[size_t(c) * ldm + r]);
}

template <class Use, int M, int N, int K, class T, class Layout, class E>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout> &f, const E *p,
                      unsigned ldm) {
  static_assert(!std::is_same_v<Layout, void>, "give the layout");
  checkAligned(p, ldm, sizeof(E), "load_matrix_sync");
  if (!leader())
    return;
  using F = fragment<Use, M, N, K, T, Layout>;
  for (int r = 0; r < F::kRows; ++r)
    for (int c = 0; c < F::kColumns; ++c)
      f.x[r * F::kColumns + c] =
          at(p, ldm, std::is_same_v<Layout, row_major>, r, c);
}

template <int M, int N, int K, class E>
void load_matrix_sync(fragment<accumulator, M, N, K, float> &f, const E *p,
                      unsigned ldm, layout_t layout) {
  checkAligned(p, ldm, sizeof(E), "load_matrix_sync");
  if (!leader())
    return;
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c)
      f.x[r * N + c] = at(p, ldm, layout == mem_row_major, r, c);
}

template <int M, int N, int K, class TA, class LA, class TB, class LB>
void mma_sync(fragment<accumulator, M, N, K, float> &d,
              const fragment<matrix_a, M, N, K, TA, LA> &a,
              const fragment<matrix_b, M, N, K, TB, LB> &b,
              const fragment<accumulator, M, N, K, float> &c) {
  if (!leader())
    return;
  float out[M * N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      float sum = c.x[i * N + j];
      for (int k = 0; k < K; ++k)
        sum += a.x[i * K + k] * b.x[k * N + j];
      out[i * N + j] = sum;
    }
  std::memcpy(d.x, out, sizeof(out));
}

template <int M, int N, int K, class E>
void store_matrix_sync(E *p, const fragment<accumulator, M, N, K, float> &f,
                       unsigned ldm, layout_t layout) {
  checkAligned(p, ldm, sizeof(E), "store_matrix_sync");
  if (!leader())
    return;
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) {
      float v = f.x[r * N + c];
      E &out = layout == mem_row_major ? p[size_t(r) * ldm + c]
                                       : p[size_t(c) * ldm + r];
      if constexpr (std::is_same_v<E, float>)
        out = v;
      else if constexpr (std::is_same_v<E, __half>)
        out = __float2half_rn(v);
      else
        out = __float2bfloat16_rn(v);
    }
}
} // namespace nvcuda::wmma

#endif // QLORACC_TEST_EMU_CUDAHOSTSHIM_H
