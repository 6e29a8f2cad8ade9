//! Scripted REPL sessions: no terminal, just `Session::eval_line`.

use mergec::interp::Value;
use mergec::repl::{Output, Session};
use mergec::runtime::safetensors::{Dtype, TensorMap, write};

/// Runs lines that must all succeed; returns the last output's text.
fn ok(s: &mut Session, lines: &[&str]) -> String {
    let mut last = String::new();
    for line in lines {
        let out = s.eval_line(line);
        assert!(!out.is_error, "`{line}` failed:\n{}", out.text);
        last = out.text;
    }
    last
}

/// Runs a line that must fail; returns its message.
fn fails(s: &mut Session, line: &str) -> String {
    let out = s.eval_line(line);
    assert!(out.is_error, "`{line}` should fail, printed:\n{}", out.text);
    assert!(!out.text.contains("internal error"), "{}", out.text);
    out.text
}

fn data(s: &Session, name: &str) -> Vec<f32> {
    match s.var(name) {
        Some(Value::Tensor(t)) | Some(Value::Mask(t)) => t.data.clone(),
        other => panic!("`{name}` is {other:?}"),
    }
}

fn scalar(s: &mut Session, expr: &str) -> f32 {
    ok(s, &[&format!("let tmp_scalar = {expr}")]);
    match s.var("tmp_scalar") {
        Some(v) => v.as_f32().expect("a scalar"),
        None => panic!("unbound"),
    }
}

fn example(file: &str) -> String {
    format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn literals_bindings_and_types() {
    let mut s = Session::new(0);
    let out = ok(&mut s, &["let a = [[1, 2], [3, 4]]"]);
    assert!(out.starts_with("a = Tensor [2, 2] (4 elements)"), "{out}");
    assert!(out.contains("min 1  max 4  mean 2.5"), "{out}");
    ok(&mut s, &["let b = a * 2 + 1"]);
    assert_eq!(data(&s, "b"), [3.0, 5.0, 7.0, 9.0]);
    let out = ok(&mut s, &["sum_all(b)"]);
    assert_eq!(out, "f32 24");
    ok(
        &mut s,
        &["let xs = [a, b]", "let k = len(xs)", "let m = a > 2"],
    );
    let vars = ok(&mut s, &[":vars"]);
    for want in [
        "a  : Tensor[2, 2]",
        "xs : [Tensor[2, 2]]",
        "k  : int",
        "m  : Mask[2, 2]",
    ] {
        assert!(vars.contains(want), "{want} in\n{vars}");
    }
    // Rebinding keeps the place and takes the new type.
    ok(&mut s, &["let a = [1, 2, 3]"]);
    assert!(ok(&mut s, &[":vars"]).starts_with("a  : Tensor[3]"));
    assert_eq!(ok(&mut s, &["norm(xs - b)"]), "list of 2 f32: [7.3485, 0]");
}

#[test]
fn type_without_evaluating() {
    let mut s = Session::new(0);
    ok(&mut s, &["let b = randn(3, 5)"]);
    assert_eq!(ok(&mut s, &[":type b - mean(b, axis=1)"]), "Tensor[3, 5]");
    assert_eq!(ok(&mut s, &[":type [b, b] - b"]), "[Tensor[3, 5]]");
    assert_eq!(ok(&mut s, &[":type norm(b)"]), "f32");
    assert_eq!(ok(&mut s, &[":type layer"]), "int");
    let sig = ok(&mut s, &[":type ties"]);
    assert!(
        sig.starts_with("merge ties(base: Tensor, models: [Tensor]"),
        "{sig}"
    );
    let msg = fails(&mut s, ":type b + randn(2, 2)");
    assert!(msg.contains("<repl>"), "{msg}");
}

#[test]
fn randn_is_seeded_and_advances() {
    let script = [
        "let x = randn(8)",
        "let y = randn(8)",
        ":type randn(8)",
        "let z = randn(8)",
    ];
    let mut a = Session::new(7);
    let mut b = Session::new(7);
    ok(&mut a, &script);
    ok(&mut b, &script);
    for n in ["x", "y", "z"] {
        assert_eq!(data(&a, n), data(&b, n), "same seed, same draws");
    }
    assert_ne!(data(&a, "x"), data(&a, "y"), "each call draws anew");
    // :type draws nothing: z is the third draw in a session without it.
    let mut c = Session::new(7);
    ok(
        &mut c,
        &["let x = randn(8)", "let y = randn(8)", "let z = randn(8)"],
    );
    assert_eq!(data(&a, "z"), data(&c, "z"));
    let mut d = Session::new(8);
    ok(&mut d, &["let x = randn(8)"]);
    assert_ne!(data(&a, "x"), data(&d, "x"), "another seed, other draws");
    // :seed restarts the sequence.
    ok(&mut a, &[":seed 7", "let w = randn(8)"]);
    assert_eq!(data(&a, "w"), data(&a, "x"));
}

#[test]
fn stdlib_merges_are_callable() {
    let mut s = Session::new(1);
    ok(
        &mut s,
        &[
            "let b = randn(4, 6)",
            "let m1 = b + 0.1 * randn(4, 6)",
            "let m2 = b - 0.1 * randn(4, 6)",
            "let r = task_arithmetic(b, [m1, m2])",
            "let e = b + (m1 - b) + (m2 - b)",
        ],
    );
    assert!(scalar(&mut s, "max_all(abs(r - e))") < 1e-5);
    let out = ok(&mut s, &[":methods"]);
    assert!(out.contains("task_arithmetic"), "{out}");
    let src = ok(&mut s, &[":source task_arithmetic"]);
    assert!(src.starts_with("# from stdlib/task_arithmetic.merge\nmerge task_arithmetic("));
}

#[test]
fn load_a_merge_file_and_call_it() {
    let mut s = Session::new(3);
    let out = ok(&mut s, &[&format!(":load {}", example("ties.merge"))]);
    assert!(
        out.contains("merge ties(base: Tensor, models: [Tensor]"),
        "{out}"
    );
    assert!(out.contains("shadows stdlib/ties.merge"), "{out}");
    ok(
        &mut s,
        &[
            "let b = randn(4, 4)",
            "let m1 = b + 0.1 * randn(4, 4)",
            "let m2 = b - 0.1 * randn(4, 4)",
            "let t = ties(b, [m1, m2], density=[0.5, 0.5])",
        ],
    );
    assert_eq!(data(&s, "t").len(), 16);
    // With one model and density 1, TIES gives that model back.
    ok(&mut s, &["let one = ties(b, [m1], density=[1.0])"]);
    assert!(scalar(&mut s, "max_all(abs(one - m1))") < 1e-6);
    // Misspelt parameter: did you mean.
    let msg = fails(&mut s, "ties(b, [m1, m2], densty=[0.5, 0.5])");
    assert!(msg.contains("did you mean `density`?"), "{msg}");
    // Reloading the same file is fine; another file with the same name clashes.
    ok(&mut s, &[&format!(":load {}", example("ties.merge"))]);
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.merge");
    std::fs::write(
        &other,
        std::fs::read_to_string(example("ties.merge")).unwrap(),
    )
    .unwrap();
    let msg = fails(&mut s, &format!(":load {}", other.display()));
    assert!(msg.contains("`ties` is already defined by"), "{msg}");
    // Several files at once, later ones adding items.
    let ta = example("task_arithmetic.merge");
    let out = ok(&mut s, &[&format!(":load {} {ta}", example("ties.merge"))]);
    assert!(out.contains("merge task_arithmetic"), "{out}");
}

#[test]
fn load_reports_bad_files() {
    let mut s = Session::new(0);
    let msg = fails(&mut s, ":load /no/such/file.merge");
    assert!(msg.contains("cannot read `/no/such/file.merge`"), "{msg}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.merge");
    std::fs::write(
        &bad,
        "merge m(base: Tensor, models: [Tensor]) -> Tensor {\n  return bse\n}\n",
    )
    .unwrap();
    let msg = fails(&mut s, &format!(":load {}", bad.display()));
    assert!(
        msg.contains("unknown name `bse`") && msg.contains("bad.merge"),
        "{msg}"
    );
    assert!(fails(&mut s, ":load").contains("usage"));
}

#[test]
fn definitions_at_the_prompt() {
    let mut s = Session::new(0);
    let out = ok(
        &mut s,
        &["merge avg(base: Tensor, models: [Tensor]) -> Tensor { return mean(models) }"],
    );
    assert!(out.starts_with("defined merge avg("), "{out}");
    ok(&mut s, &["let r = avg([[0.0, 0.0]], [[[1, 2]], [[3, 4]]])"]);
    assert_eq!(data(&s, "r"), [2.0, 3.0]);
    let out = ok(&mut s, &["fn twice(x: Tensor) -> Tensor { return 2 * x }"]);
    assert!(out.contains("defined fn twice"), "{out}");
    assert!(ok(&mut s, &["fn twice(x: Tensor) -> Tensor { return x + x }"]).contains("replaces"));
    ok(&mut s, &["let d = twice([1, 2])"]);
    assert_eq!(data(&s, "d"), [2.0, 4.0]);
}

#[test]
fn errors_are_rendered_with_hints() {
    let mut s = Session::new(0);
    ok(&mut s, &["let base = randn(2, 2)"]);
    let msg = fails(&mut s, "qunatile(base, 0.5)");
    assert!(
        msg.contains("did you mean `quantile`?") && msg.contains("<repl>:1:1"),
        "{msg}"
    );
    let msg = fails(&mut s, "bsae + 1");
    assert!(msg.contains("did you mean `base`?"), "{msg}");
    let msg = fails(&mut s, "x = 3");
    assert!(msg.contains("let x = ..."), "{msg}");
    let msg = fails(&mut s, "base + randn(3, 3)");
    assert!(msg.contains("[2, 2]") && msg.contains("[3, 3]"), "{msg}");
    let msg = fails(&mut s, ":sede 3");
    assert!(msg.contains("did you mean `:seed`?"), "{msg}");
    assert!(fails(&mut s, ":seed x").contains("not a seed"));
    let msg = fails(&mut s, ":source tise");
    assert!(msg.contains("did you mean `ties`?"), "{msg}");
}

#[test]
fn meta_commands() {
    let mut s = Session::new(0);
    let help = ok(&mut s, &[":help"]);
    assert!(help.contains("model.layers.0.mlp.up_proj.weight"), "{help}");
    assert!(ok(&mut s, &[":builtins"]).contains("quantile(x: Tensor, q: f32)"));
    assert!(ok(&mut s, &[":vars"]).contains("no bindings"));
    assert_eq!(ok(&mut s, &["layer"]), "int 0");
    assert_eq!(ok(&mut s, &["kind"]), "str \"mlp\"");
    let f = ok(
        &mut s,
        &[":facts model.layers.7.self_attn.q_proj.weight 28"],
    );
    assert!(
        f.contains("kind = \"attention\", layer = 7, n_layers = 28"),
        "{f}"
    );
    assert_eq!(ok(&mut s, &["layer / n_layers"]), "f32 0.25");
    assert_eq!(s.eval_line(""), Output::default());
    assert_eq!(s.eval_line("  # a comment"), Output::default());
    for q in [":q", ":quit", "  :exit  "] {
        assert!(s.eval_line(q).quit);
    }
}

fn weights() -> TensorMap {
    let mut m = TensorMap::new();
    m.insert(
        "model.layers.0.mlp.up_proj.weight".into(),
        (vec![2, 3], vec![0.5, -1.0, 2.0, 0.25, 0.0, -3.5]),
    );
    m.insert("model.norm.weight".into(), (vec![3], vec![1.0, 1.0, 1.0]));
    m
}

#[test]
fn load_tensors_from_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Session::new(0);
    let want = weights()["model.layers.0.mlp.up_proj.weight"].1.clone();
    for dtype in [Dtype::F32, Dtype::F16, Dtype::BF16] {
        let path = dir.path().join(format!("w-{}.safetensors", dtype.name()));
        write(&path, &weights(), dtype).unwrap();
        let p = path.display();
        let out = ok(
            &mut s,
            &[&format!(
                "let w = load(\"{p}\", \"model.layers.0.mlp.up_proj.weight\")"
            )],
        );
        assert!(out.starts_with("w = Tensor [2, 3]"), "{out}");
        assert_eq!(data(&s, "w"), want, "{dtype:?}");
        let t = ok(
            &mut s,
            &[&format!(":type load(\"{p}\", \"model.norm.weight\")")],
        );
        assert_eq!(t, "Tensor[3]");
        let listing = ok(&mut s, &[&format!(":tensors {p}")]);
        assert!(
            listing.contains(dtype.name()) && listing.contains("2 of 2 tensors"),
            "{listing}"
        );
    }
    // A model directory, a misspelt tensor, a missing file.
    write(
        dir.path().join("model.safetensors"),
        &weights(),
        Dtype::BF16,
    )
    .unwrap();
    let d = dir.path().display();
    ok(
        &mut s,
        &[&format!("let n = load(\"{d}\", \"model.norm.weight\") * 2")],
    );
    assert_eq!(data(&s, "n"), [2.0; 3]);
    let msg = fails(&mut s, &format!("load(\"{d}\", \"model.norm.weigth\")"));
    assert!(msg.contains("did you mean `model.norm.weight`?"), "{msg}");
    let msg = fails(&mut s, "load(\"/no/such.safetensors\", \"x\")");
    assert!(msg.contains("no such file"), "{msg}");
}

#[test]
fn load_refuses_other_dtypes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ints.safetensors");
    let raw = mergec::runtime::safetensors::RawTensor {
        name: "ids".into(),
        dtype: "I32".into(),
        shape: vec![2],
        bytes: vec![0; 8],
    };
    std::fs::write(&path, mergec::runtime::safetensors::encode_raw(&[raw])).unwrap();
    let mut s = Session::new(0);
    let msg = fails(&mut s, &format!("load(\"{}\", \"ids\")", path.display()));
    assert!(msg.contains("`ids`") && msg.contains("I32"), "{msg}");
}

#[test]
fn bad_lines_never_panic() {
    let mut s = Session::new(0);
    ok(&mut s, &["let b = randn(3, 3)", "let m = [b, b * 2]"]);
    let bad = [
        "(",
        ")",
        "[[1, 2], [3]]",
        "[]",
        "[[]]",
        "let",
        "let = 3",
        "let x =",
        "let 3 = 4",
        "b +",
        "* b",
        "b[0]",
        "m[5]",
        "m[-3]",
        "m[0.5]",
        "fold(m)",
        "fold(m, |a| a)",
        "repeat(100000, b, |a, i| a)",
        "randn(0)",
        "randn(-1)",
        "randn(1e9)",
        "randn()",
        "randn(99999999999999999999)",
        "zeros(4096, 4096)",
        "load(1, 2)",
        "load(\"\", \"\")",
        "load(\"/\", \"x\")",
        "1 / 0",
        "log(-b)",
        "quantile(b, 2)",
        "sum(b)",
        "mean(b, axis=5)",
        "norm(b, axis=-9)",
        "b ** b ** b",
        "\"str\" + 1",
        "name + 1",
        "if b { 1 } else { 2 }",
        "where(b, 1, 2)",
        "ties()",
        "ties(b)",
        "ties(b, b)",
        "ties(b, m, density=[0.5])",
        "task_arithmetic(b, m, weight=[1, 2, 3])",
        "merge",
        "merge x(",
        "fn f() -> Tensor { }",
        "merge sum(base: Tensor, models: [Tensor]) -> Tensor { return base }",
        "fn f(x: Tensor) -> Tensor { return f(x) }",
        ":",
        "::",
        ":type",
        ":type (",
        ":load",
        ":seed -1",
        ":seed 99999999999999999999999",
        ":source",
        ":tensors",
        ":tensors /nope",
        ":facts a b",
        ":facts",
        "\u{0}",
        "é + ü",
        "let é = 1",
        "#",
        "1e400",
        "-1e400 + b",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
        &"(".repeat(5000),
        &"-".repeat(5000),
        &format!("{}1", "not ".repeat(3000)),
        &"b + ".repeat(3000),
        "let b = b",
        "dim(b, 7)",
        "topk_mask(b, 2.0)",
        "bernoulli(b, 2)",
    ];
    for line in bad {
        let out = s.eval_line(line);
        assert!(
            !out.text.contains("internal error"),
            "`{}` crashed",
            line.chars().take(40).collect::<String>()
        );
    }
    // The session still works.
    assert!(ok(&mut s, &["sum_all(b * 0)"]).starts_with("f32"));
}

#[test]
fn errors_inside_a_loaded_merge_point_into_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.merge");
    let src = "# 2-D only\nmerge rowcentred(base: Tensor, models: [Tensor]) -> Tensor {\n    \
               let d = models - base\n    return base + mean(d - mean(d, axis=1))\n}\n";
    std::fs::write(&path, src).unwrap();
    let mut s = Session::new(0);
    ok(&mut s, &[&format!(":load {}", path.display())]);
    ok(&mut s, &["rowcentred(randn(2, 3), [randn(2, 3)])"]);
    let msg = fails(&mut s, "rowcentred(randn(3), [randn(3)])");
    assert!(msg.contains("rows.merge:4:"), "{msg}");
    assert!(
        msg.contains("while inlining the call to `rowcentred`"),
        "{msg}"
    );
    assert!(!msg.contains("checked with the base"), "{msg}");
}

#[test]
fn continuation_counts_open_brackets() {
    use mergec::repl::open_brackets;
    assert_eq!(open_brackets("let m = ["), 1);
    assert_eq!(
        open_brackets("merge f(base: Tensor, models: [Tensor]) -> Tensor {"),
        1
    );
    assert_eq!(open_brackets("[[1, 2], [3, 4]]"), 0);
    assert_eq!(open_brackets("load(\"a(b\", \"c\")"), 0);
    assert_eq!(open_brackets("f(x # (\n)"), 0);
    assert_eq!(open_brackets("x)"), -1);
}

#[test]
fn bare_help_exit_and_quit_do_what_users_expect() {
    let mut s = Session::new(0);
    let help = ok(&mut s, &["help"]);
    assert_eq!(help, ok(&mut s, &[":help"]));
    assert_eq!(ok(&mut s, &["help()"]), help);
    for q in ["exit", "quit", "exit()", "quit()", "  quit  "] {
        let out = s.eval_line(q);
        assert!(out.quit && !out.is_error, "`{q}`: {out:?}");
    }
}

/// `mergec repl` with `input` piped to its stdin: (exit code, stdout, stderr).
fn piped(input: &str) -> (Option<i32>, String, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mergec"))
        .arg("repl")
        .env("NO_COLOR", "1")
        .env("MERGEC_HISTORY", dir.path().join("history"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mergec repl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn piped_input_exits_1_when_a_line_failed() {
    let (code, _, err) = piped("1 + 1\nno_such_name\n2 + 2\n");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("unknown name `no_such_name`"), "{err}");
    let (code, out, err) = piped("1 + 1\n");
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, out, err) = piped("help\nquit\nno_such_name\n");
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(":help"), "{out}");
}
