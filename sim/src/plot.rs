//! Plots of a report: load per server, resumption rate with events marked, table occupancy.
//!
//! Pictures show what a table of numbers hides: the dip in resumptions after a crash, the load
//! piling onto one server, the stick table filling up. Each chart is written as PNG and SVG.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::{Report, Series};
use crate::SimError;

const SIZE: (u32, u32) = (960, 540);

/// Writes `load`, `resumption` and (when the balancer has a table) `table` charts into `dir`,
/// as `.png` and `.svg`; returns the files written.
pub fn write_plots(report: &Report, dir: &Path) -> Result<Vec<PathBuf>, SimError> {
    std::fs::create_dir_all(dir).map_err(|e| plot_error(dir, e))?;
    let mut charts: Vec<(&str, Chart)> =
        vec![("load", Chart::Load), ("resumption", Chart::Resumption)];
    if !report.series.table_occupancy.is_empty() {
        charts.push(("table", Chart::Table));
    }
    if report.instances.is_some() {
        charts.push(("instances", Chart::Instances));
    }
    if report.cost.is_some() {
        charts.push(("cpu", Chart::Cpu));
    }
    // The bitmaps and the SVGs do not depend on each other: draw them on two threads (a run
    // ends with this, and the simulation itself is single-threaded). Same files either way.
    let (pngs, svgs) = std::thread::scope(|scope| {
        let pngs = scope.spawn(|| {
            render_each(dir, &charts, "png", |file, chart| {
                finish(
                    BitMapBackend::new(file, SIZE).into_drawing_area(),
                    file,
                    report,
                    chart,
                )
            })
        });
        let svgs = render_each(dir, &charts, "svg", |file, chart| {
            finish(
                SVGBackend::new(file, SIZE).into_drawing_area(),
                file,
                report,
                chart,
            )
        });
        let pngs = pngs
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (pngs, svgs)
    });
    let written = pngs?
        .into_iter()
        .zip(svgs?)
        .flat_map(|(png, svg)| [png, svg])
        .collect();
    Ok(written)
}

/// Draws each chart into `dir/<stem>.<ext>` with `draw_file`; returns the files in chart order.
fn render_each(
    dir: &Path,
    charts: &[(&str, Chart)],
    ext: &str,
    draw_file: impl Fn(&Path, Chart) -> Result<(), SimError>,
) -> Result<Vec<PathBuf>, SimError> {
    charts
        .iter()
        .map(|&(stem, chart)| {
            let file = dir.join(format!("{stem}.{ext}"));
            draw_file(&file, chart)?;
            Ok(file)
        })
        .collect()
}

/// Draws one chart on `root` (a backend writing `file`) and writes it out.
fn finish<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    file: &Path,
    report: &Report,
    chart: Chart,
) -> Result<(), SimError>
where
    DB::ErrorType: 'static,
{
    draw(&root, report, chart).map_err(|e| plot_error(file, e))?;
    root.present().map_err(|e| plot_error(file, e))
}

/// A plotting failure, naming the file being drawn.
pub(crate) fn plot_error(file: &Path, e: impl std::fmt::Display) -> SimError {
    SimError::Plot {
        file: file.display().to_string(),
        reason: e.to_string(),
    }
}

#[derive(Clone, Copy)]
enum Chart {
    Load,
    Resumption,
    Table,
    Instances,
    Cpu,
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// A legend entry's swatch: a filled bar in the series' colour, thick enough to read as that
/// colour at a glance (a 1-pixel line reads as black).
pub(crate) fn swatch<C: Color>(color: C) -> impl Fn((i32, i32)) -> Rectangle<(i32, i32)> {
    let style = color.filled();
    move |(x, y)| Rectangle::new([(x, y - 3), (x + 18, y + 3)], style)
}

/// Draws the chart's legend at `at`, on a translucent white box with a black border.
pub(crate) fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    c: &mut ChartContext<'a, DB, CT>,
    at: SeriesLabelPosition,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    c.configure_series_labels()
        .position(at)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// How the buckets sit on the time axis: one minute each, or `size` minutes for a long run
/// ([`bucket_minutes`]). The run's last bucket may be partial; its counts are scaled to a
/// per-minute rate so the curve does not appear to collapse at the end.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Minutes {
    /// Buckets in the series.
    pub buckets: usize,
    /// The run's length in minutes (the x axis's end).
    pub end: f64,
    /// Minutes per bucket.
    pub size: f64,
}

impl Minutes {
    /// The one-minute buckets of a run of `seconds` with `buckets` per-minute values.
    pub fn of(seconds: f64, buckets: usize) -> Self {
        Self::sized(seconds, buckets, 1)
    }

    /// The `size`-minute buckets of a run of `seconds` with `buckets` values. A last bucket
    /// under 10 s (the run's final instant) is not drawn: its few events would read as a swing.
    pub fn sized(seconds: f64, buckets: usize, size: usize) -> Self {
        let size = size.max(1) as f64;
        let end = seconds / 60.0;
        let last = buckets.saturating_sub(1) as f64 * size;
        let buckets = if buckets > 1 && end - last < 1.0 / 6.0 {
            buckets - 1
        } else {
            buckets
        };
        let end = end.clamp(
            buckets.saturating_sub(1) as f64 * size + 1.0 / 6.0,
            buckets.max(1) as f64 * size,
        );
        Minutes { buckets, end, size }
    }

    /// The width of bucket `m` in minutes (`size`, or less for the last, partial one; at least
    /// 10 s, so a sliver of a bucket is not blown up).
    pub fn width(self, m: usize) -> f64 {
        (self.end - m as f64 * self.size).clamp(1.0 / 6.0, self.size)
    }

    /// Where bucket `m` is drawn: its middle.
    pub fn x(self, m: usize) -> f64 {
        m as f64 * self.size + self.width(m) / 2.0
    }

    /// A count in bucket `m` as a per-minute rate.
    pub fn rate(self, m: usize, count: u64) -> f64 {
        count as f64 / self.width(m)
    }

    /// The last bucket's length in seconds when it is partial.
    pub fn partial_seconds(self) -> Option<f64> {
        let last = self.buckets.checked_sub(1)?;
        let w = self.width(last);
        (w < self.size - 0.001).then_some(w * 60.0)
    }
}

/// Minutes per plotted point: 1 for runs up to six hours; a longer run (a simulated day) is
/// drawn in buckets of 5 to 60 minutes, at most 240 points, since 1,440 one-minute points of a
/// day read as noise on a slide.
pub(crate) fn bucket_minutes(minutes: usize) -> usize {
    if minutes <= 360 {
        return 1;
    }
    [5, 10, 15, 30, 60]
        .into_iter()
        .find(|k| minutes.div_ceil(*k) <= 240)
        .unwrap_or(60)
}

/// `v` summed over `k`-value buckets.
fn sum_buckets(v: &[u64], k: usize) -> Vec<u64> {
    v.chunks(k.max(1)).map(|c| c.iter().sum()).collect()
}

/// Rates `v` averaged over `k`-value buckets, each minute weighted by `weights` (its
/// connections; a plain mean where a bucket has none).
fn mean_buckets(v: &[f64], weights: &[u64], k: usize) -> Vec<f64> {
    v.chunks(k.max(1))
        .enumerate()
        .map(|(b, c)| {
            let w = weights.get(b * k..).unwrap_or(&[]);
            let total: u64 = c.iter().zip(w).map(|(_, &w)| w).sum();
            if total == 0 {
                return c.iter().sum::<f64>() / c.len() as f64;
            }
            c.iter().zip(w).map(|(&r, &w)| r * w as f64).sum::<f64>() / total as f64
        })
        .collect()
}

/// The report's one-minute series in `k`-minute buckets: counts summed, rates averaged by
/// connections, the table's occupancy sampled at each bucket's start.
fn coarsen(s: &Series, k: usize) -> Series {
    Series {
        connections: sum_buckets(&s.connections, k),
        connections_per_server: s
            .connections_per_server
            .iter()
            .map(|(name, v)| (name.clone(), sum_buckets(v, k)))
            .collect(),
        resumption_rate: mean_buckets(&s.resumption_rate, &s.connections, k),
        affinity_rate: mean_buckets(&s.affinity_rate, &s.connections, k),
        failures: sum_buckets(&s.failures, k),
        table_occupancy: s
            .table_occupancy
            .iter()
            .step_by(k.max(1))
            .copied()
            .collect(),
        table_evictions: sum_buckets(&s.table_evictions, k),
        table_expirations: sum_buckets(&s.table_expirations, k),
    }
}

/// A note under a per-minute chart when its last bucket is a partial minute.
fn partial_note<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, m: Minutes) -> DrawResult
where
    DB::ErrorType: 'static,
{
    if let Some(s) = m.partial_seconds() {
        let (w, h) = root.dim_in_pixel();
        root.draw(&Text::new(
            format!("last point: a partial bucket ({s:.0} s), scaled to per minute"),
            (w as i32 - 330, h as i32 - 16),
            ("sans-serif", 12).into_font().color(&BLACK.mix(0.6)),
        ))?;
    }
    Ok(())
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Report, chart: Chart) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let minutes = Minutes::of(r.simulated_seconds, r.series.connections.len());
    let k = bucket_minutes(r.series.connections.len());
    let coarse = (k > 1).then(|| Report {
        series: coarsen(&r.series, k),
        ..r.clone()
    });
    let (series_report, series_minutes) = match &coarse {
        Some(c) => (
            c,
            Minutes::sized(r.simulated_seconds, c.series.connections.len(), k),
        ),
        None => (r, minutes),
    };
    match chart {
        Chart::Load => draw_load(root, series_report, series_minutes)?,
        Chart::Resumption => draw_resumption(root, series_report, series_minutes)?,
        Chart::Table => draw_table(root, series_report, series_minutes)?,
        Chart::Instances => draw_instances(root, r, minutes)?,
        Chart::Cpu => draw_cpu(root, r, minutes)?,
    }
    match chart {
        Chart::Load | Chart::Resumption | Chart::Table => partial_note(root, series_minutes),
        Chart::Instances | Chart::Cpu => partial_note(root, minutes),
    }
}

/// What a chart's caption adds when its points are buckets of several minutes.
fn bucket_note(minutes: Minutes) -> String {
    if minutes.size > 1.0 {
        format!(" ({:.0}-minute means)", minutes.size)
    } else {
        String::new()
    }
}

/// Connections per server per minute.
fn draw_load<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &Report,
    minutes: Minutes,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let top = r
        .series
        .connections_per_server
        .values()
        .flat_map(|v| v.iter().enumerate().map(|(m, &y)| minutes.rate(m, y)))
        .fold(1.0, f64::max);
    let mut c = ChartBuilder::on(root)
        .caption(
            format!(
                "{}: connections per server per minute{}",
                r.scenario,
                bucket_note(minutes)
            ),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..minutes.end, 0f64..top * 1.1)?;
    c.configure_mesh()
        .x_desc("minute")
        .y_desc("connections per minute")
        .draw()?;
    for (i, (name, v)) in r.series.connections_per_server.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        c.draw_series(LineSeries::new(
            v.iter()
                .take(minutes.buckets)
                .enumerate()
                .map(|(m, &y)| (minutes.x(m), minutes.rate(m, y))),
            color.stroke_width(2),
        ))?
        .label(name.clone())
        .legend(swatch(color));
    }
    legend(&mut c, SeriesLabelPosition::MiddleRight)?;
    Ok(())
}

/// Where event labels go: above the rates (which stop at 1.0), in rows so that neighbouring
/// labels do not overlap.
const LABEL_ROWS: [f64; 3] = [1.27, 1.19, 1.11];

/// Resumption and affinity rates per minute, with the events marked.
fn draw_resumption<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &Report,
    minutes: Minutes,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let mut c = ChartBuilder::on(root)
        .caption(
            format!(
                "{}: resumption rate per minute{}",
                r.scenario,
                bucket_note(minutes)
            ),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..minutes.end, 0f64..1.32f64)?;
    c.configure_mesh()
        .x_desc("minute")
        .y_desc("resumed / handshakes")
        .y_label_formatter(&|y| {
            if *y <= 1.0 + 1e-9 {
                format!("{y:.1}")
            } else {
                String::new()
            }
        })
        .draw()?;
    let lines = [
        ("resumed / handshakes", BLUE, &r.series.resumption_rate),
        (
            "affinity: hits / keyed lookups",
            GREEN,
            &r.series.affinity_rate,
        ),
    ];
    for (name, color, values) in lines {
        if values.is_empty() {
            continue;
        }
        c.draw_series(LineSeries::new(
            values
                .iter()
                .take(minutes.buckets)
                .enumerate()
                .map(|(m, &y)| (minutes.x(m), y)),
            color.stroke_width(2),
        ))?
        .label(name)
        .legend(swatch(color));
    }
    for (i, e) in r.events.iter().enumerate() {
        let x = e.at_seconds / 60.0;
        c.draw_series(std::iter::once(PathElement::new(
            vec![(x, 0.0), (x, LABEL_ROWS[i % LABEL_ROWS.len()])],
            RED.mix(0.7).stroke_width(1),
        )))?;
        c.draw_series(std::iter::once(Text::new(
            e.what.clone(),
            (x, LABEL_ROWS[i % LABEL_ROWS.len()]),
            ("sans-serif", 13).into_font().color(&RED),
        )))?;
    }
    legend(&mut c, SeriesLabelPosition::LowerLeft)?;
    Ok(())
}

/// Affinity per instance and overall, and how far the instances' tables agree, per minute.
fn draw_instances<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &Report,
    minutes: Minutes,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let Some(inst) = &r.instances else {
        return Ok(());
    };
    let mut c = ChartBuilder::on(root)
        .caption(
            format!(
                "{}: affinity per instance, table agreement ({}, replication {})",
                r.scenario,
                inst.spread.name(),
                if inst.replication { "on" } else { "off" }
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..minutes.end, 0f64..1.05f64)?;
    c.configure_mesh()
        .x_desc("minute")
        .y_desc("rate (0..1)")
        .draw()?;
    let mut lines: Vec<(String, RGBAColor, u32, &[f64])> = inst
        .affinity_per_minute
        .iter()
        .enumerate()
        .map(|(i, (name, v))| {
            let color = Palette99::pick(i + 1).to_rgba();
            (format!("affinity {name}"), color, 1, v.as_slice())
        })
        .collect();
    lines.push((
        "affinity, all instances".into(),
        BLUE.to_rgba(),
        3,
        &r.series.affinity_rate,
    ));
    lines.push((
        "table agreement".into(),
        BLACK.to_rgba(),
        2,
        &inst.table_agreement_per_minute,
    ));
    for (name, color, width, v) in lines {
        c.draw_series(LineSeries::new(
            v.iter()
                .take(minutes.buckets)
                .enumerate()
                .map(|(m, &y)| (minutes.x(m), y)),
            color.stroke_width(width),
        ))?
        .label(name)
        .legend(swatch(color));
    }
    for e in &r.events {
        let x = e.at_seconds / 60.0;
        c.draw_series(std::iter::once(PathElement::new(
            vec![(x, 0.0), (x, 1.05)],
            RED.stroke_width(1),
        )))?;
    }
    legend(&mut c, SeriesLabelPosition::LowerLeft)?;
    Ok(())
}

/// CPU utilisation per server per minute, with the events marked (only with a cost model).
fn draw_cpu<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &Report,
    minutes: Minutes,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let Some(cost) = &r.cost else {
        return Ok(());
    };
    let mut c = ChartBuilder::on(root)
        .caption(
            format!(
                "{}: CPU utilisation per server per minute ({} cores each)",
                r.scenario, cost.cores_per_server
            ),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..minutes.end, 0f64..1.05f64)?;
    c.configure_mesh()
        .x_desc("minute")
        .y_desc("busy core time / capacity")
        .draw()?;
    for (i, (name, v)) in cost.series.utilisation.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        c.draw_series(LineSeries::new(
            v.iter()
                .take(minutes.buckets)
                .enumerate()
                .map(|(m, &y)| (minutes.x(m), (y / minutes.width(m)).min(1.0))),
            color.stroke_width(2),
        ))?
        .label(name.clone())
        .legend(swatch(color));
    }
    for e in &r.events {
        let x = e.at_seconds / 60.0;
        c.draw_series(std::iter::once(PathElement::new(
            vec![(x, 0.0), (x, 1.05)],
            RED.stroke_width(1),
        )))?;
        c.draw_series(std::iter::once(Text::new(
            e.what.clone(),
            (x, 1.0),
            ("sans-serif", 14).into_font().color(&RED),
        )))?;
    }
    legend(&mut c, SeriesLabelPosition::UpperLeft)?;
    Ok(())
}

/// Stick-table occupancy per minute.
fn draw_table<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &Report,
    minutes: Minutes,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let v = &r.series.table_occupancy;
    let per_minute = |values: &[u64]| -> Vec<(f64, f64)> {
        values
            .iter()
            .take(minutes.buckets)
            .enumerate()
            .map(|(m, &y)| (minutes.x(m), minutes.rate(m, y)))
            .collect()
    };
    let top = v
        .iter()
        .map(|&y| y as f64)
        .chain(
            per_minute(&r.series.table_evictions)
                .into_iter()
                .map(|p| p.1),
        )
        .chain(
            per_minute(&r.series.table_expirations)
                .into_iter()
                .map(|p| p.1),
        )
        .fold(1.0, f64::max);
    let mut c = ChartBuilder::on(root)
        .caption(
            format!(
                "{}: stick-table entries, evictions, expirations",
                r.scenario
            ),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..minutes.end, 0f64..top * 1.1)?;
    c.configure_mesh()
        .x_desc("minute")
        .y_desc("entries")
        .draw()?;
    c.draw_series(LineSeries::new(
        v.iter()
            .take(minutes.buckets)
            .enumerate()
            .map(|(m, &y)| (minutes.x(m), y as f64)),
        GREEN.stroke_width(2),
    ))?
    .label("entries")
    .legend(swatch(GREEN));
    for (name, color, values) in [
        ("evicted per minute", RED, &r.series.table_evictions),
        ("expired per minute", BLUE, &r.series.table_expirations),
    ] {
        c.draw_series(LineSeries::new(per_minute(values), color.stroke_width(1)))?
            .label(name)
            .legend(swatch(color));
    }
    legend(&mut c, SeriesLabelPosition::MiddleRight)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_last_minute_is_scaled_to_a_rate_and_placed_in_its_middle() {
        let m = Minutes::of(630.0, 11);
        assert_eq!(m.end, 10.5);
        assert_eq!((m.x(0), m.rate(0, 100)), (0.5, 100.0));
        // 50 connections in the last 30 s are 100 per minute, drawn at 10.25 min.
        assert_eq!((m.x(10), m.rate(10, 50)), (10.25, 100.0));
        assert_eq!(m.partial_seconds(), Some(30.0));
        assert_eq!(Minutes::of(600.0, 10).partial_seconds(), None);
    }

    #[test]
    fn a_sliver_of_a_last_bucket_is_not_drawn() {
        let m = Minutes::of(600.5, 11);
        assert_eq!((m.buckets, m.end), (10, 10.0));
        assert_eq!(m.partial_seconds(), None);
        let m = Minutes::of(41.0, 1);
        assert_eq!(
            (m.buckets, m.partial_seconds().map(f64::round)),
            (1, Some(41.0))
        );
    }

    #[test]
    fn a_day_is_drawn_in_ten_minute_buckets_and_short_runs_by_the_minute() {
        assert_eq!(bucket_minutes(10), 1);
        assert_eq!(bucket_minutes(360), 1);
        assert_eq!(bucket_minutes(1_441), 10);
        assert_eq!(bucket_minutes(7 * 1_440), 60);
        // 24 h and 2 s in 10-minute buckets: 145 values, the last a 2 s sliver left out.
        let m = Minutes::sized(86_402.0, 145, 10);
        assert_eq!((m.buckets, m.end), (144, 1_440.0));
        assert_eq!((m.x(0), m.rate(0, 1_000)), (5.0, 100.0));
        assert_eq!(m.partial_seconds(), None);
        // 95 minutes in 10-minute buckets: the last is 5 minutes, its count scaled by 5.
        let m = Minutes::sized(95.0 * 60.0, 10, 10);
        assert_eq!((m.x(9), m.rate(9, 50)), (92.5, 10.0));
        assert_eq!(m.partial_seconds(), Some(300.0));
    }

    #[test]
    fn coarse_buckets_sum_counts_and_weigh_rates_by_connections() {
        let s = Series {
            connections: vec![10, 30, 0, 0, 5],
            connections_per_server: [("a".to_string(), vec![1, 2, 3, 4, 5])].into(),
            resumption_rate: vec![1.0, 0.0, 0.5, 0.7, 0.2],
            affinity_rate: vec![],
            failures: vec![1, 1, 1, 1, 1],
            table_occupancy: vec![7, 8, 9, 10, 11],
            table_evictions: vec![0, 1, 0, 1, 0],
            table_expirations: vec![2, 2, 2, 2, 2],
        };
        let c = coarsen(&s, 2);
        assert_eq!(c.connections, vec![40, 0, 5]);
        assert_eq!(c.connections_per_server["a"], vec![3, 7, 5]);
        // 10 at 1.0 and 30 at 0.0: a quarter; no connections: the plain mean.
        assert_eq!(c.resumption_rate, vec![0.25, 0.6, 0.2]);
        assert!(c.affinity_rate.is_empty());
        assert_eq!(c.failures, vec![2, 2, 1]);
        assert_eq!(c.table_occupancy, vec![7, 9, 11]);
        assert_eq!(c.table_evictions, vec![1, 1, 0]);
        assert_eq!(c.table_expirations, vec![4, 4, 2]);
    }
}
