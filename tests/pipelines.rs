//! The shipped pipelines at `ci` scale on real MNIST: they run, their tables hold what the
//! figures need, and a second run in a fresh cache reproduces them byte for byte.

mod common;

use std::path::Path;

use polars::prelude::*;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs a shipped pipeline at ci scale into `root`'s cache, results and figures.
fn run(root: &Path, data: &Path, pipeline: &str) {
    let out = common::run_ci(root, data, &repo().join("pipelines").join(pipeline));
    assert!(
        out.status.success(),
        "{pipeline}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn table(root: &Path, pipeline: &str, name: &str) -> DataFrame {
    let file = std::fs::File::open(
        root.join("results")
            .join(pipeline)
            .join(format!("{name}.parquet")),
    )
    .unwrap();
    ParquetReader::new(file).finish().unwrap()
}

fn f64s(df: &DataFrame, column: &str) -> Vec<f64> {
    df.column(column)
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect()
}

fn strs(df: &DataFrame, column: &str) -> Vec<String> {
    let column = df.column(column).unwrap().str().unwrap();
    column
        .iter()
        .map(|v| v.unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn ci_scale_pipelines_produce_their_tables_and_reproduce_byte_for_byte() {
    let Some(data) = common::real_data() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    for pipeline in [
        "lenets.toml",
        "figure-2.toml",
        "power-indices.toml",
        "figure-3.toml",
    ] {
        run(root, &data, pipeline);
    }

    let evaluation = table(root, "lenets", "evaluation");
    assert_eq!(strs(&evaluation, "model"), ["lenet-300-100", "lenet5"]);
    assert!(
        f64s(&evaluation, "test_accuracy").iter().all(|&a| a > 0.9),
        "{evaluation}"
    );
    let training = table(root, "lenets", "training");
    assert_eq!(training.height(), 2, "one epoch per model at ci scale");

    let mcue = table(root, "figure-2", "mcue");
    assert_eq!(
        mcue.height(),
        3 * 11 * 11,
        "three 11 x 11 grids at step 0.1"
    );
    assert!(
        f64s(&mcue, "variance")
            .iter()
            .all(|v| (0.0..=0.25 * 100.0 / 99.0 + 1e-12).contains(v)),
        "the sample variance of 100 0/1 trials is at most k/(4(k-1))"
    );
    let bias = table(root, "figure-2", "mcue_bias");
    assert!(f64s(&bias, "d").iter().all(|d| (0.0..=1.0).contains(d)));
    for ext in ["png", "svg"] {
        assert!(root.join(format!("figures/figure-2-ci.{ext}")).exists());
    }

    let indices = table(root, "power-indices", "power_indices");
    // Six power-index stages, 604 LeNet5 players each.
    assert_eq!(indices.height(), 6 * 604);
    assert!(f64s(&indices, "estimate").iter().all(|e| e.is_finite()));
    let agreement = table(root, "power-indices", "rank_agreement");
    assert_eq!(agreement.height(), 2, "plain and control-variate agreement");
    let rho = f64s(&agreement, "spearman");
    assert!(rho.iter().all(|r| (-1.0..=1.0).contains(r)), "{rho:?}");

    check_figure_3(root);

    // Same config, fresh cache: every table is the same bytes.
    let again = tempfile::tempdir().unwrap();
    run(again.path(), &data, "lenets.toml");
    for name in ["evaluation", "training"] {
        let read =
            |r: &Path| std::fs::read(r.join(format!("results/lenets/{name}.parquet"))).unwrap();
        assert!(
            read(root) == read(again.path()),
            "{name}.parquet differs between two runs of the same config"
        );
    }
}

/// Curves for every method at every grid size; at size 1 every method keeps the whole network,
/// so its accuracy is the unpruned test accuracy (the masked evaluator's batched GEMM may sum
/// in another order than the plain forward pass: allow one flipped example in 10,000).
fn check_figure_3(root: &Path) {
    let curves = table(root, "figure-3", "curves");
    let method = strs(&curves, "method");
    let strategy = strs(&curves, "strategy");
    let index = strs(&curves, "index");
    let fraction = f64s(&curves, "size_fraction");
    let accuracy = f64s(&curves, "test_accuracy");
    let mut curve_ids: Vec<String> = (0..curves.height())
        .map(|i| format!("{} {} {}", method[i], index[i], strategy[i]))
        .collect();
    curve_ids.sort();
    curve_ids.dedup();
    assert_eq!(
        curve_ids,
        [
            "gtap banzhaf iterated-pruning",
            "gtap banzhaf top-n",
            "gtap biased-banzhaf iterated-building",
            "gtap biased-banzhaf iterated-pruning",
            "gtap biased-banzhaf top-n",
            "gtap shapley iterated-pruning",
            "gtap shapley top-n",
            "random  unit",
            "wgmp  unit",
            "wgmp  unstructured",
            "wmp  unit",
            "wmp  unstructured",
        ]
    );
    assert_eq!(
        curves.height(),
        12 * 10,
        "ten grid points per curve at ci scale"
    );
    let unpruned = f64s(&table(root, "figure-3", "evaluation"), "test_accuracy")[0];
    let at_full: Vec<f64> = (0..curves.height())
        .filter(|&i| fraction[i] == 1.0)
        .map(|i| accuracy[i])
        .collect();
    assert_eq!(at_full.len(), 12);
    assert!(
        at_full.iter().all(|a| (a - unpruned).abs() <= 1e-4 + 1e-12),
        "accuracy at size 1 {at_full:?} vs unpruned {unpruned}"
    );
    let critical = table(root, "figure-3", "critical_accuracy");
    assert!(critical.height() >= 12, "{critical}");
    for ext in ["png", "svg"] {
        assert!(root.join(format!("figures/figure-3-ci.{ext}")).exists());
        assert!(root
            .join(format!("figures/figure-3-params-ci.{ext}"))
            .exists());
        assert!(root.join(format!("figures/figure-4-ci.{ext}")).exists());
    }
}
