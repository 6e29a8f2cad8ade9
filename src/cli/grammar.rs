//! `mergec grammar`: the language's grammar in the forms other engines read (Lark for
//! llguidance, vLLM and Python's lark; GBNF for llama.cpp), derived from
//! `grammar/merge.pest` (see `syntax::forms`).

use crate::syntax::forms::{self, Shape};

/// Which form to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Lark (start rule `start`): llguidance, vLLM's `structured_outputs`, Python's lark.
    Lark,
    /// GBNF (start rule `root`): llama.cpp's `grammar`.
    Gbnf,
    /// The source itself, grammar/merge.pest.
    Pest,
}

/// Which programs the grammar describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ShapeArg {
    /// Every program of the language.
    Program,
    /// One merge with the header the self-develop loop runs (`merge NAME(base: Tensor,
    /// models: [Tensor], ...) -> Tensor { ... }`).
    Loop,
}

impl From<ShapeArg> for Shape {
    fn from(s: ShapeArg) -> Shape {
        match s {
            ShapeArg::Program => Shape::Program,
            ShapeArg::Loop => Shape::Loop,
        }
    }
}

/// The grammar text of `format` and `shape`.
pub fn text(format: Format, shape: Shape) -> Result<String, forms::FormError> {
    Ok(match format {
        Format::Pest => forms::PEST.to_string(),
        Format::Lark => forms::lark::render(&forms::derive(shape)?),
        Format::Gbnf => forms::gbnf::render(&forms::derive(shape)?),
    })
}

/// `--check FILE...`: whether pest and llguidance (the Lark form of `shape`) accept each
/// file; exit 1 if any file is rejected by either.
pub fn check(files: &[std::path::PathBuf], shape: ShapeArg) -> i32 {
    let lark = match text(Format::Lark, shape.into()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let g = match crate::model::mask::GrammarMask::bytes(&lark) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let mut code = 0;
    for f in files {
        let src = match crate::files::read_text(f, "a program", crate::files::limit::PROGRAM) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                code = 1;
                continue;
            }
        };
        let pest = crate::syntax::grammar_accepts(&src);
        let llg = g.explain(&src);
        let word = |b: bool| if b { "accepts" } else { "rejects" };
        let why = match &llg {
            Ok(()) => String::new(),
            Err((at, msg)) => format!(" at byte {at} ({msg})"),
        };
        println!(
            "{}: pest {}, llguidance {}{why}",
            f.display(),
            word(pest),
            word(llg.is_ok())
        );
        let llg = llg.is_ok();
        if !(pest && llg) {
            code = 1;
        }
    }
    code
}

pub fn run(format: Format, shape: ShapeArg) -> i32 {
    match text(format, shape.into()) {
        Ok(t) => {
            print!("{t}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}
