//! Benchmarks of the Cranelift JIT (`codegen::cpu`): compile latency, and the
//! throughput of a bf16 task-arithmetic kernel and of a two-sum reduction kernel
//! on 1 and 2 threads, against a plain memcpy.
//!
//! `cargo run --release --example jit_bench [-- N]` (N elements, default 58.7M).
//! `MERGEC_JIT_DUMP=1 cargo run --release --example jit_bench -- dump task|sums`
//! prints the CLIF and machine code of one kernel instead.

#[path = "../tests/common/kernels.rs"]
mod kernels;
#[path = "../tests/common/rng.rs"]
mod rng;

use mergec::codegen::Engine;
use mergec::codegen::cpu::JitEngine;
use mergec::ir::kernel::{
    Args, Bin64, BinOp, Dtype, Inst, KInput, Kernel, KernelIo, KernelKind, Mode, RedOp, Sink,
};
use rayon::prelude::*;
use std::time::Instant;

/// Best of `reps` timings of `f`, in seconds.
fn best(reps: usize, mut f: impl FnMut()) -> f64 {
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

fn flat(name: &str, n: usize, inputs: usize, body: Vec<Inst>, sinks: Vec<Sink>) -> Kernel {
    let input = KInput {
        dtype: Dtype::BF16,
        mode: Mode::Full,
    };
    Kernel {
        name: name.into(),
        kind: KernelKind::Flat,
        rows: 1,
        cols: n,
        inputs: vec![input; inputs],
        body,
        sinks,
        n_f32: 1,
        n_f64: 0,
        n_u64: 0,
    }
}

/// out = a + l * ((b - a) + (c - a) + (d - a)), all bf16.
fn task_arithmetic(n: usize) -> Kernel {
    use BinOp::{Add, Mul, Sub};
    let body = vec![
        Inst::Load(0),
        Inst::Load(1),
        Inst::Load(2),
        Inst::Load(3),
        Inst::Arg(0),
        Inst::Bin(Sub, 1, 0),
        Inst::Bin(Sub, 2, 0),
        Inst::Bin(Sub, 3, 0),
        Inst::Bin(Add, 5, 6),
        Inst::Bin(Add, 8, 7),
        Inst::Bin(Mul, 4, 9),
        Inst::Bin(Add, 0, 10),
    ];
    let sinks = vec![Sink::Store {
        value: 11,
        buf: 0,
        dtype: Dtype::BF16,
    }];
    flat("task_arithmetic", n, 4, body, sinks)
}

/// Two f64 sums: sum(a * b) and sum(a * a) (a cosine similarity's parts).
fn two_sums(n: usize) -> Kernel {
    let body = vec![
        Inst::Load(0),
        Inst::Load(1),
        Inst::Widen(0),
        Inst::Widen(1),
        Inst::B64(Bin64::Mul, 2, 3),
        Inst::B64(Bin64::Mul, 2, 2),
    ];
    let sinks = vec![
        Sink::Reduce {
            op: RedOp::Sum,
            value: 4,
        },
        Sink::Reduce {
            op: RedOp::Sum,
            value: 5,
        },
    ];
    flat("two_sums", n, 2, body, sinks)
}

/// out = a * s[row] + c[col] (bf16 a and out, f32 row and column vectors), on a
/// 4096-column matrix: the row-segment path of Flat kernels.
fn broadcast(n: usize) -> Kernel {
    use BinOp::{Add, Mul};
    let body = vec![
        Inst::Load(0),
        Inst::Load(1),
        Inst::Load(2),
        Inst::Bin(Mul, 0, 1),
        Inst::Bin(Add, 3, 2),
    ];
    let sinks = vec![Sink::Store {
        value: 4,
        buf: 0,
        dtype: Dtype::BF16,
    }];
    let mut k = flat("broadcast", n, 1, body, sinks);
    (k.rows, k.cols) = (n / 4096, 4096);
    k.inputs.push(KInput {
        dtype: Dtype::F32,
        mode: Mode::Row,
    });
    k.inputs.push(KInput {
        dtype: Dtype::F32,
        mode: Mode::Col,
    });
    k
}

fn compile_latency(engine: &JitEngine) {
    let mut rng = kernels::Rng::new(77);
    let ks: Vec<Kernel> = (0..400)
        .map(|i| {
            let kind = if i % 2 == 0 {
                KernelKind::Flat
            } else {
                KernelKind::Rows
            };
            kernels::random_kernel(&mut rng, kind, 7, 783, false)
        })
        .collect();
    let insts: usize = ks.iter().map(|k| k.body.len()).sum();
    let t = Instant::now();
    for k in &ks {
        engine.compile(k).expect("compile");
    }
    let per = t.elapsed().as_secs_f64() / ks.len() as f64;
    let each = |k: Kernel| best(5, || drop(engine.compile(&k).expect("compile"))) * 1e3;
    println!(
        "compile: {:.2} ms per random kernel ({:.0} instructions on average); \
         task arithmetic {:.2} ms; two sums {:.2} ms",
        per * 1e3,
        insts as f64 / ks.len() as f64,
        each(task_arithmetic(1)),
        each(two_sums(1)),
    );
}

fn throughput(engine: &JitEngine, n: usize, threads: usize) {
    let data: Vec<Vec<u8>> = (0..4u8)
        .map(|j| {
            (0..2 * n)
                .map(|i| ((i as u8).wrapping_mul(31) ^ j) | 0x3c)
                .collect()
        })
        .collect();
    let ta = engine.compile(&task_arithmetic(n)).expect("compile");
    let ts = engine.compile(&two_sums(n)).expect("compile");
    let bk = broadcast(n);
    let bc = engine.compile(&bk).expect("compile");
    let (rowv, colv) = (vec![0x3fu8; 4 * bk.rows], vec![0x3eu8; 4 * bk.cols]);
    let args = Args {
        f32: vec![0.3],
        ..Args::default()
    };
    let mut out = vec![1u8; 2 * n];
    let mut reds = vec![vec![0.0f64; n.div_ceil(4096)]; 2];
    let mut copy = vec![1u8; 2 * n];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .expect("pool");
    let (t_ta, t_ts, t_bc, t_cp) = pool.install(|| {
        let t_ta = best(5, || {
            let inputs = data.iter().map(|v| v.as_slice()).collect();
            let mut io = KernelIo {
                inputs,
                args: &args,
                stores: vec![&mut out],
                reductions: vec![],
            };
            ta.launch(&mut io);
        });
        let t_ts = best(5, || {
            let inputs = data[..2].iter().map(|v| v.as_slice()).collect();
            let reductions = reds.iter_mut().map(|v| v.as_mut_slice()).collect();
            let mut io = KernelIo {
                inputs,
                args: &args,
                stores: vec![],
                reductions,
            };
            ts.launch(&mut io);
        });
        let t_bc = best(5, || {
            let inputs = vec![&data[0][..2 * bk.numel()], &rowv[..], &colv[..]];
            let mut io = KernelIo {
                inputs,
                args: &args,
                stores: vec![&mut out],
                reductions: vec![],
            };
            bc.launch(&mut io);
        });
        let t_cp = best(5, || {
            let chunks = copy
                .par_chunks_mut(1 << 17)
                .zip(data[0].par_chunks(1 << 17));
            chunks.for_each(|(d, s)| d.copy_from_slice(s));
        });
        (t_ta, t_ts, t_bc, t_cp)
    });
    let mb = (2 * n) as f64 / 1e6;
    let gbs = |bytes: f64, t: f64| bytes / 1e3 / t;
    println!(
        "{threads} thread(s), {n} elements ({mb:.0} MB per bf16 tensor):\n  \
         task arithmetic (4 in, 1 out) {:.1} ms = {:.2} ns/element, {:.1} GB/s read+written\n  \
         two sums (2 in)               {:.1} ms = {:.2} ns/element, {:.1} GB/s read\n  \
         a * row + col (bf16 in/out)   {:.1} ms = {:.2} ns/element\n  \
         memcpy of one tensor          {:.1} ms = {:.1} GB/s read+written \
         (the same 5 tensors' traffic as task arithmetic: {:.1} ms)",
        t_ta * 1e3,
        t_ta * 1e9 / n as f64,
        gbs(5.0 * mb, t_ta),
        t_ts * 1e3,
        t_ts * 1e9 / n as f64,
        gbs(2.0 * mb, t_ts),
        t_bc * 1e3,
        t_bc * 1e9 / bk.numel() as f64,
        t_cp * 1e3,
        gbs(2.0 * mb, t_cp),
        2.5 * t_cp * 1e3,
    );
}

fn main() {
    let engine = JitEngine::new().expect("jit");
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("dump") {
        let k = match args.get(1).map(String::as_str) {
            Some("sums") => two_sums(1000),
            _ => task_arithmetic(1000),
        };
        engine.compile(&k).expect("compile");
        return;
    }
    let n = args
        .first()
        .and_then(|s| s.parse().ok())
        .unwrap_or(58_700_000);
    compile_latency(&engine);
    for threads in [1, 2] {
        throughput(&engine, n, threads);
    }
}
