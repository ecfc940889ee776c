//! The documented plot: throughput against concurrency, one panel per operation.

use super::*;

/// Throughput against concurrency, one panel per operation.
pub(crate) fn plot(report: &Report, path: &Path) -> Res<()> {
    use plotters::prelude::*;
    register_fonts()?;
    let root = BitMapBackend::new(path, (1200, 1350)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let panels = root.split_evenly((3, 2));
    let tasks = report.tasks();
    let xs: Vec<f64> = tasks.iter().map(|t| (*t as f64).log2()).collect();
    for (area, op) in
        panels
            .iter()
            .zip(["create", "get", "range_query", "count", "confidence_update"])
    {
        let rows: Vec<&Row> = report.rows.iter().filter(|r| r.op == op).collect();
        let top = rows.iter().map(|r| r.per_sec).fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{op}: ops/s by concurrent tasks"),
                ("sans-serif", 22),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.3..xs.last().copied().unwrap_or(1.0) + 0.3, 0.0..top)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_labels(tasks.len())
            .x_label_formatter(&|x| format!("{:.0}", x.exp2()))
            .draw()
            .map_err(plot_err)?;
        for (side, color) in [
            (Side::Orm, BLUE),
            (Side::OrmSingle, CYAN),
            (Side::Raw, RED),
            (Side::RawLua, GREEN),
        ] {
            let pts: Vec<(f64, f64)> = tasks
                .iter()
                .zip(&xs)
                .filter_map(|(t, x)| Some((*x, report.row(op, *t, side)?.per_sec)))
                .collect();
            if pts.is_empty() {
                continue;
            }
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(plot_err)?
                .label(side.label())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart
                .draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))
                .map_err(plot_err)?;
        }
        draw_legend(
            &mut chart,
            SeriesLabelPosition::LowerRight,
            ("sans-serif", 16),
        )?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}
