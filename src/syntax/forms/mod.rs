//! The language's grammar in the forms other engines read, derived from its one source,
//! `grammar/merge.pest`, read as data with `pest_meta` (never rewritten by hand):
//! Lark ([`lark`]: llguidance, Python's `lark`, vLLM's `structured_outputs`) and GBNF
//! ([`gbnf`]: llama.cpp's `grammar`).
//!
//! How pest's constructs map:
//! - a normal or silent rule becomes a rule; an atomic one (`@{}`) a terminal (a
//!   lexeme: a regular expression, no whitespace inside);
//! - pest's implicit `(WHITESPACE | COMMENT)*` between the items of a sequence and of a
//!   repetition becomes `%ignore` in Lark and an explicit `ws` in GBNF;
//! - `!X ~ ANY` of single characters becomes a negated character class; `!keyword ~
//!   ident` becomes an identifier expression that excludes the keywords (built from a
//!   trie of them, a plain regular language every engine reads);
//! - the other negative lookaheads, `!ident_char` after a word operator and `!"="`
//!   after a keyword argument's `=`, have no counterpart in a context-free grammar and
//!   are dropped ([`Grammar::dropped`] says which). Dropping `!"="` changes nothing (no
//!   expression starts with `=`); dropping `!ident_char` lets the engines read a word
//!   operator glued to the next word (`a orb` as `a or b`), which pest rejects. The
//!   tests measure every difference against pest.
//!
//! [`Shape::Loop`] is what the self-develop loop runs, laid out as guided decoding
//! writes it (`develop::guided::tidy` and `header_fits`): one merge whose header, on one
//! line, is `merge NAME(base: Tensor, models: [Tensor], NAME: TYPE = LITERAL, ...) ->
//! Tensor {`; then one statement a line, at most [`LOOP_STATEMENTS`] `let`s and a
//! `return`, then `}`; spaces between lexemes (at most 8 in a row), no comments, tabs or
//! blank lines.

pub mod gbnf;
pub mod lark;
pub mod scoped;

use pest_meta::ast::{Expr, Rule as PestRule, RuleType};
use std::collections::{BTreeMap, BTreeSet};

/// The source of the language's syntax.
pub const PEST: &str = include_str!("../../../grammar/merge.pest");

/// Which programs a derived grammar describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Every program of the language (pest's `program`).
    Program,
    /// One merge with the header the self-develop loop runs.
    Loop,
}

/// Parameters of a [`Shape::Loop`] header besides `base` and `models`
/// (`develop::guided::MAX_PARAMS`).
pub const LOOP_PARAMS: usize = 6;
/// `let` statements of a [`Shape::Loop`] body (`develop::guided::MAX_STATEMENTS`).
pub const LOOP_STATEMENTS: usize = 8;

/// A set of characters, or all characters but a set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Class {
    Of(BTreeSet<char>),
    Not(BTreeSet<char>),
}

impl Class {
    /// Maximal runs of consecutive characters, for `[a-z]`-style rendering.
    pub fn ranges(set: &BTreeSet<char>) -> Vec<(char, char)> {
        let mut out: Vec<(char, char)> = Vec::new();
        for &c in set {
            match out.last_mut() {
                Some((_, hi)) if (*hi as u32) + 1 == c as u32 => *hi = c,
                _ => out.push((c, c)),
            }
        }
        out
    }
}

/// `[...]` (or `[^...]`) of `set`, each character through `esc` (which escapes what the
/// format needs inside brackets), runs of three or more as ranges.
pub fn bracket(set: &BTreeSet<char>, negated: bool, esc: &dyn Fn(char) -> String) -> String {
    let mut o = String::from(if negated { "[^" } else { "[" });
    for (a, b) in Class::ranges(set) {
        o.push_str(&esc(a));
        if b != a {
            if b as u32 > a as u32 + 1 {
                o.push('-');
            }
            o.push_str(&esc(b));
        }
    }
    o.push(']');
    o
}

/// One grammar expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Lit(String),
    Class(Class),
    /// A rule or terminal by name.
    Ref(String),
    Seq(Vec<Node>),
    Alt(Vec<Node>),
    Opt(Box<Node>),
    Star(Box<Node>),
    Plus(Box<Node>),
}

/// A rule (whitespace may separate its items) or a terminal (`token`: none may).
#[derive(Clone, Debug)]
pub struct Def {
    pub name: String,
    pub token: bool,
    pub body: Node,
}

/// A derived grammar: its definitions (the first is the start), what is skipped between
/// items (pest's WHITESPACE and COMMENT), and the lookaheads that were dropped.
#[derive(Clone, Debug)]
pub struct Grammar {
    pub defs: Vec<Def>,
    pub skip: Vec<(String, Node)>,
    pub dropped: Vec<String>,
}

/// Why the pest grammar could not be derived: a construct with no counterpart.
#[derive(Debug, thiserror::Error)]
pub enum FormError {
    #[error("grammar/merge.pest does not parse: {0}")]
    Pest(String),
    #[error(
        "grammar/merge.pest, rule `{rule}`: {what} has no counterpart in a context-free grammar"
    )]
    Unsupported { rule: String, what: String },
}

/// The grammar of `shape`, derived from [`PEST`].
pub fn derive(shape: Shape) -> Result<Grammar, FormError> {
    let rules = pest_rules(PEST)?;
    let mut d = Deriver {
        rules: rules.iter().map(|r| (r.name.clone(), r)).collect(),
        keywords: Vec::new(),
        dropped: Vec::new(),
        rule: String::new(),
    };
    d.keywords = d.keyword_list()?;
    let mut defs = Vec::new();
    let start = match shape {
        Shape::Program => {
            let program = d.get("program")?;
            Def {
                name: "start".into(),
                token: false,
                body: d.rule_node("program", &program.expr)?,
            }
        }
        Shape::Loop => Def {
            name: "start".into(),
            token: false,
            body: loop_start(),
        },
    };
    defs.push(start);
    if shape == Shape::Loop {
        defs.extend(loop_defs());
        defs.extend(loop_body());
    }
    // Every rule reachable from the start, in the order first referenced.
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut i = 0;
    while i < defs.len() {
        let mut refs = Vec::new();
        collect_refs(&defs[i].body, &mut refs);
        for r in refs {
            if seen.insert(r.clone()) && !defs.iter().any(|d| d.name == r) {
                defs.push(d.def(&r)?);
            }
        }
        i += 1;
    }
    let skip = match shape {
        Shape::Program => ["WHITESPACE", "COMMENT"]
            .iter()
            .map(|n| Ok((n.to_string(), d.token_node(n, &d.get(n)?.expr)?)))
            .collect::<Result<Vec<_>, FormError>>()?,
        // Spaces only: lines end at statements (LOOP_NL).
        Shape::Loop => vec![("SPACE".to_string(), Node::Lit(" ".into()))],
    };
    Ok(Grammar {
        defs,
        skip,
        dropped: d.dropped,
    })
}

fn pest_rules(src: &str) -> Result<Vec<PestRule>, FormError> {
    let pairs = pest_meta::parser::parse(pest_meta::parser::Rule::grammar_rules, src)
        .map_err(|e| FormError::Pest(e.to_string()))?;
    pest_meta::parser::consume_rules(pairs).map_err(|es| {
        FormError::Pest(
            es.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        )
    })
}

fn collect_refs(n: &Node, out: &mut Vec<String>) {
    match n {
        Node::Ref(r) => out.push(r.clone()),
        Node::Seq(v) | Node::Alt(v) => v.iter().for_each(|x| collect_refs(x, out)),
        Node::Opt(x) | Node::Star(x) | Node::Plus(x) => collect_refs(x, out),
        Node::Lit(_) | Node::Class(_) => {}
    }
}

/// A terminal's name: pest's, upper-cased (Lark's convention for terminals).
fn token_name(rule: &str) -> String {
    rule.to_ascii_uppercase()
}

fn is_token(r: &PestRule) -> bool {
    matches!(r.ty, RuleType::Atomic | RuleType::CompoundAtomic)
}

struct Deriver<'a> {
    rules: BTreeMap<String, &'a PestRule>,
    keywords: Vec<String>,
    dropped: Vec<String>,
    /// The rule being derived, for messages.
    rule: String,
}

impl<'a> Deriver<'a> {
    fn get(&self, name: &str) -> Result<&'a PestRule, FormError> {
        self.rules
            .get(name)
            .copied()
            .ok_or_else(|| FormError::Unsupported {
                rule: self.rule.clone(),
                what: format!("a reference to `{name}`, which is not defined"),
            })
    }

    fn unsupported(&self, what: impl Into<String>) -> FormError {
        FormError::Unsupported {
            rule: self.rule.clone(),
            what: what.into(),
        }
    }

    /// The definition a reference names (rule name, or a terminal's upper-cased name).
    fn def(&mut self, name: &str) -> Result<Def, FormError> {
        let pest = self
            .rules
            .values()
            .find(|r| r.name == name || (is_token(r) && token_name(&r.name) == name))
            .copied()
            .ok_or_else(|| self.unsupported(format!("no rule `{name}`")))?;
        self.rule = pest.name.clone();
        Ok(if is_token(pest) {
            Def {
                name: token_name(&pest.name),
                token: true,
                body: self.token_node(&pest.name, &pest.expr)?,
            }
        } else {
            Def {
                name: pest.name.clone(),
                token: false,
                body: self.rule_node(&pest.name, &pest.expr)?,
            }
        })
    }

    /// The words of pest's `keyword` rule.
    fn keyword_list(&self) -> Result<Vec<String>, FormError> {
        let mut out = Vec::new();
        fn strs(e: &Expr, out: &mut Vec<String>) {
            match e {
                Expr::Str(s) => out.push(s.clone()),
                Expr::Choice(a, b) | Expr::Seq(a, b) => {
                    strs(a, out);
                    strs(b, out);
                }
                _ => {}
            }
        }
        strs(&self.get("keyword")?.expr, &mut out);
        Ok(out)
    }

    /// An expression of a normal rule.
    fn rule_node(&mut self, rule: &str, e: &Expr) -> Result<Node, FormError> {
        self.rule = rule.to_string();
        Ok(match e {
            Expr::Str(s) => Node::Lit(s.clone()),
            Expr::Ident(n) if n == "SOI" || n == "EOI" => Node::Seq(vec![]),
            Expr::Ident(n) => {
                let r = self.get(n)?;
                Node::Ref(if is_token(r) {
                    token_name(n)
                } else {
                    n.clone()
                })
            }
            Expr::Seq(..) => {
                let mut items = Vec::new();
                for x in flatten_seq(e) {
                    if let Expr::NegPred(p) = x {
                        self.drop_lookahead(rule, p)?;
                        continue;
                    }
                    let n = self.rule_node(rule, x)?;
                    if n != Node::Seq(vec![]) {
                        items.push(n);
                    }
                }
                Node::Seq(items)
            }
            Expr::Choice(..) => Node::Alt(
                flatten_choice(e)
                    .into_iter()
                    .map(|x| self.rule_node(rule, x))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Opt(x) => Node::Opt(Box::new(self.rule_node(rule, x)?)),
            Expr::Rep(x) => Node::Star(Box::new(self.rule_node(rule, x)?)),
            Expr::RepOnce(x) => Node::Plus(Box::new(self.rule_node(rule, x)?)),
            other => return Err(self.unsupported(format!("`{other:?}`"))),
        })
    }

    /// A lookahead with no counterpart: allowed (and recorded) only where dropping it is
    /// understood (see the module's documentation).
    fn drop_lookahead(&mut self, rule: &str, p: &Expr) -> Result<(), FormError> {
        let what = match p {
            Expr::Ident(n) if n == "ident_char" => "!ident_char",
            Expr::Str(s) if s == "=" => "!\"=\"",
            other => return Err(self.unsupported(format!("the lookahead `!{other:?}`"))),
        };
        let note = format!("{what} in `{rule}`");
        if !self.dropped.contains(&note) {
            self.dropped.push(note);
        }
        Ok(())
    }

    /// An expression of an atomic rule (a terminal).
    fn token_node(&mut self, rule: &str, e: &Expr) -> Result<Node, FormError> {
        Ok(match e {
            Expr::Str(s) => Node::Lit(s.clone()),
            Expr::Insens(s) => Node::Seq(
                s.chars()
                    .map(|c| {
                        Node::Class(Class::Of(
                            [c.to_ascii_lowercase(), c.to_ascii_uppercase()].into(),
                        ))
                    })
                    .collect(),
            ),
            Expr::Range(a, b) => {
                let (a, b) = (unquote_char(a), unquote_char(b));
                Node::Class(Class::Of((a..=b).collect()))
            }
            Expr::Ident(n) => match builtin_class(n) {
                Some(c) => Node::Class(c),
                None => {
                    let r = self.get(n)?;
                    self.token_node(rule, &r.expr)?
                }
            },
            Expr::Seq(..) => self.token_seq(rule, &flatten_seq(e))?,
            Expr::Choice(..) => Node::Alt(
                flatten_choice(e)
                    .into_iter()
                    .map(|x| self.token_node(rule, x))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Opt(x) => Node::Opt(Box::new(self.token_node(rule, x)?)),
            Expr::Rep(x) => Node::Star(Box::new(self.token_node(rule, x)?)),
            Expr::RepOnce(x) => Node::Plus(Box::new(self.token_node(rule, x)?)),
            Expr::NegPred(p) => {
                self.drop_lookahead(rule, p)?;
                Node::Seq(vec![])
            }
            other => return Err(self.unsupported(format!("`{other:?}`"))),
        })
    }

    fn token_seq(&mut self, rule: &str, items: &[&Expr]) -> Result<Node, FormError> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < items.len() {
            match (items[i], items.get(i + 1)) {
                // `!X ~ ANY`: any character but X's.
                (Expr::NegPred(p), Some(Expr::Ident(any))) if any == "ANY" => {
                    let Some(Class::Of(set)) = self.class_of(rule, p)? else {
                        return Err(self.unsupported("`!X ~ ANY` where X is not single characters"));
                    };
                    out.push(Node::Class(Class::Not(set)));
                    i += 2;
                }
                // `!keyword ~ FIRST ~ REST*`: identifiers but the keywords.
                (Expr::NegPred(p), _) if matches!(&**p, Expr::Ident(k) if k == "keyword") => {
                    let [first, Expr::Rep(rest)] = &items[i + 1..] else {
                        return Err(self.unsupported("`!keyword` not followed by FIRST ~ REST*"));
                    };
                    let (Some(Class::Of(first)), Some(Class::Of(rest))) =
                        (self.class_of(rule, first)?, self.class_of(rule, rest)?)
                    else {
                        return Err(self.unsupported("an identifier that is not two classes"));
                    };
                    out.push(words_except(&first, &rest, &self.keywords));
                    i = items.len();
                }
                (x, _) => {
                    let n = self.token_node(rule, x)?;
                    if n != Node::Seq(vec![]) {
                        out.push(n);
                    }
                    i += 1;
                }
            }
        }
        Ok(if out.len() == 1 {
            out.pop().expect("one")
        } else {
            Node::Seq(out)
        })
    }

    /// The character class an expression of single characters matches, if it is one.
    fn class_of(&mut self, rule: &str, e: &Expr) -> Result<Option<Class>, FormError> {
        Ok(match self.token_node(rule, e)? {
            Node::Class(c) => Some(c),
            Node::Lit(s) if s.chars().count() == 1 => Some(Class::Of(s.chars().collect())),
            Node::Alt(v) => {
                let mut set = BTreeSet::new();
                for n in v {
                    match n {
                        Node::Class(Class::Of(s)) => set.extend(s),
                        Node::Lit(s) if s.chars().count() == 1 => set.extend(s.chars()),
                        _ => return Ok(None),
                    }
                }
                Some(Class::Of(set))
            }
            _ => None,
        })
    }
}

fn flatten_seq(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Seq(a, b) => {
            let mut v = flatten_seq(a);
            v.extend(flatten_seq(b));
            v
        }
        x => vec![x],
    }
}

fn flatten_choice(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Choice(a, b) => {
            let mut v = flatten_choice(a);
            v.extend(flatten_choice(b));
            v
        }
        x => vec![x],
    }
}

/// pest_meta keeps a range's ends quoted (`'0'`).
fn unquote_char(s: &str) -> char {
    s.trim_matches('\'').chars().next().unwrap_or('\0')
}

fn builtin_class(name: &str) -> Option<Class> {
    let set = |r: &[(char, char)]| Class::Of(r.iter().flat_map(|&(a, b)| a..=b).collect());
    Some(match name {
        "ASCII_DIGIT" => set(&[('0', '9')]),
        "ASCII_ALPHA" => set(&[('a', 'z'), ('A', 'Z')]),
        "ASCII_ALPHANUMERIC" => set(&[('a', 'z'), ('A', 'Z'), ('0', '9')]),
        "ANY" => Class::Not(BTreeSet::new()),
        _ => return None,
    })
}

/// Words `FIRST REST*` except the words in `except`, as a plain expression: a trie of
/// the excluded words, each branch either leaving the trie (then any REST*) or going on
/// (then ending only where no excluded word ends).
pub fn words_except(first: &BTreeSet<char>, rest: &BTreeSet<char>, except: &[String]) -> Node {
    let words: Vec<&str> = except.iter().map(String::as_str).collect();
    trie_node("", &words, first, rest, true)
}

fn trie_node(
    prefix: &str,
    words: &[&str],
    first: &BTreeSet<char>,
    rest: &BTreeSet<char>,
    root: bool,
) -> Node {
    let allowed = if root { first } else { rest };
    let depth = prefix.chars().count();
    let next: BTreeSet<char> = words
        .iter()
        .filter(|w| w.starts_with(prefix))
        .filter_map(|w| w.chars().nth(depth))
        .filter(|c| allowed.contains(c))
        .collect();
    let tail = Node::Star(Box::new(Node::Class(Class::Of(rest.clone()))));
    let mut alts = Vec::new();
    let leave: BTreeSet<char> = allowed.difference(&next).copied().collect();
    if !leave.is_empty() {
        alts.push(Node::Seq(vec![Node::Class(Class::Of(leave)), tail]));
    }
    for c in &next {
        let p = format!("{prefix}{c}");
        alts.push(Node::Seq(vec![
            Node::Lit(c.to_string()),
            trie_node(&p, words, first, rest, false),
        ]));
    }
    let body = if alts.len() == 1 {
        alts.pop().expect("one")
    } else {
        Node::Alt(alts)
    };
    // Ending here is allowed unless the prefix is itself an excluded word (or empty).
    if root || words.contains(&prefix) {
        body
    } else {
        Node::Opt(Box::new(body))
    }
}

/// The loop's start rule: the header the loop runs, then a merge body.
fn loop_start() -> Node {
    let lit = |s: &str| Node::Lit(s.to_string());
    let r = |s: &str| Node::Ref(s.to_string());
    // Up to LOOP_PARAMS parameters: nested options, which every engine reads.
    let mut params = Node::Opt(Box::new(r("loop_param")));
    for _ in 1..LOOP_PARAMS {
        params = Node::Opt(Box::new(Node::Seq(vec![r("loop_param"), params])));
    }
    // `merge ` with its space: a character-level engine (llama.cpp) would otherwise glue
    // the name to the keyword (`merge_x(` reads as `merge _x(` in pest's grammar).
    let mut items: Vec<Node> = [
        "merge ", "", "(", "base", ":", "Tensor", ",", "models", ":", "[", "Tensor", "]",
    ]
    .iter()
    .map(|s| if s.is_empty() { r("IDENT") } else { lit(s) })
    .collect();
    items.extend([
        params,
        Node::Opt(Box::new(lit(","))),
        lit(")"),
        lit("->"),
        lit("Tensor"),
        r("loop_body"),
    ]);
    Node::Seq(items)
}

/// The loop's body: one statement a line, at most [`LOOP_STATEMENTS`] `let`s, then the
/// `return`, then `}` (on the return's line or the next).
fn loop_body() -> Vec<Def> {
    let lit = |s: &str| Node::Lit(s.to_string());
    let r = |s: &str| Node::Ref(s.to_string());
    let lets = let_lines(LOOP_STATEMENTS);
    let ret = Node::Seq(vec![
        r("return_stmt"),
        Node::Opt(Box::new(lit(";"))),
        Node::Opt(Box::new(lit("\n"))),
    ]);
    vec![
        Def {
            name: "loop_body".into(),
            token: false,
            body: Node::Seq(vec![lit("{"), r("LOOP_NL"), lets, ret, lit("}")]),
        },
        Def {
            name: "LOOP_NL".into(),
            token: true,
            body: Node::Seq(vec![lit("\n"), Node::Star(Box::new(lit(" ")))]),
        },
    ]
}

/// At most `n` body lines of one `let` each (nested options, which every engine reads).
pub fn let_lines(n: usize) -> Node {
    let line = Node::Seq(vec![
        Node::Ref("let_stmt".into()),
        Node::Opt(Box::new(Node::Lit(";".into()))),
        Node::Ref("LOOP_NL".into()),
    ]);
    let mut lets = match n {
        0 => return Node::Seq(vec![]),
        _ => Node::Opt(Box::new(line.clone())),
    };
    for _ in 1..n {
        lets = Node::Opt(Box::new(Node::Seq(vec![line.clone(), lets])));
    }
    lets
}

/// The loop header's parameters: `, NAME: TYPE = LITERAL` with a scalar literal of the
/// type (of its elements', for a list).
fn loop_defs() -> Vec<Def> {
    let lit = |s: &str| Node::Lit(s.to_string());
    let r = |s: &str| Node::Ref(s.to_string());
    let signed = |t: &str| Node::Seq(vec![Node::Opt(Box::new(lit("-"))), r(t)]);
    let typed = |ty: Node, value: Node| Node::Seq(vec![ty, lit("="), value]);
    let scalar_types = [("f32", "NUMBER"), ("int", "LOOP_INT")];
    let mut alts: Vec<Node> = scalar_types
        .iter()
        .map(|(t, v)| typed(lit(t), signed(v)))
        .collect();
    alts.push(typed(lit("bool"), r("BOOLEAN")));
    // A list's default is a scalar, one value for every model: a list literal has a
    // length, which the testbed's number of models need not match.
    for (t, v) in scalar_types {
        let ty = Node::Seq(vec![lit("["), lit(t), lit("]")]);
        alts.push(typed(ty, signed(v)));
    }
    let bools = Node::Seq(vec![lit("["), lit("bool"), lit("]")]);
    alts.push(typed(bools, r("BOOLEAN")));
    vec![
        Def {
            name: "loop_param".into(),
            token: false,
            body: Node::Seq(vec![lit(","), r("IDENT"), lit(":"), Node::Alt(alts)]),
        },
        Def {
            name: "LOOP_INT".into(),
            token: true,
            body: Node::Plus(Box::new(Node::Class(Class::Of(('0'..='9').collect())))),
        },
    ]
}
