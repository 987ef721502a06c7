//! The per-minute resumption and affinity rates over many seeds: the mean as a line and its
//! 95 % confidence interval as a band, so a planner sees how much of a dip is the deployment
//! and how much is chance.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::headline::{Headline, Interval};
use crate::plot::{plot_error, swatch, Minutes};
use crate::SimError;

/// One curve over the seeds: per minute, the interval of the seeds' values.
fn band(seeds: &[Headline], series: fn(&Headline) -> &[f64]) -> Vec<Interval> {
    let buckets = seeds.iter().map(|h| series(h).len()).max().unwrap_or(0);
    (0..buckets)
        .filter_map(|m| {
            let values: Vec<f64> = seeds
                .iter()
                .filter_map(|h| series(h).get(m).copied())
                .collect();
            Interval::of(&values)
        })
        .collect()
}

/// Writes `seeds-resumption.png` and `.svg` into `dir`; returns the files written (none when
/// the seeds carry no per-minute series).
pub fn write(seeds: &[Headline], title: &str, dir: &Path) -> Result<Vec<PathBuf>, SimError> {
    if seeds.iter().all(|h| h.resumption_per_minute.is_empty()) {
        return Ok(Vec::new());
    }
    let png = dir.join("seeds-resumption.png");
    let svg = dir.join("seeds-resumption.svg");
    {
        let root = BitMapBackend::new(&png, (960, 540)).into_drawing_area();
        draw(&root, seeds, title).map_err(|e| plot_error(&png, e))?;
        root.present().map_err(|e| plot_error(&png, e))?;
    }
    {
        let root = SVGBackend::new(&svg, (960, 540)).into_drawing_area();
        draw(&root, seeds, title).map_err(|e| plot_error(&svg, e))?;
        root.present().map_err(|e| plot_error(&svg, e))?;
    }
    Ok(vec![png, svg])
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// A curve of the chart: legend, colour and which per-minute series of a seed it summarises.
type Curve = (&'static str, RGBColor, fn(&Headline) -> &[f64]);

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    seeds: &[Headline],
    title: &str,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let buckets = seeds
        .iter()
        .map(|h| h.resumption_per_minute.len())
        .max()
        .unwrap_or(0);
    let seconds = seeds.iter().map(|h| h.seconds).fold(0.0, f64::max);
    let minutes = Minutes::of(seconds, buckets);
    let mut c = ChartBuilder::on(root)
        .caption(
            format!(
                "{title}: {} seeds, mean and 95 % interval per minute",
                seeds.len()
            ),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..minutes.end, 0f64..1.05f64)?;
    c.configure_mesh().x_desc("minute").y_desc("rate").draw()?;
    let curves: [Curve; 2] = [
        ("resumed / handshakes", BLUE, |h| &h.resumption_per_minute),
        ("affinity: hits / keyed lookups", GREEN, |h| {
            &h.affinity_per_minute
        }),
    ];
    for (name, color, series) in curves {
        let mut b = band(seeds, series);
        b.truncate(minutes.buckets);
        if b.is_empty() {
            continue;
        }
        let upper = b
            .iter()
            .enumerate()
            .map(|(m, i)| (minutes.x(m), (i.mean + i.half_width).min(1.05)));
        let lower = b
            .iter()
            .enumerate()
            .rev()
            .map(|(m, i)| (minutes.x(m), (i.mean - i.half_width).max(0.0)));
        c.draw_series(std::iter::once(Polygon::new(
            upper.chain(lower).collect::<Vec<_>>(),
            color.mix(0.2).filled(),
        )))?;
        c.draw_series(LineSeries::new(
            b.iter().enumerate().map(|(m, i)| (minutes.x(m), i.mean)),
            color.stroke_width(2),
        ))?
        .label(format!("{name} (mean, 95 % band)"))
        .legend(swatch(color));
    }
    crate::plot::legend(&mut c, SeriesLabelPosition::LowerLeft)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(rates: &[f64]) -> Headline {
        Headline {
            seed: 1,
            affinity: None,
            resumption: 0.0,
            failures: 0,
            imbalance: 1.0,
            p99_ms: 0,
            expectations: vec![],
            resumption_per_minute: rates.to_vec(),
            affinity_per_minute: vec![],
            seconds: rates.len() as f64 * 60.0,
        }
    }

    #[test]
    fn the_band_is_per_minute_over_the_seeds() {
        let seeds = [seed(&[0.5, 0.9]), seed(&[0.7, 0.9])];
        let b = band(&seeds, |h| &h.resumption_per_minute);
        assert_eq!(b.len(), 2);
        assert!((b[0].mean - 0.6).abs() < 1e-12 && b[0].half_width > 0.0);
        assert_eq!((b[1].mean, b[1].half_width), (0.9, 0.0));
    }

    #[test]
    fn the_plot_is_written() {
        let dir = std::env::temp_dir().join(format!("tether-seeds-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let files = write(
            &[seed(&[0.5, 0.8, 0.9]), seed(&[0.6, 0.7, 0.95])],
            "t",
            &dir,
        )
        .unwrap();
        assert_eq!(files.len(), 2);
        assert!(files
            .iter()
            .all(|f| std::fs::metadata(f).unwrap().len() > 1000));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
