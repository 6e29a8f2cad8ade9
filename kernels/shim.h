// mergec CUDA emulation shim: compiles rendered CUDA C with the host C++ compiler
// (`cc -x c++`), so the tests check the GPU text against ir::reference without a GPU.
//
// - __global__/__device__/__forceinline__/__launch_bounds__ vanish; math maps to libm
//   (compile with -fno-builtin-expf ... so constants are not folded at compile time,
//   and -ffp-contract=off: no fused multiply-add, as NVRTC's --fmad=false).
// - A launch runs its blocks one after another. Each block's threads are coroutines
//   (ucontext) on one host thread: a thread runs until it reaches __syncthreads(), then
//   the next one runs; once every thread of the block waits, they all go on. Phases
//   alternate forward and backward thread order, so a kernel that reads another
//   thread's shared-memory writes without a barrier in between gets stale data in one
//   of the orders. A barrier reached by some threads while others have returned aborts
//   (`__syncthreads` must be reached by the whole block, as on the GPU).
// - __shared__ variables are function statics: one copy, reused by each block in turn.
// - atomicAdd is a plain read-modify-write (threads never run at the same time).
//
// Entry point: mg_emu_launch(grid, block, thunk, arg) calls thunk(arg) on every
// emulated thread, with blockIdx/threadIdx/blockDim/gridDim set.

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static
#define __launch_bounds__(n)

struct mg_emu_dim3 {
    unsigned x, y, z;
};

// External linkage on purpose: the compiler must reload them after every call out of
// this unit (a context switch changes them under the kernel's feet).
mg_emu_dim3 threadIdx, blockIdx, blockDim, gridDim;

static inline float __uint_as_float(unsigned u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline unsigned __float_as_uint(float f) {
    unsigned u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline unsigned atomicAdd(unsigned* p, unsigned v) {
    unsigned old = *p;
    *p = old + v;
    return old;
}

#define MG_EMU_MAX_THREADS 1024
#define MG_EMU_STACK (128 * 1024)

enum { MG_EMU_RUNNING, MG_EMU_WAITING, MG_EMU_DONE };

ucontext_t mg_emu_sched;
ucontext_t mg_emu_ctx[MG_EMU_MAX_THREADS];
char* mg_emu_stacks[MG_EMU_MAX_THREADS];
int mg_emu_state[MG_EMU_MAX_THREADS];
unsigned mg_emu_cur;
void (*mg_emu_fn)(void*);
void* mg_emu_arg;
// Barrier phases run so far (all launches), for the tests' statistics.
unsigned long long mg_emu_barriers;

static void mg_emu_die(const char* what) {
    fprintf(stderr, "cuda emulator: %s (block %u, thread %u)\n", what, blockIdx.x, mg_emu_cur);
    abort();
}

static void __syncthreads(void) {
    mg_emu_state[mg_emu_cur] = MG_EMU_WAITING;
    if (swapcontext(&mg_emu_ctx[mg_emu_cur], &mg_emu_sched) != 0) mg_emu_die("swapcontext failed");
}

static void mg_emu_entry(void) {
    mg_emu_fn(mg_emu_arg);
    mg_emu_state[mg_emu_cur] = MG_EMU_DONE;
    // Returning resumes mg_emu_sched through uc_link.
}

// Runs one block: phases of "every live thread runs to its next barrier or its end".
static void mg_emu_run_block(unsigned n) {
    for (unsigned t = 0; t < n; ++t) {
        if (!mg_emu_stacks[t] && !(mg_emu_stacks[t] = (char*)malloc(MG_EMU_STACK)))
            mg_emu_die("out of memory for thread stacks");
        if (getcontext(&mg_emu_ctx[t]) != 0) mg_emu_die("getcontext failed");
        mg_emu_ctx[t].uc_stack.ss_sp = mg_emu_stacks[t];
        mg_emu_ctx[t].uc_stack.ss_size = MG_EMU_STACK;
        mg_emu_ctx[t].uc_link = &mg_emu_sched;
        makecontext(&mg_emu_ctx[t], mg_emu_entry, 0);
        mg_emu_state[t] = MG_EMU_RUNNING;
    }
    for (unsigned phase = 0;; ++phase) {
        unsigned waiting = 0, finished = 0;
        for (unsigned i = 0; i < n; ++i) {
            unsigned t = (phase & 1u) ? n - 1u - i : i;
            if (mg_emu_state[t] == MG_EMU_DONE) continue;
            mg_emu_state[t] = MG_EMU_RUNNING;
            mg_emu_cur = t;
            threadIdx.x = t;
            if (swapcontext(&mg_emu_sched, &mg_emu_ctx[t]) != 0) mg_emu_die("swapcontext failed");
            if (mg_emu_state[t] == MG_EMU_WAITING) ++waiting;
            else if (mg_emu_state[t] == MG_EMU_DONE) ++finished;
            else mg_emu_die("thread left in an unknown state");
        }
        if (waiting == 0) return;
        if (finished > 0) mg_emu_die("__syncthreads reached by only part of the block");
        ++mg_emu_barriers;
    }
}

static void mg_emu_launch(unsigned grid, unsigned block, void (*fn)(void*), void* arg) {
    if (block == 0 || block > MG_EMU_MAX_THREADS) mg_emu_die("bad block size");
    mg_emu_fn = fn;
    mg_emu_arg = arg;
    gridDim.x = grid;
    gridDim.y = gridDim.z = 1;
    blockDim.x = block;
    blockDim.y = blockDim.z = 1;
    threadIdx.y = threadIdx.z = blockIdx.y = blockIdx.z = 0;
    for (unsigned b = 0; b < grid; ++b) {
        blockIdx.x = b;
        mg_emu_run_block(block);
    }
}
