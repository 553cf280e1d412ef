//! Plots (PNG and SVG) and an HTML page summarising a genetic-optimiser experiment, and the charts
//! of a trained model.
//!
//! The caller hands over one plain-data [`ReportInput`] (serde-friendly, though JSON cannot carry
//! the NaN/inf it tolerates); [`write_report`] turns it into four charts, each drawn
//! once per backend from the same plotters code, plus an `index.html` that embeds the PNGs, links
//! the SVGs and needs nothing else. Input is sanitised rather than rejected: non-finite values are
//! skipped, degenerate axes padded, and empty charts say "no data", so a report can be written for
//! any run, including a failed one. Text is rendered with plotters' pure-Rust `ab_glyph` backend
//! and a TTF found at run time (`DEXLAB_FONT`, then the usual system paths; see [`ensure_font`]),
//! which keeps the build free of fontconfig/freetype. Every file is written under a temporary name
//! and renamed into place, so a reader never sees half a chart.
//!
//! [`write_model_plots`] reads a `dexlab train` model directory and adds two charts to it: the
//! learning curve (train and validation loss per epoch, the kept epoch marked) and the test
//! predictions against the realised target (a scatter for regression, a reliability diagram for
//! classification). It reads the directory's JSON and CSV files itself, so this crate stays free
//! of burn.
//!
//! No cargo features.

mod charts;
mod font;
mod html;
mod model;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use plotters::prelude::{BitMapBackend, IntoDrawingArea, SVGBackend};
use serde::{Deserialize, Serialize};

use crate::charts::Chart;
use crate::html::Figure;

pub use crate::font::{FONT_ENV, ensure_font};
pub use crate::model::{
    CalibrationBin, EpochLoss, LEARNING_CURVE, ModelPlots, PREDICTED_VS_REALISED, TestPredictions,
    write_model_plots, write_model_plots_with,
};

/// Everything one report shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportInput {
    pub title: String,
    /// What fitness measures, e.g. `"net PnL (USDC)"`; the fitness and walk-forward axis label.
    pub objective: String,
    /// Key/value table at the top (strategy, dataset, seed, ...).
    pub summary: Vec<(String, String)>,
    /// Out-of-sample results next to baselines.
    pub results: Table,
    /// One per fold: best and mean fitness per generation.
    pub fitness: Vec<FitnessSeries>,
    /// Equity curves of the optimised strategy (first; drawn thicker) and each baseline;
    /// x = block number, y = equity in quote units.
    pub equity: Vec<Series>,
    /// Final population, one entry per parameter.
    pub population: Vec<ParamDistribution>,
    /// In-sample vs out-of-sample objective per fold.
    pub walk_forward: Vec<FoldBars>,
}

/// A table of pre-formatted cells; rows shorter than the widest are padded with empty cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Best and mean fitness per generation (index = generation, from 0) of one fold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitnessSeries {
    pub label: String,
    pub best: Vec<f64>,
    pub mean: Vec<f64>,
}

/// A labelled line of `(x, y)` points in drawing order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// The values one parameter takes across the final population, and its search range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParamDistribution {
    pub name: String,
    pub lo: f64,
    pub hi: f64,
    pub values: Vec<f64>,
}

/// One walk-forward fold's objective values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldBars {
    pub fold: usize,
    pub in_sample: f64,
    pub out_of_sample: f64,
    /// Out-of-sample objective of each baseline, by name.
    pub baselines: Vec<(String, f64)>,
}

/// Chart size in pixels, shared by all charts (the SVGs use the same user units).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOptions {
    pub width: u32,
    pub height: u32,
}

impl ReportOptions {
    /// Smallest size the layout (title, axis labels, legend column) still fits in; smaller
    /// requests are raised to it.
    pub const MIN: (u32, u32) = (400, 300);

    fn size(&self) -> (u32, u32) {
        (self.width.max(Self::MIN.0), self.height.max(Self::MIN.1))
    }
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            width: 1200,
            height: 675,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a report could not be written, naming the file or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "no TrueType font found for chart text (checked $DEXLAB_FONT, the usual DejaVu/Liberation/Noto \
         paths and *.ttf under {searched}); run `bash scripts/setup.sh` (installs Debian's \
         fonts-dejavu-core) or set DEXLAB_FONT to a .ttf file"
    )]
    FontNotFound { searched: String },
    #[error("DEXLAB_FONT={} does not name an existing file", path.display())]
    FontEnvMissing { path: PathBuf },
    #[error("cannot read font {}: {source}", path.display())]
    FontRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is not a TrueType/OpenType font plotters can use", path.display())]
    FontInvalid { path: PathBuf },
    #[error("cannot create report directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot draw {}: {source}", path.display())]
    Draw {
        path: PathBuf,
        #[source]
        source: BoxError,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
}

/// Writes the four charts (PNG and SVG each) and `index.html` into `out_dir`, creating it, at the
/// default [`ReportOptions`]. Returns the paths written, charts first, `index.html` last.
pub fn write_report(input: &ReportInput, out_dir: &Path) -> Result<Vec<PathBuf>, ReportError> {
    write_report_with(input, out_dir, &ReportOptions::default())
}

/// [`write_report`] with explicit options.
pub fn write_report_with(
    input: &ReportInput,
    out_dir: &Path,
    options: &ReportOptions,
) -> Result<Vec<PathBuf>, ReportError> {
    // Before touching the file system, so a machine without fonts leaves no empty directory.
    ensure_font()?;
    std::fs::create_dir_all(out_dir).map_err(|source| ReportError::CreateDir {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let size = options.size();
    let charts = charts(input);
    let mut written = Vec::with_capacity(2 * charts.len() + 1);
    let mut figures = Vec::with_capacity(charts.len());
    for (figure, chart) in charts {
        let png = out_dir.join(format!("{}.png", figure.stem));
        write_png(&chart, &png, size)?;
        written.push(png);
        let svg = out_dir.join(format!("{}.svg", figure.stem));
        write_svg(&chart, &svg, size)?;
        written.push(svg);
        figures.push(figure);
    }
    let index = out_dir.join("index.html");
    write_atomic(&index, html::render(input, &figures, size).as_bytes())?;
    written.push(index);
    Ok(written)
}

/// The four charts of a report and how each is titled.
fn charts(input: &ReportInput) -> [(Figure, Chart<'_>); 4] {
    [
        (
            Figure {
                heading: "Fitness by generation",
                stem: "fitness",
                alt: "Best and mean fitness per generation, one colour per fold",
            },
            Chart::Fitness {
                series: &input.fitness,
                objective: &input.objective,
            },
        ),
        (
            Figure {
                heading: "Equity",
                stem: "equity",
                alt: "Equity curves of the optimised strategy and the baselines",
            },
            Chart::Equity {
                series: &input.equity,
            },
        ),
        (
            Figure {
                heading: "Final population",
                stem: "params",
                alt: "Histogram of each parameter across the final population",
            },
            Chart::Params {
                params: &input.population,
            },
        ),
        (
            Figure {
                heading: "Walk-forward",
                stem: "walk_forward",
                alt: "In-sample, out-of-sample and baseline objective per fold",
            },
            Chart::WalkForward {
                folds: &input.walk_forward,
                objective: &input.objective,
            },
        ),
    ]
}

/// One chart drawn as SVG, for a page that shows it as an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvgChart {
    pub heading: &'static str,
    /// `fitness`, `equity`, `params` or `walk_forward`.
    pub stem: &'static str,
    pub alt: &'static str,
    pub svg: String,
}

/// The names [`svg_chart`] knows.
pub const CHART_STEMS: [&str; 4] = ["fitness", "equity", "params", "walk_forward"];

/// The chart named `stem` (one of [`CHART_STEMS`]) drawn as SVG in memory, or `None` for another
/// name. Text is laid out with the same font as the files' ([`ensure_font`]).
pub fn svg_chart(
    input: &ReportInput,
    stem: &str,
    options: &ReportOptions,
) -> Option<Result<SvgChart, ReportError>> {
    let (figure, chart) = charts(input).into_iter().find(|(f, _)| f.stem == stem)?;
    // Text is measured with the registered font, SVG or not.
    if let Err(e) = ensure_font() {
        return Some(Err(e));
    }
    let mut svg = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut svg, options.size()).into_drawing_area();
        chart.draw(&root).and_then(|()| root.present())
    };
    Some(
        drawn
            .map(|()| SvgChart {
                heading: figure.heading,
                stem: figure.stem,
                alt: figure.alt,
                svg,
            })
            .map_err(|e| ReportError::Draw {
                path: PathBuf::from(format!("{stem}.svg")),
                source: Box::new(e),
            }),
    )
}

fn write_png(chart: &Chart<'_>, path: &Path, size: (u32, u32)) -> Result<(), ReportError> {
    let tmp = temp_path(path);
    if let Err(source) = draw_png(chart, &tmp, size) {
        let _ = std::fs::remove_file(&tmp);
        return Err(ReportError::Draw {
            path: path.to_path_buf(),
            source,
        });
    }
    std::fs::rename(&tmp, path).map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        ReportError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

fn draw_png(chart: &Chart<'_>, tmp: &Path, size: (u32, u32)) -> Result<(), BoxError> {
    // The image crate picks the encoder from the extension, which `temp_path` keeps.
    let root = BitMapBackend::new(tmp, size).into_drawing_area();
    chart.draw(&root)?;
    root.present()?;
    Ok(())
}

fn write_svg(chart: &Chart<'_>, path: &Path, size: (u32, u32)) -> Result<(), ReportError> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        chart
            .draw(&root)
            .and_then(|()| root.present())
            .map_err(|e| ReportError::Draw {
                path: path.to_path_buf(),
                source: Box::new(e),
            })?;
    }
    write_atomic(path, svg.as_bytes())
}

/// Writes `bytes` beside `path` under a temporary name, then renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let tmp = temp_path(path);
    let result = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    result.map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        ReportError::Write {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// `dir/.stem.tmp-<pid>-<n>.ext`: hidden, unique per process and call, same directory (so the
/// rename stays on one file system) and same extension.
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(ext) => format!(
            ".{stem}.tmp-{}-{n}.{}",
            std::process::id(),
            ext.to_string_lossy()
        ),
        None => format!(".{stem}.tmp-{}-{n}", std::process::id()),
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests;
