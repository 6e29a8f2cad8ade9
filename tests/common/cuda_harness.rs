//! The host harness that runs rendered CUDA under `kernels/shim.h`: one C++ file of
//! shim + CUDA text + launch thunks + a `main` that reads launches from a file, compiled
//! with `cc`, run once per batch.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::cuda_kernels::{Case, Outputs, store_dtypes};
use mergec::codegen::cuda::{self, Param};
use mergec::ir::kernel::{Dtype, Kernel};

pub const SHIM: &str = include_str!("../../kernels/shim.h");

/// Whether a host C++ compiler answers to `cc`.
pub fn have_cc() -> bool {
    Command::new("cc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// One parameter of an emulated launch.
pub enum EmuParam {
    /// Device memory the kernel reads.
    In(Vec<u8>),
    /// Device memory the kernel writes (this many bytes, starting as `CANARY`).
    Out(usize),
    /// A by-value argument's bytes.
    Scalar(Vec<u8>),
    /// Device memory the kernel reads and writes (comes back like `Out`).
    InOut(Vec<u8>),
}

/// A launch of entry `thunk` (an index into the thunk table).
pub struct EmuLaunch {
    pub thunk: usize,
    pub grid: u32,
    pub block: u32,
    pub params: Vec<EmuParam>,
}

/// An entry point and its parameters' C types, for the launcher that calls it.
pub struct Thunk {
    pub entry: String,
    pub ctypes: Vec<String>,
}

const MAIN: &str = r#"
static void mg_read(FILE* f, void* p, size_t n) {
    if (n && fread(p, 1, n, f) != n) { fprintf(stderr, "harness: short input\n"); exit(2); }
}

int main(int argc, char** argv) {
    if (argc != 3) return 2;
    FILE* in = fopen(argv[1], "rb");
    FILE* out = fopen(argv[2], "wb");
    if (!in || !out) return 2;
    unsigned n_launches;
    mg_read(in, &n_launches, 4);
    for (unsigned l = 0; l < n_launches; ++l) {
        unsigned h[4];
        mg_read(in, h, sizeof h);
        void** params = (void**)calloc(h[3] + 1, sizeof(void*));
        unsigned* kinds = (unsigned*)calloc(h[3] + 1, sizeof(unsigned));
        unsigned long long* sizes = (unsigned long long*)calloc(h[3] + 1, sizeof(unsigned long long));
        for (unsigned p = 0; p < h[3]; ++p) {
            mg_read(in, &kinds[p], 4);
            mg_read(in, &sizes[p], 8);
            params[p] = malloc(sizes[p] ? sizes[p] : 1);
            if (kinds[p] == 1) memset(params[p], 0xA5, sizes[p]);
            else mg_read(in, params[p], sizes[p]);
        }
        mg_emu_launch(h[1], h[2], mg_thunks[h[0]], params);
        for (unsigned p = 0; p < h[3]; ++p) {
            if ((kinds[p] == 1 || kinds[p] == 3) && fwrite(params[p], 1, sizes[p], out) != sizes[p]) return 3;
            free(params[p]);
        }
        free(params);
        free(kinds);
        free(sizes);
    }
    fprintf(stderr, "barrier phases: %llu\n", mg_emu_barriers);
    return fclose(out) == 0 ? 0 : 3;
}
"#;

fn thunks_source(thunks: &[Thunk]) -> String {
    let mut s = String::new();
    for (i, t) in thunks.iter().enumerate() {
        let args: Vec<String> = t
            .ctypes
            .iter()
            .enumerate()
            .map(|(j, ty)| {
                if ty.ends_with('*') {
                    format!("({ty})a[{j}]")
                } else {
                    format!("*(const {ty}*)a[{j}]")
                }
            })
            .collect();
        let _ = writeln!(
            s,
            "static void mg_thunk_{i}(void* p) {{\n    void** a = (void**)p;\n    (void)a;\n    {}({});\n}}",
            t.entry,
            args.join(", ")
        );
    }
    let names: Vec<String> = (0..thunks.len()).map(|i| format!("mg_thunk_{i}")).collect();
    let _ = writeln!(
        s,
        "static void (*const mg_thunks[])(void*) = {{ {} }};",
        names.join(", ")
    );
    s
}

/// Host compiler flags: no contraction, and no compile-time folding of the math calls
/// (the reference calls the same libm at run time).
pub const CC_FLAGS: &[&str] = &[
    "-x",
    "c++",
    "-std=c++17",
    "-O1",
    "-w",
    "-ffp-contract=off",
    "-fno-builtin-expf",
    "-fno-builtin-logf",
    "-fno-builtin-tanhf",
    "-fno-builtin-sinf",
    "-fno-builtin-cosf",
    "-fno-builtin-acosf",
    "-fno-builtin-powf",
];

/// Compiles `shim.h + cuda + thunks + main` in `dir` and runs the launches; returns each
/// launch's `Out` buffers.
pub fn emulate(
    dir: &Path,
    cuda: &str,
    thunks: &[Thunk],
    launches: &[EmuLaunch],
) -> Result<Vec<Vec<Vec<u8>>>, String> {
    let src = format!("{SHIM}\n{cuda}\n{}\n{MAIN}", thunks_source(thunks));
    let (src_path, exe) = (dir.join("emu.cc"), dir.join("emu"));
    std::fs::write(&src_path, &src).map_err(|e| e.to_string())?;
    let cc = Command::new("cc")
        .args(CC_FLAGS)
        .arg("-o")
        .arg(&exe)
        .arg(&src_path)
        .arg("-lm")
        .output()
        .map_err(|e| format!("cc: {e}"))?;
    if !cc.status.success() {
        return Err(format!(
            "cc failed on {}:\n{}",
            src_path.display(),
            String::from_utf8_lossy(&cc.stderr)
        ));
    }
    let mut input = (launches.len() as u32).to_le_bytes().to_vec();
    for l in launches {
        for h in [l.thunk as u32, l.grid, l.block, l.params.len() as u32] {
            input.extend(h.to_le_bytes());
        }
        for p in &l.params {
            let (kind, len, data): (u32, usize, &[u8]) = match p {
                EmuParam::In(b) => (0, b.len(), b),
                EmuParam::Out(n) => (1, *n, &[]),
                EmuParam::Scalar(b) => (2, b.len(), b),
                EmuParam::InOut(b) => (3, b.len(), b),
            };
            input.extend(kind.to_le_bytes());
            input.extend((len as u64).to_le_bytes());
            input.extend_from_slice(data);
        }
    }
    let (in_path, out_path) = (dir.join("in.bin"), dir.join("out.bin"));
    std::fs::write(&in_path, input).map_err(|e| e.to_string())?;
    let run = Command::new(&exe)
        .arg(&in_path)
        .arg(&out_path)
        .output()
        .map_err(|e| e.to_string())?;
    if !run.status.success() {
        return Err(format!(
            "emulator failed ({}): {}",
            run.status,
            String::from_utf8_lossy(&run.stderr)
        ));
    }
    let out = std::fs::read(&out_path).map_err(|e| e.to_string())?;
    let mut at = 0;
    let mut results = Vec::new();
    for l in launches {
        let mut bufs = Vec::new();
        for p in &l.params {
            let n = match p {
                EmuParam::Out(n) => *n,
                EmuParam::InOut(b) => b.len(),
                EmuParam::In(_) | EmuParam::Scalar(_) => continue,
            };
            let b = out.get(at..at + n).ok_or("emulator output too short")?;
            bufs.push(b.to_vec());
            at += n;
        }
        results.push(bufs);
    }
    Ok(results)
}

/// The thunk calling rendered kernel `index` of a unit.
pub fn kernel_thunk(index: usize, k: &Kernel) -> Thunk {
    let ptr = |d: Dtype| {
        if d == Dtype::F32 { "float" } else { "mg_u16" }
    };
    let stores = store_dtypes(k);
    let ctypes = cuda::params(k)
        .into_iter()
        .map(|p| match p {
            Param::Input(i) => format!("const {}*", ptr(k.inputs[i].dtype)),
            Param::Store(i) => format!("{}*", ptr(stores[i])),
            Param::Reduction(_) => "double*".to_string(),
            Param::F32(_) => "float".to_string(),
            Param::F64(_) => "double".to_string(),
            Param::U64(_) => "mg_u64".to_string(),
        })
        .collect();
    Thunk {
        entry: cuda::entry_name(index, &k.name),
        ctypes,
    }
}

/// The emulated launch of case `index` (kernel `index` of the rendered unit).
pub fn kernel_launch(index: usize, case: &Case) -> EmuLaunch {
    let k = &case.kernel;
    let g = cuda::geometry(k);
    let stores = store_dtypes(k);
    let params = cuda::params(k)
        .into_iter()
        .map(|p| match p {
            Param::Input(i) => EmuParam::In(case.inputs[i].clone()),
            Param::Store(i) => EmuParam::Out(k.numel() * stores[i].size()),
            Param::Reduction(_) => EmuParam::Out(k.n_units() * 8),
            Param::F32(i) => EmuParam::Scalar(case.args.f32[i].to_le_bytes().to_vec()),
            Param::F64(i) => EmuParam::Scalar(case.args.f64[i].to_le_bytes().to_vec()),
            Param::U64(i) => EmuParam::Scalar(case.args.u64[i].to_le_bytes().to_vec()),
        })
        .collect();
    EmuLaunch {
        thunk: index,
        grid: g.grid,
        block: g.block,
        params,
    }
}

/// Renders all cases' kernels as one unit, runs each case once under the emulator.
pub fn emulate_cases(dir: &Path, cases: &[Case]) -> Result<Vec<Outputs>, String> {
    let kernels: Vec<Kernel> = cases.iter().map(|c| c.kernel.clone()).collect();
    let cuda_src = cuda::render(&kernels);
    let thunks: Vec<Thunk> = kernels
        .iter()
        .enumerate()
        .map(|(i, k)| kernel_thunk(i, k))
        .collect();
    let launches: Vec<EmuLaunch> = cases
        .iter()
        .enumerate()
        .map(|(i, c)| kernel_launch(i, c))
        .collect();
    let raw = emulate(dir, &cuda_src, &thunks, &launches)?;
    Ok(raw
        .into_iter()
        .zip(cases)
        .map(|(bufs, case)| {
            let n_stores = case.kernel.n_stores();
            let (stores, reds) = bufs.split_at(n_stores);
            Outputs {
                stores: stores.to_vec(),
                reductions: reds
                    .iter()
                    .map(|b| {
                        b.chunks_exact(8)
                            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                            .collect()
                    })
                    .collect(),
            }
        })
        .collect())
}
