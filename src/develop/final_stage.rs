//! The end of a run: every contender (each stdlib method that takes the family's number
//! of models, and the `tune_top` best distinct programs on dev) tuned with the same
//! search and budget on dev (see [`super::tune`]), its best point scored once on test;
//! the seed, the candidates and the headroom references; the same on the transfer
//! family (everything re-tuned there); then the report. Every score is recorded as it
//! is made ([`super::scores`]), so a resumed run scores nothing twice.

use super::config::RunConfig;
use super::driver::{Event, Outcome, ProgramRecord};
use super::record::RunLog;
use super::report::{Acc, FamilyResult, Final, Row, iteration_stats, write_report};
use super::scores::{Job, JobKind, Scorer};
use super::tune::{Contender, Params, best_point, search_points, show_point, signature};
use crate::eval::gsm8k::{Problem, load_jsonl};
use crate::types::Const;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One family of the final stage and its contenders with their search points.
struct Family {
    /// Record-key prefix: "family" or "transfer".
    tag: &'static str,
    /// Prefix of the seed's and candidates' keys ("" or "transfer ", as older runs).
    refs: &'static str,
    base: PathBuf,
    models: Vec<PathBuf>,
    dev: Vec<Problem>,
    test: Vec<Problem>,
    multitask: Option<PathBuf>,
    contenders: Vec<(Contender, Vec<Params>)>,
    excluded: Vec<String>,
}

impl Family {
    fn dev_key(&self, c: &Contender, k: usize) -> String {
        format!("{} dev {} point {k}", self.tag, c.key)
    }
    fn test_key(&self, c: &Contender, k: usize) -> String {
        format!("{} test {} point {k}", self.tag, c.key)
    }
    fn oracle_key(&self, k: usize) -> String {
        format!("{} oracle test point {k}", self.tag)
    }
    fn job<'p>(&self, key: String, src: &str, params: Params, problems: &'p [Problem]) -> Job<'p> {
        Job {
            key,
            what: JobKind::Program {
                src: src.to_string(),
                params,
                base: self.base.clone(),
                models: self.models.clone(),
            },
            problems,
        }
    }
    /// The point a contender's dev scores chose (None: every point failed).
    fn chosen(&self, s: &Scorer, i: usize) -> Option<usize> {
        let (c, points) = &self.contenders[i];
        let dev: Vec<Option<f64>> = (0..points.len())
            .map(|k| s.get(&self.dev_key(c, k)).map(|a| a.accuracy))
            .collect();
        best_point(&dev)
    }
    /// Whether contender `i` is scored on test: every discovered program, and the
    /// `test_finalists` best stdlib methods by their chosen dev score (ties: the
    /// earlier; 0: every one).
    fn finalist(&self, s: &Scorer, i: usize, k: usize) -> bool {
        let (c, _) = &self.contenders[i];
        if !c.stdlib || k == 0 {
            return true;
        }
        let dev = |j: usize| {
            let (cj, _) = &self.contenders[j];
            self.chosen(s, j)
                .and_then(|p| s.get(&self.dev_key(cj, p)))
                .map(|a| a.accuracy)
        };
        let Some(mine) = dev(i) else { return false };
        let better = (0..self.contenders.len())
            .filter(|&j| j != i && self.contenders[j].0.stdlib)
            .filter(|&j| dev(j).is_some_and(|d| d > mine || (d == mine && j < i)))
            .count();
        better < k
    }
    /// The oracle's points: task arithmetic's per-model weights and its overall scale.
    fn oracle_points(&self, cfg: &RunConfig) -> Vec<Params> {
        let Some(sig) = crate::stdlib::method("task_arithmetic").map(|m| m.sig) else {
            return vec![];
        };
        search_points(
            &sig,
            self.models.len(),
            cfg.tune_budget,
            cfg.seed ^ 0x0AC1E,
            Some(&["weight", "lambda"]),
        )
    }
}

/// The contenders of a family of `n` models: the stdlib methods that take `n`, then
/// the discovered programs, each with its `tune_budget` search points.
fn contenders(cfg: &RunConfig, n: usize, top: &[&ProgramRecord]) -> Family {
    let (mut list, excluded) = super::tune::stdlib_contenders(n);
    for (rank, r) in top.iter().take(cfg.tune_top).enumerate() {
        let c = r.assessed.canonical.as_deref().unwrap_or_default();
        list.push(Contender {
            name: format!("discovered #{} ({})", rank + 1, &c[..8.min(c.len())]),
            key: format!("program {}", &c[..16.min(c.len())]),
            src: r.assessed.program.clone().unwrap_or_default(),
            stdlib: false,
        });
    }
    let contenders = list
        .into_iter()
        .map(|c| {
            let points = match signature(&c.src) {
                Some(sig) => search_points(&sig, n, cfg.tune_budget, cfg.seed, None),
                None => vec![vec![]],
            };
            (c, points)
        })
        .collect();
    Family {
        tag: "",
        refs: "",
        base: PathBuf::new(),
        models: vec![],
        dev: vec![],
        test: vec![],
        multitask: None,
        contenders,
        excluded,
    }
}

fn load(path: &Path, limit: usize) -> Result<Vec<Problem>, String> {
    let mut p = load_jsonl(path)?;
    if limit > 0 {
        p.truncate(limit);
    }
    Ok(p)
}

fn programs(events: &[Event]) -> impl Iterator<Item = &ProgramRecord> {
    events.iter().filter_map(|e| match e {
        Event::Program(r) => Some(r),
        _ => None,
    })
}

/// The `n` best distinct programs on dev (ties: the earliest).
fn top_programs(events: &[Event], n: usize) -> Vec<&ProgramRecord> {
    let mut by_hash: HashMap<&str, &ProgramRecord> = HashMap::new();
    for r in programs(events) {
        if let (Some(c), Outcome::Scored { .. }) = (r.assessed.canonical.as_deref(), &r.outcome) {
            by_hash.entry(c).or_insert(r);
        }
    }
    let mut top: Vec<&ProgramRecord> = by_hash.into_values().collect();
    top.sort_by(|a, b| {
        b.dev()
            .unwrap_or(0.0)
            .total_cmp(&a.dev().unwrap_or(0.0))
            .then((a.iteration, a.index).cmp(&(b.iteration, b.index)))
    });
    top.truncate(n);
    top
}

/// The families of the run: the main one, and the transfer family when configured.
fn families(cfg: &RunConfig, top: &[&ProgramRecord]) -> Result<Vec<Family>, String> {
    let mut main = contenders(cfg, cfg.models.len(), top);
    main.tag = "family";
    main.base = cfg.base.clone();
    main.models = cfg.models.clone();
    main.dev = load(&cfg.dev, cfg.dev_limit)?;
    main.test = load(&cfg.test, cfg.test_limit)?;
    main.multitask = cfg.multitask.clone();
    let mut out = vec![main];
    if let (Some(tb), Some(td), Some(tt)) =
        (&cfg.transfer_base, &cfg.transfer_dev, &cfg.transfer_test)
        && !cfg.transfer_models.is_empty()
    {
        let mut f = contenders(cfg, cfg.transfer_models.len(), top);
        f.tag = "transfer";
        f.refs = "transfer ";
        f.base = tb.clone();
        f.models = cfg.transfer_models.clone();
        f.dev = load(td, cfg.dev_limit)?;
        f.test = load(tt, cfg.test_limit)?;
        f.multitask = cfg.transfer_multitask.clone();
        out.push(f);
    }
    Ok(out)
}

/// The seed's, the candidates' and the multi-task model's scores on dev and test.
fn reference_jobs(f: &Family) -> Vec<Job<'_>> {
    let model = |key: String, dir: &Path, problems| Job {
        key,
        what: JobKind::Model(dir.to_path_buf()),
        problems,
    };
    let r = f.refs;
    let mut jobs = vec![
        model(format!("{r}seed dev"), &f.base, &f.dev),
        model(format!("{r}seed test"), &f.base, &f.test),
    ];
    for (i, m) in f.models.iter().enumerate() {
        jobs.push(model(format!("{r}candidate {i} dev"), m, &f.dev));
        jobs.push(model(format!("{r}candidate {i} test"), m, &f.test));
    }
    if let Some(m) = &f.multitask {
        jobs.push(model(format!("{r}multitask dev"), m, &f.dev));
        jobs.push(model(format!("{r}multitask test"), m, &f.test));
    }
    jobs
}

/// Every contender's search points on dev.
fn tune_jobs(f: &Family) -> Vec<Job<'_>> {
    let mut jobs = vec![];
    for (c, points) in &f.contenders {
        for (k, p) in points.iter().enumerate() {
            jobs.push(f.job(f.dev_key(c, k), &c.src, p.clone(), &f.dev));
        }
    }
    jobs
}

/// Each contender's chosen point on test, and the oracle's points on test.
fn test_jobs<'f>(cfg: &RunConfig, s: &Scorer, f: &'f Family) -> Vec<Job<'f>> {
    let mut jobs = vec![];
    for (i, (c, points)) in f.contenders.iter().enumerate() {
        if let Some(k) = f
            .chosen(s, i)
            .filter(|_| f.finalist(s, i, cfg.test_finalists))
        {
            jobs.push(f.job(f.test_key(c, k), &c.src, points[k].clone(), &f.test));
        }
    }
    if let Some(ta) = crate::stdlib::method("task_arithmetic") {
        for (k, p) in f.oracle_points(cfg).into_iter().enumerate() {
            jobs.push(f.job(f.oracle_key(k), ta.source, p, &f.test));
        }
    }
    jobs
}

/// A row of scores recorded under `dev` and `test`.
fn row(s: &Scorer, name: String, dev: Option<String>, test: Option<String>) -> Row {
    Row {
        name,
        dev: dev.as_deref().and_then(|k| s.get(k)),
        test: test.as_deref().and_then(|k| s.get(k)),
        paired: None,
        paired_dev: None,
        dev_key: dev,
        test_key: test,
    }
}

fn dir_name(m: &Path) -> String {
    m.file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// A family's tables: its contenders tuned, the baseline to beat, the headroom rows.
fn family_result(cfg: &RunConfig, s: &Scorer, f: &Family) -> FamilyResult {
    let r = f.refs;
    let mut table = vec![row(
        s,
        "seed model (base)".into(),
        Some(format!("{r}seed dev")),
        Some(format!("{r}seed test")),
    )];
    for (i, m) in f.models.iter().enumerate() {
        table.push(row(
            s,
            format!("candidate: {}", dir_name(m)),
            Some(format!("{r}candidate {i} dev")),
            Some(format!("{r}candidate {i} test")),
        ));
    }
    let mut rows: Vec<(bool, Row)> = vec![];
    for (i, (c, points)) in f.contenders.iter().enumerate() {
        let finalist = f.finalist(s, i, cfg.test_finalists);
        let name = match f.chosen(s, i) {
            Some(k) if !finalist => format!(
                "{} (tuned: {}; not among the {} best on dev: not scored on test)",
                c.name,
                show_point(&points[k]),
                cfg.test_finalists
            ),
            Some(k) => format!("{} (tuned: {})", c.name, show_point(&points[k])),
            None => match s.failure(&f.dev_key(c, 0)) {
                // The first line of the defaults' failure: why the method does not apply.
                Some(why) => format!(
                    "{} (every point failed; at its defaults: {})",
                    c.name,
                    why.lines().next().unwrap_or(why).replace('|', "/")
                ),
                None => format!("{} (every point failed)", c.name),
            },
        };
        let k = f.chosen(s, i);
        rows.push((
            c.stdlib,
            row(
                s,
                name,
                k.map(|k| f.dev_key(c, k)),
                k.filter(|_| finalist).map(|k| f.test_key(c, k)),
            ),
        ));
    }
    let best = |stdlib: bool| {
        rows.iter()
            .filter(|(st, r)| *st == stdlib && r.dev.is_some())
            .max_by(|a, b| {
                let d = |r: &Row| r.dev.map_or(0.0, |a| a.accuracy);
                // max_by keeps the last of equals: compare so the first wins.
                d(&a.1)
                    .total_cmp(&d(&b.1))
                    .then(std::cmp::Ordering::Greater)
            })
            .map(|(_, r)| r.clone())
    };
    let baseline = best(true);
    let discovered = best(false);
    if let Some(b) = &baseline {
        table.push(Row {
            name: format!("the baseline to beat: {}", b.name),
            ..b.clone()
        });
    }
    if let Some(d) = &discovered {
        table.push(Row {
            name: format!("best tuned discovered program: {}", d.name),
            ..d.clone()
        });
    }
    let mut headroom = vec![];
    if let Some(b) = &baseline {
        headroom.push(Row {
            name: format!("the baseline to beat: {}", b.name),
            ..b.clone()
        });
    }
    let oracle: Vec<Option<f64>> = (0..f.oracle_points(cfg).len())
        .map(|k| s.get(&f.oracle_key(k)).map(|a| a.accuracy))
        .collect();
    if let Some(k) = best_point(&oracle) {
        headroom.push(row(
            s,
            "oracle merge (task arithmetic's per-model weights and lambda searched on TEST with the same budget; a ceiling diagnostic, not a result)".into(),
            None,
            Some(f.oracle_key(k)),
        ));
    }
    if f.multitask.is_some() {
        headroom.push(row(
            s,
            "multi-task model (upper bound, reference)".into(),
            Some(format!("{r}multitask dev")),
            Some(format!("{r}multitask test")),
        ));
    }
    let mut all: Vec<Row> = rows.into_iter().map(|(_, r)| r).collect();
    if let Some(b) = &baseline {
        for t in [&mut table, &mut all, &mut headroom] {
            pair_with(s, t, b);
        }
    }
    FamilyResult {
        table,
        contenders: all,
        excluded: f.excluded.clone(),
        programs: f.contenders.len(),
        evaluations: f.contenders.iter().map(|(_, p)| p.len()).sum(),
        headroom,
    }
}

/// Each row compared with `baseline` on the same problems, on test and on dev.
fn pair_with(s: &Scorer, rows: &mut [Row], baseline: &Row) {
    let hits = |k: &Option<String>| k.as_deref().and_then(|k| s.hits(k));
    for r in rows {
        if let (Some(a), Some(b)) = (hits(&r.test_key), hits(&baseline.test_key)) {
            r.paired = crate::eval::stats::paired(a, b);
        }
        if let (Some(a), Some(b)) = (hits(&r.dev_key), hits(&baseline.dev_key)) {
            r.paired_dev = crate::eval::stats::paired(a, b);
        }
    }
}

/// The paper's grid on dev (`baseline_grid`): task arithmetic's lambda and TIES'
/// density and lambda. Shown for reference; the tables use the tuned search.
fn grid_points(cfg: &RunConfig) -> Vec<(String, &'static str, Params)> {
    let f = |v: f64| Const::F32(v as f32);
    let mut v = vec![];
    for &g in &cfg.baseline_grid {
        let p = vec![("lambda".to_string(), f(g))];
        v.push((format!("task_arithmetic lambda={g}"), "task_arithmetic", p));
    }
    for &d in &cfg.baseline_grid {
        for &g in &cfg.baseline_grid {
            let p = vec![
                ("density".to_string(), f(d)),
                ("lambda".to_string(), f(2.0 * g)),
            ];
            v.push((format!("ties density={d} lambda={}", 2.0 * g), "ties", p));
        }
    }
    v
}

fn grid_jobs<'f>(cfg: &RunConfig, f: &'f Family) -> Vec<Job<'f>> {
    grid_points(cfg)
        .into_iter()
        .filter_map(|(name, method, p)| {
            let src = crate::stdlib::method(method)?.source;
            Some(f.job(format!("family dev {name}"), src, p, &f.dev))
        })
        .collect()
}

/// Runs the final stage and writes `report.md`, `report.json`, the plots and `best/`.
pub fn finalize(
    cfg: &RunConfig,
    log: &mut RunLog,
    events: &[Event],
    say: &mut dyn FnMut(&str),
) -> Result<Final, String> {
    let mut s = Scorer::new(cfg, log, events, say);
    let top = top_programs(events, cfg.top_test.max(cfg.tune_top));
    let fams = families(cfg, &top)?;
    // Everything on dev (and the references on test) first, then each contender's
    // chosen point and the oracle on test.
    let mut jobs = vec![];
    for f in &fams {
        jobs.extend(reference_jobs(f));
        jobs.extend(tune_jobs(f));
    }
    jobs.extend(grid_jobs(cfg, &fams[0]));
    s.prefetch(jobs)?;
    let mut jobs = vec![];
    for f in &fams {
        jobs.extend(test_jobs(cfg, &s, f));
    }
    s.prefetch(jobs)?;
    for f in &fams {
        // A model that failed in prefetch stops here with its reason.
        for j in reference_jobs(f) {
            if let JobKind::Model(dir) = &j.what {
                s.model(&j.key, dir, j.problems)?;
            }
        }
    }
    let main = family_result(cfg, &s, &fams[0]);
    let transfer = fams.get(1).map(|f| family_result(cfg, &s, f));
    let grid = grid_points(cfg)
        .into_iter()
        .map(|(name, ..)| row(&s, name.clone(), Some(format!("family dev {name}")), None))
        .collect();
    let discovered = write_best(cfg, &s, &fams[0], &top)?;
    let fin = Final {
        controls: super::controls::table(cfg, events),
        iterations: iteration_stats(cfg, events),
        main,
        transfer,
        grid,
        discovered,
    };
    write_report(cfg, &fin)?;
    Ok(fin)
}

/// Writes `best/` (the best programs on dev, each with its scores) and returns their
/// rows: the discovery loop's dev score at the defaults, and for the contenders among
/// them the tuned dev and test.
fn write_best(
    cfg: &RunConfig,
    s: &Scorer,
    f: &Family,
    top: &[&ProgramRecord],
) -> Result<Vec<(Row, usize, String)>, String> {
    let best_dir = cfg.run_dir.join("best");
    std::fs::create_dir_all(&best_dir).map_err(|e| format!("{}: {e}", best_dir.display()))?;
    let mut out = vec![];
    for (rank, r) in top.iter().enumerate() {
        let c = r.assessed.canonical.clone().unwrap_or_default();
        let src = r.assessed.program.clone().unwrap_or_default();
        let loop_dev = match &r.outcome {
            Outcome::Scored {
                dev, correct, n, ..
            } => Some(Acc {
                accuracy: *dev,
                correct: *correct,
                n: *n,
            }),
            _ => None,
        };
        let key = format!("program {}", &c[..16.min(c.len())]);
        let tuned = f
            .contenders
            .iter()
            .position(|(k, _)| k.key == key)
            .and_then(|i| Some((i, f.chosen(s, i)?)));
        let (test, point) = match tuned {
            Some((i, k)) => (
                s.get(&f.test_key(&f.contenders[i].0, k)),
                show_point(&f.contenders[i].1[k]),
            ),
            None => (None, "not tuned (beyond tune_top)".into()),
        };
        let header = format!(
            "# Discovered by mergec develop: iteration {}, program {}, rank {} on dev.\n\
             # dev at its defaults {}; tuned: {point}; test at the tuned point {}\n",
            r.iteration,
            r.index,
            rank + 1,
            loop_dev.map(|a| a.show()).unwrap_or_default(),
            test.map(|a| a.show()).unwrap_or_else(|| "–".into())
        );
        let file = best_dir.join(format!("{:02}-{}.merge", rank + 1, &c[..8.min(c.len())]));
        crate::files::write_atomic(&file, format!("{header}{src}\n").as_bytes())?;
        let name = format!(
            "#{} (iteration {}, {}; tuned: {point})",
            rank + 1,
            r.iteration,
            &c[..8.min(c.len())]
        );
        out.push((
            Row {
                name,
                dev: loop_dev,
                test,
                paired: None,
                paired_dev: None,
                dev_key: None,
                test_key: None,
            },
            r.iteration,
            src,
        ));
    }
    Ok(out)
}
