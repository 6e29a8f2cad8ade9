//! `mergec develop`: the self-develop loop from a TOML config, flags, or `--demo`.

use crate::develop::config::RunConfig;
use crate::develop::driver::{self, Ended, Event};
use std::path::PathBuf;
use std::sync::atomic::Ordering;

macro_rules! config_flags {
    ($($field:ident),* $(,)?) => {
        /// Every config field as a flag (`--programs 40`, `--models a,b,c`); flags win
        /// over the config file.
        #[derive(clap::Args, Debug, Default, Clone)]
        pub struct ConfigFlags {
            $(
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
    run_dir,
    base,
    models,
    tensors,
    evaluator,
    dev,
    test,
    dev_limit,
    test_limit,
    shots,
    train,
    max_new_tokens,
    eval_batch,
    generator,
    generator_model,
    generator_grammar,
    learn,
    random_sizes,
    scored_budget,
    controls,
    archive,
    archive_per_prompt,
    hook,
    iterations,
    programs,
    temperature,
    temperature_decay,
    chosen_fraction,
    rejected_fraction,
    elites,
    repair,
    dpo_beta,
    dpo_lr,
    dpo_steps,
    dpo_epochs,
    dpo_nll,
    guided,
    grammar_mask,
    top_p,
    generator_batch,
    generator_max_tokens,
    lora_rank,
    lora_alpha,
    lora_lr,
    prompt,
    top_test,
    baseline_grid,
    tune_budget,
    tune_top,
    test_finalists,
    multitask,
    transfer_multitask,
    transfer_base,
    transfer_models,
    transfer_dev,
    transfer_test,
    keep_best,
    jobs,
    executor,
    max_in_flight,
    retries,
    ray_num_cpus,
    ray_num_gpus,
    ray_memory_gb,
    ray_mergec,
    ray_unreachable_s,
    devices,
    memory_budget_gb,
    time_limit_s,
    candidate_memory_gb,
    candidate_cpu_s,
    http_connect_timeout_s,
    http_timeout_s,
    http_max_reply_mb,
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
