//! End-to-end tests of `write_report`: realistic and degenerate inputs, checked file by file.

use super::*;

const FILES: [&str; 9] = [
    "fitness.png",
    "fitness.svg",
    "equity.png",
    "equity.svg",
    "params.png",
    "params.svg",
    "walk_forward.png",
    "walk_forward.svg",
    "index.html",
];

/// Deterministic noise in [-1, 1) without pulling in `rand`.
struct Lcg(u64);

impl Lcg {
    fn noise(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

fn realistic() -> ReportInput {
    let mut rng = Lcg(7);
    let fitness = (0..3)
        .map(|f| {
            let mut best = Vec::new();
            let mut mean = Vec::new();
            let mut b = -200.0 + 40.0 * f as f64;
            for g in 0..20 {
                b += (30.0 - g as f64).max(1.0) * (0.5 + rng.noise().abs());
                best.push(b);
                mean.push(b - 150.0 + 5.0 * g as f64 + 20.0 * rng.noise());
            }
            FitnessSeries {
                label: format!("fold {}", f + 1),
                best,
                mean,
            }
        })
        .collect();
    let labels = ["GA-optimised", "buy & hold", "<hold quote>"];
    let equity = labels
        .iter()
        .enumerate()
        .map(|(s, label)| {
            let mut eq = 1000.0;
            let drift = [4.0, -6.0, 0.0][s];
            let points = (0..500)
                .map(|i| {
                    eq += drift + 25.0 * rng.noise();
                    (19_000_000.0 + 12.0 * i as f64, eq)
                })
                .collect();
            Series {
                label: label.to_string(),
                points,
            }
        })
        .collect();
    let names = [
        "fast_window",
        "slow_window",
        "threshold_bps",
        "stop_loss",
        "size_frac",
    ];
    let population = names
        .iter()
        .enumerate()
        .map(|(p, name)| {
            let (lo, hi) = [
                (2.0, 50.0),
                (20.0, 400.0),
                (0.0, 100.0),
                (0.01, 0.2),
                (0.0, 1.0),
            ][p];
            let centre = lo + (hi - lo) * (0.3 + 0.1 * p as f64);
            let values = (0..64)
                .map(|_| (centre + (hi - lo) * 0.15 * (rng.noise() + rng.noise())).clamp(lo, hi))
                .collect();
            ParamDistribution {
                name: name.to_string(),
                lo,
                hi,
                values,
            }
        })
        .collect();
    let walk_forward = (1..=3)
        .map(|fold| FoldBars {
            fold,
            in_sample: 120.0 * fold as f64,
            out_of_sample: [35.0, -42.5, 10.0][fold - 1],
            baselines: vec![
                ("buy & hold".to_string(), [-80.0, 15.0, -5.0][fold - 1]),
                ("<hold quote>".to_string(), 0.0),
            ],
        })
        .collect();
    ReportInput {
        title: "Momentum on WETH/USDC".into(),
        objective: "net PnL (USDC)".into(),
        summary: vec![
            ("strategy".into(), "momentum".into()),
            ("dataset".into(), "uniswap-v3 WETH/USDC 0.05%".into()),
            ("seed".into(), "42".into()),
        ],
        results: Table {
            headers: vec!["strategy".into(), "net PnL".into(), "trades".into()],
            rows: vec![
                vec!["GA-optimised".into(), "12.5".into(), "31".into()],
                vec!["buy & hold".into(), "-70.0".into(), "1".into()],
            ],
        },
        fitness,
        equity,
        population,
        walk_forward,
    }
}

fn empty() -> ReportInput {
    ReportInput {
        title: String::new(),
        objective: String::new(),
        summary: vec![],
        results: Table {
            headers: vec![],
            rows: vec![],
        },
        fitness: vec![],
        equity: vec![],
        population: vec![],
        walk_forward: vec![],
    }
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.len() > 24, "PNG too short");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[8..12], &13u32.to_be_bytes(), "IHDR length");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

/// A light well-formedness check: one `<svg>` root and every element closed in order.
fn assert_xmlish(svg: &str) {
    let body = svg.trim_start();
    let body = match body.strip_prefix("<?xml") {
        Some(rest) => &rest[rest.find("?>").expect("unterminated XML declaration") + 2..],
        None => body,
    };
    assert!(body.trim_start().starts_with("<svg"), "no <svg> root");
    assert!(body.trim_end().ends_with("</svg>"), "no </svg> at the end");
    let mut stack: Vec<&str> = Vec::new();
    let mut rest = body;
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>').expect("unterminated tag") + open;
        let tag = &rest[open + 1..close];
        rest = &rest[close + 1..];
        if tag.starts_with('!') || tag.starts_with('?') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop(), Some(name.trim()), "mismatched </{name}>");
        } else if !tag.ends_with('/') {
            let name = tag.split(|c: char| c.is_whitespace()).next().unwrap();
            stack.push(name);
        }
    }
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
}

fn assert_all_files(dir: &Path, written: &[PathBuf], size: (u32, u32)) {
    let expected: Vec<PathBuf> = FILES.iter().map(|f| dir.join(f)).collect();
    assert_eq!(written, expected);
    for path in written {
        let bytes = std::fs::read(path).unwrap();
        match path.extension().and_then(|e| e.to_str()) {
            Some("png") => assert_eq!(png_size(&bytes), size, "{}", path.display()),
            Some("svg") => assert_xmlish(std::str::from_utf8(&bytes).unwrap()),
            _ => assert!(bytes.starts_with(b"<!DOCTYPE html>")),
        }
    }
    // Nothing else, in particular no temporary file left behind.
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut want: Vec<String> = FILES.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(names, want);
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

#[test]
fn realistic_report_writes_all_files() {
    let input = realistic();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested/report");
    let written = write_report(&input, &out).unwrap();
    let d = ReportOptions::default();
    assert_all_files(&out, &written, (d.width, d.height));

    let fitness = read(&out, "fitness.svg");
    for fold in ["fold 1 best", "fold 2 mean", "fold 3 best"] {
        assert!(fitness.contains(fold), "fitness.svg lacks {fold}");
    }
    assert!(fitness.contains("net PnL (USDC)"));
    let equity = read(&out, "equity.svg");
    for label in ["GA-optimised", "buy &amp; hold", "&lt;hold quote&gt;"] {
        assert!(equity.contains(label), "equity.svg lacks {label}");
    }
    let params = read(&out, "params.svg");
    for p in &input.population {
        assert!(params.contains(&p.name), "params.svg lacks {}", p.name);
    }
    let wf = read(&out, "walk_forward.svg");
    for label in ["in-sample", "out-of-sample", "buy &amp; hold", "fold 2"] {
        assert!(wf.contains(label), "walk_forward.svg lacks {label}");
    }
    for svg in [&fitness, &equity, &params, &wf] {
        assert!(!svg.contains("no data"), "a realistic chart says no data");
    }

    let html = read(&out, "index.html");
    for stem in ["fitness", "equity", "params", "walk_forward"] {
        assert!(
            html.contains(&format!("<img src=\"{stem}.png\"")),
            "{stem} image"
        );
        assert!(
            html.contains(&format!("<a href=\"{stem}.svg\"")),
            "{stem} link"
        );
    }
    assert!(html.contains("<td>uniswap-v3 WETH/USDC 0.05%</td>"));
    assert!(html.contains("<td>buy &amp; hold</td><td class=\"num\">-70.0</td>"));

    // For eyeballing the charts: DEXLAB_REPORT_KEEP=/some/dir cargo test -p dexlab-report
    if let Some(keep) = std::env::var_os("DEXLAB_REPORT_KEEP") {
        write_report(&input, Path::new(&keep)).unwrap();
    }
}

#[test]
fn input_round_trips_through_json() {
    // Values exact in binary: serde_json's default float parser may be off by one ULP otherwise.
    let mut input = empty();
    input.title = "t".into();
    input.fitness = vec![FitnessSeries {
        label: "fold 1".into(),
        best: vec![1.5, 2.25],
        mean: vec![-0.5, 1.0],
    }];
    input.walk_forward = vec![FoldBars {
        fold: 1,
        in_sample: 3.0,
        out_of_sample: -1.25,
        baselines: vec![("hold".into(), 0.5)],
    }];
    let json = serde_json::to_string(&input).unwrap();
    let back: ReportInput = serde_json::from_str(&json).unwrap();
    assert_eq!(back, input);
}

#[test]
fn html_escapes_all_text() {
    let mut input = empty();
    input.title = r#"a <b> & "c""#.into();
    input.summary = vec![("<k>".into(), "v & w".into())];
    input.results = Table {
        headers: vec!["<h>".into()],
        rows: vec![vec!["\"quoted\"".into()]],
    };
    let dir = tempfile::tempdir().unwrap();
    write_report(&input, dir.path()).unwrap();
    let html = read(dir.path(), "index.html");
    assert!(html.contains("<title>a &lt;b&gt; &amp; &quot;c&quot;</title>"));
    assert!(html.contains("<h1>a &lt;b&gt; &amp; &quot;c&quot;</h1>"));
    assert!(html.contains("<th>&lt;k&gt;</th><td>v &amp; w</td>"));
    assert!(html.contains("<th>&lt;h&gt;</th>"));
    assert!(html.contains("<td>&quot;quoted&quot;</td>"));
    assert!(!html.contains("<b>") && !html.contains("<k>") && !html.contains("<h>"));
}

#[test]
fn empty_input_draws_no_data() {
    let dir = tempfile::tempdir().unwrap();
    let written = write_report(&empty(), dir.path()).unwrap();
    let d = ReportOptions::default();
    assert_all_files(dir.path(), &written, (d.width, d.height));
    for svg in [
        "fitness.svg",
        "equity.svg",
        "params.svg",
        "walk_forward.svg",
    ] {
        assert!(read(dir.path(), svg).contains("no data"), "{svg}");
    }
    assert!(read(dir.path(), "index.html").contains("No results."));
}

#[test]
fn degenerate_inputs_succeed() {
    let nan = f64::NAN;
    let inf = f64::INFINITY;
    let mut single = empty();
    single.fitness = vec![FitnessSeries {
        label: String::new(),
        best: vec![5.0],
        mean: vec![],
    }];
    single.equity = vec![
        Series {
            label: "one".into(),
            points: vec![(100.0, 1.0)],
        },
        Series {
            label: "none".into(),
            points: vec![],
        },
    ];
    single.population = vec![ParamDistribution {
        name: "p".into(),
        lo: 1.0,
        hi: 1.0,
        values: vec![1.0],
    }];
    single.walk_forward = vec![FoldBars {
        fold: 0,
        in_sample: 0.0,
        out_of_sample: 0.0,
        baselines: vec![],
    }];

    let mut flat = realistic();
    for s in &mut flat.fitness {
        s.best.iter_mut().for_each(|v| *v = 3.0);
        s.mean.iter_mut().for_each(|v| *v = 3.0);
    }
    for s in &mut flat.equity {
        s.points.iter_mut().for_each(|p| *p = (7.0, 0.0));
    }
    for p in &mut flat.population {
        p.values.iter_mut().for_each(|v| *v = p.lo);
    }
    for f in &mut flat.walk_forward {
        f.in_sample = -1.0;
        f.out_of_sample = -1.0;
        f.baselines.iter_mut().for_each(|b| b.1 = -1.0);
    }

    let mut broken = realistic();
    broken.fitness[0].best[3] = nan;
    broken.fitness[1].mean = vec![nan; 20];
    broken.fitness.push(FitnessSeries {
        label: "all bad".into(),
        best: vec![inf, nan],
        mean: vec![-inf],
    });
    broken.equity[0].points[10] = (nan, 1.0);
    broken.equity[1].points[20] = (1.0, inf);
    broken.equity[2].points = vec![(nan, nan); 3];
    broken.population[0].lo = nan;
    broken.population[1].values.extend([nan, inf, -1e9, 1e9]);
    broken.population[2].values = vec![nan; 4];
    broken.population[3].hi = broken.population[3].lo - 1.0;
    broken.walk_forward[0].in_sample = nan;
    broken.walk_forward[1]
        .baselines
        .push(("ghost".into(), -inf));
    broken.walk_forward[2].out_of_sample = nan;

    let mut extreme = realistic();
    extreme.fitness[0].best = vec![-1e308, 1e308, 1e-300];
    extreme.equity[0].points = vec![(0.0, -1e300), (1e300, 1e300)];
    extreme.equity[1].points = vec![(1.0, 1e-300), (1.0 + 1e-15, 2e-300)];
    extreme.population[0] = ParamDistribution {
        name: "tiny".into(),
        lo: 0.0,
        hi: 1e-300,
        values: vec![5e-301; 10],
    };
    extreme.walk_forward[0].in_sample = 1e300;

    let mut crowded = realistic();
    crowded.fitness = (0..30)
        .map(|i| FitnessSeries {
            label: format!("fold {i} with a label far too long to fit in the legend column"),
            best: vec![i as f64, i as f64 + 1.0],
            mean: vec![i as f64 - 1.0, i as f64],
        })
        .collect();
    crowded.walk_forward = (0..40)
        .map(|fold| FoldBars {
            fold,
            in_sample: fold as f64,
            out_of_sample: -(fold as f64),
            baselines: vec![],
        })
        .collect();
    crowded.population = (0..17)
        .map(|i| ParamDistribution {
            name: format!("p{i}"),
            lo: 0.0,
            hi: 1.0,
            values: vec![0.5; 1 + i],
        })
        .collect();

    let d = ReportOptions::default();
    for (name, input) in [
        ("single", single),
        ("flat", flat),
        ("broken", broken),
        ("extreme", extreme),
        ("crowded", crowded),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let written = write_report(&input, dir.path()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_all_files(dir.path(), &written, (d.width, d.height));
        if let Some(keep) = std::env::var_os("DEXLAB_REPORT_KEEP") {
            write_report(&input, &Path::new(&keep).join(name)).unwrap();
        }
    }
}

#[test]
fn options_set_and_clamp_the_size() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ReportOptions {
        width: 640,
        height: 480,
    };
    let written = write_report_with(&realistic(), dir.path(), &opts).unwrap();
    assert_all_files(dir.path(), &written, (640, 480));
    assert!(read(dir.path(), "index.html").contains("width=\"640\" height=\"480\""));

    let dir = tempfile::tempdir().unwrap();
    let tiny = ReportOptions {
        width: 1,
        height: 1,
    };
    let written = write_report_with(&realistic(), dir.path(), &tiny).unwrap();
    assert_all_files(dir.path(), &written, ReportOptions::MIN);
}

#[test]
fn bad_out_dir_names_the_path() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let out = file.path().join("report");
    let err = write_report(&realistic(), &out).unwrap_err();
    assert!(matches!(err, ReportError::CreateDir { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&out.display().to_string()), "{msg}");
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn unwritable_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where index.html should go: the rename onto it fails.
    std::fs::create_dir(dir.path().join("index.html")).unwrap();
    std::fs::write(dir.path().join("index.html/keep"), b"x").unwrap();
    let err = write_report(&empty(), dir.path()).unwrap_err();
    assert!(matches!(err, ReportError::Write { .. }), "{err:?}");
    assert!(err.to_string().contains("index.html"), "{err}");
    let leftovers = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains(".tmp-")
        })
        .count();
    assert_eq!(leftovers, 0, "temporary file left behind");
}

#[test]
fn temp_names_keep_directory_and_extension() {
    let a = temp_path(Path::new("/x/y/fitness.png"));
    let b = temp_path(Path::new("/x/y/fitness.png"));
    assert_ne!(a, b);
    assert_eq!(a.parent(), Some(Path::new("/x/y")));
    assert_eq!(a.extension().unwrap(), "png");
    assert!(
        a.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".fitness.tmp-")
    );
}

// ---------------------------------------------------------------------------------------------
// Model charts

const MODEL_FILES: [&str; 4] = [
    "learning_curve.png",
    "learning_curve.svg",
    "predicted_vs_realised.png",
    "predicted_vs_realised.svg",
];

fn curve(epochs: usize) -> Vec<EpochLoss> {
    (1..=epochs)
        .map(|e| {
            let e_f = e as f64;
            EpochLoss {
                epoch: e,
                train: 0.4 + 0.6 / e_f,
                // Falls, then creeps up after epoch 8: the kept epoch is 8.
                valid: 0.5 + 0.5 / e_f + 0.002 * (e_f - 8.0).max(0.0).powi(2),
            }
        })
        .collect()
}

fn regression_plots(points: Vec<(f64, f64)>) -> ModelPlots {
    ModelPlots {
        title: "mlp on label_fwd_ret_1__pool".into(),
        loss: "MSE (standardised target)".into(),
        curve: curve(14),
        best_epoch: 8,
        test: TestPredictions::Regression {
            target: "label_fwd_ret_1__pool".into(),
            points,
            mse: Some(2.5e-6),
            zero_mse: Some(3.1e-6),
        },
    }
}

/// `(realised, predicted)` with a predictable part the model catches, shrunk towards zero.
fn return_like(n: usize, seed: u64) -> Vec<(f64, f64)> {
    let mut rng = Lcg(seed);
    (0..n)
        .map(|_| {
            let signal = rng.noise() * 1e-3;
            let realised = signal + rng.noise() * 1.5e-3;
            (realised, 0.6 * signal + rng.noise() * 2e-4)
        })
        .collect()
}

fn assert_model_files(dir: &Path, written: &[PathBuf], size: (u32, u32)) {
    let expected: Vec<PathBuf> = MODEL_FILES.iter().map(|f| dir.join(f)).collect();
    assert_eq!(written, expected);
    for path in written {
        let bytes = std::fs::read(path).unwrap();
        match path.extension().and_then(|e| e.to_str()) {
            Some("png") => {
                assert_eq!(png_size(&bytes), size, "{}", path.display());
                // A blank canvas compresses to a few hundred bytes; a drawn chart does not.
                assert!(
                    bytes.len() > 10_000,
                    "{}: {} bytes",
                    path.display(),
                    bytes.len()
                );
            }
            _ => assert_xmlish(std::str::from_utf8(&bytes).unwrap()),
        }
    }
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn model_charts_regression() {
    let dir = tempfile::tempdir().unwrap();
    // Fewer points than the clipping threshold: every point is on the axes.
    let plots = regression_plots(return_like(150, 3));
    let opts = ReportOptions {
        width: 900,
        height: 500,
    };
    let written = write_model_plots_with(&plots, dir.path(), &opts).unwrap();
    assert_model_files(dir.path(), &written, (900, 500));

    let lc = read(dir.path(), "learning_curve.svg");
    for label in [
        "Learning curve: mlp on label_fwd_ret_1__pool",
        "train loss",
        "validation loss",
        "kept: epoch 8",
        "MSE (standardised target)",
        "epoch",
    ] {
        assert!(lc.contains(label), "learning_curve.svg lacks {label}");
    }
    // Two loss lines and the best-epoch rule, over the mesh's own lines; one marker (filled and
    // ringed) on the plot and one in the legend.
    assert_eq!(count(&lc, "<circle"), 3, "{lc}");
    assert!(!lc.contains("no data"));

    let pv = read(dir.path(), "predicted_vs_realised.svg");
    for label in [
        "test samples: 150, MSE 2.500e-6",
        "y = x (perfect)",
        "zero predictor, MSE 3.100e-6",
        "realised label_fwd_ret_1__pool",
        "predicted label_fwd_ret_1__pool",
    ] {
        assert!(
            pv.contains(label),
            "predicted_vs_realised.svg lacks {label}"
        );
    }
    // Every test sample is drawn, plus the legend's marker.
    assert_eq!(count(&pv, "<circle"), 150 + 1);
    assert!(!pv.contains("beyond the axes"));

    if let Some(keep) = std::env::var_os("DEXLAB_REPORT_KEEP") {
        write_model_plots_with(&plots, &Path::new(&keep).join("model-regression"), &opts).unwrap();
    }
}

#[test]
fn model_scatter_clips_outliers_and_thins_large_splits() {
    let dir = tempfile::tempdir().unwrap();
    let mut points = return_like(20_000, 5);
    points[10] = (0.5, 0.0); // a fat-tail return 300 times the others
    points[11] = (f64::NAN, 0.0);
    write_model_plots_with(
        &regression_plots(points),
        dir.path(),
        &ReportOptions::default(),
    )
    .unwrap();
    let pv = read(dir.path(), "predicted_vs_realised.svg");
    // The NaN is not a sample to plot; the outlier is counted but not drawn.
    assert!(pv.contains("test samples: 19999"), "{pv}");
    assert!(pv.contains("beyond the axes"));
    assert!(pv.contains("1 in 4 drawn"));
    let circles = count(&pv, "<circle");
    assert!((4000..=5001).contains(&circles), "{circles} circles");
}

#[test]
fn model_charts_classification() {
    let dir = tempfile::tempdir().unwrap();
    let bins: Vec<CalibrationBin> = (0..10)
        .map(|b| {
            let lo = b as f64 / 10.0;
            let count = [0, 3, 40, 120, 260, 240, 110, 30, 0, 0][b];
            CalibrationBin {
                lo,
                hi: lo + 0.1,
                count,
                mean_predicted: (count > 0).then_some(lo + 0.05),
                observed_rate: (count > 0).then_some((lo + 0.05) * 0.9 + 0.04),
            }
        })
        .collect();
    let plots = ModelPlots {
        title: "gru on label_up_5__pool".into(),
        loss: "log loss (binary cross-entropy)".into(),
        curve: curve(10),
        best_epoch: 8,
        test: TestPredictions::Classification {
            target: "label_up_5__pool".into(),
            bins,
            positive_rate: Some(0.47),
            log_loss: Some(0.6812),
            auc: Some(0.574),
        },
    };
    let written = write_model_plots_with(&plots, dir.path(), &ReportOptions::default()).unwrap();
    let d = ReportOptions::default();
    assert_model_files(dir.path(), &written, (d.width, d.height));
    let pv = read(dir.path(), "predicted_vs_realised.svg");
    for label in [
        "Predicted vs realised (test split): gru on label_up_5__pool",
        "observed rate per bin",
        "log loss 0.6812, AUC 0.574",
        "perfect calibration",
        "test positive rate 0.470",
        "samples per bin",
        "predicted probability",
    ] {
        assert!(
            pv.contains(label),
            "predicted_vs_realised.svg lacks {label}"
        );
    }
    // One marker per non-empty bin.
    assert_eq!(count(&pv, "<circle"), 7);
    if let Some(keep) = std::env::var_os("DEXLAB_REPORT_KEEP") {
        write_model_plots_with(&plots, &Path::new(&keep).join("model-classification"), &d).unwrap();
    }
}

#[test]
fn model_charts_without_data_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut plots = regression_plots(vec![(f64::NAN, 1.0)]);
    plots.curve.clear();
    write_model_plots_with(&plots, dir.path(), &ReportOptions::default()).unwrap();
    assert!(read(dir.path(), "learning_curve.svg").contains("no data"));
    assert!(read(dir.path(), "predicted_vs_realised.svg").contains("no data"));
    // One epoch, and a best epoch that is not in the curve.
    let mut plots = regression_plots(vec![(1.0, 1.0)]);
    plots.curve.truncate(1);
    plots.best_epoch = 99;
    write_model_plots_with(&plots, dir.path(), &ReportOptions::default()).unwrap();
    let lc = read(dir.path(), "learning_curve.svg");
    assert!(!lc.contains("no data") && !lc.contains("kept"));
}

/// A model directory as `dexlab train` writes it (files trimmed to the fields and rows drawn,
/// plus a few the reader must ignore).
fn write_model_dir(dir: &Path, task: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let model = if task == "regression" {
        r#"{"n": 3, "mse": 0.0125, "mae": 0.1, "directional_accuracy": 0.66}"#
    } else {
        r#"{"n": 3, "positive_rate": 0.5, "accuracy": 0.66, "auc": 0.75, "log_loss": 0.6,
            "calibration": [{"lo": 0.0, "hi": 0.5, "count": 2, "mean_predicted": 0.3,
            "observed_rate": 0.5}, {"lo": 0.5, "hi": 1.0, "count": 1, "mean_predicted": 0.7,
            "observed_rate": 1.0}]}"#
    };
    let metrics = format!(
        r#"{{"curve": [{{"epoch": 1, "lr": 0.001, "train_loss": 1.0, "valid_loss": 0.9}},
        {{"epoch": 2, "lr": 0.0005, "train_loss": 0.8, "valid_loss": 0.85}}],
        "best_epoch": 2, "best_valid_loss": 0.85, "epochs_run": 2, "stopped_early": false,
        "test": {{"rows": 3, "first_block": 10, "last_block": 12, "model": {model},
        "baselines": [{{"name": "zero", "description": "predicts 0",
        "metrics": {{"n": 3, "mse": 0.02, "mae": 0.1, "directional_accuracy": 0.5}}}}]}}}}"#
    );
    std::fs::write(dir.join("metrics.json"), metrics).unwrap();
    std::fs::write(
        dir.join("schema.json"),
        format!(r#"{{"features": ["a"], "target": "label_x", "window": 1, "task": "{task}"}}"#),
    )
    .unwrap();
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_kind": "mlp", "seed": 1, "model": {"kind": "mlp"}}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("predictions.csv"),
        "block,realised,predicted\n10,0.1,0.05\n11,-0.2,-0.1\n12,0.0,1e-3\n",
    )
    .unwrap();
}

#[test]
fn model_plots_are_read_from_a_model_directory() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("reg");
    write_model_dir(&reg, "regression");
    let plots = ModelPlots::read(&reg).unwrap();
    assert_eq!(plots.title, "mlp on label_x");
    assert_eq!(plots.best_epoch, 2);
    assert_eq!(plots.curve[1].valid, 0.85);
    assert_eq!(
        plots.test,
        TestPredictions::Regression {
            target: "label_x".into(),
            points: vec![(0.1, 0.05), (-0.2, -0.1), (0.0, 1e-3)],
            mse: Some(0.0125),
            zero_mse: Some(0.02),
        }
    );
    let written = write_model_plots(&reg).unwrap();
    let d = ReportOptions::default();
    assert_model_files(&reg, &written, (d.width, d.height));

    let clf = dir.path().join("clf");
    write_model_dir(&clf, "classification");
    let plots = ModelPlots::read(&clf).unwrap();
    let TestPredictions::Classification { bins, auc, .. } = &plots.test else {
        panic!("{:?}", plots.test);
    };
    assert_eq!((bins.len(), *auc), (2, Some(0.75)));
    assert!(plots.loss.contains("log loss"));
    write_model_plots(&clf).unwrap();
    assert_eq!(
        count(&read(&clf, "predicted_vs_realised.svg"), "<circle"),
        2
    );

    // A regression directory from before predictions.csv: the scatter says no data.
    std::fs::remove_file(reg.join("predictions.csv")).unwrap();
    write_model_plots(&reg).unwrap();
    assert!(read(&reg, "predicted_vs_realised.svg").contains("no data"));

    // Broken files name themselves.
    std::fs::write(reg.join("metrics.json"), "{").unwrap();
    let e = write_model_plots(&reg).unwrap_err().to_string();
    assert!(e.contains("metrics.json"), "{e}");
    let e = write_model_plots(&dir.path().join("missing"))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("cannot read") && e.contains("missing"), "{e}");
}

/// A model directory as `dexlab train` wrote it (weights, normaliser and dataset files left out):
/// an MLP on the real USDC/WETH sample's next-block return, 20 epochs at most, seed 1.
#[test]
fn plots_a_model_directory_written_by_dexlab_train() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mlp-regression");
    let dir = tempfile::tempdir().unwrap();
    for f in [
        "config.json",
        "metrics.json",
        "schema.json",
        "predictions.csv",
    ] {
        std::fs::copy(fixture.join(f), dir.path().join(f)).unwrap();
    }
    let plots = ModelPlots::read(dir.path()).unwrap();
    assert_eq!(
        plots.title,
        "mlp on label_fwd_ret_1__uniswap_v3_usdc_weth_500"
    );
    assert!(plots.curve.iter().any(|e| e.epoch == plots.best_epoch));
    let TestPredictions::Regression {
        points,
        mse,
        zero_mse,
        ..
    } = &plots.test
    else {
        panic!("{:?}", plots.test);
    };
    // predictions.csv is the test split behind metrics.json.
    let n = points.len() as f64;
    let from_csv = points.iter().map(|(y, p)| (p - y).powi(2)).sum::<f64>() / n;
    let mse = mse.unwrap();
    assert!((from_csv - mse).abs() <= 1e-12 * mse, "{from_csv} vs {mse}");
    let zero = points.iter().map(|(y, _)| y * y).sum::<f64>() / n;
    assert!((zero - zero_mse.unwrap()).abs() <= 1e-12 * zero);

    let written = write_model_plots(dir.path()).unwrap();
    let d = ReportOptions::default();
    assert_model_files(dir.path(), &written, (d.width, d.height));
    let lc = read(dir.path(), "learning_curve.svg");
    assert!(lc.contains(&format!("kept: epoch {}", plots.best_epoch)));
    let pv = read(dir.path(), "predicted_vs_realised.svg");
    assert!(
        pv.contains(&format!("test samples: {}", points.len())),
        "{pv}"
    );
    if let Some(keep) = std::env::var_os("DEXLAB_REPORT_KEEP") {
        let keep = Path::new(&keep).join("model-sample");
        std::fs::create_dir_all(&keep).unwrap();
        for path in &written {
            std::fs::copy(path, keep.join(path.file_name().unwrap())).unwrap();
        }
    }
}

#[test]
fn svg_charts_draw_in_memory_as_the_files_do() {
    let input = realistic();
    // First, in a process where no report was written yet (the font is not registered).
    let first = svg_chart(&input, "equity", &ReportOptions::default())
        .unwrap()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_report(&input, dir.path()).unwrap();
    assert_eq!(first.svg, read(dir.path(), "equity.svg"));
    for stem in CHART_STEMS {
        let chart = svg_chart(&input, stem, &ReportOptions::default())
            .unwrap()
            .unwrap();
        assert_eq!(chart.stem, stem);
        assert_xmlish(&chart.svg);
        // The same drawing as the report's file.
        assert_eq!(chart.svg, read(dir.path(), &format!("{stem}.svg")));
    }
    assert!(svg_chart(&input, "nope", &ReportOptions::default()).is_none());
}
