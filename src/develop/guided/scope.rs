//! The grammar mask of guided programs: the loop grammar, and from each body line on
//! the grammar of the rest of the program with the names in scope (and, where a
//! tensor is wanted, the names and calls that can give one) spelled out.

use super::MAX_STATEMENTS;
use crate::model::mask::GrammarMask;
use crate::syntax::forms::{Grammar, scoped};
use crate::types::ty::{TYPE_NAMES, Ty};
use std::collections::{BTreeMap, BTreeSet};

/// The token mask of the programs the loop runs (`mergec grammar --shape loop`, compiled
/// by llguidance) over the vocabulary `pieces` with end tokens `eos`.
///
/// From each body line on, the mask is that of the rest of the program with the names
/// in scope spelled out ([`rest_grammar`]): values and functions that do not resolve
/// are never drawn.
pub fn loop_mask(pieces: &[Option<String>], eos: &[u32]) -> Result<GrammarMask, String> {
    use crate::syntax::forms::{Shape, derive, lark};
    let g = derive(Shape::Loop).map_err(|e| e.to_string())?;
    let mask = GrammarMask::new(&lark::render(&g), pieces, eos).map_err(|e| e.to_string())?;
    let known = Known::new();
    Ok(mask.with_lines(Box::new(move |text, closing| {
        rest_grammar(&g, &known, text, closing)
    })))
}

/// The names every merge may use, whatever it defines: the builtins it may call and
/// the tensor facts, and the builtins' keyword arguments; the builtins whose calls can
/// give a tensor or a list of them, and the type names (computed once per mask).
pub struct Known {
    names: BTreeSet<String>,
    keywords: BTreeSet<String>,
    calls: Vec<scoped::Callable>,
    types: BTreeSet<String>,
}

impl Known {
    pub fn new() -> Known {
        use crate::types::builtins::BUILTINS;
        let callable = || BUILTINS.iter().filter(|b| !b.repl_only());
        let facts = crate::types::tast::Fact::ALL
            .iter()
            .map(|f| f.0.to_string());
        Known {
            names: callable()
                .map(|b| b.name.to_string())
                .chain(facts)
                .collect(),
            keywords: callable()
                .flat_map(|b| b.params.iter().map(|p| p.name.to_string()))
                .collect(),
            calls: {
                // One entry per signature, its functions in the table's order.
                let mut calls: Vec<scoped::Callable> = Vec::new();
                for b in callable() {
                    let c = scoped::Callable {
                        names: vec![b.name.to_string()],
                        params: b.params.iter().map(|p| p.name.to_string()).collect(),
                        gives: b.gives(),
                        wants: b.wants(),
                    };
                    let same = |d: &&mut scoped::Callable| {
                        (&d.params, d.gives, d.wants) == (&c.params, c.gives, c.wants)
                    };
                    match calls.iter_mut().find(same) {
                        Some(d) => d.names.extend(c.names),
                        None => calls.push(c),
                    }
                }
                calls
            },
            types: TYPE_NAMES.iter().map(|t| t.to_string()).collect(),
        }
    }
}

impl Default for Known {
    fn default() -> Self {
        Self::new()
    }
}

/// The Lark grammar of the rest of a guided program from a body line's start (`text`
/// ends there): the names in scope are its parameters, its `let`s so far, the builtins
/// a merge may call and the tensor facts; by the names' checked types, the `return`
/// and a `let` declared `: Tensor` have an operand that can be a tensor (SmolLM2 at
/// temperature 1.0 wrote `return mixed` with `mixed` a float: a third of the redos of
/// a line from its type error). A closing program has only its `return` left:
/// arithmetic of its numbers and tensors (by their checked types) that starts with a
/// tensor. None before the body, or if the text so far does not parse.
pub fn rest_grammar(lp: &Grammar, known: &Known, text: &str, closing: bool) -> Option<String> {
    use crate::syntax::ast::Stmt;
    use crate::syntax::forms::lark;
    let header_end = text.find('{')?;
    text[header_end..].find('\n')?;
    let program = crate::syntax::parse_program(&format!("{text}return base\n}}")).ok()?;
    let item = program.items.first()?;
    // After the program's own `return` only `}` is left: the grammar so far says so.
    if item
        .body
        .iter()
        .rev()
        .skip(1)
        .any(|st| matches!(st, Stmt::Return { .. }))
    {
        return None;
    }
    let lets = item
        .body
        .iter()
        .filter(|st| matches!(st, Stmt::Let { .. }))
        .count();
    let mut r = scoped::Rest {
        closing,
        ..Default::default()
    };
    // The last binding of a name holds (a `let` may shadow one with another type).
    let typed: BTreeMap<_, _> = typed_names(&program, &item.name.name).into_iter().collect();
    if closing {
        for (name, ty) in typed {
            if matches!(ty, Ty::Tensor(_)) {
                r.tensors.insert(name.clone());
            }
            if matches!(ty, Ty::Tensor(_) | Ty::F32 | Ty::Int) {
                r.names.insert(name);
            }
        }
        // `base` is a tensor whatever the rest says.
        r.tensors.insert("base".into());
        r.names.insert("base".into());
    } else {
        r.names
            .extend(item.params.iter().map(|p| p.name.name.clone()));
        r.names.extend(item.body.iter().filter_map(|st| match st {
            Stmt::Let { name, .. } => Some(name.name.clone()),
            _ => None,
        }));
        r.names.extend(known.names.iter().cloned());
        r.keywords = known.keywords.clone();
        r.lets_left = MAX_STATEMENTS.saturating_sub(lets);
        // By their checked types (none if the text so far does not check: then the
        // values are not typed by the grammar).
        for (name, ty) in typed {
            let tensor = matches!(ty.elem(), Ty::Tensor(_) | Ty::Mask(_));
            if ty.is_list() {
                if tensor {
                    r.tensor_lists.insert(name.clone());
                }
                r.lists.insert(name);
            } else if tensor {
                r.tensors.insert(name);
            }
        }
        if !r.tensors.is_empty() {
            r.calls = known.calls.clone();
            r.types = known.types.clone();
        }
    }
    Some(lark::render(&scoped::rest(lp, &r)))
}

/// The parameters (`base` and `models` first) and top-level `let`s of merge `name` in
/// `program`, with their checked types (at rank 2); none if it does not check.
pub(crate) fn typed_names(program: &crate::syntax::ast::Program, name: &str) -> Vec<(String, Ty)> {
    use crate::types::tast::TKind;
    const RANK: usize = 2;
    let Ok(m) = crate::types::instantiate_merge(program, name, RANK) else {
        return vec![];
    };
    let tensor = || Ty::Tensor(crate::types::ty::base_shape(RANK));
    let inputs = [("base", tensor()), ("models", Ty::list(tensor()))];
    let mut out: Vec<_> = inputs.map(|(n, t)| (n.to_string(), t)).into();
    out.extend(m.params.iter().map(|(p, _)| (p.name.clone(), p.ty.clone())));
    let mut e = &m.body;
    while let TKind::Let(id, value, body) = &e.kind {
        if let Some(n) = m.var_names.get(*id as usize) {
            out.push((n.clone(), value.ty.clone()));
        }
        e = body;
    }
    out
}

#[cfg(test)]
mod mask_tests {
    #[test]
    fn the_loop_mask_refuses_control_characters() {
        let pieces = crate::develop::tiny::TinySpec::default().vocab().pieces();
        let m = super::loop_mask(&pieces, &[crate::develop::tiny::EOS]).expect("mask");
        let mut s = m.start();
        let text = "merge m(base: Tensor, models: [Tensor]) -> Tensor {\n  let x = if normalize { base + eg  ";
        for b in text.bytes() {
            assert!(s.consume(b as u32), "{b}");
        }
        let a = s.allowed().expect("mask");
        let ok: Vec<usize> = (0..128).filter(|&i| a[i]).collect();
        assert!(!a[11] && !a[12], "{ok:?}");
    }
}

#[cfg(test)]
mod rest_tests {
    use super::{Known, rest_grammar};
    use crate::model::mask::GrammarMask;
    use crate::syntax::forms::scoped::{Rest, rest};
    use crate::syntax::forms::{Shape, derive, lark};

    // `syntax::forms::scoped` checked with llguidance (a higher layer than `syntax`).

    #[test]
    fn the_rest_of_a_program_names_what_is_in_scope() {
        let lp = derive(Shape::Loop).expect("loop grammar");
        let text = "merge m(base: Tensor, models: [Tensor], weight: [f32] = 1.0, lambda: f32 = 1.0, normalize: bool = false) -> Tensor {\n    let mixed = sum(weight * (models - base))\n    let total = sum(weight)\n    let divisor = if normalize and abs(total) >= 1e-8 { 1.0 } else { 1.0 }\n    ";
        let g = rest_mask(text, false);
        accepts_all(
            &g,
            &[
                "return base + lambda * (mixed / divisor) + mixed\n}",
                "return base + lambda * (mixed / divisor) + mixed }",
            ],
        );
        assert!(!g.accepts("return base + mixd\n}"));
        // After the return, the current grammar goes on.
        assert!(rest_grammar(&lp, &Known::new(), &format!("{text}return base\n"), false).is_none());
        // Closing: a short return of the values in scope.
        let g = rest_mask(text, true);
        assert!(g.accepts("return base + lambda * (mixed / divisor)\n}"));
        assert!(!g.accepts("let x = base\n    return x\n}"));
        assert!(!g.accepts("return sum(models)\n}"));
        assert!(!g.accepts("return 2.0 * base\n}"));
        assert!(g.accepts("return base * (2.0 + lambda)\n}"));
        // By their checked types: it starts with a tensor; no bools.
        assert!(g.accepts("return mixed / total\n}"));
        assert!(!g.accepts("return total * base\n}"));
        assert!(!g.accepts("return base + normalize\n}"));
        // The last binding of a name holds.
        let shadowed = format!("{text}let mixed = mixed * (models - base)\n    ");
        let g = rest_mask(&shadowed, true);
        assert!(!g.accepts("return mixed + base\n}"));
        assert!(g.accepts("return base + total\n}"));
    }

    #[test]
    fn a_value_that_must_be_a_tensor_can_be_one() {
        let text = "merge m(base: Tensor, models: [Tensor], w: [f32] = 1.0, t: f32 = 0.5) -> Tensor {\n    let total = sum(w)\n    let d = models - base\n    ";
        let g = rest_mask(text, false);
        accepts_all(
            &g,
            &[
                "return base + t * sum(w * d)\n}",
                "return t * d[0] / total\n}",
                "return (total + t) * (base - 1.0)\n}",
                "return -abs(models[1])\n}",
                "return softmax(w * d)[0]\n}",
                "return if t > 0.5 { base } else { total }\n}",
                "let x: Tensor = t * base\n    let y: [f32] = w\n    let z: f32 = total\n    return base\n}",
                "let x = total * t\n    return base\n}",
                // Calls: first arguments of the kinds their functions take, by name too.
                "return sum(models, axis=0) + mean(x = d) + numel(base) * sum(w * d)\n}",
                "return base + len(w) * take_max(keys = d, values = d) + sum_all(d)[0]\n}",
                "return base * max(t, 2.0) + abs(t) * fold(d, |a, x| a + x)\n}",
                "return lerp(base, models[0], t,)\n}",
            ],
        );
        rejects_all(
            &g,
            &[
                // No operand can be a tensor: a float, a list unindexed, a number's call.
                "return total\n}",
                "return t * total + 1.0\n}",
                "return d\n}",
                "return sum_all(base) * t\n}",
                "let x: Tensor = total\n    return base\n}",
                // Unknown or nested types.
                "let x: Tensr = base\n    return base\n}",
                "let x: [[f32]] = w\n    return base\n}",
                // A scalar where a list or a tensor must be; a tensor where a list must be.
                "return base + sum(1.0)\n}",
                "return base + sum(x = t)\n}",
                "return base * len(base)\n}",
                "return base * numel(t + 1.0)\n}",
                // More arguments than parameters; a name no parameter has.
                "return sum_all(base, d) * base\n}",
                "return abs(base, t)\n}",
                "return base * sum(xs = d)\n}",
            ],
        );
        // Where the text so far does not check, values are not typed.
        let wrong = format!("{text}let bad = len(t)\n    ");
        let g = rest_mask(&wrong, false);
        assert!(g.accepts("return total\n}"));
    }

    /// The mask of the rest of a program after `text` (a body line's start).
    fn rest_mask(text: &str, closing: bool) -> GrammarMask {
        let lp = derive(Shape::Loop).expect("loop grammar");
        let g = rest_grammar(&lp, &Known::new(), text, closing).expect("a grammar");
        GrammarMask::bytes(&g).expect("compiles")
    }

    fn accepts_all(g: &GrammarMask, texts: &[&str]) {
        for t in texts {
            assert!(g.accepts(t), "{t:?}: {:?}", g.explain(t));
        }
    }

    fn rejects_all(g: &GrammarMask, texts: &[&str]) {
        for t in texts {
            assert!(!g.accepts(t), "{t:?} accepted");
        }
    }

    fn grammar(names: &[&str], lets_left: usize) -> GrammarMask {
        let lp = derive(Shape::Loop).expect("loop grammar");
        let r = Rest {
            names: names.iter().map(|s| s.to_string()).collect(),
            keywords: ["x", "k"].iter().map(|s| s.to_string()).collect(),
            lets_left,
            closing: false,
            ..Default::default()
        };
        GrammarMask::bytes(&lark::render(&rest(&lp, &r))).expect("compiles")
    }

    #[test]
    fn only_names_in_scope_are_used() {
        // (A grammar is for one line start: later lines' own `let`s are named too.)
        let g = grammar(
            &[
                "base", "d", "map", "models", "sum", "weight", "weights", "x",
            ],
            2,
        );
        accepts_all(
            &g,
            &[
                "let x = sum(models - base)\nreturn base + weight * x\n}",
                "  let d = models - base;\n    return base + sum(weights * d)\n}",
                "return base + map(models, |m| m - base)[0] }",
                "return base + { let y = base * 2.0; y } }",
                "return if weight > 0.5 { base } else { sum(models) } }",
                "return sum(x = models)\n}",
            ],
        );
        // Unknown values and functions, and more lets than are left.
        rejects_all(
            &g,
            &[
                "return bas\n}",
                "return base + model\n}",
                "return dot(base, base)\n}",
                "return sum(y = models)\n}",
                "let a = base\nlet b = base\nlet c = base\nreturn a\n}",
            ],
        );
        // A lambda binds its parameter: free inside.
        let g = grammar(&["base", "models", "map", "sum"], 1);
        assert!(g.accepts("return sum(map(models, |m| m - base))\n}"));
        assert!(g.accepts("return base + { let y = base * 2.0; y }\n}"));
        assert!(!g.accepts("return base + { y }\n}"));
    }
}
