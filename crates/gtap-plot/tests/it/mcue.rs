use std::collections::HashSet;

use gtap_plot::{diagonal_argmax, mcue_figure, DataFrame, Panel, PlotError};
use polars::prelude::*;

use crate::{decode, read};

/// A `step` grid over [0, 1]² for each panel, variance from `f(p, q)`.
type Surface<'a> = &'a dyn Fn(f64, f64) -> f64;

fn grid_table(panels: &[(&str, Surface<'_>)], step: f64) -> DataFrame {
    let n = (1.0 / step).round() as usize;
    let (mut key, mut ps, mut qs, mut vs) = (vec![], vec![], vec![], vec![]);
    for (name, f) in panels {
        for i in 0..=n {
            for j in 0..=n {
                let (p, q) = (i as f64 * step, j as f64 * step);
                key.push(name.to_string());
                ps.push(p);
                qs.push(q);
                vs.push(f(p, q));
            }
        }
    }
    df!("panel" => key, "p" => ps, "q" => qs, "variance" => vs).unwrap()
}

/// A bump centred on (c, c), plus a larger value off the diagonal that must be ignored.
fn bump(c: f64) -> impl Fn(f64, f64) -> f64 {
    move |p, q| {
        if (p - 0.1).abs() < 1e-9 && (q - 0.9).abs() < 1e-9 {
            return 0.9;
        }
        0.2 * (-((p - c).powi(2) + (q - c).powi(2)) / 0.02).exp()
    }
}

fn check_argmax(table: &DataFrame, panel: &str, t: f64, v: f64) {
    let (got_t, got_v) = diagonal_argmax(table, panel).unwrap();
    assert!(
        (got_t - t).abs() < 1e-9,
        "{panel}: t = {got_t}, expected {t}"
    );
    assert!(
        (got_v - v).abs() < 1e-12,
        "{panel}: variance = {got_v}, expected {v}"
    );
}

#[test]
fn diagonal_argmax_finds_the_known_maximum() {
    let a = bump(0.825);
    let b = bump(0.775);
    let table = grid_table(&[("lenet-300-100", &a), ("lenet5", &b)], 0.025);
    check_argmax(&table, "lenet-300-100", 0.825, 0.2);
    check_argmax(&table, "lenet5", 0.775, 0.2);
}

#[test]
fn diagonal_argmax_breaks_ties_towards_the_smallest_t() {
    let tie = |p: f64, q: f64| {
        let on = (p - q).abs() < 1e-9;
        if on && ((p - 0.6).abs() < 1e-9 || (p - 0.3).abs() < 1e-9) {
            1.0
        } else {
            0.0
        }
    };
    let table = grid_table(&[("m", &tie)], 0.1);
    check_argmax(&table, "m", 0.3, 1.0);
    // Row order does not matter.
    let reversed = table.reverse();
    check_argmax(&reversed, "m", 0.3, 1.0);
}

#[test]
fn diagonal_argmax_averages_repeated_points_and_skips_nan() {
    let table = df!(
        "panel" => ["m", "m", "m", "m", "m"],
        "p" => [0.0, 0.5, 0.5, 1.0, 0.5],
        "q" => [0.0, 0.5, 0.5, 1.0 + 1e-12, 0.0],
        "variance" => [0.1, 0.2, 0.4, f64::NAN, 5.0],
    )
    .unwrap();
    check_argmax(&table, "m", 0.5, 0.30000000000000004);
}

#[test]
fn mcue_figure_writes_png_and_svg() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (bump(0.825), bump(0.775), bump(0.7));
    let table = grid_table(
        &[
            ("lenet-300-100", &a),
            ("lenet5", &b),
            ("lenet5 (digits 0-1)", &c),
        ],
        0.025,
    );
    let panels = [
        Panel {
            key: "lenet-300-100".into(),
            title: "LeNet-300-100".into(),
        },
        Panel {
            key: "lenet5".into(),
            title: "LeNet5".into(),
        },
        Panel {
            key: "lenet5 (digits 0-1)".into(),
            title: "LeNet5, digits 0 vs 1".into(),
        },
    ];

    let one = mcue_figure(&table, &panels[..1], &dir.path().join("one")).unwrap();
    let stem = dir.path().join("sub/figure-2");
    let files = mcue_figure(&table, &panels, &stem).unwrap();
    assert_eq!(
        files,
        vec![
            dir.path().join("sub/figure-2.png"),
            dir.path().join("sub/figure-2.svg")
        ]
    );

    let (single, png) = (decode(&one[0]), decode(&files[0]));
    assert!(
        single.width() >= 400 && single.height() >= 400,
        "{:?}",
        single.dimensions()
    );
    assert_eq!(png.dimensions(), (3 * single.width(), single.height()));
    let colours: HashSet<[u8; 3]> = png.pixels().map(|p| p.0).collect();
    assert!(
        colours.len() > 200,
        "only {} colours: blank figure?",
        colours.len()
    );
    // The three diagonal markers are drawn in solid red.
    let red = png.pixels().filter(|p| p.0 == [228, 26, 28]).count();
    assert!(red > 3 * 50, "{red} marker pixels");
    // The top of viridis appears (each panel's maximum).
    assert!(png
        .pixels()
        .any(|p| p.0[0] > 240 && p.0[1] > 220 && p.0[2] < 60));

    let svg = read(&files[1]);
    for title in [
        "LeNet-300-100",
        "LeNet5",
        "LeNet5, digits 0 vs 1",
        "p (dropout probability)",
        "q (fraction removed)",
    ] {
        assert!(svg.contains(title), "SVG lacks {title:?}");
    }
    assert!(svg.contains("max on diagonal at t = 0.825 (var 0.2)"));
    assert!(svg.contains("max on diagonal at t = 0.775 (var 0.2)"));
}

#[test]
fn mcue_figure_accepts_other_regular_grids() {
    let dir = tempfile::tempdir().unwrap();
    let f = bump(0.5);
    let table = grid_table(&[("m", &f)], 0.1);
    let files = mcue_figure(
        &table,
        &[Panel {
            key: "m".into(),
            title: "M".into(),
        }],
        &dir.path().join("f"),
    )
    .unwrap();
    assert!(read(&files[1]).contains("max on diagonal at t = 0.5"));
}

fn check_err(result: Result<impl std::fmt::Debug, PlotError>, expected: &[&str]) {
    let err = result.expect_err("an error");
    let message = err.to_string();
    for part in expected {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
    assert!(!message.ends_with('.'), "{message:?} ends with a period");
}

#[test]
fn errors_name_the_column_or_panel() {
    let f = bump(0.5);
    let table = grid_table(&[("lenet5", &f)], 0.5);
    let dir = tempfile::tempdir().unwrap();
    let stem = dir.path().join("x");
    let panel = |k: &str| {
        [Panel {
            key: k.into(),
            title: k.into(),
        }]
    };

    let no_variance = table.drop("variance").unwrap();
    check_err(
        diagonal_argmax(&no_variance, "lenet5"),
        &["no column `variance`", "panel, p, q"],
    );
    check_err(
        mcue_figure(&no_variance, &panel("lenet5"), &stem),
        &["`variance`"],
    );
    assert!(matches!(
        diagonal_argmax(&no_variance, "lenet5"),
        Err(PlotError::MissingColumn { column, .. }) if column == "variance"
    ));

    check_err(
        diagonal_argmax(&table, "alexnet"),
        &["panel `alexnet`", "present: lenet5"],
    );
    check_err(
        mcue_figure(&table, &panel("alexnet"), &stem),
        &["panel `alexnet`"],
    );
    assert!(!stem.with_extension("png").exists());

    let text_p = df!("panel" => ["m"], "p" => ["0.5"], "q" => [0.5], "variance" => [0.1]).unwrap();
    check_err(diagonal_argmax(&text_p, "m"), &["column `p`", "str"]);
    let int_panel =
        df!("panel" => [1i64], "p" => [0.5], "q" => [0.5], "variance" => [0.1]).unwrap();
    check_err(
        diagonal_argmax(&int_panel, "1"),
        &["column `panel`", "expected a string"],
    );
    check_err(
        diagonal_argmax(&table.head(Some(0)), "lenet5"),
        &["table is empty"],
    );
    let null_q =
        df!("panel" => ["m"], "p" => [0.5], "q" => [None::<f64>], "variance" => [0.1]).unwrap();
    check_err(
        diagonal_argmax(&null_q, "m"),
        &["column `q` is null in row 0"],
    );
    let off_diagonal =
        df!("panel" => ["m"], "p" => [0.5], "q" => [0.25], "variance" => [0.1]).unwrap();
    check_err(
        diagonal_argmax(&off_diagonal, "m"),
        &["panel `m`", "diagonal"],
    );
    check_err(mcue_figure(&table, &[], &stem), &["no panels"]);
}
