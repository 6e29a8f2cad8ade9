//! Golden snapshot tests (insta), one snapshot per file:
//!   tests/golden/parse/ok/*.merge  -> the AST as an S-expression (and the printed
//!                                     source must parse back to the same tree);
//!   tests/golden/check/ok/*.merge  -> each merge's signature and its typed tree at rank 2;
//!   tests/golden/check/err/*.merge -> the rendered diagnostics. The first line of each is
//!                                     `# expect: <text>`, which must appear in some
//!                                     diagnostic's message or hint.
//! Snapshots live in tests/golden/snapshots. After an intended change, review and accept
//! with `INSTA_UPDATE=always cargo test --release --test golden` (or `cargo insta review`),
//! then check that a plain run passes; CI (CI=true) fails on missing snapshots.

use mergec::interp::{Context, Tensor, TensorFacts, run_merge};
use mergec::syntax::print::{sexpr, source};
use mergec::types::{Const, instantiate_merge};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

fn settings() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.set_snapshot_path("golden/snapshots");
    s.set_prepend_module_to_snapshot(false);
    s.set_omit_expression(true);
    s
}

fn read(path: &Path) -> (String, String) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let src = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{name}: {e}"));
    (name, src)
}

fn count(dir: &str) -> usize {
    std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "merge"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn parse_ok() {
    assert!(count("tests/golden/parse/ok") >= 5);
    settings().bind(|| {
        insta::glob!("golden/parse/ok/*.merge", |path| {
            let (name, src) = read(path);
            let p = mergec::syntax::parse_program(&src).unwrap_or_else(|d| {
                panic!(
                    "{name} does not parse:\n{}",
                    mergec::diag::render_all(&d, &name, &src, false)
                )
            });
            let printed = source(&p);
            let again = mergec::syntax::parse_program(&printed)
                .unwrap_or_else(|_| panic!("{name}: printed source does not parse:\n{printed}"));
            assert_eq!(sexpr(&again), sexpr(&p), "{name}: print/parse round trip");
            insta::assert_snapshot!("parse", sexpr(&p));
        });
    });
}

#[test]
fn check_ok() {
    assert!(count("tests/golden/check/ok") >= 5);
    settings().bind(|| {
        insta::glob!("golden/check/ok/*.merge", |path| {
            let (name, src) = read(path);
            let (program, sigs) = mergec::check_source(&src).unwrap_or_else(|d| {
                panic!(
                    "{name} does not check:\n{}",
                    mergec::diag::render_all(&d, &name, &src, false)
                )
            });
            let mut out = String::new();
            for sig in &sigs {
                out.push_str(&sig.signature());
                out.push('\n');
                match instantiate_merge(&program, &sig.name, 2) {
                    Ok(m) => out.push_str(&m.body.pretty(&m.var_names)),
                    Err(_) => out.push_str("  (not accepted for 2-D tensors)\n"),
                }
                out.push('\n');
            }
            insta::assert_snapshot!("check", out);
        });
    });
}

#[test]
fn check_err() {
    let n = count("tests/golden/check/err");
    assert!(n >= 40, "only {n} invalid programs");
    settings().bind(|| {
        insta::glob!("golden/check/err/*.merge", |path| {
            let (name, src) = read(path);
            let expect = src
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("# expect:"))
                .map(str::trim)
                .unwrap_or_else(|| panic!("{name}: the first line must be `# expect: <text>`"));
            let result = catch_unwind(AssertUnwindSafe(|| mergec::check_source(&src)));
            let diags = match result {
                Ok(Err(d)) => d,
                Ok(Ok(_)) => panic!("{name}: accepted, but it should be rejected with `{expect}`"),
                Err(_) => panic!("{name}: the checker panicked"),
            };
            let rendered = mergec::diag::render_all(&diags, &name, &src, false);
            let mentioned = diags.iter().any(|d| {
                d.message.contains(expect) || d.hint.as_ref().is_some_and(|h| h.contains(expect))
            });
            assert!(
                mentioned,
                "{name}: no diagnostic mentions `{expect}`:\n{rendered}"
            );
            insta::assert_snapshot!("check_err", rendered);
        });
    });
}

const PARAMS: &str =
    "merge m(base: Tensor, models: [Tensor], lambda: f32 = 1.0, weight: [f32] = 1.0,
        k: int = 2, flag: bool = false) -> Tensor {
    let scaled = if flag { float(k) * lambda } else { lambda }
    return base + scaled * sum(weight * (models - base))
}
";

/// Runs `PARAMS` on 3 models with one `--set`-style override.
fn run_with(set: &str) -> Result<Tensor, mergec::interp::RuntimeError> {
    let (program, _) = mergec::check_source(PARAMS).expect("PARAMS checks");
    let m = instantiate_merge(&program, "m", 1).expect("rank 1");
    let base = Tensor::new(vec![4], vec![1.0, 2.0, 3.0, 4.0]);
    let models = vec![base.clone(); 3];
    let ctx = Context::new(
        0,
        TensorFacts::from_name("model.layers.0.mlp.up_proj.weight", 4),
    );
    let over = Const::parse_assignment(set).expect("a well-formed assignment");
    run_merge(&m, &base, &models, &[over], &ctx, false)
}

#[test]
fn wrong_parameter_overrides_are_clear_runtime_errors() {
    for ok in [
        "lambda=0.5",
        "lambda=2",
        "weight=[0.5,1,0.25]",
        "weight=0.3",
        "k=3",
        "flag=true",
    ] {
        assert!(run_with(ok).is_ok(), "{ok} should run");
    }
    let cases = [
        (
            "lambda=true",
            "parameter `lambda` is f32, but true was given",
        ),
        ("k=0.5", "parameter `k` is int, but 0.5 was given"),
        ("flag=1", "parameter `flag` is bool, but 1 was given"),
        (
            "weight=[0.5,0.5]",
            "parameter `weight` has 2 values but 3 models were given",
        ),
        ("weight=[true,false,true]", "parameter `weight` is [f32]"),
        ("lambda=[0.5,0.5,0.5]", "parameter `lambda` is f32"),
        ("lamda=0.5", "`m` has no parameter `lamda`"),
    ];
    let mut report = String::new();
    for (set, want) in cases {
        let e = run_with(set).expect_err(set);
        assert!(
            e.message.contains(want),
            "{set}: `{}` lacks `{want}`",
            e.message
        );
        assert!(e.hint.is_some(), "{set}: no hint in `{e}`");
        report.push_str(&format!("--set {set}\n  error: {e}\n"));
    }
    settings().bind(|| insta::assert_snapshot!("overrides", report));
}

#[test]
fn malformed_override_text_is_rejected() {
    for bad in [
        "lambda",
        "=1",
        "lambda=1e39",
        "lambda=[[1]]",
        "lambda=abc",
        "weight=[]",
    ] {
        assert!(
            Const::parse_assignment(bad).is_err(),
            "{bad} should not parse"
        );
    }
}
