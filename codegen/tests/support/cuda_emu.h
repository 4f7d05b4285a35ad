// cuda_emu.h: runs generated CUDA C on the CPU, for tests on machines without a GPU.
//
// Execution model: the blocks of a launch run one after another; each thread of a block is a
// std::thread (reused for every block). __syncthreads() is a barrier over the block; a warp
// shuffle writes the lane's value to a slot, waits on the warp's barrier, reads the partner's
// slot and waits again, so shuffles must be reached by every lane of the warp, as on a GPU
// with a full mask. A kernel that leaves early before a __syncthreads, or shuffles in
// divergent code, deadlocks here (the harness kills it) instead of silently passing.
// __shared__ variables are function statics: shared by the block, kept between blocks
// (a kernel must not read shared memory it did not write, as on a GPU).
// Built with AddressSanitizer by the harness, so any read or write outside a buffer fails.
#pragma once
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(8) uint2 { unsigned x, y; };
struct alignas(16) uint4 { unsigned x, y, z, w; };
struct alignas(16) int4 { int x, y, z, w; };

namespace emu {
inline thread_local dim3 thread_idx, block_idx;
inline dim3 block_dim, grid_dim;
inline std::barrier<>* block_barrier = nullptr;
inline std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
inline std::vector<uint64_t> slots;
}  // namespace emu

#define threadIdx (emu::thread_idx)
#define blockIdx (emu::block_idx)
#define blockDim (emu::block_dim)
#define gridDim (emu::grid_dim)
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __shared__ static

using std::max;
using std::min;

inline void __syncthreads() { emu::block_barrier->arrive_and_wait(); }

template <class T>
inline T emu_shuffle(T v, unsigned src_lane) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 64 bits");
    const unsigned tid = threadIdx.x, warp = tid / 32;
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof(T));
    emu::slots[tid] = bits;
    emu::warp_barriers[warp]->arrive_and_wait();
    const unsigned src = warp * 32 + (src_lane & 31);
    const uint64_t got = emu::slots[src < blockDim.x ? src : tid];
    emu::warp_barriers[warp]->arrive_and_wait();
    T out;
    std::memcpy(&out, &got, sizeof(T));
    return out;
}
template <class T>
inline T __shfl_xor_sync(unsigned, T v, int lane_mask) {
    return emu_shuffle(v, (threadIdx.x & 31) ^ (unsigned)lane_mask);
}
template <class T>
inline T __shfl_sync(unsigned, T v, int src_lane) {
    return emu_shuffle(v, (unsigned)src_lane);
}

inline int __dp4a(int a, int b, int c) {
    for (int i = 0; i < 4; ++i) c += (int)(int8_t)(a >> (8 * i)) * (int)(int8_t)(b >> (8 * i));
    return c;
}
inline unsigned __vsub4(unsigned a, unsigned b) {
    unsigned r = 0;
    for (int i = 0; i < 4; ++i) r |= (((a >> (8 * i)) - (b >> (8 * i))) & 0xffu) << (8 * i);
    return r;
}
inline float __uint_as_float(unsigned u) { float f; std::memcpy(&f, &u, 4); return f; }
inline float __int_as_float(int u) { float f; std::memcpy(&f, &u, 4); return f; }
inline float bn_half_to_float(unsigned short h) { _Float16 f; std::memcpy(&f, &h, 2); return (float)f; }

namespace emu {
// Runs `kernel` over `grid` blocks of `block.x` threads.
template <class F>
void launch(dim3 grid, dim3 block, F kernel) {
    if (block.y != 1 || block.z != 1 || block.x == 0 || block.x > 1024) {
        std::fprintf(stderr, "emu: unsupported block shape\n");
        std::exit(3);
    }
    const unsigned n = block.x;
    block_dim = block;
    grid_dim = grid;
    std::barrier<> sync(n), done(n);
    block_barrier = &sync;
    warp_barriers.clear();
    for (unsigned w = 0; w * 32 < n; ++w)
        warp_barriers.push_back(std::make_unique<std::barrier<>>(std::min(32u, n - 32 * w)));
    slots.assign(n, 0);
    std::vector<std::thread> threads;
    for (unsigned t = 0; t < n; ++t) {
        threads.emplace_back([&, t] {
            thread_idx = dim3(t);
            for (unsigned z = 0; z < grid.z; ++z)
                for (unsigned y = 0; y < grid.y; ++y)
                    for (unsigned x = 0; x < grid.x; ++x) {
                        block_idx = dim3(x, y, z);
                        kernel();
                        done.arrive_and_wait();
                    }
        });
    }
    for (auto& th : threads) th.join();
}

// A buffer of exactly `size` bytes, 64-byte aligned (AddressSanitizer guards its end).
struct Buffer {
    char* data = nullptr;
    size_t size = 0;
    explicit Buffer(const std::string& path) {
        FILE* f = std::fopen(path.c_str(), "rb");
        if (!f) { std::perror(path.c_str()); std::exit(2); }
        std::fseek(f, 0, SEEK_END);
        size = (size_t)std::ftell(f);
        std::fseek(f, 0, SEEK_SET);
        void* p = nullptr;
        if (posix_memalign(&p, 64, size ? size : 1) != 0) std::exit(2);
        data = (char*)p;
        if (size && std::fread(data, 1, size, f) != size) std::exit(2);
        std::fclose(f);
    }
    void save(const std::string& path) const {
        FILE* f = std::fopen(path.c_str(), "wb");
        if (!f || std::fwrite(data, 1, size, f) != size) std::exit(2);
        std::fclose(f);
    }
    ~Buffer() { std::free(data); }
};
}  // namespace emu
