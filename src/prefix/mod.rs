//! Viable-prefix checking for grammar-guided decoding: can this text still be
//! completed to a valid program?
//!
//! A hand-written recognizer over the raw text that follows `grammar/merge.pest`
//! rule by rule (PEG semantics: ordered choice, greedy repetition, keyword
//! literals without a word boundary where the grammar has none), so a text it
//! calls `Complete` is exactly one `parse_program` accepts. Running out of input
//! anywhere means "more may follow" (`Incomplete`); a character no completion can
//! fix means `Invalid`. The last lexeme may be unfinished: an identifier, number,
//! string or operator prefix is viable if some token it can grow into fits.
//!
//! `parse_program`'s own extra rules are checked too: the size limits of
//! `crate::syntax::limits` (source size and nesting, items, parameters, statements,
//! syntax nodes, expression depth) and "comparisons cannot be chained".
//!
//! In scoped mode names must also resolve the way the type checker resolves them
//! (types, variables, tensor facts, called functions, keyword arguments).

use crate::syntax::limits::{self, Limits};
use crate::types::builtins::{BUILTINS, Builtin};
use crate::types::tast::Fact;

mod expr;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Viability {
    /// No completion of this text is a valid program.
    Invalid,
    /// A proper prefix of at least one valid program (more text needed, or more may follow).
    Incomplete,
    /// The text is a whole valid program whose last item is a `merge` definition (only
    /// whitespace or comments after its closing `}`): generation may stop here.
    Complete,
}

#[derive(Clone, Debug, Default)]
pub struct PrefixOptions {
    /// Also enforce names: types must be known, values in scope, called functions
    /// builtins (not REPL-only) or earlier items, keyword arguments parameters of
    /// the called function.
    pub scoped: bool,
    /// For generation (with `scoped`): functions must be defined before they are called
    /// (no forward references, so an unfinished word must start an existing name), and
    /// keywords need a word boundary (`merges(` is not `merge s(`, `lettuce` is no
    /// `let`). Stricter than the language: every strict-viable text is viable.
    pub strict: bool,
}

/// How far `text` is from a valid program; see [`Viability`].
pub fn check_prefix(text: &str, opts: &PrefixOptions) -> Viability {
    if limits::precheck_source(text, &Limits::DEFAULT).is_err() {
        return Viability::Invalid;
    }
    let mut p = Recognizer {
        s: text.as_bytes(),
        src: text,
        pos: 0,
        scoped: opts.scoped,
        strict: opts.strict && opts.scoped,
        scope: Vec::new(),
        floor: 0,
        facts: true,
        items: Vec::new(),
        nodes: 0,
        stmts: 0,
        current: "",
        calls: Vec::new(),
        pending: Vec::new(),
    };
    match p.program() {
        Ok(v) => v,
        Err(Stop::Incomplete) => Viability::Incomplete,
        Err(Stop::Invalid) => Viability::Invalid,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Ran out of input: some completion may fit.
    Incomplete,
    /// No completion of what was read fits.
    Invalid,
}

type R<T> = Result<T, Stop>;

const KEYWORDS: [&str; 11] = [
    "merge", "fn", "let", "return", "if", "else", "true", "false", "and", "or", "not",
];
const TYPES: [&str; 6] = ["f32", "int", "bool", "str", "Tensor", "Mask"];

fn is_ident_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

/// `name` is `want`, or (for an unfinished last word) a prefix of it.
fn fits(name: &str, partial: bool, want: &str) -> bool {
    if partial {
        want.starts_with(name)
    } else {
        want == name
    }
}

/// One element of an expression's flat operand/operator sequence, for the
/// Pratt pass that computes the expression tree's depth.
#[derive(Clone, Copy)]
enum El {
    Prefix,
    Primary(usize),
    /// An index, with its inner expression's depth.
    Postfix(usize),
    /// An infix operator with its binding power (pest's: 10 per level).
    Infix(u8),
}

const BP_OR: u8 = 10;
const BP_AND: u8 = 20;
const BP_CMP: u8 = 30;
const BP_ADD: u8 = 40;
const BP_MUL: u8 = 50;
const BP_PREFIX: u8 = 60;
const BP_POW: u8 = 70;
const BP_POSTFIX: u8 = 80;

/// Depth of the tree pest's Pratt parser builds from `els` (as `limits` measures
/// it), or None when it is certainly over the limit.
fn pratt_depth(els: &[El], i: &mut usize, rbp: u8, rec: usize) -> Option<usize> {
    if rec > Limits::DEFAULT.max_expr_depth + 8 {
        return None;
    }
    let mut lhs = match els.get(*i)? {
        El::Prefix => {
            *i += 1;
            1 + pratt_depth(els, i, BP_PREFIX - 1, rec + 1)?
        }
        El::Primary(d) => {
            *i += 1;
            *d
        }
        _ => return None,
    };
    loop {
        match els.get(*i) {
            Some(El::Postfix(d)) if rbp < BP_POSTFIX => {
                *i += 1;
                lhs = 1 + lhs.max(*d);
            }
            Some(El::Infix(bp)) if rbp < *bp => {
                *i += 1;
                let r = if *bp == BP_POW { bp - 1 } else { *bp };
                let rhs = pratt_depth(els, i, r, rec + 1)?;
                lhs = 1 + lhs.max(rhs);
            }
            _ => return Some(lhs),
        }
    }
}

/// What a call's keyword arguments may be named.
#[derive(Clone, Copy)]
enum Callee<'a> {
    Any,
    Builtin(&'static Builtin),
    Item(usize),
    /// An item not defined yet (the checker sees every item of the file).
    Forward(&'a str),
}

struct ItemInfo<'a> {
    name: &'a str,
    params: Vec<&'a str>,
    /// Items its body calls.
    calls: Vec<&'a str>,
}

/// State to restore when an ordered-choice alternative fails.
#[derive(Clone, Copy)]
struct Snap {
    pos: usize,
    scope: usize,
    nodes: usize,
    stmts: usize,
    pending: usize,
    calls: usize,
}

struct Recognizer<'a> {
    /// See [`PrefixOptions::strict`].
    strict: bool,
    s: &'a [u8],
    src: &'a str,
    pos: usize,
    scoped: bool,
    /// Value names in scope (parameters, lets, lambda parameters), innermost last.
    scope: Vec<&'a str>,
    /// Names below this index are not visible (parameter defaults see none).
    floor: usize,
    /// Tensor facts are visible (not in parameter defaults).
    facts: bool,
    /// Items defined so far (scoped mode calls them).
    items: Vec<ItemInfo<'a>>,
    /// Syntax nodes pest would build so far.
    nodes: usize,
    /// Statements of item bodies so far.
    stmts: usize,
    /// The item being defined (it cannot call itself).
    current: &'a str,
    /// Items the current item calls so far.
    calls: Vec<&'a str>,
    /// Calls of items not defined yet, with the keyword argument used, if any.
    pending: Vec<(&'a str, Option<&'a str>)>,
}

impl<'a> Recognizer<'a> {
    // ---- low level ----

    fn snap(&self) -> Snap {
        Snap {
            pos: self.pos,
            scope: self.scope.len(),
            nodes: self.nodes,
            stmts: self.stmts,
            pending: self.pending.len(),
            calls: self.calls.len(),
        }
    }

    fn restore(&mut self, s: Snap) {
        self.pos = s.pos;
        self.scope.truncate(s.scope);
        self.nodes = s.nodes;
        self.stmts = s.stmts;
        self.pending.truncate(s.pending);
        self.calls.truncate(s.calls);
    }

    fn node(&mut self) -> R<()> {
        self.nodes += 1;
        // EOI is one more node.
        if self.nodes + 1 > Limits::DEFAULT.max_syntax_nodes {
            return Err(Stop::Invalid);
        }
        Ok(())
    }

    /// Skips whitespace and comments (pest's implicit WHITESPACE / COMMENT).
    fn ws(&mut self) {
        while let Some(&b) = self.s.get(self.pos) {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.pos += 1,
                b'#' => {
                    while self.pos < self.s.len() && self.s[self.pos] != b'\n' {
                        self.pos += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn rest(&self) -> &'a [u8] {
        &self.s[self.pos..]
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    /// Matches literal `l` after whitespace: Ok(true) consumed, Ok(false) not there,
    /// Incomplete when the rest of the text is a proper prefix of `l`.
    fn lit(&mut self, l: &str) -> R<bool> {
        self.ws();
        let rest = self.rest();
        if rest.starts_with(l.as_bytes()) {
            if self.strict
                && l.bytes().all(is_ident_char)
                && rest.get(l.len()).is_some_and(|&b| is_ident_char(b))
            {
                return Ok(false);
            }
            self.pos += l.len();
            Ok(true)
        } else if l.as_bytes().starts_with(rest) {
            Err(Stop::Incomplete)
        } else {
            Ok(false)
        }
    }

    /// A literal followed by no identifier character (`or`, `and`, `not`).
    fn lit_kw(&mut self, l: &str) -> R<bool> {
        self.ws();
        let rest = self.rest();
        if rest.starts_with(l.as_bytes()) {
            if rest.get(l.len()).is_some_and(|&b| is_ident_char(b)) {
                return Ok(false);
            }
            self.pos += l.len();
            Ok(true)
        } else if l.as_bytes().starts_with(rest) {
            Err(Stop::Incomplete)
        } else {
            Ok(false)
        }
    }

    fn expect(&mut self, l: &str) -> R<()> {
        if self.lit(l)? {
            Ok(())
        } else {
            Err(Stop::Invalid)
        }
    }

    /// The word (identifier characters) at the cursor, after whitespace, without
    /// consuming it: (text, end, runs to the end of the text).
    fn word(&mut self) -> R<Option<(&'a str, usize, bool)>> {
        self.ws();
        let Some(b) = self.peek() else {
            return Err(Stop::Incomplete);
        };
        if !is_ident_start(b) {
            return Ok(None);
        }
        let mut end = self.pos + 1;
        while end < self.s.len() && is_ident_char(self.s[end]) {
            end += 1;
        }
        Ok(Some((&self.src[self.pos..end], end, end == self.s.len())))
    }

    /// An identifier (pest's `ident`): a word that is not a keyword. A word that
    /// runs to the end of the text may still grow, so it is never a keyword.
    /// Returns (name, unfinished).
    fn ident(&mut self) -> R<Option<(&'a str, bool)>> {
        let Some((w, end, partial)) = self.word()? else {
            return Ok(None);
        };
        if !partial && KEYWORDS.contains(&w) {
            return Ok(None);
        }
        self.pos = end;
        self.node()?;
        Ok(Some((w, partial)))
    }

    /// An identifier that introduces a name (any identifier will do).
    fn def_ident(&mut self) -> R<&'a str> {
        match self.ident()? {
            Some((w, _)) => Ok(w),
            None => Err(Stop::Invalid),
        }
    }

    // ---- names (scoped mode) ----

    fn value_ok(&self, name: &str, partial: bool) -> bool {
        !self.scoped
            || self.scope[self.floor..]
                .iter()
                .any(|n| fits(name, partial, n))
            || (self.facts && Fact::ALL.iter().any(|f| fits(name, partial, f.0)))
    }

    /// The function `name` calls, if it may be called: a builtin that is not
    /// REPL-only, an earlier item, or (a forward reference) a name a later item may
    /// still take. Not the item being defined.
    fn callee(&self, name: &'a str) -> Option<Callee<'a>> {
        if !self.scoped {
            return Some(Callee::Any);
        }
        if name == self.current {
            return None;
        }
        if let Some(i) = self.items.iter().position(|it| it.name == name) {
            return Some(Callee::Item(i));
        }
        match BUILTINS.iter().find(|b| b.name == name) {
            Some(b) if b.repl_only() => None,
            Some(b) => Some(Callee::Builtin(b)),
            None if self.strict => None,
            None => Some(Callee::Forward(name)),
        }
    }

    /// Strict mode: whether an unfinished word in value position can still become
    /// something that fits there (a value in scope, a fact, a callable function, or a
    /// keyword that starts an expression).
    fn word_may_grow(&self, w: &str) -> bool {
        self.value_ok(w, true)
            || ["true", "false", "if", "not"]
                .iter()
                .any(|k| k.starts_with(w))
            || self
                .items
                .iter()
                .any(|it| it.name.starts_with(w) && it.name != self.current)
            || BUILTINS
                .iter()
                .any(|b| !b.repl_only() && b.name.starts_with(w))
    }

    fn kwarg_ok(&self, callee: Callee<'a>, name: &str, partial: bool) -> bool {
        match callee {
            Callee::Any => true,
            Callee::Builtin(b) => b.params.iter().any(|p| fits(name, partial, p.name)),
            Callee::Item(i) => self.items[i].params.iter().any(|p| fits(name, partial, p)),
            // checked when the item is defined
            Callee::Forward(_) => true,
        }
    }

    // ---- program structure ----

    fn program(&mut self) -> R<Viability> {
        let mut last_is_merge = false;
        loop {
            self.ws();
            if self.pos == self.s.len() {
                let resolved = self
                    .pending
                    .iter()
                    .all(|(n, _)| self.items.iter().any(|it| it.name == *n));
                return Ok(if last_is_merge && resolved {
                    Viability::Complete
                } else {
                    Viability::Incomplete
                });
            }
            let merge = if self.lit("merge")? {
                true
            } else if self.lit("fn")? {
                false
            } else {
                return Err(Stop::Invalid);
            };
            if self.items.len() >= Limits::DEFAULT.max_items {
                return Err(Stop::Invalid);
            }
            self.item()?;
            last_is_merge = merge;
        }
    }

    /// An item after its `merge` / `fn` keyword.
    fn item(&mut self) -> R<()> {
        self.node()?;
        let (name, partial) = self.ident()?.ok_or(Stop::Invalid)?;
        if self.scoped
            && !partial
            && (self.items.iter().any(|it| it.name == name)
                || BUILTINS.iter().any(|b| b.name == name))
        {
            return Err(Stop::Invalid);
        }
        self.expect("(")?;
        self.node()?; // params
        self.scope.clear();
        self.floor = 0;
        if !self.lit(")")? {
            loop {
                if self.scope.len() >= Limits::DEFAULT.max_params {
                    return Err(Stop::Invalid);
                }
                self.param()?;
                if self.lit(",")? {
                    if self.lit(")")? {
                        break;
                    }
                    continue;
                }
                self.expect(")")?;
                break;
            }
        }
        // Earlier calls of this item must use its parameter names.
        if self.scoped
            && self
                .pending
                .iter()
                .any(|(n, kw)| *n == name && kw.is_some_and(|k| !self.scope.contains(&k)))
        {
            return Err(Stop::Invalid);
        }
        self.current = name;
        self.calls.clear();
        self.expect("->")?;
        self.type_expr(0)?;
        let params = self.scope.clone();
        self.body()?;
        self.scope.clear();
        let calls = std::mem::take(&mut self.calls);
        if self.scoped && self.reaches(&calls, name) {
            // a call cycle
            return Err(Stop::Invalid);
        }
        self.items.push(ItemInfo {
            name,
            params,
            calls,
        });
        self.current = "";
        Ok(())
    }

    /// Some call path from `calls` (through the items defined so far) reaches `target`.
    fn reaches(&self, calls: &[&'a str], target: &str) -> bool {
        let mut seen: Vec<&str> = Vec::new();
        let mut stack: Vec<&str> = calls.to_vec();
        while let Some(n) = stack.pop() {
            if n == target {
                return true;
            }
            if seen.contains(&n) {
                continue;
            }
            seen.push(n);
            if let Some(it) = self.items.iter().find(|it| it.name == n) {
                stack.extend(it.calls.iter().copied());
            }
        }
        false
    }

    fn param(&mut self) -> R<()> {
        self.node()?;
        let name = self.def_ident()?;
        self.expect(":")?;
        self.type_expr(0)?;
        if self.lit("=")? {
            // Defaults are literals: no variables, no tensor facts.
            let (floor, facts) = (self.floor, self.facts);
            self.floor = self.scope.len();
            self.facts = false;
            self.top_expr()?;
            self.floor = floor;
            self.facts = facts;
        }
        self.scope.push(name);
        Ok(())
    }

    /// `type_expr`; `depth` counts enclosing list brackets.
    fn type_expr(&mut self, depth: usize) -> R<()> {
        self.node()?;
        if self.lit("[")? {
            if self.scoped && depth > 0 {
                // lists cannot be nested
                return Err(Stop::Invalid);
            }
            self.node()?; // list_type
            self.type_expr(depth + 1)?;
            return self.expect("]");
        }
        let (name, partial) = self.ident()?.ok_or(Stop::Invalid)?;
        if self.scoped && !TYPES.iter().any(|t| fits(name, partial, t)) {
            return Err(Stop::Invalid);
        }
        Ok(())
    }

    fn body(&mut self) -> R<()> {
        self.expect("{")?;
        self.node()?;
        loop {
            if self.lit("let")? {
                self.count_stmt()?;
                self.let_stmt()?;
            } else if self.lit("return")? {
                self.count_stmt()?;
                self.node()?;
                self.top_expr()?;
            } else {
                return self.expect("}");
            }
            self.lit(";")?;
        }
    }

    fn count_stmt(&mut self) -> R<()> {
        self.stmts += 1;
        if self.stmts > Limits::DEFAULT.max_statements {
            return Err(Stop::Invalid);
        }
        Ok(())
    }

    /// A `let` after its keyword; binds the name after the value.
    fn let_stmt(&mut self) -> R<()> {
        self.node()?;
        let name = self.def_ident()?;
        if self.lit(":")? {
            self.type_expr(0)?;
        }
        self.expect("=")?;
        self.top_expr()?;
        self.scope.push(name);
        Ok(())
    }
}

#[cfg(test)]
fn node_count(text: &str) -> usize {
    let mut p = Recognizer {
        s: text.as_bytes(),
        src: text,
        pos: 0,
        scoped: false,
        strict: false,
        scope: Vec::new(),
        floor: 0,
        facts: true,
        items: Vec::new(),
        nodes: 0,
        stmts: 0,
        current: "",
        calls: Vec::new(),
        pending: Vec::new(),
    };
    let _ = p.program();
    p.nodes + 1
}

#[cfg(test)]
mod tests;
