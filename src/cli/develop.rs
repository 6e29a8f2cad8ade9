//! `mergec develop`: the self-develop loop from a TOML config, flags, or `--demo`.

use crate::develop::config::RunConfig;
use crate::develop::driver::{self, Ended, Event};
use crate::develop::generator::Generator;
use crate::develop::record::RunLog;
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
    top_test,
    baseline_grid,
    transfer_base,
    transfer_models,
    transfer_dev,
    transfer_test,
    keep_best,
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
    #[command(flatten)]
    pub flags: ConfigFlags,
}

const LIST_FIELDS: &[&str] = &["models", "baseline_grid", "transfer_models"];

/// The config: defaults, then the file, then the flags.
pub fn resolve_config(a: &DevelopArgs) -> Result<RunConfig, String> {
    let mut table = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            text.parse::<toml::Table>()
                .map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => toml::Table::new(),
    };
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
                    .map(|s| {
                        s.parse::<f64>()
                            .map(toml::Value::Float)
                            .unwrap_or_else(|_| toml::Value::String(s.to_string()))
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

/// Builds the configured generator.
pub fn make_generator(cfg: &RunConfig) -> Result<Box<dyn Generator>, String> {
    let g = cfg.generator.as_str();
    if g.starts_with("openai:") || g.starts_with("openai-chat:") {
        let mut o =
            crate::develop::openai::OpenAiGenerator::from_spec(g, cfg.generator_model.clone())?;
        o.hook = cfg.hook.clone();
        return Ok(Box::new(o));
    }
    Err(format!(
        "generator `{g}`: use tiny, openai:URL or openai-chat:URL"
    ))
}

pub fn run(a: &DevelopArgs) -> i32 {
    match run_inner(a) {
        Ok(Ended::Finished) => 0,
        Ok(Ended::Interrupted) => {
            eprintln!(
                "interrupted: everything scored so far is in the record; continue with --resume"
            );
            130
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn run_inner(a: &DevelopArgs) -> Result<Ended, String> {
    let cfg = resolve_config(a)?;
    let _ = ctrlc::set_handler(|| {
        if crate::runtime::CANCELLED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("\ninterrupted: finishing the current step; the run can be resumed");
    });
    let setup = driver::Setup::new(&cfg)?;
    std::fs::create_dir_all(&cfg.run_dir).map_err(|e| format!("{}: {e}", cfg.run_dir.display()))?;
    let record = cfg.run_dir.join("programs.jsonl");
    let (mut log, mut events) = RunLog::open::<Event>(&record)?;
    if !events.is_empty() && !a.resume {
        return Err(format!(
            "{} already holds a run; pass --resume to continue it, or choose another --run-dir",
            cfg.run_dir.display()
        ));
    }
    let settings = cfg.to_toml();
    match events.first() {
        Some(Event::Start { config, .. }) if *config != settings => {
            return Err(format!(
                "{}: the run was started with other settings; resume with the same ones \
                 (they are in {}/config.toml)",
                cfg.run_dir.display(),
                cfg.run_dir.display()
            ));
        }
        Some(_) => eprintln!("resuming {}: {} records", record.display(), events.len()),
        None => {
            crate::eval::run::write_atomic(&cfg.run_dir.join("config.toml"), settings.as_bytes())?;
            let ev = Event::Start {
                config: settings,
                version: env!("CARGO_PKG_VERSION").to_string(),
            };
            log.append(&ev)?;
            events.push(ev);
        }
    }
    let mut generator = make_generator(&cfg)?;
    let mut say = |m: &str| eprintln!("{m}");
    let ended = driver::run_iterations(
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
    eprintln!("scoring the best programs on test, the baselines and the transfer");
    let fin = crate::develop::report::finalize(&cfg, &mut log, &events, &mut say)?;
    if crate::runtime::CANCELLED.load(Ordering::SeqCst) {
        return Ok(Ended::Interrupted);
    }
    println!("{}", crate::develop::report::summary_table(&fin));
    eprintln!("report: {}", cfg.run_dir.join("report.md").display());
    Ok(ended)
}
