//! Meta-commands (`:help`, `:load`, `:type`, ...) and definitions typed at the prompt.

use super::scope::Origin;
use super::{DEFAULT_N_LAYERS, DEFAULT_TENSOR, Output, Session};
use crate::interp::TensorFacts;
use crate::types::did_you_mean;

/// Every command name, for suggestions and completion.
pub const COMMANDS: &[&str] = &[
    "help", "quit", "q", "exit", "vars", "type", "load", "methods", "builtins", "seed", "source",
    "tensors", "facts",
];

const HELP: &str = "\
Type an expression to evaluate it, or bind its value with `let`:
  let a = [[1, 2], [3, 4]]                      a tensor literal
  let b = randn(4, 4)                           seeded normal values; each call draws anew
  let m = [b + 0.1 * randn(4, 4), b - 0.1 * randn(4, 4)]    a list of models
  ties(b, m, density=[0.5, 0.5])                every stdlib merge is callable by name
  let w = load(\"DIR\", \"model.layers.0.mlp.up_proj.weight\")
                                                a tensor from a .safetensors file or a
                                                model directory (F32, F16, BF16)
  merge avg(base: Tensor, models: [Tensor]) -> Tensor { return mean(models) }
                                                define a merge (or a fn) at the prompt

Commands:
  :type EXPR            the type of EXPR without evaluating it (or a merge's signature)
  :vars                 the bindings and their types
  :load FILE...         load .merge files: their merges and fns become callable
                        (they shadow stdlib merges of the same name; :load again to update)
  :methods              the stdlib merges      :builtins   the builtin functions
  :source NAME          the source of a merge or fn in scope
  :tensors PATH [TEXT]  the tensors of a checkpoint (only names containing TEXT)
  :seed N               set the seed and restart randn (a session replays identically)
  :facts [NAME [N]]     show or set the facts name, kind, layer and n_layers
  :help   :quit (:q, Ctrl-D)

Tab completes names and paths; an unclosed ( [ { continues on the next line;
Ctrl-C cancels the line.";

pub fn help_text() -> String {
    format!(
        "{HELP}\nThe facts describe `{DEFAULT_TENSOR}` (n_layers = {DEFAULT_N_LAYERS}) until :facts changes them."
    )
}

/// Runs `:cmd args` (the text after the colon).
pub fn run(s: &mut Session, text: &str) -> Output {
    let text = text.trim();
    let (cmd, arg) = match text.find(char::is_whitespace) {
        Some(i) => (&text[..i], text[i..].trim()),
        None => (text, ""),
    };
    match cmd {
        "help" | "h" | "?" => Output::ok(help_text()),
        "quit" | "q" | "exit" => Output {
            quit: true,
            ..Output::default()
        },
        "vars" => vars(s),
        "type" | "t" => type_cmd(s, arg),
        "load" | "l" => {
            let files: Vec<String> = arg.split_whitespace().map(unquote).collect();
            load_files(s, &files)
        }
        "methods" => methods(s),
        "builtins" => Output::ok(crate::card::builtins_text().trim_end().to_string()),
        "seed" => seed(s, arg),
        "source" => source(s, arg),
        "tensors" => tensors(s, arg),
        "facts" => facts(s, arg),
        "" => Output::error("error: a command name follows `:`, e.g. :help"),
        other => {
            let cands: Vec<String> = COMMANDS.iter().map(|c| format!(":{c}")).collect();
            let hint = did_you_mean(&format!(":{other}"), cands.iter().map(String::as_str))
                .unwrap_or_else(|| "see :help".into());
            Output::error(format!("error: unknown command `:{other}` ({hint})"))
        }
    }
}

fn unquote(s: &str) -> String {
    s.trim_matches(|c| c == '"' || c == '\'').to_string()
}

fn vars(s: &Session) -> Output {
    if s.vars.is_empty() {
        return Output::ok("no bindings yet (try `let b = randn(4, 4)`)");
    }
    let width = s.vars.iter().map(|b| b.name.len()).max().unwrap_or(0);
    let lines: Vec<String> = s
        .vars
        .iter()
        .map(|b| format!("{:<width$} : {}", b.name, b.ty))
        .collect();
    Output::ok(lines.join("\n"))
}

fn type_cmd(s: &Session, arg: &str) -> Output {
    if arg.is_empty() {
        return Output::error("error: usage: :type EXPR, e.g. :type randn(2, 3) + 1");
    }
    let is_ident = arg.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if is_ident
        && s.var(arg).is_none()
        && let Some(h) = s.scope.header(arg)
    {
        return Output::ok(h);
    }
    s.type_of(arg)
}

/// Loads .merge files in order; each is parsed and checked on its own.
pub fn load_files(s: &mut Session, files: &[String]) -> Output {
    if files.is_empty() {
        return Output::error("error: usage: :load FILE.merge [MORE.merge ...]");
    }
    let mut text = Vec::new();
    let mut failed = false;
    for file in files {
        let src = match crate::files::read_program(file) {
            Ok(src) => src,
            Err(msg) => {
                text.push(format!("error: {msg}"));
                failed = true;
                continue;
            }
        };
        match add_source(s, Origin::File(file.clone()), &src, file) {
            Ok(lines) => {
                text.push(format!("loaded {file}:"));
                text.extend(lines);
            }
            Err(msg) => {
                text.push(msg);
                failed = true;
            }
        }
    }
    let text = text.join("\n");
    if failed {
        Output::error(text)
    } else {
        Output::ok(text)
    }
}

/// A `merge` or `fn` typed at the prompt.
pub fn define(s: &mut Session, line: &str) -> Output {
    match add_source(s, Origin::Repl, line, "<repl>") {
        Ok(lines) => Output::ok(
            lines
                .iter()
                .map(|l| format!("defined {}", l.trim_start()))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        Err(msg) => Output::error(msg),
    }
}

fn add_source(
    s: &mut Session,
    origin: Origin,
    src: &str,
    label: &str,
) -> Result<Vec<String>, String> {
    let (program, _) = crate::types::check_source(src)
        .map_err(|d| crate::diag::render_all(&d, label, src, s.color))?;
    if program.items.is_empty() {
        return Err(format!("error: {label} defines no merge or fn"));
    }
    s.scope
        .add(origin, src, program)
        .map(|a| a.lines)
        .map_err(|m| format!("error: {m}"))
}

fn methods(s: &Session) -> Output {
    // `methods_text` insists on a stdlib where every file checks; while one
    // does not (see the startup warning), list the merges that do.
    let listing = if s.notes.is_empty() {
        crate::card::methods_text()
    } else {
        let mut l = s.scope.stdlib_items().join("\n");
        l.push('\n');
        l.push_str(&s.notes.join("\n"));
        l
    };
    let mut text = listing.trim_end().to_string();
    let user = s.scope.user_items();
    if !user.is_empty() {
        text.push_str("\n\nLoaded:\n  ");
        text.push_str(&user.join("\n  "));
    }
    text.push_str("\n\nCall any of them on REPL tensors, e.g. ties(b, [m1, m2], density=[0.5, 0.5]); :source NAME shows one.");
    Output::ok(text)
}

fn seed(s: &mut Session, arg: &str) -> Output {
    if arg.is_empty() {
        return Output::ok(format!("seed {}", s.seed));
    }
    match arg.parse::<u64>() {
        Ok(n) => {
            s.seed = n;
            s.randn_counter = 0;
            Output::ok(format!("seed {n} (randn restarts from its first draw)"))
        }
        Err(_) => Output::error(format!(
            "error: `{arg}` is not a seed; give a whole number 0..2^64, e.g. :seed 42"
        )),
    }
}

fn source(s: &Session, arg: &str) -> Output {
    if arg.is_empty() {
        return Output::error("error: usage: :source NAME, e.g. :source ties");
    }
    match s.scope.source_of(arg) {
        Some((from, text)) => Output::ok(format!("# from {from}\n{text}")),
        None => {
            let names = s.scope.names();
            let hint = did_you_mean(arg, names.iter().map(String::as_str))
                .unwrap_or_else(|| "see :methods".into());
            Output::error(format!("error: no merge or fn named `{arg}` ({hint})"))
        }
    }
}

fn tensors(s: &Session, arg: &str) -> Output {
    const MAX: usize = 100;
    let mut words = arg.split_whitespace().map(unquote);
    let Some(path) = words.next() else {
        return Output::error("error: usage: :tensors PATH [TEXT], e.g. :tensors model_dir mlp");
    };
    let filter = words.next().unwrap_or_default();
    let ck = match s.checkpoints.get(&path) {
        Ok(ck) => ck,
        Err(m) => return Output::error(format!("error: {m}")),
    };
    let hits: Vec<_> = ck.tensors().filter(|t| t.name.contains(&filter)).collect();
    let width = hits
        .iter()
        .take(MAX)
        .map(|t| t.name.len())
        .max()
        .unwrap_or(0);
    let mut lines: Vec<String> = hits
        .iter()
        .take(MAX)
        .map(|t| format!("{:<width$}  {:<5} {:?}", t.name, t.dtype, t.shape))
        .collect();
    if hits.len() > MAX {
        lines.push(format!(
            "... and {} more (add TEXT to filter: :tensors PATH mlp)",
            hits.len() - MAX
        ));
    }
    lines.push(format!(
        "{} of {} tensors in {} file{}",
        hits.len(),
        ck.len(),
        ck.files().len(),
        if ck.files().len() == 1 { "" } else { "s" }
    ));
    Output::ok(lines.join("\n"))
}

fn facts(s: &mut Session, arg: &str) -> Output {
    let mut words = arg.split_whitespace();
    if let Some(name) = words.next() {
        let n_layers = match words.next().map(str::parse::<i64>) {
            None => s.facts.n_layers,
            Some(Ok(n)) if n >= 0 => n,
            Some(_) => {
                return Output::error(
                    "error: n_layers must be a whole number, e.g. :facts model.layers.3.self_attn.q_proj.weight 32",
                );
            }
        };
        s.facts = TensorFacts::from_name(&unquote(name), n_layers);
    }
    let f = &s.facts;
    Output::ok(format!(
        "name = {:?}, kind = {:?}, layer = {}, n_layers = {}",
        f.name, f.kind, f.layer, f.n_layers
    ))
}
