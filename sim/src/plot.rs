//! Plots of a report: load per server, resumption rate with events marked, table occupancy.
//!
//! Pictures show what a table of numbers hides: the dip in resumptions after a crash, the load
//! piling onto one server, the stick table filling up. Each chart is written as PNG and SVG.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::Report;
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

fn plot_error(file: &Path, e: impl std::fmt::Display) -> SimError {
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
    Cpu,
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Report, chart: Chart) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let minutes = r.series.connections.len().max(1) as f64;
    match chart {
        Chart::Load => draw_load(root, r, minutes),
        Chart::Resumption => draw_resumption(root, r, minutes),
        Chart::Table => draw_table(root, r),
        Chart::Cpu => draw_cpu(root, r, minutes),
    }
}

/// Connections per server per minute.
fn draw_load<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &Report,
    minutes: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let top = r
        .series
        .connections_per_server
        .values()
        .flat_map(|v| v.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut c = ChartBuilder::on(root)
        .caption(
            format!("{}: connections per server per minute", r.scenario),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..minutes, 0f64..top * 1.1)?;
    c.configure_mesh()
        .x_desc("minute")
        .y_desc("connections")
        .draw()?;
    for (i, (name, v)) in r.series.connections_per_server.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        c.draw_series(LineSeries::new(
            v.iter()
                .enumerate()
                .map(|(m, &y)| (m as f64 + 0.5, y as f64)),
            color.stroke_width(2),
        ))?
        .label(name.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Resumption and affinity rates per minute.
fn draw_resumption<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &Report,
    minutes: f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let mut c = ChartBuilder::on(root)
        .caption(
            format!("{}: resumption rate per minute", r.scenario),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..minutes, 0f64..1.05f64)?;
    c.configure_mesh()
        .x_desc("minute")
        .y_desc("resumed / handshakes")
        .draw()?;
    c.draw_series(LineSeries::new(
        r.series
            .resumption_rate
            .iter()
            .enumerate()
            .map(|(m, &y)| (m as f64 + 0.5, y)),
        BLUE.stroke_width(2),
    ))?
    .label("resumed / handshakes")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLUE));
    if !r.series.affinity_rate.is_empty() {
        c.draw_series(LineSeries::new(
            r.series
                .affinity_rate
                .iter()
                .enumerate()
                .map(|(m, &y)| (m as f64 + 0.5, y)),
            GREEN.stroke_width(2),
        ))?
        .label("affinity: hits / keyed lookups")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], GREEN));
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
    c.configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// CPU utilisation per server per minute, with the events marked (only with a cost model).
fn draw_cpu<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &Report,
    minutes: f64,
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
        .build_cartesian_2d(0f64..minutes, 0f64..1.05f64)?;
    c.configure_mesh()
        .x_desc("minute")
        .y_desc("busy core time / capacity")
        .draw()?;
    for (i, (name, v)) in cost.series.utilisation.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        c.draw_series(LineSeries::new(
            v.iter().enumerate().map(|(m, &y)| (m as f64 + 0.5, y)),
            color.stroke_width(2),
        ))?
        .label(name.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
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
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Stick-table occupancy per minute.
fn draw_table<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Report) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let v = &r.series.table_occupancy;
    let top = v
        .iter()
        .chain(&r.series.table_evictions)
        .chain(&r.series.table_expirations)
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64;
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
        .build_cartesian_2d(0f64..(v.len().max(1) as f64), 0f64..top * 1.1)?;
    c.configure_mesh()
        .x_desc("minute")
        .y_desc("entries")
        .draw()?;
    c.draw_series(LineSeries::new(
        v.iter().enumerate().map(|(m, &y)| (m as f64, y as f64)),
        GREEN.stroke_width(2),
    ))?
    .label("entries")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], GREEN));
    for (name, color, values) in [
        ("evicted in the minute", RED, &r.series.table_evictions),
        ("expired in the minute", BLUE, &r.series.table_expirations),
    ] {
        c.draw_series(LineSeries::new(
            values
                .iter()
                .enumerate()
                .map(|(m, &y)| (m as f64, y as f64)),
            color.stroke_width(1),
        ))?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
    }
    c.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
