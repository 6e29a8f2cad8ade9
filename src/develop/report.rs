//! The report of a run's end (see [`super::final_stage`]): Markdown tables in the form of
//! the paper's Tables 1-3 with paired comparisons against the baseline to beat, the
//! headroom table, `report.json`, and PNG plots.

use super::config::RunConfig;
use super::driver::{Event, Outcome, ProgramRecord};
use crate::eval::gsm8k::accuracy;
use crate::eval::stats::Paired;
use serde::Serialize;
use std::fmt::Write as _;

/// An accuracy with its sample.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Acc {
    pub accuracy: f64,
    pub correct: usize,
    pub n: usize,
}

impl Acc {
    /// "61.5 [58.1, 64.8]": percent with the 95% Wilson interval.
    pub fn show(&self) -> String {
        let (a, lo, hi) = accuracy(self.correct, self.n);
        format!("{:.1} [{:.1}, {:.1}]", 100.0 * a, 100.0 * lo, 100.0 * hi)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub name: String,
    pub dev: Option<Acc>,
    pub test: Option<Acc>,
    /// Against the baseline to beat on the same test problems (and on dev).
    pub paired: Option<Paired>,
    pub paired_dev: Option<Paired>,
    /// The record keys of `dev` and `test`.
    #[serde(skip)]
    pub dev_key: Option<String>,
    #[serde(skip)]
    pub test_key: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct IterStats {
    pub iteration: usize,
    pub generated: usize,
    pub valid: usize,
    pub scored: usize,
    pub mean_dev: Option<f64>,
    pub best_dev: Option<f64>,
    pub best_so_far: Option<f64>,
    pub dev_scores: Vec<f64>,
}

/// One family's results.
#[derive(Clone, Debug, Serialize)]
pub struct FamilyResult {
    /// Seed, candidates, the baseline to beat, the best tuned discovered program.
    pub table: Vec<Row>,
    /// Every contender at its best point on dev.
    pub contenders: Vec<Row>,
    /// Stdlib methods that are not contenders, with the reason.
    pub excluded: Vec<String>,
    /// Contenders, and the evaluations on dev that chose among them.
    pub programs: usize,
    pub evaluations: usize,
    /// The baseline to beat, the oracle merge and the multi-task model.
    pub headroom: Vec<Row>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Final {
    pub iterations: Vec<IterStats>,
    /// Table 1 and the main family's contenders.
    pub main: FamilyResult,
    /// Every point of the paper's baseline grid on dev.
    pub grid: Vec<Row>,
    /// The top programs on dev.
    pub discovered: Vec<(Row, usize, String)>,
    /// Table 3: the second family, everything re-tuned there.
    pub transfer: Option<FamilyResult>,
    /// The control arms (`controls = true`).
    pub controls: Option<super::controls::ControlTable>,
}

fn programs(events: &[Event]) -> impl Iterator<Item = &ProgramRecord> {
    events.iter().filter_map(|e| match e {
        Event::Program(r) => Some(r),
        _ => None,
    })
}

pub fn iteration_stats(cfg: &RunConfig, events: &[Event]) -> Vec<IterStats> {
    let mut best_so_far: Option<f64> = None;
    (1..=cfg.iterations)
        .map(|t| {
            let recs: Vec<&ProgramRecord> = programs(events).filter(|r| r.iteration == t).collect();
            let valid = recs
                .iter()
                .filter(|r| r.assessed.stage == super::candidate::Stage::Valid)
                .count();
            let dev_scores: Vec<f64> = recs.iter().filter_map(|r| r.dev()).collect();
            let scored = recs
                .iter()
                .filter(|r| matches!(r.outcome, Outcome::Scored { .. }))
                .count();
            let best_dev = dev_scores.iter().copied().reduce(f64::max);
            if let Some(b) = best_dev {
                best_so_far = Some(best_so_far.map_or(b, |x| x.max(b)));
            }
            IterStats {
                iteration: t,
                generated: recs.len(),
                valid,
                scored,
                mean_dev: (!dev_scores.is_empty())
                    .then(|| dev_scores.iter().sum::<f64>() / dev_scores.len() as f64),
                best_dev,
                best_so_far,
                dev_scores,
            }
        })
        .collect()
}

/// Table 1 (and Table 3 when there is a transfer family), for the terminal.
pub fn summary_table(f: &Final) -> String {
    let mut t = selection(&f.main);
    t.push_str(&table(&f.main.table));
    if let Some(tr) = &f.transfer {
        t.push_str("\ntransfer to the second family (everything re-tuned on its dev):\n");
        t.push_str(&selection(tr));
        t.push_str(&table(&tr.table));
    }
    t
}

fn selection(f: &FamilyResult) -> String {
    format!(
        "Selection over {} programs and {} tuning evaluations on dev.\n",
        f.programs, f.evaluations
    )
}

/// "+2.5 [-0.3, 5.1], p 0.081" in points: the paired difference against the baseline.
fn show_paired(p: Option<Paired>) -> String {
    match p {
        Some(p) if p.only_a + p.only_b == 0 && p.diff == 0.0 => "same answers".into(),
        Some(p) => format!(
            "{:+.1} [{:+.1}, {:+.1}], p {}",
            100.0 * p.diff,
            100.0 * p.ci[0],
            100.0 * p.ci[1],
            if p.p_value < 0.001 {
                "< 0.001".to_string()
            } else {
                format!("{:.3}", p.p_value)
            }
        ),
        None => "–".into(),
    }
}

fn table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| method | dev | test | test vs baseline: diff [95% CI], McNemar p |\n|---|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} |",
            r.name,
            r.dev.map(|a| a.show()).unwrap_or_else(|| "–".into()),
            r.test.map(|a| a.show()).unwrap_or_else(|| "–".into()),
            show_paired(r.paired)
        );
    }
    t
}

/// A family's sections: Table 1 (or 3), the contenders, the headroom table.
fn family_sections(md: &mut String, title: &str, f: &FamilyResult) {
    let _ = writeln!(md, "## {title}\n");
    md.push_str(&selection(f));
    md.push_str(
        "Each contender had the same search on dev (`tune_budget` points); its best point \
         was scored once on test (with `test_finalists`, only the finalists' were). Differences are paired on the same problems against the \
         baseline to beat, in points, with Newcombe's 95% interval and McNemar's exact p.\n\n",
    );
    md.push_str(&table(&f.table));
    let _ = writeln!(md, "\n### Every contender, tuned on dev\n");
    md.push_str(&table(&f.contenders));
    if !f.excluded.is_empty() {
        let _ = writeln!(md, "\nNot contenders: {}.", f.excluded.join("; "));
    }
    let _ = writeln!(
        md,
        "\n### Headroom (references; never used to choose anything)\n"
    );
    md.push_str(&table(&f.headroom));
}

pub fn write_report(cfg: &RunConfig, f: &Final) -> Result<(), String> {
    let mut md = String::from("# mergec develop: report\n\n");
    let _ = writeln!(
        md,
        "Generator `{}`; {} iterations of {} programs; dev {} ({} problems{}), test {}; \
         tune_budget {}, tune_top {}.\n\
         Accuracies in percent with 95% Wilson intervals.\n",
        cfg.generator,
        cfg.iterations,
        cfg.programs,
        cfg.dev.display(),
        if cfg.dev_limit > 0 {
            cfg.dev_limit.to_string()
        } else {
            "all".into()
        },
        if cfg.dev_limit > 0 { " at most" } else { "" },
        cfg.test.display(),
        cfg.tune_budget,
        cfg.tune_top,
    );
    family_sections(
        &mut md,
        "Table 1: the seed, the candidates, the baseline to beat and the best discovered program",
        &f.main,
    );
    md.push_str("\n## Table 2: per iteration\n\n| iteration | generated | valid | valid rate | scored (new) | mean dev of valid | best dev | best so far |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let pct = |x: Option<f64>| {
        x.map(|v| format!("{:.1}", 100.0 * v))
            .unwrap_or_else(|| "–".into())
    };
    for s in &f.iterations {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1}% | {} | {} | {} | {} |",
            s.iteration,
            s.generated,
            s.valid,
            100.0 * s.valid as f64 / s.generated.max(1) as f64,
            s.scored,
            pct(s.mean_dev),
            pct(s.best_dev),
            pct(s.best_so_far)
        );
    }
    if let Some(c) = &f.controls {
        md.push_str(&c.markdown());
    }
    md.push_str("\n## The best programs on dev (dev at their defaults, in the loop; test at the tuned point)\n\n");
    let rows: Vec<Row> = f.discovered.iter().map(|d| d.0.clone()).collect();
    md.push_str(&table(&rows));
    if let Some((_, _, src)) = f.discovered.first() {
        let _ = writeln!(md, "\nThe best (also in `best/`):\n\n```merge\n{src}\n```");
    }
    if let Some(t) = &f.transfer {
        md.push('\n');
        family_sections(
            &mut md,
            "Table 3: transfer to the second family (baselines and programs re-tuned on its dev)",
            t,
        );
    }
    md.push_str(
        "\n## The paper's baseline grid on dev (reference; the tables use the tuned search)\n\n",
    );
    md.push_str(&table(&f.grid));
    md.push_str("\n![dev scores per iteration](dev-scores.png)\n![valid rate](valid-rate.png)\n![best so far](best-so-far.png)\n");
    let dir = &cfg.run_dir;
    super::plots::write_all(dir, &f.iterations)?;
    crate::files::write_atomic(&dir.join("report.md"), md.as_bytes())?;
    let json = serde_json::to_string_pretty(f).map_err(|e| e.to_string())?;
    Ok(crate::files::write_atomic(
        &dir.join("report.json"),
        json.as_bytes(),
    )?)
}
