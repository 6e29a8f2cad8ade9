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
//! `super::limits` (source size and nesting, items, parameters, statements,
//! syntax nodes, expression depth) and "comparisons cannot be chained".
//!
//! In scoped mode names must also resolve the way the type checker resolves them
//! (types, variables, tensor facts, called functions, keyword arguments).

use super::limits::{self, Limits};
use crate::types::builtins::{BUILTINS, Builtin};
use crate::types::tast::Fact;

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

    /// An expression whose depth `limits` checks (statement values, defaults).
    fn top_expr(&mut self) -> R<()> {
        if self.expr()? > Limits::DEFAULT.max_expr_depth {
            return Err(Stop::Invalid);
        }
        Ok(())
    }

    // ---- expressions ----

    /// `expr`; returns the depth of its tree.
    fn expr(&mut self) -> R<usize> {
        // Lambdas and `if`s nest without brackets (up to 256 deep).
        stacker::maybe_grow(64 * 1024, 1024 * 1024, || self.expr_inner())
    }

    fn expr_inner(&mut self) -> R<usize> {
        self.node()?;
        let mut els: Vec<El> = Vec::with_capacity(8);
        let mut comparison = false;
        loop {
            // prefix*
            loop {
                self.ws();
                match self.peek() {
                    None => return Err(Stop::Incomplete),
                    Some(b'-') => self.pos += 1,
                    Some(b'!') if self.s.get(self.pos + 1) != Some(&b'=') => self.pos += 1,
                    _ => {
                        if !self.lit_kw("not")? {
                            break;
                        }
                    }
                }
                self.node()?;
                els.push(El::Prefix);
            }
            let d = self.primary()?;
            els.push(El::Primary(d));
            // postfix*: an index that does not parse leaves the `[` to what follows
            // (in a block, the value after a `let` may be an array).
            loop {
                self.ws();
                if self.peek() != Some(b'[') {
                    break;
                }
                let snap = self.snap();
                self.pos += 1;
                let r = self.node().and_then(|_| self.expr());
                let r = r.and_then(|d| self.expect("]").map(|_| d));
                match r {
                    Ok(d) => els.push(El::Postfix(d)),
                    Err(Stop::Invalid) => {
                        self.restore(snap);
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            if comparison {
                // `<`, `>`, `=` at the very end can only grow into comparisons
                // (`!` may start a block's value after a `let`)
                self.ws();
                if matches!(self.rest(), b"<" | b">" | b"=") {
                    return Err(Stop::Invalid);
                }
            }
            let Some(bp) = self.infix()? else { break };
            self.node()?;
            match bp {
                BP_OR | BP_AND => comparison = false,
                BP_CMP if comparison => return Err(Stop::Invalid), // chained comparison
                BP_CMP => comparison = true,
                _ => {}
            }
            els.push(El::Infix(bp));
        }
        pratt_depth(&els, &mut 0, 0, 0).ok_or(Stop::Invalid)
    }

    /// An infix operator, in the grammar's order; its binding power.
    fn infix(&mut self) -> R<Option<u8>> {
        const OPS: [(&str, u8); 13] = [
            ("||", BP_OR),
            ("&&", BP_AND),
            ("==", BP_CMP),
            ("!=", BP_CMP),
            ("<=", BP_CMP),
            (">=", BP_CMP),
            ("<", BP_CMP),
            (">", BP_CMP),
            ("+", BP_ADD),
            ("-", BP_ADD),
            ("**", BP_POW),
            ("*", BP_MUL),
            ("/", BP_MUL),
        ];
        if self.lit("||")? || self.lit_kw("or")? {
            return Ok(Some(BP_OR));
        }
        if self.lit("&&")? || self.lit_kw("and")? {
            return Ok(Some(BP_AND));
        }
        for (op, bp) in &OPS[2..] {
            if self.lit(op)? {
                return Ok(Some(*bp));
            }
        }
        Ok(None)
    }

    /// `primary`; returns its depth.
    fn primary(&mut self) -> R<usize> {
        self.ws();
        let Some(b) = self.peek() else {
            return Err(Stop::Incomplete);
        };
        // if_expr: "if" has no word boundary in the grammar, so `iffy {..} else {..}`
        // is an `if`; when that fails, the word is an identifier.
        // In strict mode a word that only starts with `if` is a name.
        let glued = self.strict && self.s.get(self.pos + 2).is_some_and(|&c| is_ident_char(c));
        if self.rest().starts_with(b"if") && !glued {
            let partial = self.word()?.is_some_and(|(_, _, partial)| partial);
            if partial {
                return Err(Stop::Incomplete);
            }
            let exact = !self.s.get(self.pos + 2).is_some_and(|&c| is_ident_char(c));
            let snap = self.snap();
            self.pos += 2;
            match self.if_expr() {
                Ok(d) => return Ok(d),
                Err(Stop::Invalid) if !exact => self.restore(snap),
                Err(e) => return Err(e),
            }
        }
        match b {
            b'|' => return self.lambda(),
            b'[' => return self.array(),
            b'0'..=b'9' | b'.' => return self.number(),
            b'"' => return self.string(),
            b'(' => {
                self.pos += 1;
                self.node()?;
                let d = self.expr()?;
                self.expect(")")?;
                return Ok(1 + d);
            }
            b'{' => return self.block_expr().map(|d| 1 + d),
            _ => {}
        }
        let Some((w, end, partial)) = self.word()? else {
            return Err(Stop::Invalid);
        };
        if partial {
            // Unfinished: a call, a boolean or a name. Any word can still grow into
            // the name of an item defined later, so a call always fits (not in
            // strict mode, where calls go to earlier items only).
            if self.strict && !self.word_may_grow(w) {
                return Err(Stop::Invalid);
            }
            return Err(Stop::Incomplete);
        }
        if w == "true" || w == "false" {
            self.pos = end;
            self.node()?;
            return Ok(1);
        }
        if KEYWORDS.contains(&w) {
            return Err(Stop::Invalid);
        }
        self.pos = end;
        self.node()?; // ident
        // call = ident "(" args ")"
        if let Some(callee) = self.callee(w) {
            self.ws();
            if self.peek().is_none() {
                return Err(Stop::Incomplete);
            }
            if self.peek() == Some(b'(') {
                self.pos += 1;
                if self.scoped {
                    match callee {
                        Callee::Item(_) => self.calls.push(w),
                        Callee::Forward(_) => {
                            self.calls.push(w);
                            self.pending.push((w, None));
                        }
                        _ => {}
                    }
                }
                return self.call(callee);
            }
        }
        if !self.value_ok(w, false) {
            return Err(Stop::Invalid);
        }
        Ok(1)
    }

    /// The rest of a call after its `(`.
    fn call(&mut self, callee: Callee<'a>) -> R<usize> {
        self.node()?; // call (its ident was counted)
        self.node()?; // args
        let mut depth = 0;
        if self.lit(")")? {
            return Ok(1);
        }
        loop {
            depth = depth.max(self.arg(callee)?);
            if self.lit(",")? {
                if self.lit(")")? {
                    break;
                }
                continue;
            }
            self.expect(")")?;
            break;
        }
        Ok(1 + depth)
    }

    /// arg = kwarg | expr.
    fn arg(&mut self, callee: Callee<'a>) -> R<usize> {
        if let Some((w, end, partial)) = self.word()? {
            if partial {
                if self.kwarg_ok(callee, w, true) {
                    return Err(Stop::Incomplete);
                }
            } else if !KEYWORDS.contains(&w) {
                let snap = self.snap();
                self.pos = end;
                self.ws();
                let eq = self.peek() == Some(b'=') && self.s.get(self.pos + 1) != Some(&b'=');
                if eq && self.kwarg_ok(callee, w, false) {
                    self.pos += 1;
                    if let Callee::Forward(f) = callee {
                        self.pending.push((f, Some(w)));
                    }
                    self.node()?; // kwarg
                    self.node()?; // ident
                    return self.expr();
                }
                self.restore(snap);
            }
        }
        self.expr()
    }

    fn array(&mut self) -> R<usize> {
        self.pos += 1;
        self.node()?;
        let mut depth = 0;
        if self.lit("]")? {
            return Ok(1);
        }
        loop {
            depth = depth.max(self.expr()?);
            if self.lit(",")? {
                if self.lit("]")? {
                    break;
                }
                continue;
            }
            self.expect("]")?;
            break;
        }
        Ok(1 + depth)
    }

    fn lambda(&mut self) -> R<usize> {
        self.pos += 1;
        self.node()?;
        let mark = self.scope.len();
        loop {
            let name = self.def_ident()?;
            self.scope.push(name);
            if self.lit(",")? {
                continue;
            }
            self.expect("|")?;
            break;
        }
        let d = self.expr()?;
        self.scope.truncate(mark);
        Ok(1 + d)
    }

    /// The rest of an `if` after its keyword.
    fn if_expr(&mut self) -> R<usize> {
        self.node()?;
        let cond = self.expr()?;
        let then = self.block_expr()?;
        self.expect("else")?;
        let els = if self.lit("if")? {
            self.if_expr()?
        } else {
            self.block_expr()?
        };
        Ok(1 + cond.max(then).max(els))
    }

    /// `block_expr`; returns the depth of its lets and value (the block node not counted).
    fn block_expr(&mut self) -> R<usize> {
        self.expect("{")?;
        self.node()?;
        let mark = self.scope.len();
        let mut depth = 0;
        loop {
            self.ws();
            if !self.lit("let")? {
                break;
            }
            // `letx` may be `let x ...` or the name `letx`: try the `let` first.
            let exact = !self.s.get(self.pos).is_some_and(|&c| is_ident_char(c));
            let snap = self.snap();
            let r = self.node().and_then(|_| {
                let name = self.def_ident()?;
                if self.lit(":")? {
                    self.type_expr(0)?;
                }
                self.expect("=")?;
                let d = self.expr()?;
                Ok((name, d))
            });
            match r {
                Ok((name, d)) => {
                    self.scope.push(name);
                    depth = depth.max(d);
                    self.lit(";")?;
                }
                Err(Stop::Invalid) if !exact => {
                    self.restore(snap);
                    self.pos -= 3;
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        depth = depth.max(self.expr()?);
        self.expect("}")?;
        self.scope.truncate(mark);
        Ok(depth)
    }

    fn number(&mut self) -> R<usize> {
        let s = self.s;
        let n = s.len();
        let digit = |i: usize| s.get(i).is_some_and(|b| b.is_ascii_digit());
        let mut p = self.pos;
        if s[p] == b'.' {
            p += 1;
            if p == n {
                return Err(Stop::Incomplete);
            }
            if !digit(p) {
                return Err(Stop::Invalid);
            }
            while digit(p) {
                p += 1;
            }
        } else {
            while digit(p) {
                p += 1;
            }
            if s.get(p) == Some(&b'.') {
                p += 1;
                while digit(p) {
                    p += 1;
                }
            }
        }
        if matches!(s.get(p), Some(b'e' | b'E')) {
            let mut q = p + 1;
            if matches!(s.get(q), Some(b'+' | b'-')) {
                q += 1;
            }
            if q == n {
                return Err(Stop::Incomplete);
            }
            if digit(q) {
                while digit(q) {
                    q += 1;
                }
                p = q;
            }
        }
        self.pos = p;
        self.node()?;
        Ok(1)
    }

    fn string(&mut self) -> R<usize> {
        let mut p = self.pos + 1;
        loop {
            match self.s.get(p) {
                None => return Err(Stop::Incomplete),
                Some(b'\n') => return Err(Stop::Invalid),
                Some(b'"') => break,
                Some(_) => p += 1,
            }
        }
        self.pos = p + 1;
        self.node()?;
        Ok(1)
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
mod tests {
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
            assert!(crate::check_source(src).is_ok(), "{name} checks");
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
        let checked = parsed.is_some().then(|| crate::check_source(t).map(|_| ()));
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
        eprintln!(
            "mutations, counts[unscoped][scoped] (Invalid, Incomplete, Complete): {counts:?}"
        );
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
                        crate::check_source(&c).is_err(),
                        "scoped Invalid, but this checks:\n{c}"
                    );
                }
            }
        }
    }

    #[test]
    fn prefix_node_count_matches_pest() {
        use super::super::parse::{MergeParser, Rule};
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
                assert_prefixes_viable(t, t, crate::check_source(t).is_ok());
            }
        }
    }

    #[test]
    fn prefix_hand_picked() {
        let ok = format!("{H} return base }}");
        let cases: Vec<(String, Viability, Viability)> = vec![
            ("".into(), Incomplete, Incomplete),
            ("   # just a comment".into(), Incomplete, Incomplete),
            ("mer".into(), Incomplete, Incomplete),
            ("merge".into(), Incomplete, Incomplete),
            ("merge 1".into(), Invalid, Invalid),
            ("merge f(base: Tensor, models: [Tensor]) -> Tensor { return base }".into(), Complete, Complete),
            (format!("{ok}\n"), Complete, Complete),
            (format!("{ok} # done"), Complete, Complete),
            (format!("{ok}\n# done\n"), Complete, Complete),
            (format!("{ok} x"), Invalid, Invalid),
            (format!("{ok} f"), Incomplete, Incomplete),
            ("fn g(x: Tensor) -> Tensor { return x }".into(), Incomplete, Incomplete),
            ("merge f(x: Tensr".into(), Incomplete, Invalid),
            ("merge f(x: Tens".into(), Incomplete, Incomplete),
            ("merge f(x: Tensr)".into(), Incomplete, Invalid),
            ("merge f(x: [[f32]]".into(), Incomplete, Invalid),
            ("merge f(x: [f32], y: int = 3,) -".into(), Incomplete, Incomplete),
            ("merge f(x: [f32]) =".into(), Invalid, Invalid),
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
            (format!("{H} return base =") , Incomplete, Incomplete),
            (format!("{H} return base = base"), Invalid, Invalid),
            (format!("{H} return base <"), Incomplete, Incomplete),
            (format!("{H} return base < base <"), Invalid, Invalid),
            (format!("{H} return base < base and base <"), Incomplete, Incomplete),
            (format!("{H} return (base < base) < base }}"), Complete, Complete),
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
            (format!("{H} return base # a comment\n}}"), Complete, Complete),
            (format!("{H} return a -"), Incomplete, Invalid),
            (format!("{H} return base[0] }}"), Complete, Complete),
            (format!("{H} return models[0"), Incomplete, Incomplete),
            (format!("{H} return [base, base,]"), Incomplete, Incomplete),
            (format!("{H} return [base, base,] }}"), Complete, Complete),
            (format!("{H} return [,"), Invalid, Invalid),
            (format!("{H} return fold(models, base, |acc, m| acc + m) }}"), Complete, Complete),
            (format!("{H} return fold(models, base, |acc, m| acc + m"), Incomplete, Incomplete),
            (format!("{H} return fold(models, base, |acc, m| acc + mx)"), Incomplete, Invalid),
            (format!("{H} return fold(models, base, |acc, m| acc) + acc }}"), Complete, Invalid),
            (format!("{H} return fold(models, base, ||"), Invalid, Invalid),
            (format!("{H} return fold(models, base, |"), Incomplete, Incomplete),
            (format!("{H} return mean(models, axis=0) }}"), Complete, Complete),
            (format!("{H} return mean(models, axis = 0,) }}"), Complete, Complete),
            (format!("{H} return mean(models, ax"), Incomplete, Incomplete),
            (format!("{H} return mean(models, axiz=0"), Incomplete, Invalid),
            (format!("{H} return mean(models, base=="), Incomplete, Incomplete),
            (format!("{H} return mean(models, models=0"), Incomplete, Invalid),
            (format!("{H} return meen(models)"), Incomplete, Incomplete),
            (format!("{H} return meen(models) }}"), Complete, Incomplete),
            (format!("{H} return meen(models) }}\nfn meen(xs: [Tensor]) -> Tensor {{ return xs[0] }}"), Incomplete, Incomplete),
            (format!("{H} return meen(models) }}\nfn meen(xs: [Tensor]) -> Tensor {{ return xs[0] }}\nmerge g(base: Tensor, models: [Tensor]) -> Tensor {{ return base }}"), Complete, Complete),
            (format!("{H} return meen(ys=models) }}\nfn meen(xs: [Tensor]) -> Tensor"), Incomplete, Invalid),
            (format!("{H} return meen(xs=models) }}\nfn meen(xs: [Tensor]) -> Tensor"), Incomplete, Incomplete),
            ("fn a(x: Tensor) -> Tensor { return b(x) }\nfn b(x: Tensor) -> Tensor { return a(x) }".into(), Incomplete, Invalid),
            ("fn a(x: Tensor) -> Tensor { return b(x) }\nfn b(x: Tensor) -> Tensor { return x }".into(), Incomplete, Incomplete),
            (format!("{H} return mean"), Incomplete, Incomplete),
            (format!("{H} return mean "), Incomplete, Incomplete),
            (format!("{H} return mean + base"), Incomplete, Invalid),
            (format!("{H} let x = base; let y: Tensor = x * 2.0; return y }}"), Complete, Complete),
            (format!("{H} let x = base return x }}"), Complete, Complete),
            (format!("{H} return x }}"), Complete, Invalid),
            (format!("{H} let x = x;"), Incomplete, Invalid),
            (format!("{H} return {{ let t = base; t * 2.0 }} }}"), Complete, Complete),
            (format!("{H} return {{ let t = base; t }} + t }}"), Complete, Invalid),
            (format!("{H} return {{ let t = base t }}"), Incomplete, Incomplete),
            (format!("{H} return {{ let t = base [base, base] }} }}"), Complete, Complete),
            (format!("{H} return {{ letter }} }}"), Complete, Invalid),
            (format!("{H} return {{ let letter = base; letter }} }}"), Complete, Complete),
            (format!("{H} return if layer > 2 {{ base }} else if kind == \"mlp\" {{ base }} else {{ models[0] }} }}"), Complete, Complete),
            (format!("{H} return if base {{ base }} el"), Incomplete, Incomplete),
            (format!("{H} return if base {{ base }} }}"), Invalid, Invalid),
            (format!("{H} return n_lay"), Incomplete, Incomplete),
            (format!("{H} return load(\"x\") }}"), Complete, Invalid),
            (format!("{H} returnbase }}"), Complete, Complete),
            (format!("{H} letx = base; return x }}"), Complete, Complete),
            (format!("{H} return iffy }}"), Complete, Invalid),
            (format!("{H} return iff {{ base }} else {{ base }} }}"), Complete, Invalid),
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
        ];
        let mut failures = Vec::new();
        for (t, want_u, want_s) in &cases {
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
}
