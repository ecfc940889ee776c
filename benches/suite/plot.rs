//! The documented plot of the report.

use super::*;

// ------------------------------------------------------------------------------- plot

pub fn short_name(name: &str) -> &str {
    match name {
        "seq_create" => "create",
        "bulk_create" => "bulk create",
        "range_query" => "range query",
        "confidence_update" => "confidence",
        "migrate_to_partitioned" => "migrate",
        other => other,
    }
}

/// Draws the mesh of a bar panel: one bar slot per operation (named by `names`) on the x axis,
/// `y_desc` on the y axis.
fn draw_ops_mesh<'a, DB, Y>(
    chart: &mut plotters::chart::ChartContext<
        'a,
        DB,
        plotters::coord::cartesian::Cartesian2d<
            plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordu32>,
            Y,
        >,
    >,
    names: &[&str],
    label: (&str, u32),
    y_desc: &str,
) -> Res<()>
where
    DB: plotters::prelude::DrawingBackend + 'a,
    Y: plotters::coord::ranged1d::Ranged + plotters::coord::ranged1d::ValueFormatter<Y::ValueType>,
{
    use plotters::prelude::*;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(names.len())
        .x_label_style(label)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i as usize).copied().unwrap_or("").to_owned(),
            _ => String::new(),
        })
        .y_desc(y_desc)
        .draw()
        .map_err(plot_err)
}

/// Draws the report: ORM / raw per operation, ORM / Python, and the scaling curve.
pub fn plot(report: &Report, path: &Path) -> Res<()> {
    use plotters::prelude::*;
    register_fonts()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let root = BitMapBackend::new(path, (1500, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let title = format!("popoto-rs benchmarks: {}", report.machine.summary());
    let body = root.titled(&title, ("sans-serif", 22)).map_err(plot_err)?;
    let panels = body.split_evenly((1, 3));
    let label = ("sans-serif", 13);

    // 1. ORM / raw redis-rs.
    {
        let ops = &report.ops;
        let n = ops.len().max(1) as u32;
        let ymax = ops.iter().map(Op::ratio).fold(1.2, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(&panels[0])
            .caption("popoto-rs / raw redis-rs throughput", ("sans-serif", 17))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(45)
            .build_cartesian_2d((0u32..n.max(2) - 1).into_segmented(), 0f64..ymax)
            .map_err(plot_err)?;
        let names: Vec<&str> = ops.iter().map(|o| short_name(o.name)).collect();
        draw_ops_mesh(&mut chart, &names, label, "ratio (1 = as fast as raw)")?;
        chart
            .draw_series(ops.iter().enumerate().map(|(i, o)| {
                let i = i as u32;
                let color = if o.ratio() >= RAW_FLOOR { BLUE } else { RED };
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), o.ratio()),
                    ],
                    color.mix(0.6).filled(),
                );
                bar.set_margin(0, 0, 6, 6);
                bar
            }))
            .map_err(plot_err)?;
        chart
            .draw_series(ops.iter().enumerate().map(|(i, o)| {
                Text::new(
                    format!("{:.2}", o.ratio()),
                    (SegmentValue::CenterOf(i as u32), o.ratio() + ymax * 0.03),
                    ("sans-serif", 13).into_font(),
                )
            }))
            .map_err(plot_err)?;
        chart
            .draw_series(LineSeries::new(
                [
                    (SegmentValue::Exact(0), RAW_FLOOR),
                    (SegmentValue::Exact(n), RAW_FLOOR),
                ],
                BLACK.stroke_width(1),
            ))
            .map_err(plot_err)?
            .label(format!("floor {RAW_FLOOR}"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight, label)?;
    }

    // 2. ORM / Python popoto (log scale).
    {
        let ops: Vec<&Op> = report.ops.iter().filter(|o| o.python.is_some()).collect();
        if ops.is_empty() {
            panels[1]
                .draw(&Text::new(
                    "Python popoto not run",
                    (120, 250),
                    ("sans-serif", 18).into_font(),
                ))
                .map_err(plot_err)?;
        } else {
            let n = ops.len() as u32;
            let ymax = ops
                .iter()
                .filter_map(|o| o.python_ratio())
                .fold(60.0, f64::max)
                * 2.0;
            let mut chart = ChartBuilder::on(&panels[1])
                .caption("popoto-rs / Python popoto throughput", ("sans-serif", 17))
                .margin(14)
                .x_label_area_size(40)
                .y_label_area_size(45)
                .build_cartesian_2d(
                    (0u32..n.max(2) - 1).into_segmented(),
                    (1f64..ymax).log_scale(),
                )
                .map_err(plot_err)?;
            let names: Vec<&str> = ops.iter().map(|o| short_name(o.name)).collect();
            draw_ops_mesh(&mut chart, &names, label, "times faster (log scale)")?;
            chart
                .draw_series(ops.iter().enumerate().map(|(i, o)| {
                    let i = i as u32;
                    let mut bar = Rectangle::new(
                        [
                            (SegmentValue::Exact(i), 1.0),
                            (SegmentValue::Exact(i + 1), o.python_ratio().unwrap_or(1.0)),
                        ],
                        GREEN.mix(0.6).filled(),
                    );
                    bar.set_margin(0, 0, 6, 6);
                    bar
                }))
                .map_err(plot_err)?;
            chart
                .draw_series(ops.iter().enumerate().map(|(i, o)| {
                    let r = o.python_ratio().unwrap_or(1.0);
                    Text::new(
                        format!("{r:.0}x"),
                        (SegmentValue::CenterOf(i as u32), r * 1.15),
                        ("sans-serif", 13).into_font(),
                    )
                }))
                .map_err(plot_err)?;
            let floors: Vec<(u32, f64)> = ops
                .iter()
                .enumerate()
                .filter_map(|(i, o)| {
                    let bound = match o.name {
                        "seq_create" | "range_query" => 8.0,
                        "bulk_create" => 50.0,
                        _ => return None,
                    };
                    Some((i as u32, bound))
                })
                .collect();
            for (k, (i, bound)) in floors.iter().enumerate() {
                let series = chart
                    .draw_series(LineSeries::new(
                        [
                            (SegmentValue::Exact(*i), *bound),
                            (SegmentValue::Exact(i + 1), *bound),
                        ],
                        BLACK.stroke_width(2),
                    ))
                    .map_err(plot_err)?;
                if k == 0 {
                    series
                        .label("floor")
                        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
                }
            }
            draw_legend(&mut chart, SeriesLabelPosition::UpperRight, label)?;
        }
    }

    // 3. The tenant's range query while the database grows.
    {
        let pts = &report.scaling;
        let xmin = pts.iter().map(|p| p.rows as f64).fold(f64::MAX, f64::min);
        let xmax = pts.iter().map(|p| p.rows as f64).fold(1.0, f64::max);
        let (xmin, xmax) = if pts.is_empty() {
            (1e3, 1e6)
        } else {
            (xmin / 1.5, xmax * 1.5)
        };
        let ymax = pts
            .iter()
            .map(|p| p.orm_ms.max(p.raw_ms))
            .fold(0.1, f64::max)
            * 1.4;
        let mut chart = ChartBuilder::on(&panels[2])
            .caption("tenant range query vs database size", ("sans-serif", 17))
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d((xmin..xmax).log_scale(), 0f64..ymax)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("rows in the database")
            .y_desc("ms per query")
            .x_labels(4)
            .x_label_style(label)
            .x_label_formatter(&|x| fmt_rows(*x))
            .draw()
            .map_err(plot_err)?;
        for (name, color, get) in [
            (
                "popoto-rs",
                BLUE,
                (|p: &ScalePoint| p.orm_ms) as fn(&ScalePoint) -> f64,
            ),
            ("raw redis-rs", RED, |p: &ScalePoint| p.raw_ms),
        ] {
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.rows as f64, get(p))),
                    color.stroke_width(2),
                ))
                .map_err(plot_err)?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart
                .draw_series(
                    pts.iter()
                        .map(|p| Circle::new((p.rows as f64, get(p)), 4, color.filled())),
                )
                .map_err(plot_err)?;
        }
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight, label)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}
