//! The line editor around a [`Session`]: history, completion, multi-line input.

use super::commands::COMMANDS;
use super::{Output, Session};
use rustyline::completion::{Completer, FilenameCompleter, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::{ValidationContext, ValidationResult, Validator};
use rustyline::{Context, Editor, Helper};
use std::path::PathBuf;

const PROMPT: &str = "mergec> ";

/// Runs the interactive REPL on a terminal; returns the exit code.
pub fn run_terminal(seed: u64, files: &[String]) -> i32 {
    let mut session = Session::new(seed);
    session.set_color(use_color());
    let mut editor = match Editor::<ReplHelper, DefaultHistory>::new() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot start the line editor: {e}");
            return 1;
        }
    };
    println!(
        "mergec repl (seed {seed}): tensor expressions with every stdlib merge in scope. \
         :help for help, :q to quit."
    );
    for n in session.startup_notes() {
        eprintln!("{n}");
    }
    // Piped input (a script): any error makes the exit code 1.
    let mut had_error = false;
    if !files.is_empty() {
        let out = session.load_files(files);
        had_error |= out.is_error;
        print_output(&out);
    }
    editor.set_helper(Some(ReplHelper::new(session.completion_names())));
    let history = history_path();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    loop {
        match editor.readline(PROMPT) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                let out = session.eval_line(&line);
                had_error |= out.is_error;
                print_output(&out);
                if out.quit {
                    break;
                }
                if let Some(h) = editor.helper_mut() {
                    h.names = session.completion_names();
                }
            }
            // Ctrl-C cancels the line being typed.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                eprintln!("error: {e}");
                break;
            }
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    if had_error && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        1
    } else {
        0
    }
}

fn print_output(out: &Output) {
    if out.text.is_empty() {
        return;
    }
    if out.is_error {
        eprintln!("{}", out.text.trim_end());
    } else {
        println!("{}", out.text.trim_end());
    }
}

fn use_color() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none()
        && std::io::stderr().is_terminal()
        && std::io::stdout().is_terminal()
}

/// `$MERGEC_HISTORY`, else `~/.mergec_history`; none without a home directory.
fn history_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MERGEC_HISTORY") {
        return Some(PathBuf::from(p));
    }
    std::env::home_dir().map(|h| h.join(".mergec_history"))
}

/// Completion of names, commands and paths; continuation of unclosed brackets.
struct ReplHelper {
    names: Vec<String>,
    files: FilenameCompleter,
}

impl ReplHelper {
    fn new(names: Vec<String>) -> Self {
        ReplHelper {
            names,
            files: FilenameCompleter::new(),
        }
    }
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = line.get(..pos).unwrap_or(line);
        let in_string = before.matches('"').count() % 2 == 1;
        let path_cmd = [":load ", ":l ", ":tensors "]
            .iter()
            .any(|c| before.trim_start().starts_with(c));
        if in_string || path_cmd {
            return self.files.complete(line, pos, ctx);
        }
        let start = before
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |i| i + 1);
        let word = &before[start..];
        let pairs = |it: &mut dyn Iterator<Item = String>| -> Vec<Pair> {
            it.map(|n| Pair {
                display: n.clone(),
                replacement: n,
            })
            .collect()
        };
        let found = if let Some(cmd) = word.strip_prefix(':') {
            pairs(
                &mut COMMANDS
                    .iter()
                    .filter(|c| c.starts_with(cmd))
                    .map(|c| format!(":{c}")),
            )
        } else if word.is_empty() {
            Vec::new()
        } else {
            pairs(&mut self.names.iter().filter(|n| n.starts_with(word)).cloned())
        };
        Ok((start, found))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {}

impl Validator for ReplHelper {
    fn validate(&self, ctx: &mut ValidationContext) -> rustyline::Result<ValidationResult> {
        let input = ctx.input();
        Ok(
            if !input.trim_start().starts_with(':') && open_brackets(input) > 0 {
                ValidationResult::Incomplete
            } else {
                ValidationResult::Valid(None)
            },
        )
    }
}

impl Helper for ReplHelper {}

/// How many ( [ { are still open, ignoring strings and `#` comments.
pub fn open_brackets(src: &str) -> i64 {
    let mut depth = 0i64;
    let mut in_str = false;
    for line in src.lines() {
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match (in_str, c) {
                (true, '\\') => {
                    chars.next();
                }
                (true, '"') | (false, '"') => in_str = !in_str,
                (true, _) => {}
                (false, '#') => break,
                (false, '(' | '[' | '{') => depth += 1,
                (false, ')' | ']' | '}') => depth -= 1,
                _ => {}
            }
        }
        in_str = false;
    }
    depth
}
