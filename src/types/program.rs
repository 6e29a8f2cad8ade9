//! Whole programs: item rules, recursion, merges checked per tensor rank,
//! and the checked merge handed to the interpreter.

use super::check::{Checker, LoadShapeFn};
use super::cost::Cost;
use super::suggest::did_you_mean;
use super::tast::{TExpr, VarId};
use super::ty::{Ty, base_shape, shape_str};
use crate::diag::{Diagnostic, Span};
use crate::syntax::ast::*;
use crate::syntax::limits::Limits;
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

/// Ranks a merge is checked for by default: norms and biases (1-D) and weight matrices (2-D).
pub const CHECKED_RANKS: [usize; 2] = [2, 1];

/// A constant parameter value (defaults and overrides).
#[derive(Clone, Debug, PartialEq)]
pub enum Const {
    Int(i64),
    F32(f32),
    Bool(bool),
    List(Vec<Const>),
}

impl std::fmt::Display for Const {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Const::Int(i) => write!(f, "{i}"),
            Const::F32(x) => write!(f, "{x:?}"),
            Const::Bool(b) => write!(f, "{b}"),
            Const::List(xs) => {
                let parts: Vec<String> = xs.iter().map(|x| x.to_string()).collect();
                write!(f, "[{}]", parts.join(", "))
            }
        }
    }
}

/// A settable parameter of a merge.
#[derive(Clone, Debug, PartialEq)]
pub struct MergeParam {
    pub name: String,
    /// f32, int, bool, or a list of them (one value per model).
    pub ty: Ty,
    pub default: Option<Const>,
    pub span: Span,
}

/// What `mergec check` prints: a merge's name, parameters and the ranks it applies to.
#[derive(Clone, Debug, PartialEq)]
pub struct MergeSig {
    pub name: String,
    pub params: Vec<MergeParam>,
    pub ranks: Vec<usize>,
    pub span: Span,
    /// The static cost bound, the largest over the checked ranks.
    pub cost: Cost,
}

impl MergeSig {
    pub fn signature(&self) -> String {
        let mut parts = vec!["base: Tensor".to_string(), "models: [Tensor]".to_string()];
        for p in &self.params {
            match &p.default {
                Some(d) => parts.push(format!("{}: {} = {d}", p.name, p.ty.kind_name())),
                None => parts.push(format!("{}: {}", p.name, p.ty.kind_name())),
            }
        }
        let ranks = if self.ranks == [2, 1] || self.ranks == [1, 2] {
            String::new()
        } else {
            let r: Vec<String> = self.ranks.iter().map(|r| format!("{r}-D")).collect();
            format!("  [{} tensors only]", r.join(", "))
        };
        format!("merge {}({}) -> Tensor{ranks}", self.name, parts.join(", "))
    }
}

/// A merge checked for one tensor rank, ready to run.
#[derive(Clone, Debug)]
pub struct CheckedMerge {
    pub name: String,
    pub rank: usize,
    pub base: VarId,
    pub models: VarId,
    pub params: Vec<(MergeParam, VarId)>,
    pub body: TExpr,
    pub var_names: Vec<String>,
    pub cost: Cost,
}

/// Checks every item. Returns each merge's signature, or all diagnostics.
pub fn check_program(p: &Program) -> Result<Vec<MergeSig>, Vec<Diagnostic>> {
    let mut diags = item_rules(p);
    diags.extend(recursion(p));
    if !diags.is_empty() {
        return Err(dedup(diags));
    }
    let mut sigs = Vec::new();
    let budget = Rc::new(Cell::new(Limits::DEFAULT.max_check_work));
    let (too_large, mut diags) = too_large_when_inlined(p);
    for item in &p.items {
        if too_large.contains(item.name.name.as_str()) {
            continue;
        }
        match item.kind {
            ItemKind::Merge => match merge_ranks(p, item, &budget) {
                Ok(sig) => sigs.push(sig),
                Err(d) => diags.extend(d),
            },
            ItemKind::Fn => diags.extend(check_fn_standalone(p, item, &budget)),
        }
        if budget.get() == 0 {
            // Out of work: what follows would only repeat the same diagnostic.
            break;
        }
    }
    if diags.is_empty() {
        Ok(sigs)
    } else {
        Err(dedup(diags))
    }
}

fn dedup(diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut seen = HashSet::new();
    let mut out: Vec<Diagnostic> = diags
        .into_iter()
        .filter(|d| seen.insert((d.span, d.message.clone())))
        .collect();
    out.sort_by_key(|d| (d.span.start, d.span.end));
    out
}

fn merge_ranks(
    p: &Program,
    item: &Item,
    budget: &Rc<Cell<u64>>,
) -> Result<MergeSig, Vec<Diagnostic>> {
    let mut first_err = None;
    let mut ranks = Vec::new();
    let mut params = Vec::new();
    let mut cost = Cost::default();
    for rank in CHECKED_RANKS {
        match instantiate_item(p, item, rank, budget) {
            Ok(m) => {
                params = m.params.into_iter().map(|(p, _)| p).collect();
                ranks.push(rank);
                cost.ops_per_element = cost.ops_per_element.max(m.cost.ops_per_element);
                cost.unrolled_nodes = cost.unrolled_nodes.max(m.cost.unrolled_nodes);
            }
            Err(d) => {
                first_err.get_or_insert(d);
            }
        }
    }
    if ranks.is_empty() {
        return Err(first_err.unwrap_or_default());
    }
    ranks.sort_unstable();
    Ok(MergeSig {
        name: item.name.name.clone(),
        params,
        ranks,
        span: item.name.span,
        cost,
    })
}

/// Checks the merge `name` for a base tensor of `rank` dimensions.
pub fn instantiate_merge(
    p: &Program,
    name: &str,
    rank: usize,
) -> Result<CheckedMerge, Vec<Diagnostic>> {
    let mut diags = item_rules(p);
    diags.extend(recursion(p));
    if !diags.is_empty() {
        return Err(dedup(diags));
    }
    let Some(item) = p
        .items
        .iter()
        .find(|i| i.name.name == name && i.kind == ItemKind::Merge)
    else {
        let names = p
            .items
            .iter()
            .filter(|i| i.kind == ItemKind::Merge)
            .map(|i| i.name.name.as_str());
        let hint = did_you_mean(name, names.clone());
        let all: Vec<&str> = names.collect();
        return Err(vec![
            Diagnostic::error(
                Span::new(0, 0),
                format!("no merge named `{name}` in this program"),
            )
            .with_hint(hint.unwrap_or_else(|| format!("merges here: {}", all.join(", ")))),
        ]);
    };
    let (too_large, diags) = too_large_when_inlined(p);
    if too_large.contains(name) {
        return Err(if diags.is_empty() {
            vec![Diagnostic::error(
                item.name.span,
                format!(
                    "program too large: `{name}` is too large once its helper calls are inlined"
                ),
            )]
        } else {
            diags
        });
    }
    let budget = Rc::new(Cell::new(Limits::DEFAULT.max_check_work));
    instantiate_item(p, item, rank, &budget)
}

/// Items too large once their helper calls are inlined (checked no further), and a
/// diagnostic for each that is too large by itself (its callees are not): the place
/// where the size blows up.
fn too_large_when_inlined(p: &Program) -> (HashSet<&str>, Vec<Diagnostic>) {
    let limit = Limits::DEFAULT.max_inlined_nodes as u64;
    let sizes = super::size::inlined_sizes(p);
    let names: HashSet<&str> = p.items.iter().map(|i| i.name.name.as_str()).collect();
    let over: HashSet<&str> = sizes
        .iter()
        .filter(|(_, n)| **n > limit)
        .map(|(name, _)| *name)
        .collect();
    let mut diags = Vec::new();
    for item in p
        .items
        .iter()
        .filter(|i| over.contains(i.name.name.as_str()))
    {
        let mut calls = Vec::new();
        for s in &item.body {
            let (Stmt::Let { value, .. } | Stmt::Return { value, .. }) = s;
            collect_calls(value, &names, &mut calls);
        }
        if calls.iter().any(|(callee, _)| over.contains(callee)) {
            continue;
        }
        let size = sizes[item.name.name.as_str()];
        let mut d = Diagnostic::error(
            item.name.span,
            format!(
                "program too large: `{}` is {size} nodes once its helper calls are inlined (the limit is {limit})",
                item.name.name
            ),
        )
        .with_hint("every call of a helper is inlined, so a helper that calls another one twice doubles the size at each level: call it once, bind the result with `let` and reuse it");
        for (callee, span) in calls.iter().take(4) {
            d = d.with_related(
                *span,
                format!("`{callee}` inlines {} nodes here", sizes[callee]),
            );
        }
        diags.push(d);
    }
    (over, diags)
}

fn instantiate_item(
    p: &Program,
    item: &Item,
    rank: usize,
    budget: &Rc<Cell<u64>>,
) -> Result<CheckedMerge, Vec<Diagnostic>> {
    let mut c = Checker::new(Some(p), rank).with_budget(budget);
    c.call_stack.push(item.name.name.clone());
    let base_ty = Ty::Tensor(base_shape(rank));
    let base = c.bind(&item.params[0].name.name, base_ty.clone());
    let models = c.bind(&item.params[1].name.name, Ty::list(base_ty.clone()));
    let params = bind_merge_params(&mut c, item);
    let body = c.check_body(item);
    check_result_shape(&mut c, item, &body, rank);
    let size = body.size();
    if size > c.limits.max_inlined_nodes {
        c.error(
            Diagnostic::error(
                item.name.span,
                format!(
                    "program too large: {size} nodes after inlining helpers (the limit is {})",
                    c.limits.max_inlined_nodes
                ),
            )
            .with_hint("call fewer helpers, or simplify them"),
        );
    }
    let cost = if c.diags.is_empty() {
        merge_cost(&mut c, item, &params, &body)
    } else {
        Cost::default()
    };
    if !c.diags.is_empty() {
        let note = format!("checked with the base as a {rank}-D tensor");
        let mut d = c.diags;
        for x in &mut d {
            if x.message.contains("d0") && !x.notes.iter().any(|n| n.contains("checked")) {
                x.notes.push(note.clone());
            }
        }
        return Err(dedup(d));
    }
    Ok(CheckedMerge {
        name: item.name.name.clone(),
        rank,
        base,
        models,
        params,
        body,
        var_names: c.var_names,
        cost,
    })
}

/// Binds a merge's parameters after `base` and `models`, checking their defaults.
fn bind_merge_params(c: &mut Checker, item: &Item) -> Vec<(MergeParam, VarId)> {
    let mut params = Vec::new();
    for param in &item.params[2..] {
        let ty = c.type_from_ast(&param.ty).unwrap_or(Ty::Error);
        let default = param
            .default
            .as_ref()
            .and_then(|d| match const_value(d, &ty) {
                Ok(v) => Some(v),
                Err(diag) => {
                    c.error(diag);
                    None
                }
            });
        let var = c.bind(&param.name.name, ty.clone());
        params.push((
            MergeParam {
                name: param.name.name.clone(),
                ty,
                default,
                span: param.span,
            },
            var,
        ));
    }
    params
}

/// Reports a merge whose result is not a tensor shaped like the base (unless the body
/// already failed to check).
fn check_result_shape(c: &mut Checker, item: &Item, body: &TExpr, rank: usize) {
    if body.ty.is_error() {
        return;
    }
    let ok = matches!(&body.ty, Ty::Tensor(s) | Ty::Mask(s) if *s == base_shape(rank));
    if ok {
        return;
    }
    let hint = match &body.ty {
        Ty::List(_) => "combine the models into one tensor, e.g. with sum(...) or mean(...)",
        Ty::Tensor(_) | Ty::Mask(_) => {
            "the result must have the base's shape; keep reduced axes (keepdim) and broadcast back"
        }
        _ => "a merge returns a tensor shaped like base, e.g. base + ...",
    };
    // Point at the returned expression, not the whole body of `let`s.
    let at = item
        .body
        .iter()
        .find_map(|s| match s {
            Stmt::Return { value, .. } => Some(value.span),
            Stmt::Let { .. } => None,
        })
        .unwrap_or(body.span);
    c.error(
        Diagnostic::error(
            at,
            format!(
                "a merge must return a Tensor shaped like base {}, but this is {}",
                shape_str(&base_shape(rank)),
                body.ty
            ),
        )
        .with_hint(hint),
    );
}

/// The run-time cost of a merge that checked, its int parameters at their defaults; an
/// error (and a zero cost) when it is too expensive.
fn merge_cost(c: &mut Checker, item: &Item, params: &[(MergeParam, VarId)], body: &TExpr) -> Cost {
    let ints = params
        .iter()
        .filter_map(|(p, v)| match p.default {
            Some(Const::Int(n)) => Some((*v, n)),
            _ => None,
        })
        .collect();
    let env = super::cost::CostEnv::checking(&c.limits, ints);
    match super::cost::check_cost(body, &c.limits, env, item.name.span) {
        Ok(cost) => cost,
        Err(d) => {
            c.error(d);
            Cost::default()
        }
    }
}

/// A helper checked on its own, with every tensor parameter shaped like the base.
fn check_fn_standalone(p: &Program, item: &Item, budget: &Rc<Cell<u64>>) -> Vec<Diagnostic> {
    let mut first = None;
    for rank in CHECKED_RANKS {
        let mut c = Checker::new(Some(p), rank).with_budget(budget);
        c.call_stack.push(item.name.name.clone());
        for param in &item.params {
            let ty = c.type_from_ast(&param.ty).unwrap_or(Ty::Error);
            if let Some(d) = &param.default
                && let Err(diag) = const_value(d, &ty)
            {
                c.error(diag);
            }
            c.bind(&param.name.name, ty);
        }
        let body = c.check_body(item);
        if let (Some(want), false) = (c.type_from_ast(&item.ret), body.ty.is_error())
            && !super::check::kind_compatible(&want, &body.ty)
        {
            c.error(
                Diagnostic::error(
                    item.ret.span,
                    format!(
                        "`{}` returns {} but declares {}",
                        item.name.name,
                        body.ty,
                        want.kind_name()
                    ),
                )
                .with_label("declared here")
                .with_hint(format!(
                    "declare `-> {}`, or return a value of the declared type",
                    body.ty.kind_name()
                )),
            );
        }
        if c.diags.is_empty() {
            return Vec::new();
        }
        first.get_or_insert(c.diags);
    }
    first.unwrap_or_default()
}

/// Rules about items themselves: names, merge signatures, parameter defaults.
fn item_rules(p: &Program) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let mut seen: HashMap<&str, Span> = HashMap::new();
    for item in &p.items {
        let name = item.name.name.as_str();
        if let Some(prev) = seen.insert(name, item.name.span) {
            diags.push(
                Diagnostic::error(item.name.span, format!("`{name}` is defined twice"))
                    .with_related(prev, "first defined here")
                    .with_hint("rename one of them"),
            );
        }
        if super::builtins::lookup(name).is_some() {
            diags.push(
                Diagnostic::error(item.name.span, format!("`{name}` is a builtin"))
                    .with_hint(format!("choose another name, e.g. `my_{name}`")),
            );
        }
        let mut pnames: HashMap<&str, Span> = HashMap::new();
        for param in &item.params {
            if pnames.insert(&param.name.name, param.name.span).is_some() {
                diags.push(Diagnostic::error(
                    param.name.span,
                    format!("parameter `{}` is declared twice", param.name.name),
                ));
            }
        }
        if item.kind == ItemKind::Merge {
            diags.extend(merge_signature_rules(item));
        }
    }
    diags
}

fn merge_signature_rules(item: &Item) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let shape_hint = "a merge starts `merge name(base: Tensor, models: [Tensor], ...) -> Tensor`";
    let want = [("Tensor", "base"), ("[Tensor]", "models")];
    for (i, (ty, role)) in want.iter().enumerate() {
        match item.params.get(i) {
            None => {
                diags.push(
                    Diagnostic::error(
                        item.name.span,
                        format!(
                            "merge `{}` lacks its `{role}: {ty}` parameter",
                            item.name.name
                        ),
                    )
                    .with_hint(shape_hint),
                );
            }
            Some(p) => {
                let written = crate::syntax::print::type_str(&p.ty);
                if written != *ty {
                    diags.push(
                        Diagnostic::error(p.ty.span, format!("parameter {} of a merge must be `{ty}` (the {role}), found `{written}`", i + 1))
                            .with_hint(shape_hint),
                    );
                }
                if p.default.is_some() {
                    diags.push(Diagnostic::error(
                        p.span,
                        format!("`{}` cannot have a default", p.name.name),
                    ));
                }
            }
        }
    }
    for p in item.params.iter().skip(2) {
        let written = crate::syntax::print::type_str(&p.ty);
        let settable = ["f32", "int", "bool", "[f32]", "[int]", "[bool]"];
        let inner = written.trim_start_matches('[').trim_end_matches(']');
        if !super::ty::TYPE_NAMES.contains(&inner) {
            diags.push(
                Diagnostic::error(p.ty.span, format!("unknown type `{inner}`"))
                    .with_hint_opt(super::check::unknown_type_hint(inner))
                    .with_note("parameters after `models` are f32, int, bool, or per-model lists [f32], [int], [bool]"),
            );
        } else if !settable.contains(&written.as_str()) {
            diags.push(
                Diagnostic::error(p.ty.span, format!("merge parameter `{}` has type `{written}`, which cannot be set", p.name.name))
                    .with_hint("parameters after `models` are numbers you set with --set: f32, int, bool, or per-model lists [f32], [int], [bool]"),
            );
        }
    }
    let ret = crate::syntax::print::type_str(&item.ret);
    if ret != "Tensor" {
        diags.push(
            Diagnostic::error(
                item.ret.span,
                format!("a merge returns `Tensor`, not `{ret}`"),
            )
            .with_hint(shape_hint),
        );
    }
    diags
}

/// Calls from each item's body to other items; reports cycles.
fn recursion(p: &Program) -> Vec<Diagnostic> {
    let names: HashSet<&str> = p.items.iter().map(|i| i.name.name.as_str()).collect();
    let mut edges: HashMap<&str, Vec<(&str, Span)>> = HashMap::new();
    for item in &p.items {
        let mut calls = Vec::new();
        for s in &item.body {
            let (Stmt::Let { value, .. } | Stmt::Return { value, .. }) = s;
            collect_calls(value, &names, &mut calls);
        }
        for param in &item.params {
            if let Some(d) = &param.default {
                collect_calls(d, &names, &mut calls);
            }
        }
        edges.insert(item.name.name.as_str(), calls);
    }
    let mut diags = Vec::new();
    for item in &p.items {
        let start = item.name.name.as_str();
        // Depth-first search for a path back to `start`.
        let mut stack: Vec<(&str, Vec<&str>)> = vec![(start, vec![start])];
        let mut visited = HashSet::new();
        'search: while let Some((node, path)) = stack.pop() {
            for (callee, span) in edges.get(node).into_iter().flatten() {
                if *callee == start {
                    let through = if path.len() > 1 {
                        format!(
                            " (through {})",
                            path[1..]
                                .iter()
                                .map(|n| format!("`{n}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    } else {
                        String::new()
                    };
                    // Report at the call inside `start`'s own body when direct.
                    let at = if path.len() == 1 {
                        *span
                    } else {
                        item.name.span
                    };
                    diags.push(
                        Diagnostic::error(at, format!("recursion: `{start}` calls itself{through}"))
                            .with_hint("programs cannot recurse; use fold over the model list or repeat(n, init, |acc, i| ...)"),
                    );
                    break 'search;
                }
                if visited.insert(*callee) {
                    let mut np = path.clone();
                    np.push(callee);
                    stack.push((callee, np));
                }
            }
        }
    }
    diags
}

fn collect_calls<'a>(e: &'a Expr, names: &HashSet<&str>, out: &mut Vec<(&'a str, Span)>) {
    stacker::maybe_grow(64 * 1024, 4 * 1024 * 1024, || match &e.kind {
        ExprKind::Call { func, args } => {
            if names.contains(func.name.as_str()) {
                out.push((func.name.as_str(), func.span));
            }
            for a in args {
                collect_calls(&a.value, names, out);
            }
        }
        ExprKind::Number { .. } | ExprKind::Bool(_) | ExprKind::Str(_) | ExprKind::Name(_) => {}
        ExprKind::Paren(x) | ExprKind::Unary(_, x) => collect_calls(x, names, out),
        ExprKind::Binary(_, a, b) | ExprKind::Index(a, b) => {
            collect_calls(a, names, out);
            collect_calls(b, names, out);
        }
        ExprKind::Array(xs) => xs.iter().for_each(|x| collect_calls(x, names, out)),
        ExprKind::Lambda { body, .. } => collect_calls(body, names, out),
        ExprKind::If { cond, then, els } => {
            collect_calls(cond, names, out);
            for b in [then, els] {
                collect_block_calls(b, names, out);
            }
        }
        ExprKind::Block(b) => collect_block_calls(b, names, out),
    })
}

fn collect_block_calls<'a>(
    b: &'a BlockExpr,
    names: &HashSet<&str>,
    out: &mut Vec<(&'a str, Span)>,
) {
    for s in &b.lets {
        let (Stmt::Let { value, .. } | Stmt::Return { value, .. }) = s;
        collect_calls(value, names, out);
    }
    collect_calls(&b.value, names, out);
}

/// A parameter default: a literal of the declared type (a scalar stands for every model).
pub fn const_value(e: &Expr, ty: &Ty) -> Result<Const, Diagnostic> {
    let bad = |what: &str| {
        Diagnostic::error(
            e.span,
            format!("default of type {} cannot be {what}", ty.kind_name()),
        )
        .with_hint("defaults are literals: 0.5, 3, true, or [1.0, 0.5] for per-model lists")
    };
    let e = e.unparen();
    match (&e.kind, ty) {
        (_, Ty::Error) => Ok(Const::F32(0.0)),
        (ExprKind::Array(xs), Ty::List(elem)) => xs
            .iter()
            .map(|x| const_value(x, elem))
            .collect::<Result<Vec<_>, _>>()
            .map(Const::List),
        (_, Ty::List(elem)) => const_value(e, elem),
        (ExprKind::Bool(b), Ty::Bool) => Ok(Const::Bool(*b)),
        (ExprKind::Number { .. } | ExprKind::Unary(UnOp::Neg, _), Ty::Int | Ty::F32) => {
            let (v, is_int) = literal_number(e).ok_or_else(|| bad("an expression"))?;
            match ty {
                Ty::Int if is_int => Ok(Const::Int(v as i64)),
                Ty::Int => Err(bad("a fractional number")),
                _ => {
                    let f = v as f32;
                    if f.is_finite() {
                        Ok(Const::F32(f))
                    } else {
                        Err(bad("a non-finite number"))
                    }
                }
            }
        }
        (ExprKind::Number { .. }, _) => Err(bad("a number")),
        (ExprKind::Bool(_), _) => Err(bad("a bool")),
        _ => Err(bad("an expression")),
    }
}

fn literal_number(e: &Expr) -> Option<(f64, bool)> {
    match &e.unparen().kind {
        ExprKind::Number { value, is_int } => Some((*value, *is_int)),
        ExprKind::Unary(UnOp::Neg, x) => literal_number(x).map(|(v, i)| (-v, i)),
        _ => None,
    }
}

/// Checks a REPL expression against typed variables (ids 0..n in order) and
/// the merges and helpers of loaded programs.
pub fn check_repl_expr(
    program: Option<&Program>,
    vars: &[(String, Ty)],
    e: &Expr,
    load_shape: LoadShapeFn<'_>,
) -> Result<(TExpr, Vec<String>), Vec<Diagnostic>> {
    let mut c = Checker::new(program, 2);
    c.allow_facts = true;
    c.load_shape = Some(load_shape);
    for (n, t) in vars {
        c.bind(n, t.clone());
    }
    let t = c.check_expr(e);
    if c.diags.is_empty() && !t.ty.is_error() {
        Ok((t, c.var_names))
    } else {
        Err(dedup(c.diags))
    }
}

impl Const {
    /// Parses a value written on a command line or in the REPL: `0.5`, `3`, `true`, `[0.3, 0.7]`.
    pub fn parse(text: &str) -> Result<Const, String> {
        let t = text.trim();
        if let Some(inner) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            if inner.trim().is_empty() {
                return Err("an empty list".into());
            }
            let items = inner
                .split(',')
                .map(Const::parse)
                .collect::<Result<Vec<_>, _>>()?;
            if items.iter().any(|c| matches!(c, Const::List(_))) {
                return Err("lists cannot be nested".into());
            }
            return Ok(Const::List(items));
        }
        match t {
            "true" => return Ok(Const::Bool(true)),
            "false" => return Ok(Const::Bool(false)),
            _ => {}
        }
        if let Ok(i) = t.parse::<i64>() {
            return Ok(Const::Int(i));
        }
        match t.parse::<f32>() {
            Ok(x) if x.is_finite() => Ok(Const::F32(x)),
            Ok(_) => Err(format!("`{t}` is not a finite number")),
            Err(_) => Err(format!("`{t}` is not a number, true/false or a [list]")),
        }
    }

    /// Parses `name=value`.
    pub fn parse_assignment(text: &str) -> Result<(String, Const), String> {
        let (k, v) = text
            .split_once('=')
            .ok_or_else(|| format!("`{text}` should be name=value, e.g. lambda=0.5"))?;
        let k = k.trim();
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("`{k}` is not a parameter name"));
        }
        Ok((k.to_string(), Const::parse(v)?))
    }
}
