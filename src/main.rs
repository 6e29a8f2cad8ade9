//! The `mergec` command line: a thin layer over the library.

use clap::{Parser, Subcommand};
use mergec::cli;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "mergec",
    version,
    about = "Discover and run model-merging algorithms for LLMs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check merge programs: print each merge's signature, or diagnostics (exit 1).
    Check {
        /// The .merge files to check.
        #[arg(required = true)]
        files: Vec<String>,
        /// Output format: text (default) or json (for tools and the self-develop loop).
        #[arg(long, default_value = "text", value_parser = ["text", "json"])]
        format: String,
    },
    /// List the standard library's merge methods with their parameters.
    Methods {
        /// Show the builtin functions and operators instead (the reference card).
        #[arg(long)]
        builtins: bool,
    },
    /// Run a merge (a .merge file or a stdlib method name) on example tensors.
    Run {
        /// A .merge file, or a stdlib method such as `ties`.
        program: String,
        /// Which merge of the file to run (default: the first).
        #[arg(long)]
        merge: Option<String>,
        /// Number of candidate models.
        #[arg(long, default_value_t = 3)]
        models: usize,
        /// Tensor shape, e.g. 64x96 or 783.
        #[arg(long, default_value = "64x96", value_parser = shape_arg)]
        shape: String,
        /// Seed of the example tensors and of the program's random draws (randn, masks).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Parameter override, e.g. --set density=0.5 --set weight=[0.3,0.7,1.0].
        #[arg(long = "set", value_name = "NAME=VALUE")]
        sets: Vec<String>,
        /// The tensor name the program sees (for name, kind, layer).
        #[arg(long, default_value = "model.layers.1.mlp.up_proj.weight")]
        tensor: String,
    },
    /// Print a compiled form of a merge: typed tree, graph IR, fused kernels, Cranelift IR or CUDA C.
    Compile {
        /// A .merge file, or a stdlib method such as `ties`.
        program: String,
        /// Which merge of the file to compile (default: the first).
        #[arg(long)]
        merge: Option<String>,
        /// Number of candidate models to unroll for.
        #[arg(long, default_value_t = 3)]
        models: usize,
        /// The form to print.
        #[arg(long, value_enum, default_value_t = cli::compile::Emit::Kernels)]
        emit: cli::compile::Emit,
        /// Tensor shape, e.g. 4096x4096 or 783.
        #[arg(long, default_value = "4096x4096", value_parser = shape_arg)]
        shape: String,
        /// Storage dtype of inputs and output.
        #[arg(long, default_value = "bf16", value_parser = dtype_arg)]
        dtype: String,
        /// Parameter override, e.g. --set density=0.5 --set weight=[0.3,0.7,1.0].
        #[arg(long = "set", value_name = "NAME=VALUE")]
        sets: Vec<String>,
        /// The tensor name the program sees (for name, kind, layer).
        #[arg(long, default_value = "model.layers.1.mlp.up_proj.weight")]
        tensor: String,
    },
    /// Score a model on GSM8K-format data in process (--data), or through an external
    /// evaluator (--evaluator); see docs/eval.md.
    Eval(cli::eval::EvalArgs),
    /// Merge checkpoints with a program (a .merge file or stdlib method) or a mergekit YAML config.
    Merge(Box<cli::merge::MergeArgs>),
    /// The self-develop loop: generate merge programs, merge, score on dev, learn (DPO),
    /// repeat; see docs/develop.md.
    Develop(Box<cli::develop::DevelopArgs>),
    /// Merge and score one candidate of a `develop` run (what the driver runs in a
    /// child process per program); writes `result.json` beside the request.
    Candidate(cli::candidate::CandidateArgs),
    /// Extract a LoRA adapter (PEFT layout) from a fine-tuned model: the rank-r truncated
    /// SVD of each attention and MLP projection's difference from the base.
    ExtractLora(cli::extract_lora::ExtractLoraArgs),
    /// Write synthetic checkpoints (a base and variants) with real architectures' shapes.
    Synth {
        /// mistral-N (Mistral-7B shapes, N layers) or tiny-N.
        #[arg(long, default_value = "tiny-2")]
        arch: String,
        /// Number of variants besides the base.
        #[arg(long, default_value_t = 3)]
        models: usize,
        /// The directory to write: base/ and model-1/ .. model-N/.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Storage dtype of the weights: bf16, f16 or f32.
        #[arg(long, default_value = "bf16", value_parser = dtype_arg)]
        dtype: String,
        /// Seed of the synthetic weights and deltas.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Size of the variants' deltas relative to the weights' scale.
        #[arg(long, default_value_t = 0.1)]
        delta: f32,
        /// Largest safetensors shard written, e.g. 2GB or 500MB.
        #[arg(long, default_value = "2GB")]
        shard_size: String,
        /// Write into a non-empty --out (its base/ and model-N/ are replaced).
        #[arg(long)]
        force: bool,
    },
    /// Build the testbed zoo: tiny llama families (a base and experts) trained on the CPU,
    /// with mixed GSM8K-format dev and test sets (docs/zoo.md).
    Zoo(cli::zoo::ZooArgs),
    /// Sample merge programs from a generator (a local model or `tiny`) with valid rates,
    /// or measure generation throughput (--bench).
    Generate(cli::generate::GenerateArgs),
    /// Check and run every stdlib method on example tensors (the quick tour).
    Demo {
        /// Seed of the example tensors and of the methods' random draws.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Interactive tensor expressions with merges in scope.
    Repl {
        /// Seed for randn and random masks.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Programs whose merges and functions to load at start.
        files: Vec<String>,
    },
    /// Print the language's grammar as Lark (llguidance, vLLM, Python's lark) or GBNF
    /// (llama.cpp), derived from grammar/merge.pest.
    Grammar {
        /// The form to print.
        #[arg(long, value_enum, default_value_t = cli::grammar::Format::Lark)]
        format: cli::grammar::Format,
        /// Every program, or only what the self-develop loop runs.
        #[arg(long, value_enum, default_value_t = cli::grammar::ShapeArg::Program)]
        shape: cli::grammar::ShapeArg,
        /// Instead of printing the grammar, say whether pest and llguidance (the Lark
        /// form) accept each of these programs.
        #[arg(long, num_args = 1.., value_name = "FILE")]
        check: Vec<std::path::PathBuf>,
    },
    /// Print the generated language reference (or --write it into docs/language.md).
    Docs {
        /// Write the reference into docs/language.md (between its markers) instead of
        /// printing it.
        #[arg(long)]
        write: bool,
    },
}

fn parse_shape(s: &str) -> Result<Vec<usize>, String> {
    let dims: Result<Vec<usize>, _> = s
        .split(['x', ','])
        .map(|d| d.trim().parse::<usize>())
        .collect();
    match dims {
        Ok(d)
            if !d.is_empty()
                && d.iter().all(|&x| x > 0)
                && d.iter().product::<usize>() <= 1 << 26 =>
        {
            Ok(d)
        }
        _ => Err(format!(
            "--shape `{s}`: give positive sizes like 64x96 or 783 (at most 2^26 elements)"
        )),
    }
}

/// `--shape` checked while parsing, so a bad one is a usage error (exit 2).
fn shape_arg(s: &str) -> Result<String, String> {
    parse_shape(s).map(|_| s.to_string())
}

/// `--dtype` checked while parsing, so a bad one is a usage error (exit 2).
fn dtype_arg(s: &str) -> Result<String, String> {
    cli::merge::dtype_flag(s).map(|_| s.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Check { files, format } => cli::check::run(&files, format == "json"),
        Command::Methods { builtins } => cli::methods::run(builtins),
        Command::Run {
            program,
            merge,
            models,
            shape,
            seed,
            sets,
            tensor,
        } => match parse_shape(&shape) {
            Ok(shape) => cli::run::run(&cli::run::RunArgs {
                program,
                merge,
                models,
                shape,
                seed,
                sets,
                tensor,
            }),
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        },
        Command::Merge(args) => cli::merge::run(&args),
        Command::Develop(args) => cli::develop::run(&args),
        Command::Candidate(args) => cli::candidate::run(&args),
        Command::ExtractLora(args) => cli::extract_lora::run(&args),
        Command::Eval(args) => cli::eval::run(&args, &|p| {
            mergec::model::LoadedModel::load(p)
                .map(|m| Box::new(m) as Box<dyn mergec::model::TextModel>)
                .map_err(String::from)
        }),
        Command::Compile {
            program,
            merge,
            models,
            emit,
            shape,
            dtype,
            sets,
            tensor,
        } => match parse_shape(&shape) {
            Ok(shape) => cli::compile::run(&cli::compile::CompileArgs {
                program: &program,
                merge: merge.as_deref(),
                models,
                shape,
                sets: &sets,
                emit,
                dtype: &dtype,
                tensor: &tensor,
            }),
            Err(e) => {
                eprintln!("error: {e}");
                2
            }
        },
        Command::Synth {
            arch,
            models,
            out,
            dtype,
            seed,
            delta,
            shard_size,
            force,
        } => cli::synth::run(
            &arch,
            models,
            &out,
            &dtype,
            seed,
            (delta, &shard_size),
            force,
        ),
        Command::Zoo(args) => cli::zoo::run(&args),
        Command::Generate(args) => cli::generate::run(&args),
        Command::Demo { seed } => cli::run::demo(seed),
        Command::Repl { seed, files } => mergec::repl::run_terminal(seed, &files),
        Command::Grammar {
            format,
            shape,
            check,
        } => {
            if check.is_empty() {
                cli::grammar::run(format, shape)
            } else {
                cli::grammar::check(&check, shape)
            }
        }
        Command::Docs { write } => cli::docs::run(write),
    };
    ExitCode::from(code as u8)
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every argument of `cmd` and its subcommands (recursively) that has neither help
    /// nor long help, as `subcommand --flag`.
    fn undocumented(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id == "help" || id == "version" {
                continue;
            }
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                let name = match arg.get_long() {
                    Some(l) => format!("--{l}"),
                    None => id.to_string(),
                };
                out.push(format!("{path} {name}").trim().to_string());
            }
        }
        for sub in cmd.get_subcommands() {
            let p = format!("{path} {}", sub.get_name());
            undocumented(sub, p.trim(), out);
        }
    }

    #[test]
    fn every_flag_has_help() {
        let mut out = Vec::new();
        undocumented(&Cli::command(), "", &mut out);
        assert!(
            out.is_empty(),
            "{} arguments without help text:\n{}",
            out.len(),
            out.join("\n")
        );
    }
}
