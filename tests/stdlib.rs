//! Every stdlib method against a plainly written Rust reference of mergekit 0.1.5
//! (tests/reference/), over odd 1-D and 2-D shapes (1, 3, 50, 783 entries;
//! [3,50], [50,3], [1,783]), 1 to 3 models, seven kinds of task vectors (normal,
//! all-zero, equal magnitudes with exact sign ties, mixed zero/base models,
//! identical models, opposite models, tiny magnitudes that trip every eps guard)
//! and several parameter settings per method.
//!
//! Tolerance: the error is max |got - reference| / max |reference| over the
//! tensor and must stay below REL_TOL = 1e-6 (karcher's iterations included);
//! NaN positions must coincide. Masks are exact: the sparsifying methods must
//! leave exactly the same entries at the base value as the reference (random
//! masks use the documented generator, re-derived in tests/reference/rng.rs;
//! magnitude ties keep the lower index, where torch leaves the order open).
//!
//! Run with `cargo test --release --test stdlib`.

mod common;
mod reference;

use common::*;
use reference::gta::{Gta, gta};
use reference::{misc, sphere};

const REL_TOL: f32 = 1e-6;

// ---- the library as a whole ----

#[test]
fn every_stdlib_file_checks_and_defines_its_merge() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("stdlib");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).expect("stdlib dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("merge") {
            continue;
        }
        files += 1;
        let src = std::fs::read_to_string(&path).expect("read");
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let (_, sigs) = mergec::check_source(&src)
            .unwrap_or_else(|d| panic!("{} does not check: {d:?}", path.display()));
        let names: Vec<&str> = sigs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, vec![stem], "{}", path.display());
        assert_eq!(sigs[0].ranks, vec![1, 2], "{stem} must run on 1-D and 2-D");
    }
    assert_eq!(files, 17);
}

#[test]
fn methods_lists_the_seventeen() {
    let names: Vec<String> = mergec::stdlib::methods()
        .into_iter()
        .map(|m| m.sig.name)
        .collect();
    let want = [
        "linear",
        "task_arithmetic",
        "ties",
        "dare_linear",
        "dare_ties",
        "breadcrumbs",
        "breadcrumbs_ties",
        "della",
        "della_linear",
        "sce",
        "model_stock",
        "nearswap",
        "slerp",
        "nuslerp",
        "multislerp",
        "karcher",
        "algorithm_a",
    ];
    assert_eq!(names, want);
}

#[test]
fn headers_give_summary_source_and_every_parameter() {
    for m in mergec::stdlib::methods() {
        let name = &m.sig.name;
        assert!(
            m.summary.len() > 20 && !m.summary.contains("placeholder"),
            "{name}: summary `{}`",
            m.summary
        );
        assert!(m.header.contains("Source:"), "{name}: no source");
        if name != "algorithm_a" {
            assert!(
                m.header.contains(&format!("mergekit 0.1.5 `{name}`")),
                "{name}: header must name mergekit 0.1.5 `{name}`"
            );
        }
        for p in &m.sig.params {
            assert!(
                m.header.contains(&format!("{}:", p.name)),
                "{name}: parameter `{}` is not documented",
                p.name
            );
        }
    }
}

// ---- generalized task arithmetic ----

fn gta_params(g: &Gta) -> Vec<(String, mergec::types::Const)> {
    vec![
        fl("weight", &g.weight),
        fl("density", &g.density),
        fl("gamma", &g.gamma),
        fl("epsilon", &g.epsilon),
        f("lambda", g.lambda),
        b("normalize", g.normalize),
        b("rescale", g.rescale),
        b("paper_rescale", g.paper_rescale),
    ]
}

fn gta_settings(method: &str, k: usize) -> Vec<Gta> {
    let d = Gta::defaults(method, k);
    vec![
        Gta {
            density: vec![0.5; k],
            weight: per_model(&[1.0, 0.5, -0.3], k),
            ..d.clone()
        },
        Gta {
            density: per_model(&[0.3, 0.9, 0.0], k),
            gamma: vec![0.3; k],
            rescale: !d.rescale,
            normalize: !d.normalize,
            lambda: 0.7,
            ..d.clone()
        },
        Gta {
            density: vec![0.0; k],
            ..d.clone()
        },
        Gta {
            weight: per_model(&[0.6, 1.3, 0.2], k),
            lambda: 1.5,
            normalize: true,
            ..d.clone()
        },
        Gta {
            density: vec![0.7; k],
            paper_rescale: true,
            gamma: per_model(&[0.1, 0.0, 0.05], k),
            epsilon: per_model(&[0.05, 0.1, 0.2], k),
            ..d.clone()
        },
        Gta {
            density: vec![0.2; k],
            weight: vec![0.6; k],
            rescale: true,
            normalize: !d.normalize,
            ..d.clone()
        },
        Gta {
            density: vec![0.6; k],
            weight: per_model(&[0.5, -0.5], k),
            normalize: true,
            ..d.clone()
        },
    ]
}

/// Defaults (no overrides) and every setting, on every case.
fn gta_sweep(method: &str) {
    let m = Method::new(method);
    let mut worst = 0.0f32;
    let mut runs = 0;
    for c in all_cases(1) {
        let k = c.models.len();
        let mut settings = vec![(Gta::defaults(method, k), vec![])];
        for g in gta_settings(method, k) {
            let p = gta_params(&g);
            settings.push((g, p));
        }
        for (i, (g, params)) in settings.iter().enumerate() {
            let what = format!("{method} setting {i} on {}", c.label);
            let want = gta(g, &c.base, &c.models, &c.shape, SEED, TENSOR);
            let got = m.run_with(&c, params);
            worst = worst.max(assert_close(&got, &want, REL_TOL, &what));
            assert_same_support(&got, &want, &c.base, &what);
            runs += 1;
        }
    }
    eprintln!("{method}: {runs} runs, worst relative error {worst:e}");
}

#[test]
fn task_arithmetic_matches_mergekit() {
    gta_sweep("task_arithmetic");
}

#[test]
fn ties_matches_mergekit() {
    gta_sweep("ties");
}

#[test]
fn dare_linear_matches_mergekit() {
    gta_sweep("dare_linear");
}

#[test]
fn dare_ties_matches_mergekit() {
    gta_sweep("dare_ties");
}

#[test]
fn breadcrumbs_matches_mergekit() {
    gta_sweep("breadcrumbs");
}

#[test]
fn breadcrumbs_ties_matches_mergekit() {
    gta_sweep("breadcrumbs_ties");
}

#[test]
fn della_matches_mergekit() {
    gta_sweep("della");
}

#[test]
fn della_linear_matches_mergekit() {
    gta_sweep("della_linear");
}

#[test]
fn breadcrumbs_small_tensors_keep_their_top_entries() {
    // floor(0.01 * 99) = 0 outliers: mergekit 0.1.4's empty slice dropped everything; 0.1.5
    // keeps the top floor(0.5 * n) entries, as here.
    let m = Method::new("breadcrumbs");
    for shape in [&[99][..], &[100], &[3, 33], &[4, 25]] {
        let c = case(shape, 2, Kind::Normal, 3);
        let g = Gta {
            density: vec![0.5; 2],
            ..Gta::defaults("breadcrumbs", 2)
        };
        let got = m.run_with(&c, &gta_params(&g));
        let want = gta(&g, &c.base, &c.models, &c.shape, SEED, TENSOR);
        assert_close(&got, &want, REL_TOL, &format!("{shape:?}"));
        let n: usize = shape.iter().product();
        let changed = got.iter().zip(&c.base).filter(|(g, b)| g != b).count();
        assert!(
            changed >= n / 2 && changed <= n,
            "{shape:?}: {changed} changed"
        );
    }
}

#[test]
fn sparsifiers_keep_the_expected_counts() {
    let c = case(&[40, 100], 1, Kind::Normal, 5);
    let kept = |method: &str, extra: Vec<(String, mergec::types::Const)>| -> usize {
        let out = Method::new(method).run_with(&c, &extra);
        out.iter().zip(&c.base).filter(|(o, b)| o != b).count()
    };
    // TIES: exactly floor(0.29 * 4000) = 1160 (Python: 0.29 * 4000 = 1160.0000000000002).
    assert_eq!(kept("ties", vec![f("density", 0.29)]), 1160);
    // Breadcrumbs: 40 largest skipped, the next 1000 kept.
    assert_eq!(kept("breadcrumbs", vec![f("density", 0.25)]), 1000);
    // DARE and DELLA: random, about density * n.
    for method in ["dare_linear", "della_linear"] {
        let n = kept(method, vec![f("density", 0.3)]);
        assert!((1050..=1350).contains(&n), "{method} kept {n} of 4000");
    }
}

#[test]
fn ties_density_zero_drops_and_tiny_density_keeps_one() {
    let m = Method::new("ties");
    for shape in SHAPES {
        let c = case(shape, 1, Kind::Normal, 9);
        assert_eq!(m.run_with(&c, &[f("density", 0.0)]), c.base);
        // floor(0.001 * n) = 0 for n < 1000: mergekit 0.1.5 keeps the largest entry.
        let out = m.run_with(&c, &[f("density", 0.001)]);
        let changed = out.iter().zip(&c.base).filter(|(o, b)| o != b).count();
        assert_eq!(changed, 1, "{shape:?}");
    }
}

// ---- the other methods ----

#[test]
fn linear_matches_mergekit() {
    // (weights, normalize)
    let grid: [(&[f64], bool); 3] = [
        (&[1.0], true),
        (&[0.2, 0.5, 0.3], true),
        (&[1.0, -0.5, 2.0], false),
    ];
    let settings = |k| {
        grid_settings(&grid, k, |(w, n), k| {
            vec![fl("weight", &per_model(w, k)), b("normalize", n)]
        })
    };
    sweep("linear", settings, REL_TOL, |c, i| {
        let (w, normalize) = if i == 0 {
            (&[1.0][..], true)
        } else {
            grid[i - 1]
        };
        Some(misc::linear(
            &per_model(w, c.models.len()),
            normalize,
            &c.models,
        ))
    });
}

#[test]
fn sce_matches_mergekit() {
    let grid = [1.0, 0.5, 0.1, 0.999, 0.0];
    let settings = |k| grid_settings(&grid, k, |s, _| vec![f("select_topk", s)]);
    sweep("sce", settings, REL_TOL, |c, i| {
        let s = if i == 0 { 1.0 } else { grid[i - 1] };
        Some(misc::sce(s, &c.base, &c.models))
    });
}

#[test]
fn model_stock_matches_mergekit() {
    let grid = [true, false];
    let settings = |k| grid_settings(&grid, k, |fw, _| vec![b("filter_wise", fw)]);
    sweep("model_stock", settings, REL_TOL, |c, i| {
        // One model: no angle; mergekit refuses, here the base comes back.
        let out = misc::model_stock(i == 1, &c.base, &c.models, &c.shape);
        Some(out.unwrap_or(c.base.clone()))
    });
}

#[test]
fn nearswap_matches_mergekit() {
    let grid = [0.0001, 0.01, 0.05, 0.0, 1.0, 1e-7];
    let settings = |k| grid_settings(&grid, k, |t, _| vec![f("t", t)]);
    sweep("nearswap", settings, REL_TOL, |c, i| {
        let t = if i == 0 { 0.0001 } else { grid[i - 1] };
        Some(misc::nearswap(t, &c.base, &c.models[0]))
    });
}

#[test]
fn slerp_matches_mergekit() {
    let grid = [0.0, 0.3, 1.0, 0.75];
    let settings = |k| grid_settings(&grid, k, |t, _| vec![f("t", t)]);
    sweep("slerp", settings, REL_TOL, |c, i| {
        let t = if i == 0 { 0.5 } else { grid[i - 1] };
        Some(sphere::slerp(t, &c.base, &c.models[0]))
    });
}

#[test]
fn nuslerp_matches_mergekit() {
    // (weights, flatten, row_wise, use_base); defaults: ([1.0], true, false, true)
    let grid: [(&[f64], bool, bool, bool); 8] = [
        (&[1.0], true, false, true),
        (&[0.3, 0.7], true, false, true),
        (&[1.0, -1.0], true, false, true),
        (&[0.8, 0.2], false, false, true),
        (&[0.4, 0.6], false, true, true),
        (&[0.25, 0.75], true, false, false),
        (&[0.5, 2.0], false, true, false),
        (&[0.1, 0.9], false, false, false),
    ];
    let settings = |k| {
        grid_settings(&grid, k, |(w, flatten, row_wise, use_base), k| {
            vec![
                fl("weight", &per_model(w, k)),
                b("nuslerp_flatten", flatten),
                b("nuslerp_row_wise", row_wise),
                b("use_base", use_base),
            ]
        })
    };
    sweep("nuslerp", settings, REL_TOL, |c, i| {
        let (w, flatten, row_wise, use_base) = grid[i.saturating_sub(1)];
        let p = sphere::NuSlerp {
            weight: per_model(w, c.models.len()),
            flatten,
            row_wise,
            use_base,
        };
        Some(sphere::nuslerp(&p, &c.base, &c.models, &c.shape))
    });
}

#[test]
fn multislerp_matches_mergekit() {
    // (weights, normalize_weights, eps, use_base); defaults: ([1.0], true, 1e-8, true)
    let grid: [(&[f64], bool, f64, bool); 5] = [
        (&[1.0], true, 1e-8, true),
        (&[0.2, 0.5, 0.3], true, 1e-8, true),
        (&[0.7, 0.4, 1.2], false, 1e-8, true),
        (&[1.0, 2.0, 0.5], true, 1e-6, false),
        (&[0.5, 0.5, 1.0], false, 1e-8, false),
    ];
    let settings = |k| {
        grid_settings(&grid, k, |(w, normalize, eps, use_base), k| {
            vec![
                fl("weight", &per_model(w, k)),
                b("normalize_weights", normalize),
                f("eps", eps),
                b("use_base", use_base),
            ]
        })
    };
    sweep("multislerp", settings, REL_TOL, |c, i| {
        let (w, normalize_weights, eps, use_base) = grid[i.saturating_sub(1)];
        let p = sphere::MultiSlerp {
            weight: per_model(w, c.models.len()),
            normalize_weights,
            eps,
            use_base,
        };
        sphere::multislerp(&p, &c.base, &c.models)
    });
}

#[test]
fn karcher_matches_mergekit() {
    let grid: [(i64, f64); 5] = [(10, 1e-5), (1, 1e-5), (3, 1e-5), (50, 1e-5), (10, 1e-3)];
    let settings = |k| {
        grid_settings(&grid, k, |(it, tol), _| {
            vec![int("max_iter", it), f("tol", tol)]
        })
    };
    sweep("karcher", settings, REL_TOL, |c, i| {
        let (it, tol) = grid[i.saturating_sub(1)];
        Some(sphere::karcher(&c.models, it as usize, tol))
    });
}

#[test]
fn algorithm_a_matches_the_paper() {
    sweep(
        "algorithm_a",
        |_| vec![vec![]],
        REL_TOL,
        |c, _| Some(misc::algorithm_a(&c.base, &c.models, &c.shape)),
    );
}

#[test]
fn model_stock_with_one_model_is_the_base_and_multislerp_cancelling_fails() {
    let c = case(&[3, 50], 1, Kind::Normal, 4);
    assert_eq!(Method::new("model_stock").run(&c, &[]).unwrap(), c.base);
    // Three models equal to the base (a tensor no fine-tune changed): the base, where
    // mergekit raises.
    let z = case(&[50], 3, Kind::ZeroDelta, 4);
    assert_eq!(Method::new("multislerp").run(&z, &[]).unwrap(), z.base);
    // Three that cancel (v, -v and the base, equal weights): a failed merge, as mergekit.
    let mut cancel = case(&[50], 3, Kind::Normal, 4);
    cancel.base = vec![0.0; 50];
    cancel.models[1] = cancel.models[0].iter().map(|x| -x).collect();
    cancel.models[2] = cancel.base.clone();
    let out = Method::new("multislerp").run(&cancel, &[]).unwrap();
    assert!(out.iter().all(|v| v.is_nan()), "{out:?}");
    // Two: mergekit's linear fallback (here the base again).
    let z2 = case(&[50], 2, Kind::ZeroDelta, 4);
    assert_eq!(Method::new("multislerp").run(&z2, &[]).unwrap(), z2.base);
}

#[test]
fn karcher_edge_points() {
    let m = Method::new("karcher");
    let c = case(&[3, 50], 3, Kind::Normal, 8);
    let (x, y, z) = (&c.models[0], &c.models[1], &c.models[2]);
    let zeros = vec![0.0f32; x.len()];
    let neg: Vec<f32> = x.iter().map(|v| -v).collect();
    let tiny: Vec<f32> = y.iter().map(|v| v * 1e-7).collect();
    let point_sets = [
        vec![x.clone(), zeros.clone(), y.clone(), z.clone()],
        vec![zeros.clone(), x.clone(), neg],
        vec![x.clone(), tiny, y.clone(), z.clone()],
        vec![zeros.clone(), zeros.clone()],
    ];
    for (s, points) in point_sets.iter().enumerate() {
        let pc = Case {
            models: points.clone(),
            label: format!("karcher point set {s}"),
            ..c.clone()
        };
        for it in [1, 10] {
            let got = m.run(&pc, &[int("max_iter", it)]).unwrap();
            let want = sphere::karcher(points, it as usize, 1e-5);
            assert_close(&got, &want, REL_TOL, &format!("{} max_iter {it}", pc.label));
        }
    }
}
