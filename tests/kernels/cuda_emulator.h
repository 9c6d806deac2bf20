// A CPU emulation of the CUDA execution model, enough to run kernels/*.cu as host C++.
//
// A launch runs its blocks one after another; each block runs blockDim.x real OS threads that
// share the block's dynamic shared memory. __syncthreads is a barrier of the block's threads,
// __shfl_down_sync and __any_sync exchange through the block with a barrier per warp of 32 lanes, atomics
// are std::atomic_ref. Threads really run concurrently, so a missing barrier or a race can
// show. What it cannot show: the device's memory model and timing, nvcc's code generation.
// Only one-dimensional launches, as the launchers use.
#pragma once

#include <atomic>
#include <barrier>
#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline

struct dim3 {
  unsigned int x = 1, y = 1, z = 1;
};
struct alignas(16) uint4 {
  unsigned int x, y, z, w;
};

inline dim3 gridDim, blockDim;
inline thread_local dim3 blockIdx, threadIdx;

namespace emu {

struct Block {
  explicit Block(unsigned threads, size_t shared_bytes)
      : shared((shared_bytes + 15) / 16 + 1), barrier(threads), exchange(threads) {
    for (unsigned w = 0; w < threads / 32; ++w) warps.push_back(std::make_unique<std::barrier<>>(32));
  }
  std::vector<uint4> shared;  // 16-byte aligned, like the device's
  std::barrier<> barrier;
  std::vector<std::uint64_t> exchange;
  std::vector<std::unique_ptr<std::barrier<>>> warps;
};

inline thread_local Block* block = nullptr;

[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "cuda emulator: %s\n", what);
  std::abort();
}

template <class T>
T* shared_memory() {
  return reinterpret_cast<T*>(block->shared.data());
}

// Calls `kernel` with the argument values `args` points to, as cuLaunchKernel's kernelParams.
template <class... P, size_t... I>
void call(void (*kernel)(P...), void** args, std::index_sequence<I...>) {
  kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<P>>*>(args[I])...);
}

template <class... P>
void launch(void (*kernel)(P...), unsigned grid, unsigned threads, size_t shared_bytes,
            void** args) {
  if (threads == 0 || threads % 32 != 0 || threads > 1024) fail("block size must be 32..1024, a multiple of 32");
  gridDim = dim3{grid, 1, 1};
  blockDim = dim3{threads, 1, 1};
  for (unsigned b = 0; b < grid; ++b) {
    Block state(threads, shared_bytes);
    // Shared memory starts as garbage on a device: poison it so reads before writes show.
    std::memset(state.shared.data(), 0xA5, state.shared.size() * sizeof(uint4));
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (unsigned t = 0; t < threads; ++t) {
      pool.emplace_back([&, b, t] {
        blockIdx = dim3{b, 0, 0};
        threadIdx = dim3{t, 0, 0};
        block = &state;
        call(kernel, args, std::index_sequence_for<P...>{});
      });
    }
    for (auto& thread : pool) thread.join();
  }
}

}  // namespace emu

inline void __syncthreads() { emu::block->barrier.arrive_and_wait(); }

template <class T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta) {
  static_assert(sizeof(T) <= sizeof(std::uint64_t));
  if (mask != 0xffffffffu) emu::fail("only full-warp shuffles are emulated");
  const unsigned lane = threadIdx.x & 31u;
  auto& warp = *emu::block->warps[threadIdx.x / 32];
  std::uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  emu::block->exchange[threadIdx.x] = bits;
  warp.arrive_and_wait();
  T result = value;
  if (lane + delta < 32) std::memcpy(&result, &emu::block->exchange[threadIdx.x + delta], sizeof(T));
  warp.arrive_and_wait();
  return result;
}

inline bool __any_sync(unsigned mask, bool predicate) {
  if (mask != 0xffffffffu) emu::fail("only full-warp votes are emulated");
  const unsigned first = threadIdx.x & ~31u;
  auto& warp = *emu::block->warps[threadIdx.x / 32];
  emu::block->exchange[threadIdx.x] = predicate ? 1u : 0u;
  warp.arrive_and_wait();
  bool any = false;
  for (unsigned lane = 0; lane < 32; ++lane) any |= emu::block->exchange[first + lane] != 0;
  warp.arrive_and_wait();
  return any;
}

template <class T>
T __ldg(const T* p) {
  return *p;
}
inline float __uint_as_float(unsigned int v) { return std::bit_cast<float>(v); }
inline float __int_as_float(int v) { return std::bit_cast<float>(v); }

inline unsigned int atomicAdd(unsigned int* p, unsigned int v) {
  return std::atomic_ref<unsigned int>(*p).fetch_add(v);
}
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  return std::atomic_ref<unsigned long long>(*p).fetch_add(v);
}
inline int atomicOr(int* p, int v) { return std::atomic_ref<int>(*p).fetch_or(v); }
