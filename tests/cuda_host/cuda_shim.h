// cuda_shim.h: just enough CUDA to run kernels/*.cu on the CPU with g++ (-std=c++20).
//
// A launch runs its blocks one after another, on the calling thread (one launch at a time,
// from any thread). The threads of a block are fibers (ucontext, a stack each): a thread runs
// until it reaches a barrier or returns, then the next one runs, in thread order, so a barrier
// costs a context switch per thread instead of an OS scheduler round. __syncthreads() waits
// until every thread of the block that has not returned arrives (a returned thread no longer
// counts); threads that wait at a barrier the others never reach end the launch with a
// message (a hang on a GPU). __shared__ is a function-static array (one block at a time uses
// it); dynamic shared memory is one buffer as large as an SM allows, and a launch that gives
// less than its kernel asks for fails (emulate_launch). No __CUDA_ARCH__: common.cuh's
// cp.async helpers take their plain-copy path. mma.sync m16n8k8 TF32: the lanes of a warp
// swap fragments through WarpScratch, and each lane computes its own accumulators with the
// PTX ISA's fragment layout (common.cuh, mma_tf32); all 32 lanes must take part. wgmma
// m64nNk8 TF32: each lane computes its own accumulators from the shared-memory operands its
// descriptors address (the dynamic buffer; their addresses are offsets into it), and A from
// registers as mma.sync's, asynchronously as on a GPU: a wgmma is queued at issue and
// computed when a wgmma_wait retires its commit group, from the shared memory and registers
// as they are then (the latest moment a GPU may read them), so a stage overwritten or an A
// register changed before that wait gives a wrong result (and, under ThreadSanitizer, a race);
// a thread that returns with a wgmma not waited for ends the launch.
// AddressSanitizer and ThreadSanitizer are told of every stack switch; under ThreadSanitizer a
// switch orders nothing, only barriers do, so a shared-memory access no __syncthreads orders
// against another thread's is a race report.
#pragma once
#include <dlfcn.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <math.h>
#include <mutex>
#include <type_traits>
#include <vector>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local dim3 blockIdx, blockDim, gridDim;

struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) float4 {
    float x, y, z, w;
};

inline float __uint_as_float(unsigned u) {
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}

inline unsigned __float_as_uint(float f) {
    unsigned u;
    std::memcpy(&u, &f, 4);
    return u;
}

// --------------------------------------------------------------------------- sanitizer hooks
// No-ops in a plain build. ASan: the stack being left and the one being entered (its fake
// stack saved across the switch, none for a thread that has returned). TSan: each CUDA thread
// is a fiber, switched to without synchronisation; release/acquire are a barrier's ordering.
inline void sanitizer_enter(void** fake_stack, const void* bottom, size_t size) {
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_start_switch_fiber(fake_stack, bottom, size);
#else
    (void)fake_stack, (void)bottom, (void)size;
#endif
}
inline void sanitizer_entered(void* fake_stack, const void** old_bottom, size_t* old_size) {
#if defined(__SANITIZE_ADDRESS__)
    __sanitizer_finish_switch_fiber(fake_stack, old_bottom, old_size);
#else
    (void)fake_stack, (void)old_bottom, (void)old_size;
#endif
}
// ASan: fibers' stacks given back to the system, their shadow cleared first. A fiber's last
// frames (fiber_main's: it never returns) keep their redzones poisoned, and whatever is mapped
// there next (a Python arena, a NumPy buffer) would read as a stack's redzone.
inline void sanitizer_forget_stacks(void* base, size_t size) {
#if defined(__SANITIZE_ADDRESS__)
    __asan_unpoison_memory_region(base, size);
#else
    (void)base, (void)size;
#endif
}
inline void* race_fiber_new() {
#if defined(__SANITIZE_THREAD__)
    return __tsan_create_fiber(0);
#else
    return nullptr;
#endif
}
inline void* race_fiber_current() {
#if defined(__SANITIZE_THREAD__)
    return __tsan_get_current_fiber();
#else
    return nullptr;
#endif
}
inline void race_switch(void* fiber) {
#if defined(__SANITIZE_THREAD__)
    __tsan_switch_to_fiber(fiber, __tsan_switch_to_fiber_no_sync);
#else
    (void)fiber;
#endif
}
inline void race_release(void* sync) {
#if defined(__SANITIZE_THREAD__)
    __tsan_release(sync);
#else
    (void)sync;
#endif
}
inline void race_acquire(void* sync) {
#if defined(__SANITIZE_THREAD__)
    __tsan_acquire(sync);
#else
    (void)sync;
#endif
}

// The switch itself. ASan's swapcontext interceptor clears the shadow of the stack it enters
// (a resumed thread's redzones would be gone) and reads the saved context's uc_stack, which
// glibc's swapcontext never writes: under ASan, libc's own swapcontext, the switch being
// announced by the hooks above.
inline int fiber_swap(ucontext_t* from, const ucontext_t* to) {
#if defined(__SANITIZE_ADDRESS__)
    static const auto libc_swap = (int (*)(ucontext_t*, const ucontext_t*))dlsym(
        dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD), "swapcontext");
    return libc_swap(from, to);
#else
    return swapcontext(from, to);
#endif
}

// --------------------------------------------------------------------------- threads as fibers
// A barrier of a group of threads (a block, or a warp for mma.sync). Its counters and the
// fibers' states are atomics read and written relaxed: bookkeeping that must order nothing
// under TSan.
struct Barrier {
    std::atomic<unsigned> running{0}, arrived{0}, generation{0};
    char sync[2];  // TSan: generations alternate (a thread is at most one ahead of another)
    unsigned count(const std::atomic<unsigned>& n) const { return n.load(std::memory_order_relaxed); }
    void release() {
        arrived.store(0, std::memory_order_relaxed);
        generation.fetch_add(1, std::memory_order_relaxed);
    }
};

// One warp's exchange for the emulated mma.sync: each lane posts its fragments, then reads the
// others' (a warp barrier before and after).
struct WarpScratch {
    unsigned a[32][4], b[32][2];
};

// A wgmma issued and not yet computed: its accumulators, its A (a descriptor, or the address
// of the register form's fragment registers) and B's descriptor, its columns.
struct PendingWgmma {
    float* d;
    unsigned long long a;
    const unsigned* a_registers;
    unsigned long long b;
    unsigned n;
};

struct Fiber {
    ucontext_t context;
    dim3 thread_index;
    Barrier* warp;
    WarpScratch* scratch;
    std::vector<PendingWgmma> wgmma_open;                 // issued since the last commit
    std::vector<std::vector<PendingWgmma>> wgmma_groups;  // committed, oldest first
    std::atomic<const Barrier*> waits_at{nullptr};  // blocked until its generation moves on
    std::atomic<unsigned> waits_for{0};
    std::atomic<bool> returned{false};
    void* fake_stack = nullptr;  // ASan's, while switched out
    void* race_fiber = nullptr;  // TSan's
    char* stack = nullptr;
    bool runnable() const {
        const Barrier* b = waits_at.load(std::memory_order_relaxed);
        return !returned.load(std::memory_order_relaxed) &&
               (b == nullptr || b->count(b->generation) != waits_for.load(std::memory_order_relaxed));
    }
};

// The fibers' stacks, kept for the next launches of this OS thread: one mapping, a guard page
// below each stack (an overflow faults instead of corrupting the next).
constexpr size_t FIBER_STACK = 256 * 1024;
struct FiberPool {
    char* base = nullptr;
    size_t page = 0, count = 0;
    std::vector<void*> race_fibers;
    char* stack(size_t i) { return base + i * (FIBER_STACK + page) + page; }
    void reserve(size_t threads) {
        if (threads <= count) return;
        if (base) {
            sanitizer_forget_stacks(base, count * (FIBER_STACK + page));
            munmap(base, count * (FIBER_STACK + page));
        }
        page = (size_t)sysconf(_SC_PAGESIZE);
        void* m = mmap(nullptr, threads * (FIBER_STACK + page), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) {
            std::perror("cuda_shim: fiber stacks");
            std::abort();
        }
        base = (char*)m;
        count = threads;
        for (size_t i = 0; i < threads; ++i) mprotect(stack(i) - page, page, PROT_NONE);
        while (race_fibers.size() < threads) race_fibers.push_back(race_fiber_new());
    }
};

// One block being run: its fibers, barriers, and the launching thread's context.
struct BlockRun {
    ucontext_t launcher{};
    void* launcher_race_fiber = nullptr;
    const void* launcher_stack = nullptr;  // ASan: the launching thread's stack
    size_t launcher_stack_size = 0;
    void* launcher_fake_stack = nullptr;
    std::function<void()> kernel;
    std::vector<Fiber> fibers;
    std::vector<Barrier> warps;
    std::vector<WarpScratch> scratch;
    Barrier block;
    std::atomic<Fiber*> current{nullptr};
};
inline thread_local FiberPool fiber_pool;
inline thread_local BlockRun* block_run = nullptr;
// TSan: the launcher's writes come before a block's threads (block_start), and what each
// thread did before the launcher goes on (block_done); two objects, so that a thread's start
// orders nothing after another's end.
inline thread_local char block_start, block_done;

inline Fiber& current_fiber() { return *block_run->current.load(std::memory_order_relaxed); }
#define threadIdx (current_fiber().thread_index)

// From a fiber back to the launcher: it waits at a barrier (and is resumed here), or it has
// returned (never resumed; under TSan, all it did comes before the launcher goes on).
inline void fiber_yield(Fiber& self, bool returned = false) {
    BlockRun& run = *block_run;
    void* const launcher = run.launcher_race_fiber;
    sanitizer_enter(returned ? nullptr : &self.fake_stack, run.launcher_stack,
                    run.launcher_stack_size);
    if (returned) race_release(&block_done);
    race_switch(launcher);
    fiber_swap(&self.context, &run.launcher);
    sanitizer_entered(self.fake_stack, nullptr, nullptr);
}

inline void fiber_main() {
    race_acquire(&block_start);
    BlockRun& run = *block_run;
    Fiber& self = current_fiber();
    sanitizer_entered(nullptr, &run.launcher_stack, &run.launcher_stack_size);
    run.kernel();
    if (!self.wgmma_open.empty() || !self.wgmma_groups.empty()) {
        std::fprintf(stderr, "thread %u of block (%u, %u, %u) returned with wgmmas not waited for\n",
                     self.thread_index.x, blockIdx.x, blockIdx.y, blockIdx.z);
        std::abort();
    }
    for (Barrier* b : {&run.block, self.warp}) {  // it no longer counts at a barrier
        const unsigned running = b->running.fetch_sub(1, std::memory_order_relaxed) - 1;
        if (b->count(b->arrived) && b->count(b->arrived) == running) b->release();
    }
    self.returned.store(true, std::memory_order_relaxed);
    fiber_yield(self, true);
}

// Under TSan a generation's arrivals release, and its waiters acquire, that generation's own
// sync object: a thread that has run on to the next barrier orders nothing for those still
// waiting to leave this one (one cumulative object would hide races between the two).
inline void arrive_and_wait(Barrier& b) {
    Fiber& self = current_fiber();
    const unsigned generation = b.count(b.generation);
    char* const sync = &b.sync[generation % 2];
    race_release(sync);
    if (b.arrived.fetch_add(1, std::memory_order_relaxed) + 1 == b.count(b.running)) {
        b.release();
    } else {
        self.waits_for.store(generation, std::memory_order_relaxed);
        self.waits_at.store(&b, std::memory_order_relaxed);
        fiber_yield(self);
        self.waits_at.store(nullptr, std::memory_order_relaxed);
    }
    race_acquire(sync);
}

inline void __syncthreads() { arrive_and_wait(block_run->block); }

// Run the fibers of one block to their end, each in turn until it waits or returns.
inline void run_block(BlockRun& run) {
    race_release(&block_start);
    for (bool left = true; left;) {
        bool ran = false;
        left = false;
        for (Fiber& f : run.fibers) {
            if (f.returned.load(std::memory_order_relaxed)) continue;
            left = true;
            if (!f.runnable()) continue;
            ran = true;
            run.current.store(&f, std::memory_order_relaxed);
            sanitizer_enter(&run.launcher_fake_stack, f.stack, FIBER_STACK);
            race_switch(f.race_fiber);
            fiber_swap(&run.launcher, &f.context);
            sanitizer_entered(run.launcher_fake_stack, nullptr, nullptr);
        }
        if (left && !ran) {
            std::fprintf(stderr, "block (%u, %u, %u): every thread still running waits at a "
                         "barrier that the others never reach (a GPU would hang)\n",
                         blockIdx.x, blockIdx.y, blockIdx.z);
            std::abort();
        }
    }
    race_acquire(&block_done);
}

// common.cuh's DYNAMIC_SHARED: the launch's buffer, which must hold what the kernel uses. The
// buffer is allocated as large as an SM allows, so a kernel asking for more than its launch
// gave still runs without corrupting memory; the launch then reports what it asked for
// (emulate_launch's result), and the harness fails the call.
constexpr size_t MAX_DYNAMIC_SHARED = 227 * 1024;  // sm_90: per block, opted in
inline thread_local float4* dynamic_shared = nullptr;
inline thread_local std::atomic<size_t> dynamic_shared_asked{0};  // relaxed: bookkeeping
inline void* dynamic_shared_of(size_t bytes) {
    if (bytes > MAX_DYNAMIC_SHARED) {
        std::fprintf(stderr, "kernel uses %zu bytes of dynamic shared memory, above an SM's %zu\n",
                     bytes, MAX_DYNAMIC_SHARED);
        std::abort();
    }
    size_t asked = dynamic_shared_asked.load(std::memory_order_relaxed);
    while (bytes > asked && !dynamic_shared_asked.compare_exchange_weak(asked, bytes, std::memory_order_relaxed)) {}
    return dynamic_shared;
}
#define DYNAMIC_SHARED(T, name, count) T* const name = (T*)dynamic_shared_of((count) * sizeof(T))
template <typename T> inline T __ldg(const T* p) { return *p; }
using std::fma;
using std::isnan;

// Run kernel(params) over grid x block with shared_bytes of dynamic shared memory, block after
// block. Returns 0, or the dynamic shared memory the kernel asked for where that is more than
// shared_bytes.
inline std::mutex one_launch;  // at a time, whatever the kernel: __shared__ arrays are statics
template <class P>
size_t emulate_launch(void (*kernel)(P), dim3 grid, dim3 block, size_t shared_bytes, const void* params) {
    const std::lock_guard<std::mutex> lock(one_launch);
    P p;
    std::memcpy(&p, params, sizeof(P));
    std::vector<float4> shared(MAX_DYNAMIC_SHARED / sizeof(float4));
    dynamic_shared = shared.data();
    dynamic_shared_asked = 0;
    blockDim = block;
    gridDim = grid;
    const unsigned threads = block.x * block.y * block.z, warps = (threads + 31) / 32;
    fiber_pool.reserve(threads);
    BlockRun run;
    run.kernel = [&] { kernel(p); };
    run.launcher_race_fiber = race_fiber_current();
    run.fibers = std::vector<Fiber>(threads);
    run.warps = std::vector<Barrier>(warps);
    run.scratch.resize(warps);
    for (unsigned t = 0; t < threads; ++t) {
        Fiber& f = run.fibers[t];
        f.thread_index = dim3{t % block.x, t / block.x % block.y, t / (block.x * block.y)};
        f.warp = &run.warps[t / 32];
        f.scratch = &run.scratch[t / 32];
        f.stack = fiber_pool.stack(t);
        f.race_fiber = fiber_pool.race_fibers[t];
    }
    block_run = &run;
    for (unsigned z = 0; z < grid.z; ++z)
        for (unsigned y = 0; y < grid.y; ++y)
            for (unsigned x = 0; x < grid.x; ++x) {
                blockIdx = dim3{x, y, z};
                run.block.running = threads;
                for (unsigned w = 0; w < warps; ++w) run.warps[w].running = std::min(32u, threads - 32 * w);
                for (Fiber& f : run.fibers) {  // each starts the kernel afresh
                    f.returned.store(false, std::memory_order_relaxed);
                    f.wgmma_open.clear();
                    f.wgmma_groups.clear();
                    getcontext(&f.context);
                    f.context.uc_stack = {f.stack, 0, FIBER_STACK};
                    f.context.uc_link = nullptr;
                    makecontext(&f.context, fiber_main, 0);
                }
                run_block(run);
            }
    block_run = nullptr;
    dynamic_shared = nullptr;
    return dynamic_shared_asked > shared_bytes ? dynamic_shared_asked.load() : 0;
}


// The bits of a TF32 operand the tensor core reads: sign, exponent and 10 mantissa bits (it
// truncates the rest).
constexpr uint32_t TF32_READ = 0xffffe000u;

// d += a * b for this lane's accumulators (layout: common.cuh, mma_tf32). The products of TF32
// inputs are exact in double; the sum is rounded once, as an FP32 accumulator would at best.
inline void host_mma_tf32(float* d, const unsigned* a, const unsigned* b) {
    const unsigned lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
    Fiber& self = current_fiber();
    WarpScratch& scratch = *self.scratch;
    std::memcpy(scratch.a[lane], a, sizeof(unsigned) * 4);
    std::memcpy(scratch.b[lane], b, sizeof(unsigned) * 2);
    arrive_and_wait(*self.warp);
    if (self.warp->count(self.warp->running) != 32) {  // a lane returned instead of joining
        std::fprintf(stderr, "mma.sync in block (%u, %u, %u) without all 32 lanes of the warp "
                     "(undefined on a GPU)\n", blockIdx.x, blockIdx.y, blockIdx.z);
        std::abort();
    }
    for (unsigned v = 0; v < 4; ++v) {
        const unsigned row = g + 8 * (v / 2), col = 2 * t + v % 2;
        double s = d[v];
        for (unsigned k = 0; k < 8; ++k) {
            const float av = __uint_as_float(TF32_READ & scratch.a[4 * (row % 8) + k % 4][row / 8 + 2 * (k / 4)]);
            const float bv = __uint_as_float(TF32_READ & scratch.b[4 * col + k % 4][k / 4]);
            s += (double)av * (double)bv;
        }
        d[v] = (float)s;
    }
    arrive_and_wait(*self.warp);  // the scratch is reused by the next mma
}

// common.cuh's shared_address: a dynamic shared-memory pointer as the offset into the launch's
// buffer (the shared window's address on a GPU); wgmma's descriptors hold it.
inline unsigned host_shared_address(const void* p) {
    const char *at = (const char*)p, *base = (const char*)dynamic_shared;
    if (at < base || at >= base + MAX_DYNAMIC_SHARED) {
        std::fprintf(stderr, "a wgmma operand outside dynamic shared memory\n");
        std::abort();
    }
    return (unsigned)(at - base);
}

// d += a * b for this lane's accumulators of a wgmma.m64nNk8 TF32 (layout: common.cuh,
// wgmma_m64n128k8_tf32), a and b read through their descriptors: element (row r, k) of a
// K-major operand at start + r/8 * SBO + k/4 * LBO + r%8 * 16 + k%4 * 4 bytes. Only what the
// kernels use is accepted: no swizzle, base offset 0, 16-byte aligned core matrices.
inline float host_wgmma_operand(unsigned long long desc, unsigned r, unsigned k) {
    const size_t start = (desc & 0x3fff) << 4, lbo = (desc >> 16 & 0x3fff) << 4,
                 sbo = (desc >> 32 & 0x3fff) << 4;
    if (desc >> 46) {
        std::fprintf(stderr, "wgmma descriptor with a base offset or swizzle: %llx\n", desc);
        std::abort();
    }
    const size_t at = start + r / 8 * sbo + k / 4 * lbo + r % 8 * 16 + k % 4 * 4;
    if (at + 4 > MAX_DYNAMIC_SHARED) {
        std::fprintf(stderr, "wgmma operand past dynamic shared memory\n");
        std::abort();
    }
    unsigned u;
    std::memcpy(&u, (const char*)dynamic_shared + at, 4);
    return __uint_as_float(TF32_READ & u);
}

inline void host_wgmma_tf32(float* d, unsigned long long a, unsigned long long b, unsigned n) {
    const unsigned w = threadIdx.x % 128 / 32, lane = threadIdx.x % 32;
    for (unsigned j = 0; j < n / 8; ++j)
        for (unsigned v = 0; v < 4; ++v) {
            const unsigned row = 16 * w + lane / 4 + 8 * (v / 2), col = 8 * j + 2 * (lane % 4) + v % 2;
            double s = d[4 * j + v];
            for (unsigned k = 0; k < 8; ++k)
                s += (double)host_wgmma_operand(a, row, k) * (double)host_wgmma_operand(b, col, k);
            d[4 * j + v] = (float)s;
        }
}

// The same with a from registers (common.cuh, wgmma_m64n128k8_tf32_rs): each warp's lanes swap
// their A fragments through WarpScratch, as host_mma_tf32's, and each lane computes its own
// accumulators of its warp's 16 rows; all 32 lanes must take part.
inline void host_wgmma_tf32_rs(float* d, const unsigned* a, unsigned long long b, unsigned n) {
    const unsigned lane = threadIdx.x % 32;
    Fiber& self = current_fiber();
    WarpScratch& scratch = *self.scratch;
    std::memcpy(scratch.a[lane], a, sizeof(unsigned) * 4);
    arrive_and_wait(*self.warp);
    if (self.warp->count(self.warp->running) != 32) {
        std::fprintf(stderr, "wgmma in block (%u, %u, %u) without all 32 lanes of a warp\n",
                     blockIdx.x, blockIdx.y, blockIdx.z);
        std::abort();
    }
    for (unsigned j = 0; j < n / 8; ++j)
        for (unsigned v = 0; v < 4; ++v) {
            const unsigned row = lane / 4 + 8 * (v / 2), col = 8 * j + 2 * (lane % 4) + v % 2;
            double s = d[4 * j + v];
            for (unsigned k = 0; k < 8; ++k) {
                const float av = __uint_as_float(TF32_READ & scratch.a[4 * (row % 8) + k % 4][row / 8 + 2 * (k / 4)]);
                s += (double)av * (double)host_wgmma_operand(b, col, k);
            }
            d[4 * j + v] = (float)s;
        }
    arrive_and_wait(*self.warp);  // the scratch is reused by the next exchange
}

// wgmma's asynchrony (see the header): issue queues, commit closes a group, wait<n> computes
// the oldest groups until at most n are in flight. The lanes of a warp reach a wait together
// with the same queue, so the register form's exchanges pair up as at issue.
inline void host_wgmma_issue(float* d, unsigned long long a, const unsigned* a_registers,
                             unsigned long long b, unsigned n) {
    current_fiber().wgmma_open.push_back({d, a, a_registers, b, n});
}

inline void host_wgmma_commit() {
    Fiber& self = current_fiber();
    self.wgmma_groups.push_back(std::move(self.wgmma_open));
    self.wgmma_open.clear();
}

inline void host_wgmma_wait(unsigned n) {
    Fiber& self = current_fiber();
    while (self.wgmma_groups.size() > n) {
        const std::vector<PendingWgmma> group = std::move(self.wgmma_groups.front());
        self.wgmma_groups.erase(self.wgmma_groups.begin());
        for (const PendingWgmma& w : group) {
            if (w.a_registers) host_wgmma_tf32_rs(w.d, w.a_registers, w.b, w.n);
            else host_wgmma_tf32(w.d, w.a, w.b, w.n);
        }
    }
}
