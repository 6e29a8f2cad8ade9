//! Property tests: nothing a user can write makes the front end or the reference
//! interpreter panic. Three kinds of input go through parse + check + run:
//!   (a) generated well-typed programs (`mergec::gen`), which must check, then run
//!       on small random tensors of several shapes with 1-3 models (Ok or a
//!       RuntimeError; non-finite output allowed);
//!   (b) random byte strings and token soup;
//!   (c) mutated valid programs (tokens or bytes deleted, duplicated, replaced).
//!
//! Run: `cargo test --release --test prop -- --nocapture` (prints the counts).
//! The total number of cases comes from MERGEC_PROP_CASES (default 100000, split
//! 40/30/30 over (a)/(b)/(c)); MERGEC_PROP_SEED shifts every seed. Each case runs
//! under catch_unwind; a failure names its seed and prints the program.

use mergec::r#gen::generate_source;
use mergec::interp::{Context, Tensor, TensorFacts, run_merge};
use mergec::semantics::rng::SplitMix64;
use mergec::types::instantiate_merge;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

const SHAPES: [&[usize]; 5] = [&[1], &[3], &[50], &[3, 5], &[1, 7]];
const NAMES: [&str; 5] = [
    "model.layers.2.mlp.up_proj.weight",
    "model.layers.0.self_attn.q_proj.weight",
    "model.norm.weight",
    "model.embed_tokens.weight",
    "model.layers.3.post_attention_layernorm.weight",
];

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

/// This category's share of MERGEC_PROP_CASES, and the seed offset.
fn cases(share_percent: u64) -> (u64, u64) {
    let total = env_u64("MERGEC_PROP_CASES", 100_000);
    (total * share_percent / 100, env_u64("MERGEC_PROP_SEED", 0))
}

#[derive(Default, Debug)]
struct Stats {
    cases: u64,
    checked: u64,
    rejected: u64,
    runs: u64,
    run_ok: u64,
    nonfinite: u64,
    run_err: u64,
    failures: Vec<String>,
}

impl Stats {
    fn report(&self, what: &str, start: Instant) {
        println!(
            "{what}: {} cases in {:.1}s: {} checked, {} rejected; {} runs: {} ok ({} with non-finite values), {} runtime errors; {} failures",
            self.cases,
            start.elapsed().as_secs_f64(),
            self.checked,
            self.rejected,
            self.runs,
            self.run_ok,
            self.nonfinite,
            self.run_err,
            self.failures.len()
        );
    }
    fn assert_clean(&self) {
        if !self.failures.is_empty() {
            let shown: Vec<&String> = self.failures.iter().take(5).collect();
            panic!(
                "{} failing cases; the first:\n{}",
                self.failures.len(),
                shown
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("\n----\n")
            );
        }
    }
}

fn random_tensor(rng: &mut SplitMix64, shape: &[usize], scale: f32) -> Tensor {
    let n = shape.iter().product();
    let data = (0..n)
        .map(|_| {
            if rng.chance(0.05) {
                0.0
            } else {
                scale * rng.normal()
            }
        })
        .collect();
    Tensor::new(shape.to_vec(), data)
}

/// Checks `src`; if it checks, runs every merge at every rank it accepts on every
/// test shape of that rank. `Err` is a broken contract (not a panic).
fn check_and_run(
    src: &str,
    rng: &mut SplitMix64,
    must_check: bool,
    st: &mut Stats,
) -> Result<(), String> {
    let (program, sigs) = match mergec::check_source(src) {
        Ok(x) => x,
        Err(d) if must_check => {
            return Err(format!(
                "a generated program does not check:\n{}",
                mergec::diag::render_all(&d, "gen.merge", src, false)
            ));
        }
        Err(d) if d.is_empty() => return Err("rejected without a diagnostic".into()),
        Err(_) => {
            st.rejected += 1;
            return Ok(());
        }
    };
    st.checked += 1;
    for sig in &sigs {
        for rank in sig.ranks.clone() {
            let m = instantiate_merge(&program, &sig.name, rank).map_err(|d| {
                format!(
                    "`{}` checks for rank {rank} in check_program but not in instantiate_merge:\n{}",
                    sig.name,
                    mergec::diag::render_all(&d, "p.merge", src, false)
                )
            })?;
            for shape in SHAPES.iter().filter(|s| s.len() == rank) {
                let k = 1 + rng.below(3);
                let scale = *rng.pick(&[1.0, 0.01, 30.0]);
                let base = random_tensor(rng, shape, scale);
                let models: Vec<Tensor> =
                    (0..k).map(|_| random_tensor(rng, shape, scale)).collect();
                let facts = TensorFacts::from_name(rng.pick::<&str>(&NAMES), 4);
                let ctx = Context::new(rng.next_u64(), facts);
                st.runs += 1;
                match run_merge(&m, &base, &models, &[], &ctx, true) {
                    Ok(t) if t.shape != base.shape => {
                        return Err(format!(
                            "`{}` returned shape {:?} for a base of shape {:?}",
                            sig.name, t.shape, base.shape
                        ));
                    }
                    Ok(t) => {
                        st.run_ok += 1;
                        if t.data.iter().any(|v| !v.is_finite()) {
                            st.nonfinite += 1;
                        }
                    }
                    Err(e) if e.message.is_empty() => {
                        return Err("a runtime error without a message".into());
                    }
                    Err(_) => st.run_err += 1,
                }
            }
        }
    }
    Ok(())
}

/// Runs one case under catch_unwind, recording a panic or broken contract.
fn guarded(
    st: &mut Stats,
    label: &str,
    seed: u64,
    src: &str,
    f: impl FnOnce(&mut Stats) -> Result<(), String>,
) {
    st.cases += 1;
    let outcome = catch_unwind(AssertUnwindSafe(|| f(st)));
    let problem = match outcome {
        Ok(Ok(())) => return,
        Ok(Err(msg)) => msg,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "(non-string panic)".into());
            format!("PANIC: {msg}")
        }
    };
    st.failures.push(format!(
        "{label} seed {seed}: {problem}\n--- program ---\n{src}"
    ));
}

fn gen_size(rng: &mut SplitMix64) -> usize {
    match rng.below(10) {
        0 => 1 + rng.below(8),
        1 => 100 + rng.below(300),
        _ => 8 + rng.below(90),
    }
}

#[test]
fn generated_programs_check_and_run() {
    let (n, offset) = cases(40);
    let start = Instant::now();
    let mut st = Stats::default();
    for i in 0..n {
        let seed = offset.wrapping_add(i);
        let mut rng = SplitMix64::new(seed);
        let size = gen_size(&mut rng);
        let src = generate_source(seed, size);
        guarded(
            &mut st,
            &format!("generated (size {size})"),
            seed,
            &src,
            |st| check_and_run(&src, &mut rng, true, st),
        );
    }
    st.report("(a) generated programs", start);
    st.assert_clean();
}

/// Pieces of the language (and of Python) for token soup and replacements.
const TOKENS: &[&str] = &[
    "merge",
    "fn",
    "let",
    "return",
    "if",
    "else",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    "|",
    ",",
    ":",
    "->",
    "=",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "**",
    "and",
    "or",
    "not",
    "!",
    "&&",
    "||",
    ";",
    "base",
    "models",
    "x",
    "acc",
    "i",
    "Tensor",
    "[Tensor]",
    "f32",
    "int",
    "bool",
    "Mask",
    "[f32]",
    "sum",
    "mean",
    "max",
    "min",
    "fold",
    "repeat",
    "where",
    "quantile",
    "topk_mask",
    "norm",
    "sum_all",
    "bernoulli",
    "uniform",
    "softmax",
    "len",
    "axis=-1",
    "axis=0",
    "axis=5",
    "keepdim=false",
    "stream=1",
    "0",
    "1",
    "-1",
    "2.5",
    "0.5",
    "1e39",
    "1e-8",
    "99999999999999999999",
    "true",
    "false",
    "\"mlp\"",
    "kind",
    "layer",
    "n_layers",
    "name",
    "#",
    "\n",
    " ",
    "def",
    "lambda",
    "np.mean",
    "x[0]",
    "models[0]",
    "|acc, x|",
    "|acc, x, i|",
    "init=",
    "\"",
    ".",
    "@",
    "\t",
    "é",
    "∑",
];

fn token_soup(rng: &mut SplitMix64) -> String {
    let mut s = String::new();
    if rng.chance(0.5) {
        s.push_str("merge m(base: Tensor, models: [Tensor]) -> Tensor {\n");
    }
    for _ in 0..rng.below(60) {
        s.push_str(rng.pick::<&str>(TOKENS));
        if rng.chance(0.6) {
            s.push(' ');
        }
    }
    if rng.chance(0.5) {
        s.push_str("\n}\n");
    }
    s
}

#[test]
fn random_bytes_never_panic() {
    let (n, offset) = cases(30);
    let start = Instant::now();
    let mut st = Stats::default();
    for i in 0..n {
        let seed = offset.wrapping_add(i) ^ 0xB17E5;
        let mut rng = SplitMix64::new(seed);
        let src = if rng.chance(0.3) {
            let len = rng.below(300);
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            token_soup(&mut rng)
        };
        guarded(&mut st, "random", seed, &src, |st| {
            check_and_run(&src, &mut rng, false, st)
        });
    }
    st.report("(b) random bytes and token soup", start);
    st.assert_clean();
}

/// Splits source into tokens: identifier/number runs, whitespace runs, single symbols.
fn tokens(src: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let class = |c: char| {
        if c.is_alphanumeric() || c == '_' || c == '.' {
            0
        } else if c.is_whitespace() {
            1
        } else {
            2
        }
    };
    for c in src.chars() {
        match out.last_mut() {
            Some(last) if class(c) != 2 && last.chars().last().map(class) == Some(class(c)) => {
                last.push(c)
            }
            _ => out.push(c.to_string()),
        }
    }
    out
}

fn mutate(src: &str, rng: &mut SplitMix64) -> String {
    if rng.chance(0.25) {
        let mut bytes = src.as_bytes().to_vec();
        for _ in 0..1 + rng.below(3) {
            if bytes.is_empty() {
                break;
            }
            let at = rng.below(bytes.len());
            match rng.below(3) {
                0 => {
                    bytes.remove(at);
                }
                1 => bytes.insert(at, rng.next_u64() as u8),
                _ => bytes[at] = *rng.pick(b"(){}[]|,:=+-*/<>!#\"0123456789. \nabexyz"),
            }
        }
        return String::from_utf8_lossy(&bytes).into_owned();
    }
    let mut toks = tokens(src);
    for _ in 0..1 + rng.below(3) {
        if toks.is_empty() {
            break;
        }
        let at = rng.below(toks.len());
        match rng.below(5) {
            0 => {
                toks.remove(at);
            }
            1 => {
                let t = toks[at].clone();
                toks.insert(at, t);
            }
            2 => toks[at] = rng.pick(TOKENS).to_string(),
            3 => {
                let other = toks[rng.below(toks.len())].clone();
                toks[at] = other;
            }
            _ => {
                let j = rng.below(toks.len());
                toks.swap(at, j);
            }
        }
    }
    toks.concat()
}

#[test]
fn mutated_programs_never_panic() {
    let (n, offset) = cases(30);
    let start = Instant::now();
    let mut st = Stats::default();
    for i in 0..n {
        let seed = offset.wrapping_add(i) ^ 0x3u64.rotate_right(3);
        let mut rng = SplitMix64::new(seed);
        let original = if rng.chance(0.2) {
            let (_, src) = *rng.pick(mergec::stdlib::SOURCES);
            src.to_string()
        } else {
            let size = 5 + rng.below(60);
            generate_source(rng.next_u64(), size)
        };
        let src = mutate(&original, &mut rng);
        guarded(&mut st, "mutated", seed, &src, |st| {
            check_and_run(&src, &mut rng, false, st)
        });
    }
    st.report("(c) mutated programs", start);
    st.assert_clean();
}
