use gtap_plot::{line_figure, summarise, LinePanel, PlotError, Series};
use polars::prelude::*;

use crate::{decode, read};

fn series(label: &str, x: &[f64], mean: &[f64], std: &[f64]) -> Series {
    Series {
        label: label.into(),
        x: x.to_vec(),
        mean: mean.to_vec(),
        std: std.to_vec(),
    }
}

fn curve(label: &str, offset: f64) -> Series {
    let x: Vec<f64> = (1..=20).map(|i| i as f64 / 20.0).collect();
    let mean = x
        .iter()
        .map(|x| (1.0 - (-6.0 * x).exp()) * (0.95 - offset))
        .collect();
    let std = x.iter().map(|x| 0.02 + 0.05 * (1.0 - x)).collect();
    Series {
        label: label.into(),
        x,
        mean,
        std,
    }
}

#[test]
fn line_figure_writes_both_files_with_every_label() {
    let dir = tempfile::tempdir().unwrap();
    let panels = [
        LinePanel {
            title: "(a) Top-n".into(),
            x_label: "fraction of neurons kept (r / n)".into(),
            y_label: "test accuracy".into(),
            series: vec![
                curve("Shapley", 0.0),
                curve("Banzhaf", 0.05),
                curve("WMP", 0.2),
            ],
            vline: Some((0.225, "critical size".into())),
        },
        LinePanel {
            title: "(b) Iterated Pruning".into(),
            x_label: "fraction of neurons kept (r / n)".into(),
            y_label: "test accuracy".into(),
            series: vec![curve("Banzhaf", 0.0), curve("random", 0.4)],
            vline: None,
        },
    ];
    let files = line_figure(&panels, &dir.path().join("figure-3")).unwrap();
    assert_eq!(files.len(), 2);
    let png = decode(&files[0]);
    assert!(
        png.width() > png.height() && png.height() >= 300,
        "{:?}",
        png.dimensions()
    );
    assert!(png.pixels().filter(|p| p.0 != [255, 255, 255]).count() > 10_000);
    let svg = read(&files[1]);
    for label in [
        "Shapley",
        "Banzhaf",
        "WMP",
        "random",
        "critical size",
        "(a) Top-n",
        "test accuracy",
    ] {
        assert!(svg.contains(label), "SVG lacks {label:?}");
    }
}

#[test]
fn line_figure_rejects_bad_series() {
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("bad");
    let panel = |s: Series| LinePanel {
        title: "P".into(),
        x_label: "x".into(),
        y_label: "y".into(),
        series: vec![s],
        vline: None,
    };
    let err = line_figure(
        &[panel(series("A", &[0.0, 1.0], &[1.0], &[0.0, 0.0]))],
        &stem,
    )
    .unwrap_err();
    assert!(err.to_string().contains("series `A` in panel `P`"), "{err}");
    let err = line_figure(&[panel(series("A", &[0.0], &[f64::NAN], &[0.0]))], &stem).unwrap_err();
    assert!(err.to_string().contains("mean[0] is not finite"), "{err}");
    assert!(matches!(
        line_figure(&[], &stem),
        Err(PlotError::NoPanels { .. })
    ));
}

fn check_series(got: &(Vec<String>, Series), key: &[&str], x: &[f64], mean: &[f64], std: &[f64]) {
    assert_eq!(got.0, key);
    assert_eq!(got.1.x, x, "x of {key:?}");
    assert_eq!(got.1.mean, mean, "mean of {key:?}");
    assert_eq!(got.1.std, std, "std of {key:?}");
}

#[test]
fn summarise_gives_mean_and_population_std_per_group_and_x() {
    // Method A at r = 0.5: 1, 3 (mean 2, σ 1); at r = 0.25: 2 4 4 4 5 5 7 9 (mean 5, σ 2).
    // Method B at r = 1: a single 0.5 (σ 0). Rows out of order on purpose.
    let table = df!(
        "method" => ["A", "A", "B", "A", "A", "A", "A", "A", "A", "A", "A"],
        "seed" => [0i64, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7],
        "r" => [0.5, 0.25, 1.0, 0.5, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25, 0.25],
        "acc" => [1.0, 2.0, 0.5, 3.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0],
    )
    .unwrap();
    let got = summarise(&table, &["method"], "r", "acc").unwrap();
    assert_eq!(got.len(), 2);
    check_series(&got[0], &["A"], &[0.25, 0.5], &[5.0, 2.0], &[2.0, 1.0]);
    check_series(&got[1], &["B"], &[1.0], &[0.5], &[0.0]);
    assert_eq!(got[0].1.label, "A");

    // Two group columns, one of them an integer; no group at all.
    let by_seed = summarise(&table, &["method", "seed"], "r", "acc").unwrap();
    check_series(
        &by_seed[0],
        &["A", "0"],
        &[0.25, 0.5],
        &[2.0, 1.0],
        &[0.0, 0.0],
    );
    assert_eq!(by_seed[0].1.label, "A / 0");
    let all = summarise(&table, &[], "r", "acc").unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].1.label, "acc");
    assert_eq!(all[0].1.x, [0.25, 0.5, 1.0]);
}

#[test]
fn summarise_errors_name_the_column() {
    let table = df!("method" => ["A"], "r" => [0.5], "acc" => [1.0]).unwrap();
    let err = summarise(&table, &["method"], "r", "accuracy").unwrap_err();
    assert!(err.to_string().contains("no column `accuracy`"), "{err}");
    let err = summarise(&table, &["method"], "method", "acc").unwrap_err();
    assert!(
        err.to_string()
            .contains("column `method` is used more than once"),
        "{err}"
    );
    let err = summarise(&table, &["method"], "r", "method").unwrap_err();
    assert!(err.to_string().contains("`method`"), "{err}");
}
