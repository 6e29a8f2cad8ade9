//! `mergec develop --config RUN.toml`: every setting of a run, each also a flag.
//! Field names are the TOML keys; `docs/develop.md` lists them with their defaults.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Upper bounds of the run's counts (beyond them a run could not finish anyway).
pub const MAX_ITERATIONS: usize = 10_000;
pub const MAX_PROGRAMS: usize = 100_000;
use crate::syntax::limits::Limits;
/// A year: `time_limit_s` beyond it is a mistake (and Duration cannot hold 1e300).
pub const MAX_TIME_LIMIT_S: f64 = 365.0 * 24.0 * 3600.0;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// The run directory: record, best programs, scratch merges, report.
    pub run_dir: PathBuf,
    /// The seed model (the base of every merge).
    pub base: PathBuf,
    /// Candidate fine-tunes, merged in this order.
    pub models: Vec<PathBuf>,
    /// Regex over tensor names: which tensors are merged (others are copied from the
    /// base). The paper merged MLP weights only.
    pub tensors: String,
    /// `builtin` (in-process GSM8K-format scoring) or `command:CMD {model}`.
    pub evaluator: String,
    /// GSM8K-format dev and test files.
    pub dev: PathBuf,
    pub test: PathBuf,
    /// Problems of the dev file used (0: all).
    pub dev_limit: usize,
    /// Problems of the test file used (0: all).
    pub test_limit: usize,
    /// Worked examples before each question (from `train`, when given).
    pub shots: usize,
    pub train: Option<PathBuf>,
    pub max_new_tokens: usize,
    pub eval_batch: usize,
    /// `tiny`, `local:PATH` (a llama-family HF directory or .gguf file), `openai:URL`
    /// or `openai-chat:URL`.
    pub generator: super::generator::GeneratorSpec,
    pub generator_model: Option<String>,
    /// The grammar `openai:` requests carry: `auto` (ask the server), `gbnf` (llama.cpp's
    /// `grammar`), `lark` (vLLM's `structured_outputs`) or `none`.
    pub generator_grammar: String,
    /// Learn between iterations (DPO or the pairs' export); `false` keeps the same
    /// generator throughout (the no-DPO control).
    pub learn: bool,
    /// `random` generator: the node counts its programs are drawn at (empty: the
    /// standard library methods' sizes; the control arm gets the main run's).
    pub random_sizes: Vec<usize>,
    /// Stop once this many programs are scored (0: no limit); the control arms get
    /// the main run's count.
    pub scored_budget: usize,
    /// After the run, the controls with the same settings and the same number of
    /// scored programs: the generator without learning, and `random`
    /// (`RUN/controls/{no-dpo,random}`).
    pub controls: bool,
    /// Prompted generators: the best programs so far (this many, one per canonical
    /// hash, sampled by rank) with their dev scores in the prompt (0: the paper's
    /// plain prompt). The `tiny` generator becomes the conditioned one: each prompt is
    /// one parent drawn from the best `4 * archive` programs, and it writes children.
    pub archive: usize,
    /// With `archive`: programs sampled from each prompt (each prompt its own parents).
    pub archive_per_prompt: usize,
    /// For openai generators: run after each iteration's pairs are written
    /// (`{pairs}`, `{iteration}`, `{endpoint}` are replaced).
    pub hook: Option<String>,
    pub iterations: usize,
    pub programs: usize,
    /// Temperature of iteration t: temperature / (1 + temperature_decay * (t - 1)).
    pub temperature: f64,
    pub temperature_decay: f64,
    /// Fractions of the scored programs that become "chosen" and "rejected".
    pub chosen_fraction: f64,
    pub rejected_fraction: f64,
    /// Best programs of each earlier iteration kept among the chosen.
    pub elites: usize,
    /// Feed diagnostics back once to fix a program that does not check (prompted
    /// generators only).
    pub repair: bool,
    pub dpo_beta: f64,
    pub dpo_lr: f64,
    pub dpo_steps: usize,
    /// Passes over the pairs (`tiny`): DPO stops after this many or `dpo_steps` steps.
    pub dpo_epochs: usize,
    /// Weight of the chosen programs' per-token NLL added to the DPO loss (`tiny`).
    pub dpo_nll: f64,
    /// Grammar-guided decoding (`tiny` and `local:`): every sampled token keeps the
    /// program a viable prefix of the language, names resolved.
    pub guided: bool,
    /// With `guided`: draw only from the tokens the loop's grammar allows (llguidance's
    /// token mask over `mergec grammar --shape loop`); false: draw from the whole
    /// nucleus, check and redraw.
    pub grammar_mask: bool,
    /// Nucleus of `local:` sampling.
    pub top_p: f64,
    /// Sequences a `local:` generator decodes together.
    pub generator_batch: usize,
    /// At most this many tokens per program (`local:`).
    pub generator_max_tokens: usize,
    /// LoRA adapters of a `local:` generator: rank, alpha (scale alpha / rank) and
    /// learning rate of their DPO.
    pub lora_rank: usize,
    pub lora_alpha: f64,
    pub lora_lr: f64,
    /// The prompt: `auto` (`compact` for `local:`, else `full`), `full`, `compact`, or a
    /// file holding a template with `{{card}}` and `{{example}}`.
    pub prompt: String,
    /// The best programs on dev listed in the report and written to `best/`.
    pub top_test: usize,
    /// The paper's baseline grid on dev (task arithmetic's lambda, TIES' density and
    /// lambda), reported for reference; the tables use the tuned search.
    pub baseline_grid: Vec<f64>,
    /// Evaluations on dev per contender of the final stage (the same for all; see
    /// `develop::tune`).
    pub tune_budget: usize,
    /// The best distinct discovered programs that are contenders of the final stage.
    pub tune_top: usize,
    /// Stdlib contenders scored on test: the best this many by dev (the baseline to beat
    /// among them); 0: every one. Discovered contenders are all scored on test.
    pub test_finalists: usize,
    /// A model fine-tuned on all experts' data (the multi-task upper bound; optional).
    pub multitask: Option<PathBuf>,
    pub transfer_multitask: Option<PathBuf>,
    /// A second family for the transfer test (optional).
    pub transfer_base: Option<PathBuf>,
    pub transfer_models: Vec<PathBuf>,
    pub transfer_dev: Option<PathBuf>,
    pub transfer_test: Option<PathBuf>,
    /// Checkpoints kept in the scratch directory (the best so far).
    pub keep_best: usize,
    /// Candidates merged and scored at once (0: as many as the cores and
    /// `memory_budget_gb` allow).
    pub jobs: usize,
    /// Where candidates run: `local` (child processes of this one) or
    /// `ray:http://HEAD:8265` (one Ray job per candidate through the head's Jobs REST
    /// API; see docs/cluster.md).
    pub executor: String,
    /// `ray:`: candidates submitted at once (the loop's group size).
    pub max_in_flight: usize,
    /// `ray:`: how many times a candidate lost for a cluster reason (node lost, worker
    /// killed, job stopped) is submitted again; a program's own failure is not.
    pub retries: usize,
    /// `ray:`: each candidate job's `entrypoint_num_cpus`, `entrypoint_num_gpus` and
    /// `entrypoint_memory` (GiB; 0: none asked).
    pub ray_num_cpus: f64,
    pub ray_num_gpus: f64,
    pub ray_memory_gb: f64,
    /// `ray:`: the `mergec` the workers run (empty: this executable's path, for nodes
    /// that share its install).
    pub ray_mergec: String,
    /// `ray:`: seconds the head may stay unreachable before the run stops (and can be
    /// resumed once it is back).
    pub ray_unreachable_s: f64,
    /// `local`: GPUs to run candidates on, one candidate per device at a time, each
    /// with `CUDA_VISIBLE_DEVICES` set to it (and `{device}` in evaluator commands).
    pub devices: Vec<u32>,
    /// Memory the candidates scored at once may use together, in GiB (each is
    /// estimated from the size of the base checkpoint).
    pub memory_budget_gb: f64,
    /// A candidate whose merge and scoring take longer than this many seconds fails
    /// with "over the time limit" (0: no limit).
    pub time_limit_s: f64,
    /// Address space limit of each candidate's process, in GiB (0: from the size of
    /// the base checkpoint; see docs/develop.md).
    pub candidate_memory_gb: f64,
    /// CPU time limit of each candidate's process, in seconds (0: from `time_limit_s`
    /// and the candidate's threads; none when there is no time limit).
    pub candidate_cpu_s: f64,
    /// `openai:` generators: seconds to connect, and for a whole request and reply.
    pub http_connect_timeout_s: f64,
    pub http_timeout_s: f64,
    /// `openai:` generators: the largest reply read, in MiB.
    pub http_max_reply_mb: usize,
    pub seed: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            run_dir: PathBuf::from("runs/develop"),
            base: PathBuf::new(),
            models: vec![],
            tensors: r"mlp\.".into(),
            evaluator: "builtin".into(),
            dev: PathBuf::new(),
            test: PathBuf::new(),
            dev_limit: 0,
            test_limit: 0,
            shots: 0,
            train: None,
            max_new_tokens: 96,
            eval_batch: 128,
            generator: super::generator::GeneratorSpec::Tiny,
            generator_model: None,
            generator_grammar: "auto".into(),
            learn: true,
            random_sizes: vec![],
            scored_budget: 0,
            controls: false,
            archive: 0,
            archive_per_prompt: 4,
            hook: None,
            iterations: 3,
            programs: 100,
            temperature: 1.2,
            temperature_decay: 0.2,
            chosen_fraction: 0.03,
            rejected_fraction: 0.10,
            elites: 3,
            repair: true,
            dpo_beta: 0.1,
            dpo_lr: 3e-5,
            dpo_steps: 40,
            dpo_epochs: 2,
            dpo_nll: 1.0,
            guided: false,
            grammar_mask: true,
            top_p: 0.95,
            generator_batch: 16,
            generator_max_tokens: 320,
            lora_rank: 8,
            lora_alpha: 16.0,
            lora_lr: 2e-4,
            prompt: "auto".into(),
            top_test: 15,
            baseline_grid: vec![0.2, 0.4, 0.6],
            tune_budget: 8,
            tune_top: 3,
            test_finalists: 0,
            multitask: None,
            transfer_multitask: None,
            transfer_base: None,
            transfer_models: vec![],
            transfer_dev: None,
            transfer_test: None,
            keep_best: 3,
            jobs: 0,
            executor: "local".into(),
            max_in_flight: 8,
            retries: 2,
            ray_num_cpus: 1.0,
            ray_num_gpus: 0.0,
            ray_memory_gb: 0.0,
            ray_mergec: String::new(),
            ray_unreachable_s: 120.0,
            devices: vec![],
            memory_budget_gb: 8.0,
            time_limit_s: 600.0,
            candidate_memory_gb: 0.0,
            candidate_cpu_s: 0.0,
            http_connect_timeout_s: 10.0,
            http_timeout_s: 600.0,
            http_max_reply_mb: 64,
            seed: 0,
        }
    }
}

impl RunConfig {
    /// Reads a TOML file; unknown keys are errors (with the key and line).
    pub fn from_toml(path: &std::path::Path) -> Result<RunConfig, String> {
        let text = crate::files::read_text(path, "a develop config", crate::files::limit::CONFIG)?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serializes")
    }

    /// Temperature of iteration `t` (1-based).
    pub fn temperature_at(&self, t: usize) -> f64 {
        self.temperature / (1.0 + self.temperature_decay * (t.max(1) - 1) as f64)
    }

    /// Whether the generator reads the prompt (`tiny` and `random` do not).
    pub fn prompted(&self) -> bool {
        use super::generator::GeneratorSpec;
        !matches!(self.generator, GeneratorSpec::Tiny | GeneratorSpec::Random)
    }

    /// Checks what can be checked before any work: files exist, numbers make sense.
    pub fn validate(&self) -> Result<(), String> {
        let need = |p: &std::path::Path, what: &str| {
            if p.as_os_str().is_empty() {
                Err(format!(
                    "no {what} given (set `{what}` in the config or pass --{what})"
                ))
            } else if !p.exists() {
                Err(format!("{what} `{}` does not exist", p.display()))
            } else {
                Ok(())
            }
        };
        need(&self.base, "base")?;
        need(&self.dev, "dev")?;
        need(&self.test, "test")?;
        if self.models.is_empty() {
            return Err("no candidate models (set `models` or pass --models)".into());
        }
        for m in &self.models {
            need(m, "models")?;
        }
        for (m, what) in [
            (&self.multitask, "multitask"),
            (&self.transfer_multitask, "transfer_multitask"),
        ] {
            if let Some(m) = m {
                need(m, what)?;
            }
        }
        regex::Regex::new(&self.tensors).map_err(|e| format!("tensors: {e}"))?;
        self.check_counts()?;
        self.check_floats()?;
        self.validate_isolation()?;
        self.validate_executor()
    }

    /// The executor and its settings.
    fn validate_executor(&self) -> Result<(), String> {
        super::ray::head_url(&self.executor)?;
        for (key, v, lo, hi) in [
            ("max_in_flight", self.max_in_flight, 1, 100_000),
            ("retries", self.retries, 0, 32),
            ("devices (their number)", self.devices.len(), 0, 1024),
        ] {
            if !(lo..=hi).contains(&v) {
                return Err(format!("{key} must be within {lo}..{hi}, not {v}"));
            }
        }
        for (key, v, hi) in [
            ("ray_num_cpus", self.ray_num_cpus, 4096.0),
            ("ray_num_gpus", self.ray_num_gpus, 1024.0),
            ("ray_memory_gb", self.ray_memory_gb, 1048576.0),
            ("ray_unreachable_s", self.ray_unreachable_s, 1e7),
        ] {
            if !(v.is_finite() && (0.0..=hi).contains(&v)) {
                return Err(format!("{key} must be within 0..{hi}, not {v}"));
            }
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(d) = self.devices.iter().find(|d| !seen.insert(**d)) {
            return Err(format!("devices lists device {d} twice"));
        }
        if !self.devices.is_empty() && self.executor != "local" {
            return Err(
                "devices is for the local executor; on Ray set ray_num_gpus and Ray places \
                 each candidate on a GPU"
                    .into(),
            );
        }
        Ok(())
    }

    /// Counts within bounds that no loop or allocation of a run can trip over.
    fn check_counts(&self) -> Result<(), String> {
        let counts: [(&str, usize, usize, usize); 23] = [
            ("iterations", self.iterations, 1, MAX_ITERATIONS),
            ("programs", self.programs, 1, MAX_PROGRAMS),
            ("keep_best", self.keep_best, 1, 1000),
            ("elites", self.elites, 0, MAX_PROGRAMS),
            ("top_test", self.top_test, 0, MAX_PROGRAMS),
            ("tune_budget", self.tune_budget, 1, 10_000),
            ("tune_top", self.tune_top, 0, 1000),
            ("test_finalists", self.test_finalists, 0, 1000),
            ("shots", self.shots, 0, 64),
            ("max_new_tokens", self.max_new_tokens, 1, 1 << 16),
            ("eval_batch", self.eval_batch, 1, 1 << 16),
            ("dpo_steps", self.dpo_steps, 0, 1_000_000),
            ("dpo_epochs", self.dpo_epochs, 0, 10_000),
            ("generator_batch", self.generator_batch, 1, 4096),
            (
                "generator_max_tokens",
                self.generator_max_tokens,
                1,
                1 << 16,
            ),
            ("lora_rank", self.lora_rank, 1, 4096),
            ("archive", self.archive, 0, 64),
            ("archive_per_prompt", self.archive_per_prompt, 1, 4096),
            (
                "scored_budget",
                self.scored_budget,
                0,
                MAX_ITERATIONS * MAX_PROGRAMS,
            ),
            (
                "random_sizes (their number)",
                self.random_sizes.len(),
                0,
                MAX_PROGRAMS,
            ),
            ("jobs", self.jobs, 0, 1024),
            (
                "baseline_grid (its length)",
                self.baseline_grid.len(),
                0,
                1000,
            ),
            (
                "models (their number)",
                self.models.len(),
                1,
                Limits::DEFAULT.max_models,
            ),
        ];
        for (key, v, lo, hi) in counts {
            if !(lo..=hi).contains(&v) {
                return Err(format!("{key} must be within {lo}..={hi}, not {v}"));
            }
        }
        let max = crate::r#gen::MAX_SIZE;
        if let Some((i, s)) = self
            .random_sizes
            .iter()
            .enumerate()
            .find(|(_, s)| !(1..=max).contains(*s))
        {
            return Err(format!(
                "random_sizes[{i}] must be within 1..={max}, not {s}"
            ));
        }
        if self.archive > 0
            && !self.prompted()
            && self.generator != super::generator::GeneratorSpec::Tiny
        {
            return Err(format!(
                "archive = {} needs a prompted generator (openai:URL, openai-chat:URL or \
                 local:PATH) or the conditioned tiny one (tiny), not `{}`; set archive = 0",
                self.archive, self.generator
            ));
        }
        Ok(())
    }

    /// Every float finite, and within its range (lower bound exclusive where `positive`).
    fn check_floats(&self) -> Result<(), String> {
        let mut floats: Vec<(String, f64, f64, f64, bool)> = vec![
            ("temperature".into(), self.temperature, 0.0, 100.0, true),
            (
                "temperature_decay".into(),
                self.temperature_decay,
                0.0,
                1e6,
                false,
            ),
            (
                "chosen_fraction".into(),
                self.chosen_fraction,
                0.0,
                1.0,
                false,
            ),
            (
                "rejected_fraction".into(),
                self.rejected_fraction,
                0.0,
                1.0,
                false,
            ),
            ("dpo_beta".into(), self.dpo_beta, 0.0, 1e6, false),
            ("dpo_lr".into(), self.dpo_lr, 0.0, 1e3, false),
            ("dpo_nll".into(), self.dpo_nll, 0.0, 1e6, false),
            ("top_p".into(), self.top_p, 0.0, 1.0, true),
            ("lora_alpha".into(), self.lora_alpha, 0.0, 1e6, false),
            ("lora_lr".into(), self.lora_lr, 0.0, 1e3, false),
            (
                "memory_budget_gb".into(),
                self.memory_budget_gb,
                0.0,
                1e6,
                true,
            ),
            (
                "time_limit_s".into(),
                self.time_limit_s,
                0.0,
                MAX_TIME_LIMIT_S,
                false,
            ),
        ];
        for (i, &g) in self.baseline_grid.iter().enumerate() {
            floats.push((format!("baseline_grid[{i}]"), g, -1e6, 1e6, false));
        }
        for (key, v, lo, hi, positive) in floats {
            let above = if positive { v > lo } else { v >= lo };
            if !v.is_finite() || !above || v > hi {
                let open = if positive { "(" } else { "[" };
                return Err(format!(
                    "{key} must be a finite number within {open}{lo}, {hi}], not {}",
                    short_float(v)
                ));
            }
        }
        Ok(())
    }
}

/// A float as a person would write it: 1e300 rather than its 301 digits.
fn short_float(v: f64) -> String {
    if v.is_finite() && v != 0.0 && !(1e-4..1e9).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_round_trip_defaults_and_unknown_keys() {
        let c = RunConfig::default();
        assert_eq!(toml::from_str::<RunConfig>(&c.to_toml()).unwrap(), c);
        let partial: RunConfig = toml::from_str("programs = 7\nseed = 3").unwrap();
        assert_eq!(
            (partial.programs, partial.seed, partial.iterations),
            (7, 3, 3)
        );
        let e = toml::from_str::<RunConfig>("progams = 7")
            .unwrap_err()
            .to_string();
        assert!(e.contains("progams"), "{e}");
        assert!((c.temperature_at(3) - 1.2 / 1.4).abs() < 1e-12);
    }
}
