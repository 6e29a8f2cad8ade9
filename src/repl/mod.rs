//! The REPL: a [`Session`] turns one input line into printable [`Output`]
//! (tested without a terminal); `run_terminal` wraps it in a line editor.

mod checkpoints;
mod commands;
mod scope;
mod terminal;

pub use scope::{Origin, item_header};
pub use terminal::{open_brackets, run_terminal};

use crate::diag::Diagnostic;
use crate::interp::{Context, Evaluator, RuntimeError, TensorFacts, Value};
use crate::show::describe;
use crate::syntax::ast::Expr;
use crate::types::check_repl_expr;
use crate::types::tast::TExpr;
use crate::types::ty::{Dim, Ty};
use checkpoints::Checkpoints;
use scope::Scope;

/// The tensor name the REPL's facts (name, kind, layer, n_layers) describe.
pub const DEFAULT_TENSOR: &str = "model.layers.0.mlp.up_proj.weight";
/// The REPL's default `n_layers`.
pub const DEFAULT_N_LAYERS: i64 = 32;

/// What one line produced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Text to print (may be empty); ends without a newline.
    pub text: String,
    pub is_error: bool,
    pub quit: bool,
}

impl Output {
    pub fn ok(text: impl Into<String>) -> Output {
        Output {
            text: text.into(),
            ..Output::default()
        }
    }
    pub fn error(text: impl Into<String>) -> Output {
        Output {
            text: text.into(),
            is_error: true,
            quit: false,
        }
    }
}

/// A name bound with `let`, with its concrete type.
#[derive(Clone, Debug)]
pub struct Binding {
    pub name: String,
    pub ty: Ty,
    pub value: Value,
}

/// One interactive session: bindings, items in scope, seed and randn position.
pub struct Session {
    seed: u64,
    randn_counter: u64,
    facts: TensorFacts,
    vars: Vec<Binding>,
    scope: Scope,
    checkpoints: Checkpoints,
    color: bool,
    /// Warnings from building the scope, shown by `startup_notes`.
    notes: Vec<String>,
}

impl Session {
    /// A fresh session with the stdlib's merges in scope.
    pub fn new(seed: u64) -> Session {
        let (scope, notes) = Scope::with_stdlib();
        Session {
            seed,
            randn_counter: 0,
            facts: TensorFacts::from_name(DEFAULT_TENSOR, DEFAULT_N_LAYERS),
            vars: Vec::new(),
            scope,
            checkpoints: Checkpoints::default(),
            color: false,
            notes,
        }
    }

    /// Whether diagnostics use ANSI colours (off by default).
    pub fn set_color(&mut self, on: bool) {
        self.color = on;
    }

    /// Problems found while starting (a stdlib file that does not check).
    pub fn startup_notes(&self) -> &[String] {
        &self.notes
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The bindings, in the order they were first made.
    pub fn vars(&self) -> &[Binding] {
        &self.vars
    }

    /// The value bound to `name`.
    pub fn var(&self, name: &str) -> Option<&Value> {
        self.vars.iter().find(|b| b.name == name).map(|b| &b.value)
    }

    /// Names worth completing: bindings, items, builtins, facts.
    pub fn completion_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.vars.iter().map(|b| b.name.clone()).collect();
        names.extend(self.scope.names());
        names.extend(
            crate::types::builtins::BUILTINS
                .iter()
                .map(|b| b.name.to_string()),
        );
        names.extend(
            crate::types::tast::Fact::ALL
                .iter()
                .map(|f| f.0.to_string()),
        );
        names.sort();
        names.dedup();
        names
    }

    /// Loads program files as `:load` does.
    pub fn load_files(&mut self, files: &[String]) -> Output {
        commands::load_files(self, files)
    }

    /// Evaluates one line: a meta-command, a `let`, an expression, or a
    /// `merge`/`fn` definition. Never panics: an internal error is reported.
    pub fn eval_line(&mut self, line: &str) -> Output {
        // A fresh stack segment bounds parsing, checking and evaluation whatever
        // the caller's stack (test threads have 2 MiB).
        let run = std::panic::AssertUnwindSafe(|| {
            stacker::grow(64 * 1024 * 1024, || self.eval_line_inner(line))
        });
        std::panic::catch_unwind(run).unwrap_or_else(|_| {
            Output::error(
                "internal error: mergec crashed on this line (a bug; please report it with the line)",
            )
        })
    }

    fn eval_line_inner(&mut self, line: &str) -> Output {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            return Output::default();
        }
        if let Some(cmd) = t.strip_prefix(':') {
            return commands::run(self, cmd);
        }
        // What users type by habit (Python, shells): the commands, not unknown names.
        match t {
            "help" | "help()" => return commands::run(self, "help"),
            "exit" | "exit()" | "quit" | "quit()" => return commands::run(self, "quit"),
            _ => {}
        }
        if starts_with_word(t, "merge") || starts_with_word(t, "fn") {
            return commands::define(self, line);
        }
        if starts_with_word(t, "let") {
            return self.let_line(line);
        }
        match crate::syntax::parse_expr(line) {
            Ok(e) => match self.check(&e, line) {
                Ok(te) => self
                    .eval(&te)
                    .map_or_else(Output::error, |v| Output::ok(describe(&v))),
                Err(out) => out,
            },
            Err(d) => Output::error(self.render(&with_let_hint(d, line), line)),
        }
    }

    fn let_line(&mut self, line: &str) -> Output {
        let (name, e) = match crate::syntax::parse_let(line) {
            Ok(x) => x,
            Err(d) => return Output::error(self.render(&d, line)),
        };
        let te = match self.check(&e, line) {
            Ok(te) => te,
            Err(out) => return out,
        };
        let value = match self.eval(&te) {
            Ok(v) => v,
            Err(msg) => return Output::error(msg),
        };
        let ty = runtime_ty(&value).unwrap_or_else(|| te.ty.clone());
        let text = format!("{} = {}", name.name, describe(&value));
        self.bind(name.name, ty, value);
        Output::ok(text)
    }

    /// Binds (or rebinds, keeping its place) a name.
    fn bind(&mut self, name: String, ty: Ty, value: Value) {
        match self.vars.iter_mut().find(|b| b.name == name) {
            Some(b) => {
                b.ty = ty;
                b.value = value;
            }
            None => self.vars.push(Binding { name, ty, value }),
        }
    }

    /// Type-checks an expression against the bindings and items in scope.
    fn check(&self, e: &Expr, line: &str) -> Result<TExpr, Output> {
        let tys: Vec<(String, Ty)> = self
            .vars
            .iter()
            .map(|b| (b.name.clone(), b.ty.clone()))
            .collect();
        let ck = &self.checkpoints;
        let load_errors = std::cell::RefCell::new(Vec::new());
        let load_shape = |p: &str, n: &str| {
            ck.shape(p, n)
                .inspect_err(|m| load_errors.borrow_mut().push(m.clone()))
        };
        let program = self.scope.program();
        let checked = check_repl_expr(Some(program), &tys, e, &load_shape);
        let te = checked.map(|(te, _)| te).map_err(|mut diags| {
            for d in &mut diags {
                if d.label.is_none() && load_errors.borrow().contains(&d.message) {
                    d.label = Some("cannot load this".into());
                }
            }
            Output::error(self.render(&diags, line))
        })?;
        match too_large_broadcast(&te) {
            Some(d) => Err(Output::error(self.render(&[d], line))),
            None => Ok(te),
        }
    }

    /// The type of an expression, without evaluating it.
    fn type_of(&self, src: &str) -> Output {
        match crate::syntax::parse_expr(src) {
            Ok(e) => match self.check(&e, src) {
                Ok(te) => Output::ok(te.ty.to_string()),
                Err(out) => out,
            },
            Err(d) => Output::error(self.render(&d, src)),
        }
    }

    /// Evaluates a checked expression with the bindings; advances randn.
    fn eval(&mut self, te: &TExpr) -> Result<Value, String> {
        let ck = &self.checkpoints;
        let loader = |p: &str, n: &str| ck.read(p, n);
        let mut ctx = Context::new(self.seed, self.facts.clone());
        ctx.loader = Some(&loader);
        ctx.randn_counter.set(self.randn_counter);
        let mut ev = Evaluator::new(&ctx, self.vars.len());
        for (i, b) in self.vars.iter().enumerate() {
            ev.set(i as u32, b.value.clone());
        }
        let result = ev.eval(te);
        self.randn_counter = ctx.randn_counter.get();
        result.map_err(|e| runtime_message(&e))
    }

    fn render(&self, diags: &[Diagnostic], line: &str) -> String {
        let diags: Vec<Diagnostic> = diags.iter().cloned().map(for_the_repl).collect();
        self.scope.render(&diags, line, self.color)
    }
}

/// Rewords what the checker says for programs to fit the prompt.
fn for_the_repl(mut d: Diagnostic) -> Diagnostic {
    let reword = |s: &str| {
        s.replace("`mergec methods --builtins`", "`:builtins`")
            .replace("a function of this program", "a merge or fn in scope")
    };
    d.label = d.label.as_deref().map(reword);
    // The REPL has no base tensor: its values have concrete shapes.
    d.notes = d
        .notes
        .iter()
        .filter(|n| !n.starts_with("checked with the base as a"))
        .map(|n| reword(n))
        .collect();
    d
}

/// A runtime error as text: the message, then its hint.
fn runtime_message(e: &RuntimeError) -> String {
    match &e.hint {
        Some(h) => format!("error: {}\n  help: {h}", e.message),
        None => format!("error: {}", e.message),
    }
}

fn starts_with_word(s: &str, word: &str) -> bool {
    s.strip_prefix(word)
        .is_some_and(|r| r.starts_with(|c: char| c.is_whitespace()))
}

/// `x = expr` is a likely attempt at a binding: say how to write one.
fn with_let_hint(mut diags: Vec<Diagnostic>, line: &str) -> Vec<Diagnostic> {
    let t = line.trim_start();
    let ident_len = t
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(t.len());
    let rest = t[ident_len..].trim_start();
    let assigns = ident_len > 0 && rest.starts_with('=') && !rest.starts_with("==");
    let eq_at = (line.len() - t.len()) + (t.len() - rest.len());
    if let (true, Some(d)) = (assigns, diags.first_mut()) {
        if d.span.start == eq_at {
            d.message = "unexpected `=`: the REPL binds names with `let`".into();
        }
        d.hint = Some(format!(
            "to bind a name, write `let {} = ...`",
            &t[..ident_len]
        ));
    }
    diags
}

/// Elements of a tensor or mask type with known dims (0 for other types).
fn elements(ty: &Ty) -> u64 {
    match ty {
        Ty::Tensor(s) | Ty::Mask(s) => s.iter().try_fold(1u64, |a, d| match d {
            Dim::Const(n) => a.checked_mul(*n),
            Dim::Sym(_) => Some(0),
        }),
        Ty::List(e) => Some(elements(e)),
        _ => Some(0),
    }
    .unwrap_or(u64::MAX)
}

/// A broadcast that would make a tensor larger than the REPL's element cap and larger
/// than every operand (e.g. `zeros(1048576, 1) + zeros(1, 1048576)`): an error before
/// anything is evaluated, so the session and its bindings stay as they were.
fn too_large_broadcast(te: &TExpr) -> Option<Diagnostic> {
    let cap = crate::syntax::limits::Limits::DEFAULT.max_literal_elems as u64;
    let children = te.children();
    if let Some(d) = children.iter().find_map(|c| too_large_broadcast(c)) {
        return Some(d);
    }
    let widest = children.iter().map(|c| elements(&c.ty)).max().unwrap_or(0);
    let n = elements(&te.ty);
    (widest > 0 && n > cap && n > widest).then(|| {
        Diagnostic::error(
            te.span,
            format!(
                "this would make a {} of {n} elements; the REPL holds at most {cap} per value",
                te.ty
            ),
        )
        .with_hint("broadcasting multiplies the sizes: check the operands' shapes")
    })
}

/// The concrete type of a runtime value (lists need elements of one type).
pub fn runtime_ty(v: &Value) -> Option<Ty> {
    let dims = |s: &[usize]| s.iter().map(|&d| Dim::Const(d as u64)).collect();
    Some(match v {
        Value::Int(_) => Ty::Int,
        Value::F32(_) => Ty::F32,
        Value::Bool(_) => Ty::Bool,
        Value::Str(_) => Ty::Str,
        Value::Tensor(t) => Ty::Tensor(dims(&t.shape)),
        Value::Mask(t) => Ty::Mask(dims(&t.shape)),
        Value::List(xs) => {
            let first = runtime_ty(xs.first()?)?;
            if first.is_list() || xs.iter().any(|x| runtime_ty(x).as_ref() != Some(&first)) {
                return None;
            }
            Ty::list(first)
        }
    })
}
