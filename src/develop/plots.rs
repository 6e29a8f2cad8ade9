//! The report's PNG plots (plotters, text drawn with the bundled DejaVu Sans so no system
//! font is needed): dev scores of every scored program per iteration, the valid rate per
//! iteration, and the best dev score so far.

use super::report::IterStats;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

static FONT: &[u8] = include_bytes!("../../fonts/DejaVuSans.ttf");

fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn err(e: impl std::fmt::Display) -> String {
    format!("plot: {e}")
}

/// Writes `dev-scores.png`, `valid-rate.png` and `best-so-far.png` into `dir`.
pub fn write_all(dir: &Path, iters: &[IterStats]) -> Result<(), String> {
    register();
    let n = iters.len().max(1) as f64;
    // Dev scores: one dot per scored program (jittered deterministically), mean as a line.
    {
        let path = dir.join("dev-scores.png");
        let root = BitMapBackend::new(&path, (720, 440)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut c = ChartBuilder::on(&root)
            .caption(
                "Dev accuracy of valid programs per iteration",
                ("sans-serif", 20),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(48)
            .build_cartesian_2d(0.5f64..n + 0.5, 0f64..100f64)
            .map_err(err)?;
        c.configure_mesh()
            .x_desc("iteration")
            .y_desc("dev accuracy (%)")
            .x_labels(iters.len().max(1))
            .draw()
            .map_err(err)?;
        for s in iters {
            let m = s.dev_scores.len().max(1) as f64;
            c.draw_series(s.dev_scores.iter().enumerate().map(|(i, v)| {
                let x = s.iteration as f64 - 0.3 + 0.6 * (i as f64 + 0.5) / m;
                Circle::new((x, 100.0 * v), 3, BLUE.mix(0.5).filled())
            }))
            .map_err(err)?;
        }
        c.draw_series(LineSeries::new(
            iters
                .iter()
                .filter_map(|s| s.mean_dev.map(|m| (s.iteration as f64, 100.0 * m))),
            RED.stroke_width(2),
        ))
        .map_err(err)?
        .label("mean")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
        c.configure_series_labels()
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    line_plot(
        &dir.join("valid-rate.png"),
        "Valid programs per iteration",
        "valid (%)",
        iters
            .iter()
            .map(|s| {
                (
                    s.iteration as f64,
                    100.0 * s.valid as f64 / s.generated.max(1) as f64,
                )
            })
            .collect(),
        n,
    )?;
    line_plot(
        &dir.join("best-so-far.png"),
        "Best dev accuracy so far",
        "dev accuracy (%)",
        iters
            .iter()
            .filter_map(|s| s.best_so_far.map(|b| (s.iteration as f64, 100.0 * b)))
            .collect(),
        n,
    )
}

fn line_plot(
    path: &Path,
    title: &str,
    y: &str,
    pts: Vec<(f64, f64)>,
    n: f64,
) -> Result<(), String> {
    let root = BitMapBackend::new(path, (720, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut c = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0.5f64..n + 0.5, 0f64..100f64)
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("iteration")
        .y_desc(y)
        .x_labels(n as usize)
        .draw()
        .map_err(err)?;
    c.draw_series(LineSeries::new(pts.clone(), BLUE.stroke_width(2)))
        .map_err(err)?;
    c.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, BLUE.filled())))
        .map_err(err)?;
    root.present().map_err(err)
}
