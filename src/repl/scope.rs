//! The merges and helpers a REPL session can call: the stdlib, loaded files and
//! definitions typed at the prompt, combined into one program for the checker.

use crate::diag::{Diagnostic, render_all};
use crate::syntax::ast::{Item, ItemKind, Program};
pub use crate::syntax::print::item_header;

/// Where an item came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// An embedded stdlib file (`ties.merge`).
    Stdlib(&'static str),
    /// A file loaded with `:load` (the path as given).
    File(String),
    /// Typed at the prompt.
    Repl,
}

impl Origin {
    pub fn label(&self) -> String {
        match self {
            Origin::Stdlib(f) => format!("stdlib/{f}"),
            Origin::File(p) => p.clone(),
            Origin::Repl => "<repl>".into(),
        }
    }
}

/// One item and the source text its spans point into.
struct Entry {
    item: Item,
    origin: Origin,
    source: std::rc::Rc<str>,
}

/// Every item in scope. User items (files, prompt) shadow stdlib items of the
/// same name; two different files may not define the same name.
#[derive(Default)]
pub struct Scope {
    entries: Vec<Entry>,
    program: Program,
}

/// What adding a program did: lines to print.
pub struct Added {
    pub lines: Vec<String>,
}

impl Scope {
    /// The stdlib's merges; a stdlib file that does not check is skipped with a warning.
    pub fn with_stdlib() -> (Scope, Vec<String>) {
        let mut scope = Scope::default();
        let mut warnings = Vec::new();
        for (file, src) in crate::stdlib::SOURCES {
            match crate::types::check_source(src) {
                Ok((program, _)) => {
                    let source: std::rc::Rc<str> = (*src).into();
                    for item in program.items {
                        if scope.find(&item.name.name).is_none() {
                            scope.entries.push(Entry {
                                item,
                                origin: Origin::Stdlib(file),
                                source: source.clone(),
                            });
                        }
                    }
                }
                Err(_) => warnings.push(format!(
                    "warning: stdlib/{file} does not check; its merges are unavailable"
                )),
            }
        }
        scope.rebuild();
        (scope, warnings)
    }

    /// The combined program the checker sees.
    pub fn program(&self) -> &Program {
        &self.program
    }

    fn find(&self, name: &str) -> Option<&Entry> {
        self.visible().find(|e| e.item.name.name == name)
    }

    /// Entries the program holds: user items, then stdlib items not shadowed.
    fn visible(&self) -> impl Iterator<Item = &Entry> {
        let user = self
            .entries
            .iter()
            .filter(|e| !matches!(e.origin, Origin::Stdlib(_)));
        let stdlib = self.entries.iter().filter(move |e| {
            matches!(e.origin, Origin::Stdlib(_))
                && !self.entries.iter().any(|u| {
                    !matches!(u.origin, Origin::Stdlib(_)) && u.item.name.name == e.item.name.name
                })
        });
        user.chain(stdlib)
    }

    fn rebuild(&mut self) {
        let items = self.visible().map(|e| e.item.clone()).collect();
        self.program = Program { items };
    }

    /// Adds a checked program. Reloading a file replaces all its items; a prompt
    /// definition replaces the prompt's item of that name. A name defined by
    /// another file (or the prompt) is a clash and nothing is added.
    pub fn add(&mut self, origin: Origin, source: &str, program: Program) -> Result<Added, String> {
        let mut clashes = Vec::new();
        for item in &program.items {
            let name = &item.name.name;
            let other = self
                .entries
                .iter()
                .find(|e| &e.item.name.name == name && clashes_with(&e.origin, &origin));
            if let Some(e) = other {
                clashes.push(format!(
                    "`{name}` is already defined by {}",
                    e.origin.label()
                ));
            }
        }
        if !clashes.is_empty() {
            return Err(format!(
                "{} not loaded: {}\n  help: rename the item, or reload the file that defines it",
                origin.label(),
                clashes.join("; ")
            ));
        }
        let names: Vec<&str> = program.items.iter().map(|i| i.name.name.as_str()).collect();
        let replaced = |e: &Entry| match (&e.origin, &origin) {
            (Origin::File(a), Origin::File(b)) => a == b,
            (Origin::Repl, Origin::Repl) => names.contains(&e.item.name.name.as_str()),
            _ => false,
        };
        let before: Vec<String> = self
            .entries
            .iter()
            .filter(|e| replaced(e))
            .map(|e| e.item.name.name.clone())
            .collect();
        self.entries.retain(|e| !replaced(e));
        let mut lines = Vec::new();
        let src: std::rc::Rc<str> = source.into();
        for item in program.items {
            let mut line = format!("  {}", item_header(&item));
            let shadowed = self.entries.iter().find(|e| {
                matches!(e.origin, Origin::Stdlib(_)) && e.item.name.name == item.name.name
            });
            if let Some(s) = shadowed {
                line.push_str(&format!("\n    (shadows {})", s.origin.label()));
            } else if before.contains(&item.name.name) {
                line.push_str("   (replaces the earlier definition)");
            }
            lines.push(line);
            self.entries.push(Entry {
                item,
                origin: origin.clone(),
                source: src.clone(),
            });
        }
        self.rebuild();
        Ok(Added { lines })
    }

    /// Names of every visible item (for completion and suggestions).
    pub fn names(&self) -> Vec<String> {
        self.visible().map(|e| e.item.name.name.clone()).collect()
    }

    /// Headers of the user's items (files and prompt), with where they came from.
    pub fn user_items(&self) -> Vec<String> {
        self.visible()
            .filter(|e| !matches!(e.origin, Origin::Stdlib(_)))
            .map(|e| format!("{}   ({})", item_header(&e.item), e.origin.label()))
            .collect()
    }

    /// Headers of the stdlib's merges (shadowed ones too).
    pub fn stdlib_items(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| matches!(e.origin, Origin::Stdlib(_)) && e.item.kind == ItemKind::Merge)
            .map(|e| item_header(&e.item))
            .collect()
    }

    /// An item's header line, if it is in scope.
    pub fn header(&self, name: &str) -> Option<String> {
        self.find(name)
            .map(|e| format!("{}   ({})", item_header(&e.item), e.origin.label()))
    }

    /// The source text of an item and where it is from.
    pub fn source_of(&self, name: &str) -> Option<(String, String)> {
        let e = self.find(name)?;
        let text = e.source.get(e.item.span.start..e.item.span.end)?;
        Some((e.origin.label(), text.to_string()))
    }

    /// Renders diagnostics of a REPL line. One raised inside an inlined merge or
    /// helper is shown against that item's own file.
    pub fn render(&self, diags: &[Diagnostic], line: &str, color: bool) -> String {
        let mut out = String::new();
        for d in diags {
            match self.home_of(d) {
                Some(e) => {
                    // Related places outside the item (the call in the REPL line) are
                    // in another text: leave them out rather than point amiss.
                    let mut d = d.clone();
                    d.related.retain(|(s, _)| within(*s, e.item.span));
                    out.push_str(&render_all(&[d], &e.origin.label(), &e.source, color));
                }
                None => out.push_str(&render_all(std::slice::from_ref(d), "<repl>", line, color)),
            }
        }
        out
    }

    /// The item whose text a diagnostic's span points into, if not the REPL line:
    /// named by the inlining note, or by a return-type mismatch at its declaration.
    fn home_of(&self, d: &Diagnostic) -> Option<&Entry> {
        let inlined = d.notes.iter().find_map(|n| {
            n.strip_prefix("while inlining the call to `")
                .and_then(|r| r.strip_suffix('`'))
        });
        let declared = || {
            let rest = d.message.strip_prefix('`')?;
            let (name, tail) = rest.split_once('`')?;
            (d.label.as_deref() == Some("declared here") && tail.starts_with(" returns"))
                .then_some(name)
        };
        let name = inlined.or_else(declared)?;
        self.find(name).filter(|e| within(d.span, e.item.span))
    }
}

fn within(inner: crate::diag::Span, outer: crate::diag::Span) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// Whether a new item from `new` may not take a name held by an item from `old`.
fn clashes_with(old: &Origin, new: &Origin) -> bool {
    match (old, new) {
        (Origin::Stdlib(_), _) | (Origin::Repl, Origin::Repl) => false,
        (Origin::File(a), Origin::File(b)) => a != b,
        _ => true,
    }
}
