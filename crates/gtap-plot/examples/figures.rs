//! Renders one example of each figure from synthetic tables, to look at:
//! `cargo run -p gtap-plot --example figures -- /tmp/plot-examples`.

use std::path::PathBuf;

use gtap_plot::{diagonal_argmax, line_figure, mcue_figure, summarise, LinePanel, Panel};
use polars::prelude::*;

/// Variance of a Bernoulli "classified correctly" statistic whose success rate falls from
/// `high` to `low` as the expected kept fraction (1 − p)(1 − q) crosses `k0`.
fn mcue(p: f64, q: f64, k0: f64, width: f64, low: f64, high: f64) -> f64 {
    let kept = (1.0 - p) * (1.0 - q);
    let acc = low + (high - low) / (1.0 + (-(kept - k0) / width).exp());
    acc * (1.0 - acc)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "/tmp/plot-examples".into()),
    );

    let models = [
        ("lenet-300-100", 0.175f64.powi(2), 0.012, 0.1, 0.98),
        ("lenet5", 0.225f64.powi(2), 0.015, 0.1, 0.99),
        ("lenet5 (digits 0-1)", 0.225f64.powi(2), 0.006, 0.1, 0.999),
    ];
    let (mut key, mut ps, mut qs, mut vs) = (vec![], vec![], vec![], vec![]);
    for (name, k0, width, low, high) in models {
        for i in 0..=40 {
            for j in 0..=40 {
                let (p, q) = (i as f64 * 0.025, j as f64 * 0.025);
                key.push(name);
                ps.push(p);
                qs.push(q);
                vs.push(mcue(p, q, k0, width, low, high));
            }
        }
    }
    let table = df!("panel" => key, "p" => ps, "q" => qs, "variance" => vs)?;
    let panels = [
        Panel {
            key: "lenet-300-100".into(),
            title: "(a) LeNet-300-100".into(),
        },
        Panel {
            key: "lenet5".into(),
            title: "(b) LeNet5".into(),
        },
        Panel {
            key: "lenet5 (digits 0-1)".into(),
            title: "(c) LeNet5, digits 0 vs 1".into(),
        },
    ];
    for p in &panels {
        let (t, v) = diagonal_argmax(&table, &p.key)?;
        println!("{}: t = {t}, variance = {v}, d = {}", p.key, 1.0 - t);
    }
    for f in mcue_figure(&table, &panels, &out.join("figure-2"))? {
        println!("{}", f.display());
    }

    // Compression curves: 5 seeds per method and size, summarised to mean ± σ.
    let methods = [
        ("Shapley", 0.0),
        ("Banzhaf", 0.01),
        ("β_d Banzhaf", -0.01),
        ("WMP", 0.08),
        ("W·GMP", 0.06),
        ("random", 0.3),
    ];
    let (mut method, mut seed, mut r, mut acc) = (vec![], vec![], vec![], vec![]);
    for (m, gap) in methods {
        for s in 0..5i64 {
            for k in 1..=20 {
                let x = k as f64 / 20.0;
                let noise = ((s * 7 + k * 13) % 11) as f64 / 11.0 - 0.5;
                method.push(m);
                seed.push(s);
                r.push(x);
                acc.push(
                    (0.99 - gap * (1.0 - x)) / (1.0 + (-(x - 0.12) / 0.04).exp())
                        + noise * 0.12 * (1.0 - x),
                );
            }
        }
    }
    let curves = df!("method" => method, "seed" => seed, "r" => r, "accuracy" => acc)?;
    let series: Vec<_> = summarise(&curves, &["method"], "r", "accuracy")?
        .into_iter()
        .map(|(_, s)| s)
        .collect();
    let panel = |title: &str, series| LinePanel {
        title: title.into(),
        x_label: "fraction of players kept (r / n)".into(),
        y_label: "test accuracy".into(),
        series,
        vline: Some((0.225, "critical size 1 − d".into())),
    };
    let panels = [
        panel("(a) Top-n", series.clone()),
        panel("(b) Iterated Pruning", series[..3].to_vec()),
    ];
    for f in line_figure(&panels, &out.join("figure-3"))? {
        println!("{}", f.display());
    }
    Ok(())
}
