//! `mergec zoo`: build the testbed's model families (see docs/zoo.md), or score models
//! on a zoo data set.

use crate::zoo;
use std::path::PathBuf;

/// The command line of `mergec zoo`.
#[derive(clap::Args, Debug, Clone)]
pub struct ZooArgs {
    /// The zoo directory: family1/ and family2/ go inside.
    #[arg(long, required_unless_present_any = ["score", "probe"])]
    pub out: Option<PathBuf>,
    /// Which family to build: 1, 2 or all.
    #[arg(long, default_value = "all", value_parser = ["1", "2", "all"])]
    pub family: String,
    /// Rebuild even if the directory holds a build of the same spec.
    #[arg(long)]
    pub force: bool,
    /// Spec override for experiments, e.g. --set base.steps=300 --set expert.tune=mlp
    /// (changes the spec hash, so the family is rebuilt).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// Instead of building, score these model directories on --data (zero-shot,
    /// greedy): prints accuracy, 95% interval, problems and seconds per model.
    #[arg(long = "score", value_name = "MODEL")]
    pub score: Vec<PathBuf>,
    /// GSM8K-format JSONL for --score (e.g. DIR/family1/dev.jsonl).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Score only the first N problems.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Research probe: score these model directories on each problem kind of the
    /// family (all facts), printing a table.
    #[arg(long = "probe", value_name = "MODEL", hide = true)]
    pub probe: Vec<PathBuf>,
}

pub fn run(a: &ZooArgs) -> i32 {
    let r = if !a.probe.is_empty() {
        probe(a)
    } else if a.score.is_empty() {
        build(a)
    } else {
        score(a)
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn build(a: &ZooArgs) -> Result<(), String> {
    let families: Vec<u32> = match a.family.as_str() {
        "1" => vec![1],
        "2" => vec![2],
        _ => vec![1, 2],
    };
    let t0 = std::time::Instant::now();
    let out = a.out.as_ref().ok_or("--out DIR is needed")?;
    let specs = families
        .iter()
        .map(|&f| zoo::apply_overrides(&zoo::default_spec(f), &a.sets))
        .collect::<Result<Vec<_>, _>>()?;
    // Families are independent: with two or more cores they train side by side, each
    // on its share of the cores (the bits do not depend on it).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let build_one = |spec: &zoo::FamilySpec| -> Result<(), String> {
        let f = spec.family;
        let built = zoo::build_family(out, spec, a.force, &mut |m| eprintln!("{m}"))?;
        if built.trained {
            eprintln!(
                "family{f}: built in {:.1}s -> {}",
                built.seconds,
                built.dir.display()
            );
        } else {
            eprintln!(
                "family{f}: up to date (spec {}) -> {}",
                zoo::spec_hash(spec),
                built.dir.display()
            );
        }
        Ok(())
    };
    if specs.len() > 1 && cores >= 2 {
        crate::model::elementwise_on_caller_thread();
        let per = (cores / specs.len()).max(1);
        let results: Vec<Result<(), String>> = std::thread::scope(|s| {
            let hs: Vec<_> = specs
                .iter()
                .map(|spec| {
                    let build_one = &build_one;
                    s.spawn(move || {
                        match rayon::ThreadPoolBuilder::new().num_threads(per).build() {
                            Ok(pool) => pool.install(|| build_one(spec)),
                            Err(_) => build_one(spec),
                        }
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("a family's build panicked".into()))
                })
                .collect()
        });
        results.into_iter().collect::<Result<Vec<_>, _>>()?;
    } else {
        for spec in &specs {
            build_one(spec)?;
        }
    }
    eprintln!("zoo: {:.1}s", t0.elapsed().as_secs_f64());
    Ok(())
}

fn score(a: &ZooArgs) -> Result<(), String> {
    let data = a.data.as_ref().ok_or("--score needs --data FILE.jsonl")?;
    let mut problems = crate::eval::gsm8k::load_jsonl(data)?;
    if let Some(n) = a.limit {
        problems.truncate(n);
    }
    for m in &a.score {
        let s = zoo::score::score_dir(m, &problems)?;
        let (acc, lo, hi) = s.accuracy();
        println!(
            "{}\t{:.1}\t[{:.1}, {:.1}]\t{}\t{:.2}s",
            m.display(),
            acc * 100.0,
            lo * 100.0,
            hi * 100.0,
            s.total,
            s.seconds
        );
    }
    Ok(())
}

fn probe(a: &ZooArgs) -> Result<(), String> {
    let f: u32 = a
        .family
        .parse()
        .map_err(|_| "--probe needs --family 1 or 2")?;
    let spec = zoo::apply_overrides(&zoo::default_spec(f), &a.sets)?;
    let n = a.limit.unwrap_or(100);
    let rows = zoo::score::probe(&spec, &a.probe, n)?;
    print!("{rows}");
    Ok(())
}
