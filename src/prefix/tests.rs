//! Tests of the incremental prefix checker (`prefix.rs`).
use super::Viability::{Complete, Incomplete, Invalid};
use super::*;
use crate::syntax::ast::ItemKind;

const UNSCOPED: PrefixOptions = PrefixOptions {
    scoped: false,
    strict: false,
};
const SCOPED: PrefixOptions = PrefixOptions {
    scoped: true,
    strict: false,
};
const STRICT: PrefixOptions = PrefixOptions {
    scoped: true,
    strict: true,
};

#[test]
fn strict_mode_wants_earlier_functions_and_word_boundaries() {
    use Viability::*;
    const H: &str = "merge f(base: Tensor, models: [Tensor]) -> Tensor {";
    for (text, want) in [
        (format!("{H} return ba"), Incomplete),
        (format!("{H} return bse"), Invalid),
        (format!("{H} return su"), Incomplete),
        (format!("{H} return helper(base)"), Invalid),
        (format!("{H} return sum(models - base) }}"), Complete),
        (format!("{H} lettuce = 1"), Invalid),
        (format!("{H} let x = if"), Incomplete),
        (format!("{H} let x = iffy"), Invalid),
        ("merges(".to_string(), Invalid),
        (
            "fn h(x: Tensor) -> Tensor { return x }\n".to_string() + H + " return h(base) }",
            Complete,
        ),
    ] {
        assert_eq!(check_prefix(&text, &STRICT), want, "{text:?}");
    }
    // Strict never accepts what the plain scoped mode rejects.
    for m in crate::stdlib::methods() {
        let src = m.source;
        for (i, _) in src.char_indices() {
            let p = &src[..i];
            if check_prefix(p, &SCOPED) == Invalid {
                assert_eq!(check_prefix(p, &STRICT), Invalid, "{p:?}");
            }
        }
    }
}
const H: &str = "merge f(base: Tensor, models: [Tensor]) -> Tensor {";

fn un(t: &str) -> Viability {
    check_prefix(t, &UNSCOPED)
}
fn sc(t: &str) -> Viability {
    check_prefix(t, &SCOPED)
}

fn ends_in_merge(t: &str) -> Option<bool> {
    crate::syntax::parse_program(t)
        .ok()
        .map(|p| p.items.last().is_some_and(|i| i.kind == ItemKind::Merge))
}

/// Every prefix of a valid program is viable in both modes; the whole is Complete.
/// (Scoped mode too only for programs the checker accepts.)
fn assert_prefixes_viable(name: &str, src: &str, scoped_too: bool) {
    let src = src.trim_end();
    let modes: &[&PrefixOptions] = if scoped_too {
        &[&UNSCOPED, &SCOPED]
    } else {
        &[&UNSCOPED]
    };
    for (i, _) in src.char_indices().chain([(src.len(), ' ')]) {
        let t = &src[..i];
        for opts in modes {
            assert_ne!(
                check_prefix(t, opts),
                Invalid,
                "{name}: prefix of {i} bytes is Invalid (scoped: {}):\n{t}",
                opts.scoped
            );
        }
    }
    if ends_in_merge(src) == Some(true) {
        assert_eq!(un(src), Complete, "{name} unscoped:\n{src}");
        if scoped_too {
            assert_eq!(sc(src), Complete, "{name} scoped:\n{src}");
        }
    }
}

fn golden_sources() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = crate::stdlib::SOURCES
        .iter()
        .map(|(n, s)| (n.to_string(), s.to_string()))
        .collect();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/check/ok");
    if let Ok(entries) = std::fs::read_dir(&dir) {
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            if p.extension().is_some_and(|e| e == "merge") {
                let s = std::fs::read_to_string(&p).unwrap();
                out.push((p.display().to_string(), s));
            }
        }
    }
    out
}

fn generated() -> Vec<(String, String)> {
    (0..300u64)
        .map(|seed| {
            let size = 5 + (seed as usize * 7) % 80;
            (
                format!("generated seed {seed} size {size}"),
                crate::r#gen::generate_source(seed, size),
            )
        })
        .collect()
}

#[test]
fn prefix_stdlib_and_golden_prefixes_are_viable() {
    let srcs = golden_sources();
    assert!(srcs.len() >= crate::stdlib::SOURCES.len());
    for (name, src) in &srcs {
        assert!(crate::types::check_source(src).is_ok(), "{name} checks");
        assert_prefixes_viable(name, src, true);
        assert!(ends_in_merge(src).is_some(), "{name} parses");
    }
}

#[test]
fn prefix_generated_prefixes_are_viable() {
    for (name, src) in generated() {
        assert_prefixes_viable(&name, &src, true);
    }
}

/// Complete agrees with parse_program (and, scoped, with the checker's names).
/// Returns (unscoped, scoped).
fn assert_sound(t: &str) -> (Viability, Viability) {
    let u = un(t);
    let s = sc(t);
    let parsed = ends_in_merge(t);
    if u == Complete {
        assert_eq!(parsed, Some(true), "Complete but parse fails:\n{t}");
    }
    if parsed == Some(true) {
        assert_eq!(u, Complete, "parses but not Complete:\n{t}");
    }
    if parsed.is_some() {
        assert_ne!(u, Invalid, "parses but Invalid:\n{t}");
    }
    let checked = parsed
        .is_some()
        .then(|| crate::types::check_source(t).map(|_| ()));
    if let Some(Ok(())) = checked {
        // The checker accepts it: scoped mode must not reject it.
        let want = if parsed == Some(true) {
            Complete
        } else {
            Incomplete
        };
        assert_eq!(s, want, "checks but scoped says {s:?}:\n{t}");
    }
    if s == Complete {
        assert_eq!(parsed, Some(true), "scoped Complete but parse fails:\n{t}");
        // No name errors of the kinds scoped mode rules out.
        let name_errors = [
            "unknown",
            "has no parameter",
            "recursion:",
            "is available only in the REPL",
            "is defined twice",
            "is a builtin",
            "lists cannot be nested",
        ];
        if let Some(Err(diags)) = &checked {
            for d in diags {
                assert!(
                    !name_errors.iter().any(|e| d.message.contains(e)),
                    "scoped Complete but `{}`:\n{t}",
                    d.message
                );
            }
        }
    }
    // Scoped mode only narrows.
    if s != Invalid {
        assert_ne!(u, Invalid, "scoped viable but unscoped Invalid:\n{t}");
    }
    if s == Complete {
        assert_eq!(u, Complete);
    }
    (u, s)
}

#[test]
fn prefix_soundness_under_mutation() {
    let mut texts: Vec<String> = golden_sources().into_iter().map(|(_, s)| s).collect();
    texts.extend(generated().into_iter().map(|(_, s)| s));
    for t in &texts {
        assert_sound(t);
    }
    let alphabet: Vec<char> = " \n\t()[]{},:;=<>!-+*/|&.#\"0123456789eEabfilnorstxyz_"
        .chars()
        .collect();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut rand = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut mutated = 0;
    // counts[unscoped][scoped], in the order Invalid, Incomplete, Complete
    let mut counts = [[0usize; 3]; 3];
    while mutated < 2400 {
        let t = &texts[rand(texts.len())];
        let bounds: Vec<usize> = t.char_indices().map(|(i, _)| i).chain([t.len()]).collect();
        let i = bounds[rand(bounds.len())];
        let next = t[i..].chars().next().map_or(i, |c| i + c.len_utf8());
        let c = alphabet[rand(alphabet.len())];
        let m = match rand(5) {
            0 => t[..i].to_string(),
            1 => format!("{}{}", &t[..i], &t[next..]),
            2 => format!("{}{c}{}", &t[..i], &t[i..]),
            3 => format!("{}{c}{}", &t[..i], &t[next..]),
            // delete the whitespace run at a random place (glues tokens)
            _ => {
                let j = t[i..].find(char::is_whitespace).map_or(t.len(), |k| i + k);
                let k = t[j..]
                    .find(|c: char| !c.is_whitespace())
                    .map_or(t.len(), |k| j + k);
                format!("{}{}", &t[..j], &t[k..])
            }
        };
        let verdict = assert_sound(&m);
        if verdict.1 == Invalid {
            assert_no_easy_completion(&m, verdict.0 == Invalid);
        }
        counts[verdict.0 as usize][verdict.1 as usize] += 1;
        mutated += 1;
    }
    eprintln!("mutations, counts[unscoped][scoped] (Invalid, Incomplete, Complete): {counts:?}");
    // Enough of each verdict to mean something.
    assert!(counts[Complete as usize][Complete as usize] > 100);
    assert!(counts[Invalid as usize][Invalid as usize] > 100);
}

/// An Invalid text must not become a valid program with a few common endings.
fn assert_no_easy_completion(t: &str, unscoped_invalid: bool) {
    let mids = [
        "",
        "0",
        "e5",
        "\"",
        " base",
        "= base",
        "> base",
        "(base)",
        "x",
        "| x",
        " else { base }",
    ];
    let ends = [
        "",
        " }",
        ") }",
        ")) }",
        "] }",
        "]) }",
        " } else { base } }",
        "}) }",
    ];
    for mid in mids {
        for end in ends {
            if mid.is_empty() && end.is_empty() {
                continue; // assert_sound covers the text itself
            }
            let c = format!("{t}{mid}{end}");
            if crate::syntax::parse_program(&c).is_ok() {
                assert!(!unscoped_invalid, "Invalid, but this parses:\n{c}");
                assert!(
                    crate::types::check_source(&c).is_err(),
                    "scoped Invalid, but this checks:\n{c}"
                );
            }
        }
    }
}

#[test]
fn prefix_node_count_matches_pest() {
    use crate::syntax::parse::{MergeParser, Rule};
    use pest::Parser;
    for (name, src) in golden_sources()
        .into_iter()
        .chain(generated().into_iter().take(40))
    {
        let mut pairs = MergeParser::parse(Rule::program, &src).unwrap();
        let want = pairs.next().unwrap().into_inner().flatten().count();
        assert_eq!(node_count(&src), want, "{name}");
    }
}

#[test]
fn prefix_limits_agree_with_parse_program() {
    let mut texts = Vec::new();
    for n in [30, 62, 63, 64, 65, 70, 100, 250] {
        let neg = "-".repeat(n);
        texts.push(format!("{H} return {neg}base }}"));
        let pow = vec!["base"; n].join(" ** ");
        texts.push(format!("{H} return {pow} }}"));
        let add = vec!["base"; n].join(" + ");
        texts.push(format!("{H} return {add} }}"));
        let idx = "[0]".repeat(n);
        texts.push(format!("{H} return models{idx} }}"));
        let lam = (0..n).map(|i| format!("|a{i}| ")).collect::<String>();
        texts.push(format!("{H} return fold(models, base, {lam}base) }}"));
    }
    for n in [31, 32, 33] {
        let open = "(".repeat(n);
        let close = ")".repeat(n);
        texts.push(format!("{H} return {open}base{close} }}"));
    }
    for n in [255, 256, 257] {
        let lets = "let x = base\n".repeat(n - 1);
        texts.push(format!("{H} {lets} return x }}"));
    }
    let long = vec!["base"; 2100].join(" + ");
    texts.push(format!("{H} let x = {long}\nlet y = {long}\nreturn x }}"));
    for t in &texts {
        assert_sound(t);
    }
}

#[test]
fn prefix_edge_cases_agree_with_parse_program() {
    let bodies = [
        "return base*1or base",
        "return base*1and2",
        "return fold(models, base, |x||y| x)",
        "return fold(models, base, |x, y| |z| x)",
        "return { let t = base [] }",
        "return { let t = base [base, base] }",
        "return { let t = base [0] }",
        "return { let t = base; [base][0] }",
        "return { let t = base !t }",
        "return { let t = base < base !t }",
        "return iffy {base} else {base}",
        "return iffy",
        "return if1 {base} else {base}",
        "return if base {base} elseif base {base} else {base}",
        "return if base {base} else iffy {base} else {base}",
        "return1",
        "return1.5",
        "return1e3",
        "letx=base;return x",
        "lettuce = base return tuce",
        "return { letx }",
        "return { lettuce = base; lettuce }",
        "return !=base",
        "return - -base",
        "return not not base",
        "return notbase",
        "return not(base)",
        "return base**-base",
        "return -base**base[0]",
        "return a<b<c",
        "return a<b and b<c",
        "return (a<b)<c",
        "return a<-b<c",
        "return a == b != c",
        "return f(a==b)",
        "return f(a= =b)",
        "return f(a=b=c)",
        "return f(a=b,)",
        "return f(,)",
        "return f()",
        "return []",
        "return [,]",
        "return 1.e5 + .5 + 1E+3 + 1e",
        "return 1.2.3",
        "return \"a#b\"",
        "return base # }\n",
        "return base\r\n",
        "return base;;",
        "return true_ + false",
        "return truex",
        "return base ->",
        "return base & base",
        "let x: [[f32]] = base return x",
        "let x: = base return x",
        "let x: Tensor = base; return x;",
    ];
    let mut texts: Vec<String> = bodies.iter().map(|b| format!("{H} {b} }}")).collect();
    texts.extend(
        [
            "mergef(base: Tensor, models: [Tensor]) -> Tensor {return base}",
            "fng(x: Tensor) -> Tensor {return x} merge f(base: Tensor, models: [Tensor]) -> Tensor {return g(base)}",
            "merge f(base: Tensor, models: [Tensor],) -> Tensor { return base }",
            "merge f(,) -> Tensor { return base }",
            "merge f() -> Tensor { return base }",
            "merge f() -> [Tensor] { }",
            "merge f(x: int = --1, y: [f32] = [1.0, 2.0]) -> Tensor { return base }",
            "merge f(base: Tensor) -> Tensor { return base }\u{e9}",
            "merge f(base: Tensor) -> Tensor { return \"\u{e9}\" }",
            "merge merge(base: Tensor) -> Tensor { return base }",
            "merge f(base: Tensor) -> Tensor { return base } fn",
        ]
        .map(String::from),
    );
    for t in &texts {
        assert_sound(t);
        // and every prefix of a parsing text is viable
        if crate::syntax::parse_program(t).is_ok() {
            assert_prefixes_viable(t, t, crate::types::check_source(t).is_ok());
        }
    }
}

/// Hand-picked prefixes: whole items, merge headers and what may follow a complete merge.
#[test]
fn prefix_hand_picked_items_and_headers() {
    let ok = format!("{H} return base }}");
    check_hand_picked(&[
        ("".into(), Incomplete, Incomplete),
        ("   # just a comment".into(), Incomplete, Incomplete),
        ("mer".into(), Incomplete, Incomplete),
        ("merge".into(), Incomplete, Incomplete),
        ("merge 1".into(), Invalid, Invalid),
        (
            "merge f(base: Tensor, models: [Tensor]) -> Tensor { return base }".into(),
            Complete,
            Complete,
        ),
        (format!("{ok}\n"), Complete, Complete),
        (format!("{ok} # done"), Complete, Complete),
        (format!("{ok}\n# done\n"), Complete, Complete),
        (format!("{ok} x"), Invalid, Invalid),
        (format!("{ok} f"), Incomplete, Incomplete),
        (
            "fn g(x: Tensor) -> Tensor { return x }".into(),
            Incomplete,
            Incomplete,
        ),
        ("merge f(x: Tensr".into(), Incomplete, Invalid),
        ("merge f(x: Tens".into(), Incomplete, Incomplete),
        ("merge f(x: Tensr)".into(), Incomplete, Invalid),
        ("merge f(x: [[f32]]".into(), Incomplete, Invalid),
        (
            "merge f(x: [f32], y: int = 3,) -".into(),
            Incomplete,
            Incomplete,
        ),
        ("merge f(x: [f32]) =".into(), Invalid, Invalid),
    ]);
}

/// Hand-picked prefixes: unknown names, operators, numbers, strings and comments in a
/// return.
#[test]
fn prefix_hand_picked_names_operators_and_literals() {
    check_hand_picked(&[
        (format!("{H} return bse }}"), Complete, Invalid),
        (format!("{H} return bse + 1"), Incomplete, Invalid),
        // an unfinished word may still name a function defined later
        (format!("{H} return bse"), Incomplete, Incomplete),
        (format!("{H} return bse("), Incomplete, Incomplete),
        (format!("{H} return bse;"), Incomplete, Invalid),
        (format!("{H} return ba"), Incomplete, Incomplete),
        (format!("{H} ret"), Incomplete, Incomplete),
        (format!("{H} return base +"), Incomplete, Incomplete),
        (format!("{H} return base + )"), Invalid, Invalid),
        (format!("{H} return base -"), Incomplete, Incomplete),
        (format!("{H} return base ="), Incomplete, Incomplete),
        (format!("{H} return base = base"), Invalid, Invalid),
        (format!("{H} return base <"), Incomplete, Incomplete),
        (format!("{H} return base < base <"), Invalid, Invalid),
        (
            format!("{H} return base < base and base <"),
            Incomplete,
            Incomplete,
        ),
        (
            format!("{H} return (base < base) < base }}"),
            Complete,
            Complete,
        ),
        (format!("{H} return base !"), Incomplete, Incomplete),
        (format!("{H} return base *"), Incomplete, Incomplete),
        (format!("{H} return base &"), Incomplete, Incomplete),
        (format!("{H} return base & base"), Invalid, Invalid),
        (format!("{H} return base |"), Incomplete, Incomplete),
        (format!("{H} return base || base }}"), Complete, Complete),
        (format!("{H} return base o"), Incomplete, Incomplete),
        (format!("{H} return base or"), Incomplete, Incomplete),
        (format!("{H} return base order"), Invalid, Invalid),
        (format!("{H} return tr"), Incomplete, Incomplete),
        (format!("{H} return true }}"), Complete, Complete),
        (format!("{H} return trux }}"), Complete, Invalid),
        (format!("{H} return not base }}"), Complete, Complete),
        (format!("{H} return 1e-"), Incomplete, Incomplete),
        (format!("{H} return 1e"), Incomplete, Incomplete),
        (format!("{H} return 1."), Incomplete, Incomplete),
        (format!("{H} return ."), Incomplete, Incomplete),
        (format!("{H} return .x"), Invalid, Invalid),
        (format!("{H} return 1.5e+3 }}"), Complete, Complete),
        (format!("{H} return \"abc"), Incomplete, Incomplete),
        (format!("{H} return \"ab\nc\""), Invalid, Invalid),
        (format!("{H} return \"abc\" }}"), Complete, Complete),
        (format!("{H} # a comment"), Incomplete, Incomplete),
        (
            format!("{H} return base # a comment\n}}"),
            Complete,
            Complete,
        ),
        (format!("{H} return a -"), Incomplete, Invalid),
    ]);
}

/// Hand-picked prefixes: indexing, lists and folds.
#[test]
fn prefix_hand_picked_indexing_lists_and_folds() {
    check_hand_picked(&[
        (format!("{H} return base[0] }}"), Complete, Complete),
        (format!("{H} return models[0"), Incomplete, Incomplete),
        (format!("{H} return [base, base,]"), Incomplete, Incomplete),
        (format!("{H} return [base, base,] }}"), Complete, Complete),
        (format!("{H} return [,"), Invalid, Invalid),
        (
            format!("{H} return fold(models, base, |acc, m| acc + m) }}"),
            Complete,
            Complete,
        ),
        (
            format!("{H} return fold(models, base, |acc, m| acc + m"),
            Incomplete,
            Incomplete,
        ),
        (
            format!("{H} return fold(models, base, |acc, m| acc + mx)"),
            Incomplete,
            Invalid,
        ),
        (
            format!("{H} return fold(models, base, |acc, m| acc) + acc }}"),
            Complete,
            Invalid,
        ),
        (
            format!("{H} return fold(models, base, ||"),
            Invalid,
            Invalid,
        ),
        (
            format!("{H} return fold(models, base, |"),
            Incomplete,
            Incomplete,
        ),
    ]);
}

/// Hand-picked prefixes: keyword arguments, and calls of helpers defined later (or never).
#[test]
fn prefix_hand_picked_keywords_and_later_helpers() {
    check_hand_picked(&[
        (
            format!("{H} return mean(models, axis=0) }}"),
            Complete,
            Complete,
        ),
        (
            format!("{H} return mean(models, axis = 0,) }}"),
            Complete,
            Complete,
        ),
        (
            format!("{H} return mean(models, ax"),
            Incomplete,
            Incomplete,
        ),
        (
            format!("{H} return mean(models, axiz=0"),
            Incomplete,
            Invalid,
        ),
        (
            format!("{H} return mean(models, base=="),
            Incomplete,
            Incomplete,
        ),
        (
            format!("{H} return mean(models, models=0"),
            Incomplete,
            Invalid,
        ),
        (format!("{H} return meen(models)"), Incomplete, Incomplete),
        (format!("{H} return meen(models) }}"), Complete, Incomplete),
        (
            format!(
                "{H} return meen(models) }}\nfn meen(xs: [Tensor]) -> Tensor {{ return xs[0] }}"
            ),
            Incomplete,
            Incomplete,
        ),
        (
            format!(
                "{H} return meen(models) }}\nfn meen(xs: [Tensor]) -> Tensor {{ return xs[0] }}\nmerge g(base: Tensor, models: [Tensor]) -> Tensor {{ return base }}"
            ),
            Complete,
            Complete,
        ),
        (
            format!("{H} return meen(ys=models) }}\nfn meen(xs: [Tensor]) -> Tensor"),
            Incomplete,
            Invalid,
        ),
        (
            format!("{H} return meen(xs=models) }}\nfn meen(xs: [Tensor]) -> Tensor"),
            Incomplete,
            Incomplete,
        ),
        (
            "fn a(x: Tensor) -> Tensor { return b(x) }\nfn b(x: Tensor) -> Tensor { return a(x) }"
                .into(),
            Incomplete,
            Invalid,
        ),
        (
            "fn a(x: Tensor) -> Tensor { return b(x) }\nfn b(x: Tensor) -> Tensor { return x }"
                .into(),
            Incomplete,
            Incomplete,
        ),
        (format!("{H} return mean"), Incomplete, Incomplete),
        (format!("{H} return mean "), Incomplete, Incomplete),
        (format!("{H} return mean + base"), Incomplete, Invalid),
    ]);
}

/// Hand-picked prefixes: `let`s, blocks, `if`, facts and words that run into keywords.
#[test]
fn prefix_hand_picked_lets_blocks_and_ifs() {
    check_hand_picked(&[
        (
            format!("{H} let x = base; let y: Tensor = x * 2.0; return y }}"),
            Complete,
            Complete,
        ),
        (format!("{H} let x = base return x }}"), Complete, Complete),
        (format!("{H} return x }}"), Complete, Invalid),
        (format!("{H} let x = x;"), Incomplete, Invalid),
        (
            format!("{H} return {{ let t = base; t * 2.0 }} }}"),
            Complete,
            Complete,
        ),
        (
            format!("{H} return {{ let t = base; t }} + t }}"),
            Complete,
            Invalid,
        ),
        (
            format!("{H} return {{ let t = base t }}"),
            Incomplete,
            Incomplete,
        ),
        (
            format!("{H} return {{ let t = base [base, base] }} }}"),
            Complete,
            Complete,
        ),
        (format!("{H} return {{ letter }} }}"), Complete, Invalid),
        (
            format!("{H} return {{ let letter = base; letter }} }}"),
            Complete,
            Complete,
        ),
        (
            format!(
                "{H} return if layer > 2 {{ base }} else if kind == \"mlp\" {{ base }} else {{ models[0] }} }}"
            ),
            Complete,
            Complete,
        ),
        (
            format!("{H} return if base {{ base }} el"),
            Incomplete,
            Incomplete,
        ),
        (
            format!("{H} return if base {{ base }} }}"),
            Invalid,
            Invalid,
        ),
        (format!("{H} return n_lay"), Incomplete, Incomplete),
        (format!("{H} return load(\"x\") }}"), Complete, Invalid),
        (format!("{H} returnbase }}"), Complete, Complete),
        (format!("{H} letx = base; return x }}"), Complete, Complete),
        (format!("{H} return iffy }}"), Complete, Invalid),
        (
            format!("{H} return iff {{ base }} else {{ base }} }}"),
            Complete,
            Invalid,
        ),
    ]);
}

/// Hand-picked prefixes: parameter defaults, helper calls and helper definitions.
#[test]
fn prefix_hand_picked_defaults_and_helpers() {
    check_hand_picked(&[
        ("merge f(base: Tensor, w: f32 = 0.5) -> Tensor { return base * w }".into(), Complete, Complete),
        ("merge f(base: Tensor, w: f32 = layer) -> Tensor { return base * w }".into(), Complete, Invalid),
        ("merge f(base: Tensor, w: f32 = -0.5, ) -> Tensor { return base * w }".into(), Complete, Complete),
        ("fn g(x: Tensor) -> Tensor { return x }\nmerge f(base: Tensor, models: [Tensor]) -> Tensor { return g(base) }".into(), Complete, Complete),
        ("fn g(x: Tensor) -> Tensor { return x }\nmerge f(base: Tensor, models: [Tensor]) -> Tensor { return g(x=base) }".into(), Complete, Complete),
        ("fn g(x: Tensor) -> Tensor { return x }\nmerge f(base: Tensor, models: [Tensor]) -> Tensor { return g(y=base) }".into(), Complete, Invalid),
        ("fn g(x: Tensor) -> Tensor { return base }".into(), Incomplete, Invalid),
        ("fn g(x: Tensor) -> Tensor { return g(x) }".into(), Incomplete, Invalid),
        ("fn g(x: Tensor) -> Tensor { return x } fn g(".into(), Incomplete, Invalid),
        ("fn g(x: Tensor) -> Tensor { return x } fn g".into(), Incomplete, Incomplete),
        ("fn abs(".into(), Incomplete, Invalid),
        ("merge f(base: Tensor) -> Tensor { return base < base < base }".into(), Invalid, Invalid),
        ("merge f(base: Tensor) -> Tensor { return base } @".into(), Invalid, Invalid),
    ]);
}

/// Checks each text's (unscoped, scoped) viability against the expected pair, reporting
/// every mismatch at once, and that the checker is sound on it.
fn check_hand_picked(cases: &[(String, Viability, Viability)]) {
    let mut failures = Vec::new();
    for (t, want_u, want_s) in cases {
        let (u, s) = (un(t), sc(t));
        if (u, s) != (*want_u, *want_s) {
            failures.push(format!(
                "{t:?}: got ({u:?}, {s:?}), want ({want_u:?}, {want_s:?})"
            ));
        }
        assert_sound(t);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn prefix_speed() {
    let mut src = String::new();
    let mut seed = 0;
    while src.len() < 1500 {
        src = crate::r#gen::generate_source(seed, 120);
        seed += 1;
    }
    let src: String = {
        // cut at the end of an item near 1,500 characters if one is there
        let t = src.trim_end();
        t.to_string()
    };
    assert_eq!(un(&src), Complete);
    let runs = 100;
    let start = std::time::Instant::now();
    for _ in 0..runs {
        assert_eq!(
            std::hint::black_box(sc(std::hint::black_box(&src))),
            Complete
        );
    }
    let per = start.elapsed() / runs;
    eprintln!("check_prefix (scoped) on {} chars: {per:?}", src.len());
    assert!(per < std::time::Duration::from_millis(5), "{per:?}");
}
