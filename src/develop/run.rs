//! Opening a run of `mergec develop`: its record (started with the settings, or checked
//! against them on a resume) and its generator. Used by the command line and by the
//! control arms, which are runs of their own.

use super::config::RunConfig;
use super::driver::Event;
use super::generator::Generator;
use super::record::RunLog;

/// Opens the run's record (`fresh`: creating the run directory, checked by
/// [`crate::develop::record::check_run_dir`]): the log and what it holds, starting it
/// with the settings, or checking that a resumed run (`resume`) has the same ones.
pub fn open_run(
    cfg: &RunConfig,
    fresh: bool,
    resume: bool,
) -> Result<(RunLog, Vec<Event>), String> {
    if fresh {
        super::record::create_run_dir(&cfg.run_dir)?;
    }
    let record = cfg.run_dir.join("programs.jsonl");
    let (mut log, mut events) = RunLog::open::<Event>(&record)?;
    if !events.is_empty() && !resume {
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
            crate::files::write_atomic(&cfg.run_dir.join("config.toml"), settings.as_bytes())?;
            let ev = Event::Start {
                config: settings,
                version: env!("CARGO_PKG_VERSION").to_string(),
            };
            log.append(&ev)?;
            events.push(ev);
        }
    }
    Ok((log, events))
}

/// Builds the configured generator; `finished` iterations of the run are done (a
/// resumed `tiny` or `local:` generator continues from the weights saved after the
/// last of them).
pub fn generator(cfg: &RunConfig, finished: usize) -> Result<Box<dyn Generator>, String> {
    use super::generator::GeneratorSpec;
    match &cfg.generator {
        GeneratorSpec::Tiny => tiny_generator(cfg, finished),
        GeneratorSpec::Random => Ok(Box::new(crate::develop::random::RandomGenerator::new(
            cfg.random_sizes.clone(),
        ))),
        GeneratorSpec::Local(path) => local_generator(cfg, path, finished),
        GeneratorSpec::OpenAi { url, chat } => {
            use crate::develop::openai::{HttpLimits, OpenAiGenerator};
            let mut o = OpenAiGenerator::new(url, *chat, cfg.generator_model.clone())
                .with_limits(HttpLimits::from_config(cfg)?);
            o.hook = cfg.hook.clone();
            o.grammar = cfg.generator_grammar.parse()?;
            Ok(Box::new(o))
        }
    }
}

/// The built-in tiny generator, plain or conditioned (with the archive on).
fn tiny_generator(cfg: &RunConfig, finished: usize) -> Result<Box<dyn Generator>, String> {
    use crate::develop::tiny::{DpoSettings, TinyGenerator, TinySpec};
    let cache = crate::develop::tiny::default_cache();
    let dpo = DpoSettings {
        beta: cfg.dpo_beta,
        lr: cfg.dpo_lr,
        max_steps: cfg.dpo_steps,
        epochs: cfg.dpo_epochs,
        seed: cfg.seed,
        nll: cfg.dpo_nll,
        ..DpoSettings::default()
    };
    // With the archive on, the tiny generator writes children of archive programs.
    let spec = if cfg.archive > 0 {
        TinySpec::conditioned()
    } else {
        TinySpec::default()
    };
    let mut t = TinyGenerator::for_run(
        &cache,
        &spec,
        &cfg.run_dir.join("generator"),
        finished,
        dpo,
        &mut |m| eprintln!("{m}"),
    )?;
    t.guided = cfg.guided;
    t.grammar_mask = cfg.grammar_mask;
    Ok(Box::new(t))
}

/// A local llama-family model with LoRA adapters.
fn local_generator(
    cfg: &RunConfig,
    path: &std::path::Path,
    finished: usize,
) -> Result<Box<dyn Generator>, String> {
    use crate::develop::local::{LocalGenerator, LocalSettings};
    use crate::develop::tiny::DpoSettings;
    use crate::model::llama::LoraSpec;
    let settings = LocalSettings {
        guided: cfg.guided,
        grammar_mask: cfg.grammar_mask,
        top_p: cfg.top_p,
        batch_size: cfg.generator_batch,
        max_new_tokens: cfg.generator_max_tokens,
        lora: LoraSpec::new(cfg.lora_rank, cfg.lora_alpha),
        dpo: DpoSettings {
            beta: cfg.dpo_beta,
            lr: cfg.lora_lr,
            max_steps: cfg.dpo_steps,
            epochs: cfg.dpo_epochs,
            seed: cfg.seed,
            nll: cfg.dpo_nll,
            ..LocalSettings::default().dpo
        },
    };
    let l = LocalGenerator::for_run(
        path,
        settings,
        &cfg.run_dir.join("generator"),
        finished,
        &mut |m| eprintln!("{m}"),
    )?;
    Ok(Box::new(l))
}
