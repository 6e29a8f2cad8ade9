//! `mergec develop`: the self-develop loop from a TOML config, flags, or `--demo`.

use crate::develop::config::RunConfig;
use crate::develop::driver::{self, Ended, Event};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

macro_rules! config_flags {
    ($($(#[$doc:meta])* $field:ident),* $(,)?) => {
        /// Every config field as a flag (`--programs 40`, `--models a,b,c`); flags win
        /// over the config file.
        #[derive(clap::Args, Debug, Default, Clone)]
        pub struct ConfigFlags {
            $(
                $(#[$doc])*
                #[arg(long, value_name = "VALUE", help_heading = "Run settings (also TOML keys; see docs/develop.md)")]
                pub $field: Option<String>,
            )*
        }

        impl ConfigFlags {
            fn given(&self) -> Vec<(&'static str, &str)> {
                let mut v = vec![];
                $( if let Some(x) = &self.$field { v.push((stringify!($field), x.as_str())); } )*
                v
            }
        }
    };
}

config_flags!(
    /// The run directory: record, best programs, scratch merges, report (default runs/develop).
    run_dir,
    /// The seed model: the base checkpoint of every merge.
    base,
    /// Candidate fine-tunes, merged in this order (comma-separated paths).
    models,
    /// Regex over tensor names: which tensors are merged; the others are copied from the base (default `mlp\.`).
    tensors,
    /// `builtin` (in-process GSM8K-format scoring) or `command:CMD {model}` (default builtin).
    evaluator,
    /// The GSM8K-format dev file (scores that guide the loop).
    dev,
    /// The GSM8K-format test file (scores of the best programs and baselines).
    test,
    /// Problems of the dev file used (0: all; default 0).
    dev_limit,
    /// Problems of the test file used (0: all; default 0).
    test_limit,
    /// Worked examples before each question, from --train when given (default 0).
    shots,
    /// A GSM8K-format file the few-shot examples (--shots) are drawn from.
    train,
    /// Tokens the builtin evaluator generates per answer, at most (default 96).
    max_new_tokens,
    /// Questions the builtin evaluator decodes together (default 128).
    eval_batch,
    /// The program generator: `tiny`, `random`, `local:PATH` (a llama-family HF directory or .gguf file), `openai:URL` or `openai-chat:URL` (default tiny).
    generator,
    /// The model name sent to an `openai:` generator's server.
    generator_model,
    /// The grammar `openai:` requests carry: `auto` (ask the server), `gbnf` (llama.cpp), `lark` (vLLM) or `none` (default auto).
    generator_grammar,
    /// Learn between iterations (DPO or the pairs' export); false keeps the same generator throughout (the no-DPO control; default true).
    learn,
    /// `random` generator: the node counts its programs are drawn at (comma-separated; empty: the stdlib methods' sizes).
    random_sizes,
    /// Stop once this many programs are scored (0: no limit; default 0).
    scored_budget,
    /// After the run, run the controls with the same settings and scored count: the generator without learning, and `random` (RUN/controls/; default false).
    controls,
    /// Prompted generators: the best programs so far (this many) with their dev scores in the prompt; with `tiny`, the parents children are written from (0: plain prompt; default 0).
    archive,
    /// With --archive: programs sampled from each prompt (default 4).
    archive_per_prompt,
    /// For openai generators: a command run after each iteration's pairs are written (`{pairs}`, `{iteration}`, `{endpoint}` are replaced).
    hook,
    /// Iterations of generate, score, learn (default 3).
    iterations,
    /// Programs generated per iteration (default 100).
    programs,
    /// Sampling temperature of the first iteration; iteration t uses temperature / (1 + temperature_decay * (t - 1)) (default 1.2).
    temperature,
    /// How fast the temperature falls per iteration (see --temperature; default 0.2).
    temperature_decay,
    /// Fraction of the scored programs that become DPO's "chosen" (default 0.03).
    chosen_fraction,
    /// Fraction of the scored programs that become DPO's "rejected" (default 0.10).
    rejected_fraction,
    /// Best programs of each earlier iteration kept among the chosen (default 3).
    elites,
    /// Feed diagnostics back once to fix a program that does not check (prompted generators only; default true).
    repair,
    /// DPO's beta: how strongly the policy is kept near the reference (default 0.1).
    dpo_beta,
    /// Learning rate of the `tiny` generator's DPO (default 3e-5).
    dpo_lr,
    /// DPO optimiser steps per iteration, at most (default 40).
    dpo_steps,
    /// Passes over the pairs (`tiny`): DPO stops after this many or --dpo-steps steps (default 2).
    dpo_epochs,
    /// Weight of the chosen programs' per-token NLL added to the DPO loss (`tiny`; default 1.0).
    dpo_nll,
    /// Grammar-guided decoding (`tiny` and `local:`): every sampled token keeps the program a viable prefix, names resolved (default false).
    guided,
    /// With --guided: draw only from the tokens the loop's grammar allows (llguidance's token mask); false: draw, check and redraw (default true).
    grammar_mask,
    /// Nucleus (top-p) of `local:` sampling (default 0.95).
    top_p,
    /// Sequences a `local:` generator decodes together (default 16).
    generator_batch,
    /// At most this many tokens per program (`local:`; default 320).
    generator_max_tokens,
    /// Rank of a `local:` generator's LoRA adapters (default 8).
    lora_rank,
    /// LoRA alpha of a `local:` generator (scale alpha / rank; default 16).
    lora_alpha,
    /// Learning rate of a `local:` generator's LoRA DPO (default 2e-4).
    lora_lr,
    /// The prompt: `auto` (`compact` for `local:`, else `full`), `full`, `compact`, or a template file with `{{card}}` and `{{example}}` (default auto).
    prompt,
    /// The best programs on dev listed in the report and written to best/ (default 15).
    top_test,
    /// The paper's baseline grid on dev (task arithmetic's lambda, TIES' density and lambda), reported for reference (comma-separated; default 0.2,0.4,0.6).
    baseline_grid,
    /// Evaluations on dev per contender of the final stage (default 8).
    tune_budget,
    /// The best distinct discovered programs that become final-stage contenders (default 3).
    tune_top,
    /// Stdlib contenders scored on test: the best this many by dev (0: every one; default 0).
    test_finalists,
    /// A model fine-tuned on all experts' data (the multi-task upper bound; optional).
    multitask,
    /// The transfer family's multi-task model (optional).
    transfer_multitask,
    /// The base of a second family for the transfer test (optional).
    transfer_base,
    /// The transfer family's fine-tunes (comma-separated paths).
    transfer_models,
    /// The transfer family's GSM8K-format dev file.
    transfer_dev,
    /// The transfer family's GSM8K-format test file.
    transfer_test,
    /// Checkpoints kept in the scratch directory: the best so far (default 3).
    keep_best,
    /// Candidates merged and scored at once (0: as many as the cores and --memory-budget-gb allow; default 0).
    jobs,
    /// Where candidates run: `local` (child processes) or `ray:http://HEAD:8265` (one Ray job per candidate; default local).
    executor,
    /// `ray:`: candidates submitted at once (default 8).
    max_in_flight,
    /// `ray:`: resubmissions of a candidate lost for a cluster reason (node lost, worker killed); a program's own failure is not retried (default 2).
    retries,
    /// `ray:`: each candidate job's entrypoint_num_cpus (default 1).
    ray_num_cpus,
    /// `ray:`: each candidate job's entrypoint_num_gpus (default 0).
    ray_num_gpus,
    /// `ray:`: each candidate job's entrypoint_memory, in GiB (0: none asked; default 0).
    ray_memory_gb,
    /// `ray:`: the mergec executable the workers run (empty: this executable's path).
    ray_mergec,
    /// `ray:`: seconds the head may stay unreachable before the run stops, resumably (default 120).
    ray_unreachable_s,
    /// `local`: GPUs to run candidates on (comma-separated indices), one candidate per device at a time with CUDA_VISIBLE_DEVICES set.
    devices,
    /// Memory the candidates scored at once may use together, in GiB, each estimated from the base checkpoint's size (default 8).
    memory_budget_gb,
    /// A candidate whose merge and scoring take longer than this many seconds fails (0: no limit; default 600).
    time_limit_s,
    /// Address-space limit of each candidate's process, in GiB (0: from the base checkpoint's size; default 0).
    candidate_memory_gb,
    /// CPU-time limit of each candidate's process, in seconds (0: from --time-limit-s and the candidate's threads; default 0).
    candidate_cpu_s,
    /// `openai:` generators: seconds to connect (default 10).
    http_connect_timeout_s,
    /// `openai:` generators: seconds for a whole request and reply (default 600).
    http_timeout_s,
    /// `openai:` generators: the largest reply read, in MiB (default 64).
    http_max_reply_mb,
    /// Seed of sampling, the random generator and every other draw of the run (default 0).
    seed,
);

#[derive(clap::Args, Debug, Clone)]
pub struct DevelopArgs {
    /// A TOML file of run settings (every key is also a flag below).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Continue the run in --run-dir where it stopped: nothing lost, nothing scored twice.
    #[arg(long)]
    pub resume: bool,
    /// The whole loop on the built-in testbed: builds the zoo (cached) into --zoo, then
    /// runs the `tiny` generator on family 1 with family 2 for transfer, demo-sized.
    #[arg(long)]
    pub demo: bool,
    /// Where --demo builds (or finds) the testbed zoo.
    #[arg(long, default_value = "runs/zoo")]
    pub zoo: PathBuf,
    #[command(flatten)]
    pub flags: ConfigFlags,
}

const LIST_FIELDS: &[&str] = &[
    "models",
    "baseline_grid",
    "transfer_models",
    "random_sizes",
    "devices",
];

/// The demo's settings on a zoo at `zoo` (flags and a config file still win).
pub fn demo_table(zoo: &std::path::Path) -> Result<toml::Table, String> {
    let experts = |fam: &str| -> Result<Vec<toml::Value>, String> {
        let dir = zoo.join(fam);
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("expert-"))
            .map(|e| e.path().display().to_string())
            .collect();
        v.sort();
        Ok(v.into_iter().map(toml::Value::String).collect())
    };
    let p = |rel: &str| toml::Value::String(zoo.join(rel).display().to_string());
    let mut t = toml::Table::new();
    t.insert("run_dir".into(), toml::Value::String("runs/demo".into()));
    t.insert("base".into(), p("family1/base"));
    t.insert("models".into(), toml::Value::Array(experts("family1")?));
    t.insert("dev".into(), p("family1/dev.jsonl"));
    t.insert("test".into(), p("family1/test.jsonl"));
    t.insert("dev_limit".into(), toml::Value::Integer(200));
    t.insert("transfer_base".into(), p("family2/base"));
    t.insert(
        "transfer_models".into(),
        toml::Value::Array(experts("family2")?),
    );
    t.insert("transfer_dev".into(), p("family2/dev.jsonl"));
    t.insert("transfer_test".into(), p("family2/test.jsonl"));
    // The multi-task reference, where the zoo has one.
    for (key, fam) in [("multitask", "family1"), ("transfer_multitask", "family2")] {
        let dir = zoo.join(fam).join("multitask");
        if dir.is_dir() {
            t.insert(key.into(), toml::Value::String(dir.display().to_string()));
        }
    }
    t.insert("generator".into(), toml::Value::String("tiny".into()));
    t.insert("iterations".into(), toml::Value::Integer(3));
    t.insert("programs".into(), toml::Value::Integer(40));
    t.insert("top_test".into(), toml::Value::Integer(5));
    // The final stage: 14 stdlib contenders (3 experts) and 3 programs, 4 points each on
    // dev, per family (see docs/develop.md for what it costs).
    t.insert("tune_budget".into(), toml::Value::Integer(4));
    t.insert("tune_top".into(), toml::Value::Integer(3));
    // Test touches the finalists only: the 4 best stdlib methods by dev and the programs.
    t.insert("test_finalists".into(), toml::Value::Integer(4));
    // 40 programs give too few pairs at the paper's 3% / 10%.
    t.insert("chosen_fraction".into(), toml::Value::Float(0.15));
    t.insert("rejected_fraction".into(), toml::Value::Float(0.2));
    Ok(t)
}

/// Builds the zoo (a no-op when it is built and current) with this binary.
fn build_zoo(zoo: &std::path::Path) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let status = std::process::Command::new(exe)
        .arg("zoo")
        .arg("--out")
        .arg(zoo)
        .status()
        .map_err(|e| format!("mergec zoo: {e}"))?;
    if !status.success() {
        return Err(format!(
            "building the testbed zoo in {} failed",
            zoo.display()
        ));
    }
    Ok(())
}

/// The config: defaults, then the demo's settings (--demo), then the file, then the flags.
pub fn resolve_config(a: &DevelopArgs) -> Result<RunConfig, String> {
    let mut table = if a.demo {
        demo_table(&a.zoo)?
    } else {
        toml::Table::new()
    };
    let file = match &a.config {
        Some(p) => {
            let text = crate::files::read_text(p, "a develop config", crate::files::limit::CONFIG)?;
            text.parse::<toml::Table>()
                .map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => toml::Table::new(),
    };
    table.extend(file);
    for (key, raw) in a.flags.given() {
        let parsed = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"));
        let list = LIST_FIELDS.contains(&key);
        let value = match parsed {
            Some(v) if list && v.is_array() => v,
            _ if list => toml::Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| match s.parse::<i64>() {
                        // Counts stay integers; weights become floats.
                        Ok(i) if key == "random_sizes" || key == "devices" => {
                            toml::Value::Integer(i)
                        }
                        _ => s
                            .parse::<f64>()
                            .map(toml::Value::Float)
                            .unwrap_or_else(|_| toml::Value::String(s.to_string())),
                    })
                    .collect(),
            ),
            Some(
                v @ (toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_)),
            ) => v,
            Some(toml::Value::String(s)) => toml::Value::String(s),
            _ => toml::Value::String(raw.to_string()),
        };
        table.insert(key.to_string(), value);
    }
    let cfg: RunConfig = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| format!("run settings: {e}"))?;
    Ok(cfg)
}

pub fn run(a: &DevelopArgs) -> i32 {
    match run_inner(a) {
        Ok(Ended::Finished) => 0,
        Ok(Ended::Interrupted) => {
            eprintln!(
                "{}: everything scored so far is in the record; continue with --resume",
                super::signals::interrupted_by()
            );
            super::signals::exit_code()
        }
        Err(e) if crate::runtime::CANCELLED.load(Ordering::SeqCst) => {
            eprintln!("error: {}: {e}", super::signals::interrupted_by());
            super::signals::exit_code()
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn run_inner(a: &DevelopArgs) -> Result<Ended, String> {
    if a.demo {
        build_zoo(&a.zoo)?;
    }
    let cfg = resolve_config(a)?;
    // The run directory is ours to write (nothing written yet), and every setting is
    // in range before anything is opened or sized from it.
    let fresh = crate::develop::record::check_run_dir(&cfg.run_dir, a.resume)?;
    cfg.validate()?;
    // A cluster that cannot run our candidates is an error before anything runs.
    if let Some(url) = crate::develop::ray::head_url(&cfg.executor)? {
        eprintln!("{}", crate::develop::ray::check_head(&cfg, &url)?);
    }
    if driver::resolve_jobs(&cfg) > 1 {
        crate::model::elementwise_on_caller_thread();
    }
    super::signals::install(
        Some("stopping the current step; the run can be resumed"),
        "the record holds everything scored so far; continue with --resume".into(),
    );
    let setup = driver::Setup::new(&cfg)?;
    let (mut log, mut events) = crate::develop::run::open_run(&cfg, fresh, a.resume)?;
    let finished = events
        .iter()
        .filter(|e| matches!(e, Event::IterationDone { .. }))
        .count();
    let mut generator = crate::develop::run::generator(&cfg, finished)?;
    let started = std::time::Instant::now();
    let mut say = |m: &str| eprintln!("{m}");
    let ended = crate::develop::iteration::run_iterations(
        &setup,
        generator.as_mut(),
        &mut log,
        &mut events,
        &crate::runtime::CANCELLED,
        &mut say,
    )?;
    if ended == Ended::Interrupted {
        return Ok(ended);
    }
    if cfg.controls
        && crate::develop::controls::run(
            &cfg,
            &mut log,
            &mut events,
            &crate::runtime::CANCELLED,
            &mut say,
        )? == Ended::Interrupted
    {
        return Ok(Ended::Interrupted);
    }
    eprintln!(
        "scoring the best programs on test, the baselines and the transfer ({:.1} s so far)",
        started.elapsed().as_secs_f64()
    );
    let fin = crate::develop::final_stage::finalize(&cfg, &mut log, &events, &mut say)?;
    if crate::runtime::CANCELLED.load(Ordering::SeqCst) {
        return Ok(Ended::Interrupted);
    }
    println!("{}", crate::develop::report::summary_table(&fin));
    eprintln!(
        "report: {} ({:.0} s in this process)",
        cfg.run_dir.join("report.md").display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ended)
}
