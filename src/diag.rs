//! Spans, diagnostics and their rendering: the one place user-facing errors are made printable.

use serde::Serialize;
use std::fmt;

/// A byte range in one source text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span { start, end }
    }
    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        })
    }
}

/// A problem in a user's program, with where it is and, when we can tell, what to do.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    pub span: Span,
    /// Short text shown under the caret.
    pub label: Option<String>,
    /// What to do about it ("did you mean `quantile`?").
    pub hint: Option<String>,
    /// Further context, e.g. "while checking for 1-D tensors".
    pub notes: Vec<String>,
    /// Other places worth showing ("first defined here").
    pub related: Vec<(Span, String)>,
}

impl Diagnostic {
    pub fn error(span: Span, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            span,
            label: None,
            hint: None,
            notes: Vec::new(),
            related: Vec::new(),
        }
    }
    pub fn with_related(mut self, span: Span, label: impl Into<String>) -> Self {
        self.related.push((span, label.into()));
        self
    }
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub fn with_hint_opt(mut self, hint: Option<String>) -> Self {
        if hint.is_some() {
            self.hint = hint;
        }
        self
    }
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }
}

/// 1-based line and column (in characters) of byte offsets.
pub struct LineIndex<'a> {
    src: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(src: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { src, line_starts }
    }
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(self.src, offset.min(self.src.len()));
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let col = self.src[self.line_starts[line]..offset].chars().count();
        (line + 1, col + 1)
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Diagnostic as the JSON consumers (the self-develop loop, editors) read it.
#[derive(Serialize, Debug, Clone, PartialEq)]
pub struct JsonDiagnostic {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub severity: Severity,
    pub message: String,
    pub hint: Option<String>,
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn to_json(&self, file: &str, src: &str) -> JsonDiagnostic {
        let idx = LineIndex::new(src);
        let (line, column) = idx.line_col(self.span.start);
        let (end_line, end_column) = idx.line_col(self.span.end);
        JsonDiagnostic {
            file: file.to_string(),
            line,
            column,
            end_line,
            end_column,
            severity: self.severity,
            message: self.message.clone(),
            hint: self.hint.clone(),
            notes: self.notes.clone(),
        }
    }

    /// Renders rustc-style: file:line:col, the source line, a caret, the hint.
    pub fn render(&self, file: &str, src: &str, color: bool) -> String {
        use ariadne::{Config, Label, Report, ReportKind, Source};
        let kind = match self.severity {
            Severity::Error => ReportKind::Error,
            Severity::Warning => ReportKind::Warning,
        };
        let start = floor_char_boundary(src, self.span.start.min(src.len()));
        let end = floor_char_boundary(src, self.span.end.min(src.len())).max(start);
        // ariadne counts characters, not bytes.
        let cstart = src[..start].chars().count();
        let cend = cstart + src[start..end].chars().count();
        let (line, col) = LineIndex::new(src).line_col(start);
        let label_text = self.label.clone().unwrap_or_else(|| self.message.clone());
        let mut report = Report::build(kind, (file, cstart..cend))
            .with_config(
                Config::default()
                    .with_color(color)
                    .with_index_type(ariadne::IndexType::Char),
            )
            .with_message(format!("{} (at {file}:{line}:{col})", self.message))
            .with_label(Label::new((file, cstart..cend.max(cstart))).with_message(label_text));
        for (span, label) in &self.related {
            let s = floor_char_boundary(src, span.start.min(src.len()));
            let e = floor_char_boundary(src, span.end.min(src.len())).max(s);
            let cs = src[..s].chars().count();
            let ce = cs + src[s..e].chars().count();
            report = report.with_label(Label::new((file, cs..ce)).with_message(label));
        }
        if let Some(h) = &self.hint {
            report = report.with_help(h);
        }
        for n in &self.notes {
            report = report.with_note(n);
        }
        let mut out = Vec::new();
        // Writing to a Vec cannot fail.
        let _ = report.finish().write((file, Source::from(src)), &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Renders many diagnostics, sorted by position, separated by blank lines.
pub fn render_all(diags: &[Diagnostic], file: &str, src: &str, color: bool) -> String {
    let mut sorted: Vec<&Diagnostic> = diags.iter().collect();
    sorted.sort_by_key(|d| (d.span.start, d.span.end));
    sorted
        .iter()
        .map(|d| d.render(file, src, color))
        .collect::<Vec<_>>()
        .join("")
}

/// Whether to colour diagnostics: only on a terminal, and never with NO_COLOR.
pub fn use_color() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}
