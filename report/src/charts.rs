//! The charts, drawn on any plotters backend so PNG and SVG come from the same code: four for an
//! experiment report, two for a trained model.
//!
//! Every chart follows one layout: a title across the top, the plot on the left and a legend in
//! its own column on the right (never over the data). Input is sanitised here rather than
//! validated: non-finite points are skipped (lines break at them), degenerate ranges are padded,
//! and a chart with nothing to plot says "no data".

use std::ops::Range;

use plotters::coord::Shift;
use plotters::coord::ranged1d::Ranged;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::font::FAMILY;
use crate::model::{CalibrationBin, ModelPlots, TestPredictions};
use crate::{FitnessSeries, FoldBars, ParamDistribution, Series};

type Area<DB> = DrawingArea<DB, Shift>;
type DrawError<DB> = DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>;
type DrawResult<DB> = Result<(), DrawError<DB>>;
type Plot<'a, DB, Y> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>;

/// Values beyond this magnitude are treated like non-finite ones: the axis span between two such
/// values overflows `f64`, and plotters cannot place ticks on an infinite range.
const MAX_ABS: f64 = 1e300;
/// Lines longer than this are thinned (keeping each bucket's extremes) so an equity curve with one
/// point per block does not become a multi-megabyte SVG.
const MAX_POINTS_PER_LINE: usize = 4000;
/// Scatter plots draw at most this many points (an even stride through the rest), which keeps
/// the SVG under a megabyte and the cloud's shape intact.
const MAX_SCATTER_POINTS: usize = 5000;
/// Below this many points a scatter's axes cover every point; above, the 0.5–99.5 % quantiles,
/// so that a few fat-tailed returns do not squash the rest into a dot.
const SCATTER_CLIP_MIN_POINTS: usize = 200;

const TITLE_SIZE: f64 = 24.0;
const PANEL_TITLE_SIZE: f64 = 16.0;
const LABEL_SIZE: f64 = 14.0;
const DESC_SIZE: f64 = 15.0;
const LEGEND_SIZE: f64 = 14.0;
const NOTE_SIZE: f64 = 20.0;

/// Tick label counts asked of plotters; the formatters pick their precision for the same counts.
const X_LABELS: usize = 10;
const Y_LABELS: usize = 8;
const PANEL_LABELS: usize = 5;

const LEGEND_ROW: i32 = 22;
const LEGEND_SWATCH: i32 = 28;
const LEGEND_PAD: i32 = 12;
/// Where the legend's first row sits: level with the top of the plotting area.
const LEGEND_TOP: i32 = 14;

/// Tableau 10: distinguishable, and still readable for the common colour-vision deficiencies.
const PALETTE: [RGBColor; 10] = [
    RGBColor(0x4e, 0x79, 0xa7),
    RGBColor(0xf2, 0x8e, 0x2b),
    RGBColor(0xe1, 0x57, 0x59),
    RGBColor(0x76, 0xb7, 0xb2),
    RGBColor(0x59, 0xa1, 0x4f),
    RGBColor(0xed, 0xc9, 0x48),
    RGBColor(0xb0, 0x7a, 0xa1),
    RGBColor(0xff, 0x9d, 0xa7),
    RGBColor(0x9c, 0x75, 0x5f),
    RGBColor(0xba, 0xb0, 0xac),
];
const GRID_BOLD: RGBColor = RGBColor(0xd0, 0xd0, 0xd0);
const GRID_LIGHT: RGBColor = RGBColor(0xee, 0xee, 0xee);
const ZERO_LINE: RGBColor = RGBColor(0x55, 0x55, 0x55);
const NOTE_GREY: RGBColor = RGBColor(0x80, 0x80, 0x80);

fn colour(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// `c` blended with white by `t` (0 = `c`, 1 = white): an opaque pastel, the same in PNG and SVG.
fn lighten(c: RGBColor, t: f64) -> RGBColor {
    let mix = |v: u8| (v as f64 + (255.0 - v as f64) * t).round() as u8;
    RGBColor(mix(c.0), mix(c.1), mix(c.2))
}

fn font(size: f64) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

/// One chart of the report; `draw` is generic so the same code feeds the bitmap and SVG backends.
pub(crate) enum Chart<'a> {
    Fitness {
        series: &'a [FitnessSeries],
        objective: &'a str,
    },
    Equity {
        series: &'a [Series],
    },
    Params {
        params: &'a [ParamDistribution],
    },
    WalkForward {
        folds: &'a [FoldBars],
        objective: &'a str,
    },
    LearningCurve {
        plots: &'a ModelPlots,
    },
    PredictedVsRealised {
        plots: &'a ModelPlots,
    },
}

impl Chart<'_> {
    pub(crate) fn draw<DB: DrawingBackend>(&self, root: &Area<DB>) -> DrawResult<DB> {
        root.fill(&WHITE)?;
        match self {
            Chart::Fitness { series, objective } => draw_fitness(root, series, objective),
            Chart::Equity { series } => draw_equity(root, series),
            Chart::Params { params } => draw_params(root, params),
            Chart::WalkForward { folds, objective } => draw_walk_forward(root, folds, objective),
            Chart::LearningCurve { plots } => draw_learning_curve(root, plots),
            Chart::PredictedVsRealised { plots } => match &plots.test {
                TestPredictions::Regression {
                    target,
                    points,
                    mse,
                    zero_mse,
                } => draw_scatter(root, &plots.title, target, points, *mse, *zero_mse),
                TestPredictions::Classification {
                    target,
                    bins,
                    positive_rate,
                    log_loss,
                    auc,
                } => draw_calibration(
                    root,
                    &plots.title,
                    target,
                    bins,
                    *positive_rate,
                    (*log_loss, *auc),
                ),
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Charts

fn draw_fitness<DB: DrawingBackend>(
    root: &Area<DB>,
    series: &[FitnessSeries],
    objective: &str,
) -> DrawResult<DB> {
    let body = root.titled("Fitness by generation", font(TITLE_SIZE))?;
    let mut ys = Bounds::default();
    let mut generations = 0usize;
    let mut lines = Vec::new();
    let mut legend = Vec::new();
    for (i, s) in series.iter().enumerate() {
        let name = label_or(&s.label, "fold", i);
        for (kind, values, dashed) in [("best", &s.best, false), ("mean", &s.mean, true)] {
            let points = values.iter().enumerate().map(|(g, &v)| (g as f64, v));
            let runs = finite_runs(points);
            if runs.is_empty() {
                continue;
            }
            generations = generations.max(values.len());
            runs.iter().flatten().for_each(|&(_, y)| ys.add(y));
            let swatch = if dashed {
                Swatch::Dashed(colour(i))
            } else {
                Swatch::Line(colour(i), 2)
            };
            legend.push(LegendEntry {
                label: format!("{name} {kind}"),
                swatch,
            });
            lines.push((runs, swatch));
        }
    }
    let Some((lo, hi)) = ys.get() else {
        return no_data(&body);
    };
    let x = axis_range(0.0, generations.saturating_sub(1) as f64, 0.0);
    let y = axis_range(lo, hi, 0.05);
    let (plot, legend_area) = split_legend(&body, &legend)?;
    let mut chart = cartesian(&plot, x.clone(), y.clone())?;
    // Generations are integers: a tick at 2.5 would be a lie, so such labels stay blank.
    let xf = |v: &f64| integer_tick(*v);
    let yf = tick_formatter(&y, Y_LABELS);
    mesh(&mut chart, "generation", objective, &xf, &yf)?;
    for (runs, swatch) in &lines {
        draw_runs(&mut chart, runs, *swatch)?;
    }
    draw_legend(&legend_area, &legend)
}

fn draw_equity<DB: DrawingBackend>(root: &Area<DB>, series: &[Series]) -> DrawResult<DB> {
    let body = root.titled("Equity", font(TITLE_SIZE))?;
    let mut xs = Bounds::default();
    let mut ys = Bounds::default();
    let mut lines = Vec::new();
    let mut legend = Vec::new();
    for (i, s) in series.iter().enumerate() {
        let runs: Vec<_> = finite_runs(s.points.iter().copied())
            .into_iter()
            .map(|run| decimate(&run, MAX_POINTS_PER_LINE))
            .collect();
        if runs.is_empty() {
            continue;
        }
        for &(x, y) in runs.iter().flatten() {
            xs.add(x);
            ys.add(y);
        }
        // The first series is the optimised strategy: thicker, so it reads as the subject.
        let swatch = Swatch::Line(colour(i), if i == 0 { 3 } else { 2 });
        legend.push(LegendEntry {
            label: label_or(&s.label, "series", i),
            swatch,
        });
        lines.push((runs, swatch));
    }
    let (Some((x_lo, x_hi)), Some((y_lo, y_hi))) = (xs.get(), ys.get()) else {
        return no_data(&body);
    };
    let x = axis_range(x_lo, x_hi, 0.0);
    let y = axis_range(y_lo, y_hi, 0.05);
    let (plot, legend_area) = split_legend(&body, &legend)?;
    let mut chart = cartesian(&plot, x.clone(), y.clone())?;
    let xf = tick_formatter(&x, X_LABELS);
    let yf = tick_formatter(&y, Y_LABELS);
    mesh(&mut chart, "block", "equity (quote units)", &xf, &yf)?;
    zero_line(&mut chart, &x, &y)?;
    // Drawn last to first so the optimised strategy ends up on top of the baselines.
    for (runs, swatch) in lines.iter().rev() {
        draw_runs(&mut chart, runs, *swatch)?;
    }
    draw_legend(&legend_area, &legend)
}

fn draw_params<DB: DrawingBackend>(
    root: &Area<DB>,
    params: &[ParamDistribution],
) -> DrawResult<DB> {
    let body = root.titled("Final population", font(TITLE_SIZE))?;
    if params.is_empty() {
        return no_data(&body);
    }
    let cols = (params.len() as f64).sqrt().ceil() as usize;
    let rows = params.len().div_ceil(cols);
    let panels = body.split_evenly((rows, cols));
    for (i, (param, panel)) in params.iter().zip(&panels).enumerate() {
        draw_histogram(panel, param, colour(i))?;
    }
    Ok(())
}

fn draw_histogram<DB: DrawingBackend>(
    area: &Area<DB>,
    param: &ParamDistribution,
    fill: RGBColor,
) -> DrawResult<DB> {
    let values: Vec<f64> = param
        .values
        .iter()
        .copied()
        .filter(|v| plottable(*v))
        .collect();
    let declared = plottable(param.lo) && plottable(param.hi) && param.hi > param.lo;
    let (lo, hi) = if declared {
        (param.lo, param.hi)
    } else {
        // No usable bounds: fall back to the data so the panel still shows something.
        let mut b = Bounds::default();
        values.iter().for_each(|&v| b.add(v));
        let (lo, hi) = b.get().unwrap_or((0.0, 1.0));
        let r = axis_range(lo, hi, 0.0);
        (r.start, r.end)
    };
    let bins = ((values.len() as f64).sqrt().ceil() as usize).clamp(5, 30);
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0u32; bins];
    let mut outside = 0usize;
    for &v in &values {
        if !(lo..=hi).contains(&v) {
            outside += 1;
            continue;
        }
        let idx = (((v - lo) / width) as usize).min(bins - 1);
        counts[idx] += 1;
    }
    let name = label_or(&param.name, "param", 0);
    let caption = if outside > 0 {
        format!("{name} ({outside} outside range)")
    } else {
        name
    };
    let area = area.margin(4, 4, 8, 8);
    let panel = area.titled(&caption, font(PANEL_TITLE_SIZE))?;
    if values.is_empty() {
        return no_data(&panel);
    }
    let top = counts.iter().copied().max().unwrap_or(0);
    let y_max = top + top / 10 + 1;
    let x = lo..hi;
    let mut chart = ChartBuilder::on(&panel)
        .margin_right(12)
        .x_label_area_size(28)
        .y_label_area_size(label_width(&panel, &[&y_max.to_string()])? + 10)
        .build_cartesian_2d(x.clone(), 0u32..y_max)?;
    let xf = tick_formatter(&x, PANEL_LABELS);
    chart
        .configure_mesh()
        .x_labels(PANEL_LABELS)
        .y_labels(PANEL_LABELS)
        .max_light_lines(2)
        .x_label_formatter(&xf)
        .label_style(font(LABEL_SIZE - 2.0))
        .bold_line_style(GRID_BOLD.stroke_width(1))
        .light_line_style(GRID_LIGHT.stroke_width(1))
        .draw()?;
    chart.draw_series(
        counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(b, &c)| {
                let x0 = lo + width * b as f64;
                Rectangle::new([(x0, 0), (x0 + width, c)], fill.filled())
            }),
    )?;
    // Outlines separate neighbouring bars of equal height.
    chart.draw_series(
        counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(b, &c)| {
                let x0 = lo + width * b as f64;
                Rectangle::new([(x0, 0), (x0 + width, c)], WHITE.stroke_width(1))
            }),
    )?;
    Ok(())
}

fn draw_walk_forward<DB: DrawingBackend>(
    root: &Area<DB>,
    folds: &[FoldBars],
    objective: &str,
) -> DrawResult<DB> {
    let body = root.titled("Walk-forward: in-sample vs out-of-sample", font(TITLE_SIZE))?;
    // Categories: the two of the optimised strategy, then every baseline in order of first
    // appearance (folds need not all list the same baselines).
    let mut categories = vec!["in-sample".to_string(), "out-of-sample".to_string()];
    for fold in folds {
        for (name, _) in &fold.baselines {
            if !categories[2..].contains(name) {
                categories.push(name.clone());
            }
        }
    }
    let mut ys = Bounds::default();
    let mut bars = Vec::new();
    for (i, fold) in folds.iter().enumerate() {
        for (j, category) in categories.iter().enumerate() {
            let value = match j {
                0 => Some(fold.in_sample),
                1 => Some(fold.out_of_sample),
                _ => fold
                    .baselines
                    .iter()
                    .find(|(n, _)| n == category)
                    .map(|(_, v)| *v),
            };
            if let Some(v) = value.filter(|v| plottable(*v)) {
                ys.add(v);
                bars.push((i, j, v));
            }
        }
    }
    if bars.is_empty() {
        return no_data(&body);
    }
    ys.add(0.0); // bars grow from zero, so zero is always on the axis
    let (lo, hi) = ys.get().unwrap_or((0.0, 1.0));
    let x = -0.5..(folds.len() as f64 - 0.5);
    let y = axis_range(lo, hi, 0.05);
    let legend: Vec<_> = categories
        .iter()
        .enumerate()
        .map(|(j, c)| LegendEntry {
            label: c.clone(),
            swatch: Swatch::Bar(colour(j)),
        })
        .collect();
    let (plot, legend_area) = split_legend(&body, &legend)?;
    let mut chart = cartesian(&plot, x.clone(), y.clone())?;
    let xf = |v: &f64| {
        let i = v.round();
        if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < folds.len() {
            format!("fold {}", folds[i as usize].fold)
        } else {
            String::new()
        }
    };
    let yf = tick_formatter(&y, Y_LABELS);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(folds.len().min(25) + 1)
        .y_labels(Y_LABELS)
        .max_light_lines(4)
        .x_label_formatter(&xf)
        .y_label_formatter(&yf)
        .y_desc(objective)
        .label_style(font(LABEL_SIZE))
        .axis_desc_style(font(DESC_SIZE))
        .bold_line_style(GRID_BOLD.stroke_width(1))
        .light_line_style(GRID_LIGHT.stroke_width(1))
        .draw()?;
    let group = 0.8;
    let slot = group / categories.len() as f64;
    chart.draw_series(bars.iter().map(|&(i, j, v)| {
        let x0 = i as f64 - group / 2.0 + slot * j as f64;
        Rectangle::new(
            [(x0 + slot * 0.05, 0.0), (x0 + slot * 0.95, v)],
            colour(j).filled(),
        )
    }))?;
    chart.draw_series(LineSeries::new(
        [(x.start, 0.0), (x.end, 0.0)],
        ZERO_LINE.stroke_width(1),
    ))?;
    draw_legend(&legend_area, &legend)
}

fn draw_learning_curve<DB: DrawingBackend>(root: &Area<DB>, plots: &ModelPlots) -> DrawResult<DB> {
    let body = root.titled(&headline("Learning curve", &plots.title), font(TITLE_SIZE))?;
    let train = finite_runs(plots.curve.iter().map(|e| (e.epoch as f64, e.train)));
    let valid = finite_runs(plots.curve.iter().map(|e| (e.epoch as f64, e.valid)));
    let mut xs = Bounds::default();
    let mut ys = Bounds::default();
    for &(x, y) in train.iter().chain(&valid).flatten() {
        xs.add(x);
        ys.add(y);
    }
    let (Some((x_lo, x_hi)), Some((y_lo, y_hi))) = (xs.get(), ys.get()) else {
        return no_data(&body);
    };
    let train_swatch = Swatch::Line(colour(0), 2);
    let valid_swatch = Swatch::Line(colour(1), 2);
    let mut legend = vec![
        LegendEntry {
            label: "train loss (dropout on)".into(),
            swatch: train_swatch,
        },
        LegendEntry {
            label: "validation loss".into(),
            swatch: valid_swatch,
        },
    ];
    let best = plots
        .curve
        .iter()
        .find(|e| e.epoch == plots.best_epoch && plottable(e.valid));
    if let Some(b) = best {
        legend.push(LegendEntry {
            label: format!("kept: epoch {} ({})", b.epoch, format_value(b.valid)),
            swatch: Swatch::Dot(colour(1)),
        });
    }
    // Half an epoch of margin, so the first and last points are not drawn on the frame.
    let x = axis_range(x_lo - 0.5, x_hi + 0.5, 0.0);
    let y = axis_range(y_lo, y_hi, 0.08);
    let (plot, legend_area) = split_legend(&body, &legend)?;
    let mut chart = cartesian(&plot, x.clone(), y.clone())?;
    let xf = |v: &f64| integer_tick(*v);
    let yf = tick_formatter(&y, Y_LABELS);
    mesh(&mut chart, "epoch", &plots.loss, &xf, &yf)?;
    if let Some(b) = best {
        let bx = b.epoch as f64;
        chart.draw_series(DashedLineSeries::new(
            [(bx, y.start), (bx, y.end)],
            5,
            5,
            NOTE_GREY.stroke_width(1),
        ))?;
    }
    draw_runs(&mut chart, &train, train_swatch)?;
    draw_runs(&mut chart, &valid, valid_swatch)?;
    if let Some(b) = best {
        let p = (b.epoch as f64, b.valid);
        chart.draw_series([Circle::new(p, 6, colour(1).filled())])?;
        chart.draw_series([Circle::new(p, 6, BLACK.stroke_width(1))])?;
    }
    draw_legend(&legend_area, &legend)
}

fn draw_scatter<DB: DrawingBackend>(
    root: &Area<DB>,
    title: &str,
    target: &str,
    points: &[(f64, f64)],
    mse: Option<f64>,
    zero_mse: Option<f64>,
) -> DrawResult<DB> {
    let body = root.titled(
        &headline("Predicted vs realised (test split)", title),
        font(TITLE_SIZE),
    )?;
    let points: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|&(x, y)| plottable(x) && plottable(y))
        .collect();
    if points.is_empty() {
        return no_data(&body);
    }
    // One range for both axes: y = x is then the diagonal, and a model that shrinks its
    // predictions towards zero shows as a flat cloud rather than being stretched to look bold.
    let mut values: Vec<f64> = points.iter().flat_map(|&(x, y)| [x, y]).collect();
    values.sort_by(f64::total_cmp);
    let (lo, hi) = if points.len() >= SCATTER_CLIP_MIN_POINTS {
        (quantile(&values, 0.005), quantile(&values, 0.995))
    } else {
        (values[0], values[values.len() - 1])
    };
    let r = axis_range(lo.min(0.0), hi.max(0.0), 0.05);
    let inside: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(x, y)| r.contains(x) && r.contains(y))
        .collect();
    let outside = points.len() - inside.len();
    let stride = inside.len().div_ceil(MAX_SCATTER_POINTS).max(1);
    let shown: Vec<(f64, f64)> = inside.iter().copied().step_by(stride).collect();

    let mut label = format!("test samples: {}", points.len());
    if let Some(m) = mse {
        label.push_str(&format!(", MSE {}", format_value(m)));
    }
    let mut notes = Vec::new();
    if outside > 0 {
        notes.push(format!("{outside} beyond the axes"));
    }
    if stride > 1 {
        notes.push(format!("1 in {stride} drawn"));
    }
    let dots = Swatch::Dot(colour(0));
    let diagonal = Swatch::Dashed(ZERO_LINE);
    let zero = Swatch::Line(colour(2), 2);
    let mut legend = vec![LegendEntry {
        label,
        swatch: dots,
    }];
    if !notes.is_empty() {
        legend.push(LegendEntry {
            label: format!("({})", notes.join(", ")),
            swatch: Swatch::None,
        });
    }
    legend.push(LegendEntry {
        label: "y = x (perfect)".into(),
        swatch: diagonal,
    });
    legend.push(LegendEntry {
        label: match zero_mse {
            Some(z) => format!("zero predictor, MSE {}", format_value(z)),
            None => "zero predictor".into(),
        },
        swatch: zero,
    });
    let (plot, legend_area) = split_legend(&body, &legend)?;
    let mut chart = cartesian(&plot, r.clone(), r.clone())?;
    let xf = tick_formatter(&r, X_LABELS);
    let yf = tick_formatter(&r, Y_LABELS);
    mesh(
        &mut chart,
        &format!("realised {target}"),
        &format!("predicted {target}"),
        &xf,
        &yf,
    )?;
    let fill = colour(0).mix(0.45).filled();
    chart.draw_series(shown.iter().map(|&p| Circle::new(p, 2, fill)))?;
    chart.draw_series(DashedLineSeries::new(
        [(r.start, r.start), (r.end, r.end)],
        7,
        5,
        ZERO_LINE.stroke_width(2),
    ))?;
    chart.draw_series(LineSeries::new(
        [(r.start, 0.0), (r.end, 0.0)],
        colour(2).stroke_width(2),
    ))?;
    draw_legend(&legend_area, &legend)
}

fn draw_calibration<DB: DrawingBackend>(
    root: &Area<DB>,
    title: &str,
    target: &str,
    bins: &[CalibrationBin],
    positive_rate: Option<f64>,
    (log_loss, auc): (Option<f64>, Option<f64>),
) -> DrawResult<DB> {
    let body = root.titled(
        &headline("Predicted vs realised (test split)", title),
        font(TITLE_SIZE),
    )?;
    let filled: Vec<(f64, f64)> = bins
        .iter()
        .filter(|b| b.count > 0)
        .filter_map(|b| Some((b.mean_predicted?, b.observed_rate?)))
        .filter(|&(p, o)| plottable(p) && plottable(o))
        .collect();
    let bars: Vec<&CalibrationBin> = bins
        .iter()
        .filter(|b| b.count > 0 && plottable(b.lo) && plottable(b.hi) && b.hi > b.lo)
        .collect();
    if filled.is_empty() {
        return no_data(&body);
    }
    let model = Swatch::Line(colour(0), 2);
    let diagonal = Swatch::Dashed(ZERO_LINE);
    let base = Swatch::Line(colour(2), 2);
    let mut scores = Vec::new();
    if let Some(l) = log_loss.filter(|v| plottable(*v)) {
        scores.push(format!("log loss {l:.4}"));
    }
    if let Some(a) = auc.filter(|v| plottable(*v)) {
        scores.push(format!("AUC {a:.3}"));
    }
    let mut legend = vec![LegendEntry {
        label: "observed rate per bin".into(),
        swatch: model,
    }];
    if !scores.is_empty() {
        legend.push(LegendEntry {
            label: format!("({})", scores.join(", ")),
            swatch: Swatch::None,
        });
    }
    legend.push(LegendEntry {
        label: "perfect calibration".into(),
        swatch: diagonal,
    });
    let rate = positive_rate.filter(|r| plottable(*r));
    if let Some(r) = rate {
        legend.push(LegendEntry {
            label: format!("test positive rate {r:.3}"),
            swatch: base,
        });
    }
    legend.push(LegendEntry {
        label: "samples per bin".into(),
        swatch: Swatch::Bar(lighten(colour(0), 0.5)),
    });
    let (plot, legend_area) = split_legend(&body, &legend)?;
    let (_, h) = plot.dim_in_pixel();
    let (top, bottom) = plot.split_vertically(h as i32 * 68 / 100);
    let unit = 0.0..1.0;
    let top_max = bars.iter().map(|b| b.count).max().unwrap_or(0);
    let count_range = 0.0..(top_max as f64 * 1.1).max(1.0);
    let pf = tick_formatter(&unit, Y_LABELS);
    let cf = |v: &f64| integer_tick(*v);
    // One label column width for both panels, so their x axes line up.
    let widest_count = top_max.to_string();
    let y_area = label_width(&plot, &["0.0", widest_count.as_str()])? + 40;
    let mut upper = ChartBuilder::on(&top)
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(y_area)
        .build_cartesian_2d(unit.clone(), unit.clone())?;
    mesh(&mut upper, "", &format!("observed {target}"), &pf, &pf)?;
    upper.draw_series(DashedLineSeries::new(
        [(0.0, 0.0), (1.0, 1.0)],
        7,
        5,
        ZERO_LINE.stroke_width(2),
    ))?;
    if let Some(r) = rate {
        upper.draw_series(LineSeries::new(
            [(0.0, r), (1.0, r)],
            colour(2).stroke_width(2),
        ))?;
    }
    upper.draw_series(LineSeries::new(
        filled.iter().copied(),
        colour(0).stroke_width(2),
    ))?;
    upper.draw_series(
        filled
            .iter()
            .map(|&p| Circle::new(p, 4, colour(0).filled())),
    )?;
    let mut lower = ChartBuilder::on(&bottom)
        .margin(12)
        .margin_top(0)
        .x_label_area_size(50)
        .y_label_area_size(y_area)
        .build_cartesian_2d(unit.clone(), count_range)?;
    lower
        .configure_mesh()
        .x_labels(X_LABELS)
        .y_labels(4)
        .max_light_lines(1)
        .x_label_formatter(&pf)
        .y_label_formatter(&cf)
        .x_desc("predicted probability")
        .y_desc("samples")
        .label_style(font(LABEL_SIZE))
        .axis_desc_style(font(DESC_SIZE))
        .bold_line_style(GRID_BOLD.stroke_width(1))
        .light_line_style(GRID_LIGHT.stroke_width(1))
        .draw()?;
    let fill = lighten(colour(0), 0.5).filled();
    lower.draw_series(
        bars.iter()
            .map(|b| Rectangle::new([(b.lo, 0.0), (b.hi, b.count as f64)], fill)),
    )?;
    lower
        .draw_series(bars.iter().map(|b| {
            Rectangle::new([(b.lo, 0.0), (b.hi, b.count as f64)], WHITE.stroke_width(1))
        }))?;
    draw_legend(&legend_area, &legend)
}

// ---------------------------------------------------------------------------------------------
// Shared drawing helpers

/// `"head: detail"`, or `head` alone when there is no detail.
fn headline(head: &str, detail: &str) -> String {
    if detail.trim().is_empty() {
        head.to_string()
    } else {
        format!("{head}: {detail}")
    }
}

/// A loss or error for a legend: four significant digits, scientific when small or large.
fn format_value(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e5) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

/// The `q` quantile of sorted, non-empty `values` (nearest rank).
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn cartesian<'a, DB: DrawingBackend>(
    area: &'a Area<DB>,
    x: Range<f64>,
    y: Range<f64>,
) -> Result<Plot<'a, DB, RangedCoordf64>, DrawError<DB>> {
    let yf = tick_formatter(&y, Y_LABELS);
    let samples = [yf(&y.start), yf(&y.end), yf(&((y.start + y.end) / 2.0))];
    let samples: Vec<&str> = samples.iter().map(String::as_str).collect();
    // Room for the widest tick label, the tick marks and the rotated axis description.
    let y_area = label_width(area, &samples)? + 40;
    ChartBuilder::on(area)
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(y_area)
        .build_cartesian_2d(x, y)
}

fn mesh<DB: DrawingBackend>(
    chart: &mut Plot<'_, DB, RangedCoordf64>,
    x_desc: &str,
    y_desc: &str,
    xf: &dyn Fn(&f64) -> String,
    yf: &dyn Fn(&f64) -> String,
) -> DrawResult<DB> {
    chart
        .configure_mesh()
        .x_labels(X_LABELS)
        .y_labels(Y_LABELS)
        .max_light_lines(4)
        .x_label_formatter(xf)
        .y_label_formatter(yf)
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(font(LABEL_SIZE))
        .axis_desc_style(font(DESC_SIZE))
        .bold_line_style(GRID_BOLD.stroke_width(1))
        .light_line_style(GRID_LIGHT.stroke_width(1))
        .draw()
}

fn zero_line<DB: DrawingBackend>(
    chart: &mut Plot<'_, DB, RangedCoordf64>,
    x: &Range<f64>,
    y: &Range<f64>,
) -> DrawResult<DB> {
    if y.start < 0.0 && y.end > 0.0 {
        chart.draw_series(LineSeries::new(
            [(x.start, 0.0), (x.end, 0.0)],
            ZERO_LINE.stroke_width(1),
        ))?;
    }
    Ok(())
}

fn draw_runs<DB: DrawingBackend>(
    chart: &mut Plot<'_, DB, RangedCoordf64>,
    runs: &[Vec<(f64, f64)>],
    swatch: Swatch,
) -> DrawResult<DB> {
    for run in runs {
        match (swatch, run.len()) {
            // A lone point has no line to draw; a dot keeps it visible.
            (Swatch::Line(c, _) | Swatch::Dashed(c) | Swatch::Bar(c) | Swatch::Dot(c), 1) => {
                chart.draw_series(run.iter().map(|&p| Circle::new(p, 3, c.filled())))?;
            }
            (Swatch::Line(c, w), _) => {
                chart.draw_series(LineSeries::new(run.iter().copied(), c.stroke_width(w)))?;
            }
            (Swatch::Dashed(c), _) => {
                chart.draw_series(DashedLineSeries::new(
                    run.iter().copied(),
                    7,
                    5,
                    c.stroke_width(2),
                ))?;
            }
            (Swatch::Bar(c) | Swatch::Dot(c), _) => {
                chart.draw_series(run.iter().map(|&p| Circle::new(p, 2, c.filled())))?;
            }
            (Swatch::None, _) => {}
        }
    }
    Ok(())
}

fn no_data<DB: DrawingBackend>(area: &Area<DB>) -> DrawResult<DB> {
    let (w, h) = area.dim_in_pixel();
    let style = font(NOTE_SIZE)
        .color(&NOTE_GREY)
        .pos(Pos::new(HPos::Center, VPos::Center));
    area.draw_text("no data", &style, (w as i32 / 2, h as i32 / 2))
}

/// Widest of `texts` at tick-label size, in pixels.
fn label_width<DB: DrawingBackend>(area: &Area<DB>, texts: &[&str]) -> Result<u32, DrawError<DB>> {
    let mut widest = 0;
    for text in texts {
        widest = widest.max(area.estimate_text_size(text, &font(LABEL_SIZE))?.0);
    }
    Ok(widest)
}

// ---------------------------------------------------------------------------------------------
// Legend

#[derive(Clone, Copy)]
enum Swatch {
    Line(RGBColor, u32),
    Dashed(RGBColor),
    Bar(RGBColor),
    /// A marker: scatter points, or one highlighted point.
    Dot(RGBColor),
    /// No swatch: a note under the entry above.
    None,
}

struct LegendEntry {
    label: String,
    swatch: Swatch,
}

/// Splits off a right-hand column wide enough for the longest label, capped at 30% of the width
/// (longer labels are shortened with an ellipsis).
fn split_legend<DB: DrawingBackend>(
    area: &Area<DB>,
    entries: &[LegendEntry],
) -> Result<(Area<DB>, Area<DB>), DrawError<DB>> {
    let (w, _) = area.dim_in_pixel();
    let mut widest = 0;
    for e in entries {
        widest = widest.max(area.estimate_text_size(&e.label, &font(LEGEND_SIZE))?.0);
    }
    let wanted = widest as i32 + LEGEND_SWATCH + 3 * LEGEND_PAD;
    let legend_w = wanted.min(w as i32 * 3 / 10).max(0);
    Ok(area.split_horizontally(w as i32 - legend_w))
}

fn draw_legend<DB: DrawingBackend>(area: &Area<DB>, entries: &[LegendEntry]) -> DrawResult<DB> {
    let (w, h) = area.dim_in_pixel();
    let text_room = w as i32 - LEGEND_SWATCH - 3 * LEGEND_PAD;
    if entries.is_empty() || text_room <= 0 {
        return Ok(());
    }
    let fit_rows = ((h as i32 - LEGEND_TOP - LEGEND_PAD) / LEGEND_ROW).max(1) as usize;
    let shown = if entries.len() > fit_rows {
        fit_rows - 1
    } else {
        entries.len()
    };
    let style = font(LEGEND_SIZE).pos(Pos::new(HPos::Left, VPos::Center));
    let x = LEGEND_PAD;
    let text_x = x + LEGEND_SWATCH + LEGEND_PAD;
    for (row, entry) in entries[..shown].iter().enumerate() {
        let y = LEGEND_TOP + row as i32 * LEGEND_ROW + LEGEND_ROW / 2;
        match entry.swatch {
            Swatch::Line(c, width) => {
                area.draw(&PathElement::new(
                    [(x, y), (x + LEGEND_SWATCH, y)],
                    c.stroke_width(width),
                ))?;
            }
            Swatch::Dashed(c) => {
                for (a, b) in [(0, 7), (11, 18), (22, LEGEND_SWATCH)] {
                    area.draw(&PathElement::new(
                        [(x + a, y), (x + b, y)],
                        c.stroke_width(2),
                    ))?;
                }
            }
            Swatch::Bar(c) => {
                area.draw(&Rectangle::new(
                    [(x + 6, y - 7), (x + 22, y + 7)],
                    c.filled(),
                ))?;
            }
            Swatch::Dot(c) => {
                area.draw(&Circle::new((x + LEGEND_SWATCH / 2, y), 5, c.filled()))?;
            }
            Swatch::None => {}
        }
        let label = fit_text(area, &entry.label, text_room as u32)?;
        area.draw_text(&label, &style, (text_x, y))?;
    }
    if shown < entries.len() {
        let y = LEGEND_TOP + shown as i32 * LEGEND_ROW + LEGEND_ROW / 2;
        let more = format!("… {} more", entries.len() - shown);
        area.draw_text(&more, &style.color(&NOTE_GREY), (text_x, y))?;
    }
    Ok(())
}

/// `text`, shortened with a trailing ellipsis until it fits in `max` pixels.
fn fit_text<DB: DrawingBackend>(
    area: &Area<DB>,
    text: &str,
    max: u32,
) -> Result<String, DrawError<DB>> {
    let style = font(LEGEND_SIZE);
    if area.estimate_text_size(text, &style)?.0 <= max {
        return Ok(text.to_string());
    }
    let mut chars: Vec<char> = text.chars().collect();
    while chars.pop().is_some() {
        let candidate: String = chars.iter().chain(['…'].iter()).collect();
        if chars.is_empty() || area.estimate_text_size(&candidate, &style)?.0 <= max {
            return Ok(candidate);
        }
    }
    Ok("…".to_string())
}

// ---------------------------------------------------------------------------------------------
// Data sanitising (pure, unit-tested)

pub(crate) fn plottable(v: f64) -> bool {
    v.is_finite() && v.abs() <= MAX_ABS
}

/// Min and max over the plottable values added.
#[derive(Default)]
pub(crate) struct Bounds(Option<(f64, f64)>);

impl Bounds {
    pub(crate) fn add(&mut self, v: f64) {
        if !plottable(v) {
            return;
        }
        self.0 = Some(match self.0 {
            None => (v, v),
            Some((lo, hi)) => (lo.min(v), hi.max(v)),
        });
    }

    pub(crate) fn get(&self) -> Option<(f64, f64)> {
        self.0
    }
}

/// `lo..hi` widened by `pad` of its span on each side; a (near-)empty span is widened around its
/// value instead, since plotters cannot map a zero-width range.
pub(crate) fn axis_range(lo: f64, hi: f64, pad: f64) -> Range<f64> {
    let span = hi - lo;
    let scale = lo.abs().max(hi.abs());
    if span.is_nan() || span <= scale * 1e-9 {
        let half = if scale > 0.0 { scale * 0.05 } else { 1.0 };
        return (lo - half)..(hi + half);
    }
    (lo - span * pad)..(hi + span * pad)
}

/// Splits a line at non-plottable points: each run is drawn on its own, so a gap shows as a gap
/// instead of a segment bridging it.
pub(crate) fn finite_runs(points: impl IntoIterator<Item = (f64, f64)>) -> Vec<Vec<(f64, f64)>> {
    let mut runs = Vec::new();
    let mut current = Vec::new();
    for (x, y) in points {
        if plottable(x) && plottable(y) {
            current.push((x, y));
        } else if !current.is_empty() {
            runs.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        runs.push(current);
    }
    runs
}

/// Keeps at most about `max` points: per bucket of neighbours its first, lowest, highest and last,
/// in their original order, so spikes and drawdowns survive the thinning.
pub(crate) fn decimate(run: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    let buckets = (max / 4).max(1);
    if run.len() <= max {
        return run.to_vec();
    }
    let per = run.len().div_ceil(buckets);
    let mut out = Vec::with_capacity(buckets * 4);
    for chunk in run.chunks(per) {
        let (mut lo, mut hi) = (0, 0);
        for (i, p) in chunk.iter().enumerate() {
            if p.1 < chunk[lo].1 {
                lo = i;
            }
            if p.1 > chunk[hi].1 {
                hi = i;
            }
        }
        let mut keep = [0, lo, hi, chunk.len() - 1];
        keep.sort_unstable();
        let mut last = None;
        for i in keep {
            if last != Some(i) {
                out.push(chunk[i]);
                last = Some(i);
            }
        }
    }
    out
}

/// A formatter for the `count` ticks plotters will put on `range`: as many decimals as the tick
/// step needs (plotters steps by 1, 2 or 5 times a power of ten), scientific notation for very
/// large or very small magnitudes.
pub(crate) fn tick_formatter(range: &Range<f64>, count: usize) -> impl Fn(&f64) -> String + use<> {
    let ticks = RangedCoordf64::from(range.clone()).key_points(count);
    let step = match ticks.as_slice() {
        [a, b, ..] => b - a,
        _ => (range.end - range.start).abs(),
    };
    let scale = range.start.abs().max(range.end.abs());
    move |v: &f64| format_tick(*v, step, scale)
}

pub(crate) fn format_tick(v: f64, step: f64, scale: f64) -> String {
    if scale >= 1e9 || (scale > 0.0 && scale < 1e-3) {
        // Round-off leaves a tick like -1.08e-19 where zero belongs.
        return if v == 0.0 || v.abs() < step.abs() * 1e-6 {
            "0".to_string()
        } else {
            format!("{v:.2e}")
        };
    }
    let decimals = if step > 0.0 {
        // The epsilon keeps an exact power of ten such as 0.1 from rounding down a decade.
        (-(step.log10() + 1e-9).floor()).clamp(0.0, 9.0) as usize
    } else {
        2
    };
    // Round-off leaves ticks like -0.0000001 where zero belongs; print them as a plain 0.
    let v = if v.abs() < 0.5 * 10f64.powi(-(decimals as i32)) {
        0.0
    } else {
        v
    };
    format!("{v:.decimals$}")
}

fn integer_tick(v: f64) -> String {
    if (v - v.round()).abs() < 1e-6 {
        format!("{}", v.round() as i64)
    } else {
        String::new()
    }
}

fn label_or(label: &str, kind: &str, i: usize) -> String {
    if label.trim().is_empty() {
        format!("{kind} {}", i + 1)
    } else {
        label.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_range_pads_degenerate_spans() {
        assert_eq!(axis_range(0.0, 0.0, 0.05), -1.0..1.0);
        let r = axis_range(100.0, 100.0, 0.05);
        assert!(r.start < 100.0 && r.end > 100.0);
        assert_eq!(axis_range(0.0, 10.0, 0.0), 0.0..10.0);
        assert_eq!(axis_range(0.0, 10.0, 0.1), -1.0..11.0);
        let r = axis_range(-MAX_ABS, MAX_ABS, 0.05);
        assert!(r.start.is_finite() && r.end.is_finite());
    }

    #[test]
    fn runs_break_at_non_finite_points() {
        let pts = [
            (0.0, 1.0),
            (1.0, f64::NAN),
            (2.0, 3.0),
            (3.0, 4.0),
            (f64::INFINITY, 1.0),
        ];
        assert_eq!(
            finite_runs(pts),
            vec![vec![(0.0, 1.0)], vec![(2.0, 3.0), (3.0, 4.0)]]
        );
        assert!(finite_runs([(f64::NAN, f64::NAN)]).is_empty());
        assert!(finite_runs([]).is_empty());
    }

    #[test]
    fn bounds_ignore_non_finite() {
        let mut b = Bounds::default();
        assert_eq!(b.get(), None);
        for v in [f64::NAN, 3.0, f64::NEG_INFINITY, -2.0, 1e308] {
            b.add(v);
        }
        assert_eq!(b.get(), Some((-2.0, 3.0)));
    }

    #[test]
    fn decimate_keeps_extremes_and_ends() {
        let run: Vec<_> = (0..100_000)
            .map(|i| (i as f64, if i == 54_321 { -1e6 } else { (i % 7) as f64 }))
            .collect();
        let out = decimate(&run, 4000);
        assert!(out.len() <= 4000 + 4, "{}", out.len());
        assert_eq!(out.first(), run.first());
        assert_eq!(out.last(), run.last());
        assert!(out.contains(&(54_321.0, -1e6)));
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0));
        let short = [(0.0, 1.0), (1.0, 2.0)];
        assert_eq!(decimate(&short, 4000), short.to_vec());
    }

    #[test]
    fn tick_labels() {
        assert_eq!(format_tick(19_000_000.0, 1000.0, 19_010_000.0), "19000000");
        assert_eq!(format_tick(20.0, 10.0, 50.0), "20");
        assert_eq!(format_tick(0.25, 0.05, 1.0), "0.25");
        assert_eq!(format_tick(0.5, 0.1, 1.0), "0.5");
        assert_eq!(format_tick(-1e-12, 0.2, 1.0), "0.0");
        assert_eq!(format_tick(2.5e12, 1e12, 3e12), "2.50e12");
        assert_eq!(format_tick(-1.08e-19, 2e-4, 6e-4), "0");
        assert_eq!(format_tick(-2e-4, 2e-4, 6e-4), "-2.00e-4");
        let f = tick_formatter(&(0.0..48.0), 5);
        assert_eq!(f(&10.0), "10");
        let f = tick_formatter(&(0.01..0.2), 5);
        assert_eq!(f(&0.05), "0.05");
        assert_eq!(integer_tick(3.0), "3");
        assert_eq!(integer_tick(2.5), "");
    }
}
