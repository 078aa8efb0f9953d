//! The shipped pipelines at `ci` scale on real MNIST: they run, their tables hold what the
//! figures need, and a second run in a fresh cache reproduces them byte for byte.

mod common;

use std::path::Path;

use common::{f64s, strs, table, u32s};
use polars::prelude::*;

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
        // figure-3's model with only its FC layers as players.
        "figure-3-fc.toml",
        // figure-3's model: Iterated Building's budget, step, estimator and probe size.
        "iterated-building.toml",
        // figure-2's models: every MCUE reading on the diagonal.
        "mcue-readings.toml",
        // Shares figure-3's stages through the cache: only the retraining runs.
        "figure-3-retrained.toml",
        "estimators.toml",
        // Shares estimators.toml's model through the cache: only the estimates run.
        "control-variates.toml",
        // Shares figure-3's models, MCUE grids and rankings: only the control-variate
        // rankings and the curves run.
        "control-variate-pruning.toml",
    ] {
        common::run_shipped(root, &data, pipeline);
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
    // Never an end point of the diagonal: β_0 and β_1 are not estimable indices.
    assert!(f64s(&bias, "d").iter().all(|&d| d > 0.0 && d < 1.0));
    for ext in ["png", "svg"] {
        assert!(root.join(format!("figures/figure-2-ci.{ext}")).exists());
    }

    let indices = table(root, "power-indices", "power_indices");
    // Eleven power-index stages (six on the plain LeNet5, five on the dropout one), 604 players each.
    assert_eq!(indices.height(), 11 * 604);
    assert!(f64s(&indices, "estimate").iter().all(|e| e.is_finite()));
    let agreement = table(root, "power-indices", "rank_agreement");
    assert_eq!(
        agreement.height(),
        5,
        "shared and shared-regression agreement, plain and dropout LeNet5, and 16k on dropout"
    );
    let rho = f64s(&agreement, "spearman");
    assert!(rho.iter().all(|r| (-1.0..=1.0).contains(r)), "{rho:?}");

    check_figure_3(root);
    check_figure_3_fc(root);
    check_iterated_building(root);
    check_mcue_readings(root);
    check_figure_3_retrained(root);
    check_estimators(root);
    check_control_variates(root);
    check_control_variate_pruning(root);
    compare_shows_only_the_changed_method(root, &data);

    // Same config, fresh cache: every table is the same bytes.
    let again = tempfile::tempdir().unwrap();
    common::run_shipped(again.path(), &data, "lenets.toml");
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
    // β_d at the paper's d = 0.225 beside ours: the same method, index and strategy, told
    // apart by `variant`.
    let variant = strs(&curves, "variant");
    let mut paper: Vec<String> = (0..curves.height())
        .filter(|&i| variant[i] == "paper's d = 0.225")
        .map(|i| format!("{} {}", index[i], strategy[i]))
        .collect();
    paper.dedup();
    assert_eq!(
        paper,
        [
            "biased-banzhaf top-n",
            "biased-banzhaf iterated-pruning",
            "biased-banzhaf iterated-building"
        ]
    );
    assert_eq!(
        curves.height(),
        15 * 10,
        "ten grid points per curve at ci scale"
    );
    let unpruned = f64s(&table(root, "figure-3", "evaluation"), "test_accuracy")[0];
    let at_full: Vec<f64> = (0..curves.height())
        .filter(|&i| fraction[i] == 1.0)
        .map(|i| accuracy[i])
        .collect();
    assert_eq!(at_full.len(), 15);
    assert!(
        at_full.iter().all(|a| (a - unpruned).abs() <= 1e-4 + 1e-12),
        "accuracy at size 1 {at_full:?} vs unpruned {unpruned}"
    );
    let critical = table(root, "figure-3", "critical_accuracy");
    // Every curve read at the MCUE critical size and at the paper's 0.225 (`also_at`).
    let at_paper = f64s(&critical, "critical_size")
        .iter()
        .filter(|&&d| d == 0.225)
        .count();
    assert!(
        at_paper >= 12 && critical.height() == 2 * at_paper,
        "{critical}"
    );
    for ext in ["png", "svg"] {
        assert!(root.join(format!("figures/figure-3-ci.{ext}")).exists());
        assert!(root
            .join(format!("figures/figure-3-params-ci.{ext}"))
            .exists());
        assert!(root.join(format!("figures/figure-4-ci.{ext}")).exists());
    }
}

/// LeNet5 with fc1 and fc2 as the only players: every curve runs over 204 players and keeps the
/// whole network at size 1; β_d runs at the FC grid's d and at the paper's.
fn check_figure_3_fc(root: &Path) {
    let curves = table(root, "figure-3-fc", "curves");
    assert_eq!(curves.height(), 13 * 10, "13 rankings, ten points each");
    let kept = u32s(&curves, "players_kept");
    assert_eq!(kept.iter().max(), Some(&204));
    let fraction = f64s(&curves, "size_fraction");
    let accuracy = f64s(&curves, "test_accuracy");
    let unpruned = f64s(&table(root, "figure-3-fc", "evaluation"), "test_accuracy")[0];
    for i in (0..curves.height()).filter(|&i| fraction[i] == 1.0) {
        assert!((accuracy[i] - unpruned).abs() <= 1e-4 + 1e-12, "{curves}");
    }
    let mcue = table(root, "figure-3-fc", "mcue");
    assert!(strs(&mcue, "panel")
        .iter()
        .all(|p| p.contains("FC players")));
    let players = u32s(&mcue, "players");
    assert!(
        players.iter().all(|&n| n == 204),
        "MCUE dilutes the 204 FC players"
    );
    for ext in ["png", "svg"] {
        assert!(root.join(format!("figures/figure-3-fc-ci.{ext}")).exists());
        assert!(root.join(format!("figures/figure-4-fc-ci.{ext}")).exists());
    }
}

/// One Iterated Building curve per variant (and three Iterated Pruning ones), each read at the
/// paper's 0.225; figure-3's `beta_ib_paper` is shared through the cache (the same accuracies).
fn check_iterated_building(root: &Path) {
    let curves = table(root, "iterated-building", "curves");
    let mut variants = strs(&curves, "variant");
    variants.dedup();
    assert_eq!(variants.len(), 16, "{variants:?}");
    let building_rows = strs(&curves, "strategy")
        .iter()
        .filter(|s| *s == "iterated-building")
        .count();
    assert_eq!(
        building_rows,
        13 * 10,
        "13 Building rankings beside 3 Pruning ones"
    );
    let critical = table(root, "iterated-building", "critical_accuracy");
    assert_eq!(critical.height(), 16, "{critical}");
    let building = |df: &DataFrame| -> Vec<f64> {
        let (v, s) = (strs(df, "variant"), strs(df, "strategy"));
        let a = f64s(df, "test_accuracy");
        (0..df.height())
            .filter(|&i| v[i] == "paper's d = 0.225" && s[i] == "iterated-building")
            .map(|i| a[i])
            .collect()
    };
    let shared = building(&curves);
    assert_eq!(shared.len(), 10);
    assert_eq!(shared, building(&table(root, "figure-3", "curves")));
}

/// Every reading's diagonal maximum; the default reading (correctness, zeroed, every layer)
/// computed on the diagonal alone is figure-2's full grid on its diagonal, cell for cell.
fn check_mcue_readings(root: &Path) {
    let summary = table(root, "mcue-readings", "mcue_maxima_summary");
    // LeNet-300-100: 5 statistics x 2 dilutions; each LeNet5: x 2 player sets.
    assert_eq!(summary.height(), 10 + 20 + 20, "{summary}");
    let t = f64s(&summary, "t_mean");
    assert!(t.iter().all(|&t| t > 0.0 && t < 1.0), "{summary}");
    let readings = table(root, "mcue-readings", "mcue");
    let figure_2 = table(root, "figure-2", "mcue");
    let key = |df: &DataFrame, i: usize| {
        format!(
            "{} {} {}",
            strs(df, "panel")[i],
            f64s(df, "p")[i],
            f64s(df, "q")[i]
        )
    };
    let diagonal: std::collections::BTreeMap<String, f64> = (0..figure_2.height())
        .filter(|&i| f64s(&figure_2, "p")[i] == f64s(&figure_2, "q")[i])
        .map(|i| (key(&figure_2, i), f64s(&figure_2, "variance")[i]))
        .collect();
    assert_eq!(diagonal.len(), 3 * 11);
    let (statistic, dilution) = (strs(&readings, "statistic"), strs(&readings, "dilution"));
    let players = u32s(&readings, "players");
    let variance = f64s(&readings, "variance");
    let mut matched = 0;
    for i in 0..readings.height() {
        if statistic[i] == "correctness" && dilution[i] == "zeroed" && players[i] != 204 {
            assert_eq!(Some(&variance[i]), diagonal.get(&key(&readings, i)));
            matched += 1;
        }
    }
    assert_eq!(matched, 3 * 11);
}

/// Fine-tuned and rewound sub-networks for figure-3 (a)'s six rankings at the two ci sizes: the
/// same kept sets as the plain curves (equal parameter counts), accuracies read at 20%.
fn check_figure_3_retrained(root: &Path) {
    let retrained = table(root, "figure-3-retrained", "retrained");
    assert_eq!(retrained.height(), 2 * 6 * 2, "{retrained}");
    let mode = strs(&retrained, "retraining");
    assert_eq!(mode.iter().filter(|m| *m == "fine-tune").count(), 12);
    assert_eq!(mode.iter().filter(|m| *m == "rewind").count(), 12);
    let accuracy = f64s(&retrained, "test_accuracy");
    assert!(accuracy.iter().all(|a| (0.0..=1.0).contains(a)));

    let curves = table(root, "figure-3-retrained", "curves");
    let key = |df: &DataFrame, i: usize| {
        let kept = df.column("players_kept").unwrap().u32().unwrap().get(i);
        (
            strs(df, "method")[i].clone(),
            strs(df, "index")[i].clone(),
            kept,
        )
    };
    let params = |df: &DataFrame| {
        df.column("params_kept")
            .unwrap()
            .u64()
            .unwrap()
            .into_no_null_iter()
            .collect::<Vec<u64>>()
    };
    let (curve_params, retrained_params) = (params(&curves), params(&retrained));
    for i in 0..retrained.height() {
        let j = (0..curves.height())
            .find(|&j| {
                matches!(strs(&curves, "strategy")[j].as_str(), "top-n" | "unit")
                    && key(&curves, j) == key(&retrained, i)
            })
            .unwrap_or_else(|| panic!("no plain curve point for {:?}", key(&retrained, i)));
        assert_eq!(
            retrained_params[i],
            curve_params[j],
            "{:?}",
            key(&retrained, i)
        );
    }
    let critical = table(root, "figure-3-retrained", "critical_accuracy");
    let panels = strs(&critical, "panel");
    for mode in ["no retraining", "fine-tuned", "rewound"] {
        assert!(panels.iter().any(|p| p.contains(mode)), "{critical}");
    }
    for ext in ["png", "svg"] {
        assert!(root
            .join(format!("figures/figure-3-retrained-ci.{ext}"))
            .exists());
    }
}

/// The estimator-agreement tables: one row per estimate stage, set precisions in [0, 1] at the
/// step and the three fractions, and the references' split-half row beside the estimates'.
fn check_estimators(root: &Path) {
    let agreement = table(root, "estimators", "agreement");
    // LeNet5 β_d: 14 estimates, Banzhaf 6, Shapley 5; tweets MLP β_d 5.
    assert_eq!(agreement.height(), 30, "{agreement}");
    let estimators = agreement.column("estimator").unwrap().str().unwrap();
    let stages = agreement.column("stage").unwrap().str().unwrap();
    let (evaluations, cost) = (
        agreement.column("evaluations").unwrap().u64().unwrap(),
        f64s(&agreement, "cost"),
    );
    for (i, cost) in cost.iter().enumerate() {
        // Incremental evaluations count incremental_cost of a full one: 0.33 on LeNet5, 0.5
        // on the tweets MLP.
        let incremental = estimators.get(i).unwrap().ends_with("(incremental)");
        let tweets = stages.get(i).unwrap().starts_with("tweets");
        let factor = match (incremental, tweets) {
            (false, _) => 1.0,
            (true, false) => 0.33,
            (true, true) => 0.5,
        };
        let want = evaluations.get(i).unwrap() as f64 * factor;
        assert!((cost - want).abs() < 1e-9, "row {i}: {agreement}");
    }
    for name in [
        "sweep (incremental)",
        "permutation (incremental)",
        "shared-crossfit",
    ] {
        assert!(
            (0..estimators.len()).any(|i| estimators.get(i) == Some(name)),
            "{name}: {agreement}"
        );
    }
    let rho = f64s(&agreement, "spearman");
    let split_half = f64s(&agreement, "reference_split_half");
    let reliability = f64s(&agreement, "reference_reliability");
    let corrected = f64s(&agreement, "spearman_corrected");
    for i in 0..rho.len() {
        assert!((-1.0..=1.0).contains(&rho[i]), "{agreement}");
        assert!(
            (reliability[i] - 2.0 * split_half[i] / (1.0 + split_half[i])).abs() < 1e-12,
            "Spearman–Brown: {agreement}"
        );
        assert!(
            (corrected[i] - rho[i] / reliability[i].sqrt()).abs() < 1e-12,
            "{agreement}"
        );
    }
    let sets = table(root, "estimators", "set_precision");
    // (30 estimates + 4 reference pairs) × 3 sizes: LeNet5 k ∈ {60 (the step, and 10% of 604),
    // 181, 302}, the tweets MLP k ∈ {77 (its step, and 10% of 768), 230, 384}.
    assert_eq!(sets.height(), 34 * 3, "{sets}");
    for column in ["bottom_precision", "top_precision"] {
        assert!(f64s(&sets, column).iter().all(|p| (0.0..=1.0).contains(p)));
    }
    for game in ["beta", "banzhaf", "shapley", "tweets"] {
        assert!(root
            .join(format!("figures/estimators-{game}-ci.png"))
            .exists());
    }
}

/// The control-variate estimates: their cost counts the stars' incremental evaluations and the
/// predictions (`prediction_cost` each), and each one's per-layer fit is a correlation.
fn check_control_variates(root: &Path) {
    let agreement = table(root, "control-variates", "agreement");
    // Per game: five control-variate estimates and two sweeps (Shapley: permutations); for
    // β_d and Banzhaf also the two shared-crossfit estimates that were the references; β_d
    // four more control variates (4/190, three shrunk), Banzhaf one shrunk, Shapley one more
    // and two shrunk.
    assert_eq!(agreement.height(), 3 * 7 + 2 * 2 + 4 + 1 + 3, "{agreement}");
    let estimators = strs(&agreement, "estimator");
    let stages = strs(&agreement, "stage");
    let evaluations = agreement.column("evaluations").unwrap().u64().unwrap();
    let cost = f64s(&agreement, "cost");
    // ci scale: (stars, predicted coalitions) per control-variate stage.
    let predicted = |stage: &str| match stage {
        s if s.ends_with("_200") || s.ends_with("_190") => 20.0,
        s if s.ends_with("_250") => 25.0,
        s if s.ends_with("_400") => 30.0,
        _ => 40.0,
    };
    for i in 0..agreement.height() {
        let stars_part = evaluations.get(i).unwrap() as f64 * 0.33;
        let want = match estimators[i].as_str() {
            e if e.starts_with("control-variate") => stars_part + 6.1 * predicted(&stages[i]),
            e if e.contains("incremental") => stars_part,
            // Full evaluations at cost 1.
            _ => evaluations.get(i).unwrap() as f64,
        };
        assert!((cost[i] - want).abs() < 1e-9, "row {i}: {agreement}");
    }
    // Shrinking moves the estimates, not the evaluations: a shrunk stage costs what the
    // unshrunk one of the same stars and samples does.
    let cost_of = |stage: &str| cost[stages.iter().position(|s| s == stage).unwrap()];
    for (plain, shrunk) in [
        ("beta_cv_4_190", "beta_cv_shrunk_4_190"),
        ("banzhaf_cv_12_250", "banzhaf_cv_shrunk_12_250"),
        ("shapley_cv_84_500", "shapley_cv_shrunk_84_500"),
    ] {
        assert_eq!(cost_of(plain), cost_of(shrunk), "{agreement}");
        let i = stages.iter().position(|s| s == shrunk).unwrap();
        assert_eq!(estimators[i], "control-variate, shrunk (incremental)");
    }
    // The references are control-variate estimates with independent samples.
    let split_half = f64s(&agreement, "reference_split_half");
    assert!(split_half.iter().all(|r| (-1.0..=1.0).contains(r)));
    let fit = table(root, "control-variates", "linearisation");
    // 23 control-variate estimates and six references, LeNet5's three player layers each.
    assert_eq!(fit.height(), 29 * 3, "{fit}");
    assert!(
        f64s(&fit, "correlation")
            .iter()
            .all(|r| (-1.0..=1.0).contains(r)),
        "{fit}"
    );
}

/// Figure-3's rankings beside control-variate ones: the `variant` column and the figure's
/// legend tell them apart, and an iterated stage's linearisation table has one fit per
/// iteration, in order (fewer free units each time).
fn check_control_variate_pruning(root: &Path) {
    let curves = table(root, "control-variate-pruning", "curves");
    let variant = strs(&curves, "variant");
    let index = strs(&curves, "index");
    let strategy = strs(&curves, "strategy");
    let mut ids: Vec<String> = (0..curves.height())
        .map(|i| format!("{} {} {}", index[i], strategy[i], variant[i]))
        .collect();
    ids.sort();
    ids.dedup();
    // 17 rankings, each its own curve (two of them shrunk control variates).
    assert_eq!(ids.len(), 17, "{ids:?}");
    assert_eq!(
        ids.iter()
            .filter(|i| i.ends_with("control variate, shrunk"))
            .count(),
        2,
        "{ids:?}"
    );
    assert_eq!(
        ids.iter()
            .filter(|i| i.ends_with("control variate"))
            .count(),
        7,
        "{ids:?}"
    );
    let critical = table(root, "control-variate-pruning", "critical_accuracy");
    let mut labels = strs(&critical, "label");
    labels.sort();
    labels.dedup();
    for label in [
        "GTAP β_d",
        "GTAP β_d, control variate",
        "GTAP β_d, control variate, shrunk",
        "GTAP Shapley, control variate",
    ] {
        assert!(labels.contains(&label.to_owned()), "{labels:?}");
    }
    let fit = table(root, "control-variate-pruning", "linearisation");
    let players = fit.column("players").unwrap().u32().unwrap();
    let layer = strs(&fit, "layer");
    // Iterated Pruning at ci scale removes 200 of 604 units per iteration: a layer's free
    // units never grow from one fit to the next within a stage; Top-n fits once.
    let conv2: Vec<u32> = (0..fit.height())
        .filter(|&i| layer[i] == "conv2")
        .map(|i| players.get(i).unwrap())
        .collect();
    assert!(conv2.len() > 7, "one fit per iteration: {fit}");
    assert!(
        conv2.contains(&400) && conv2.iter().any(|&p| p < 400),
        "{fit}"
    );
}

/// Figure 3 again with one method's parameter changed (β_d Top-n: 800 coalitions instead of
/// 700), into other result directories on the same cache: `gtap compare` of the two curve
/// tables finds differences in that method's rows and nowhere else.
fn compare_shows_only_the_changed_method(root: &Path, data: &Path) {
    let other = root.join("other");
    let gtap = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gtap"))
            .args(args)
            .env("GTAP_OFFLINE", "1")
            .env("RUST_LOG", "warn")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "gtap {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let path = |p: &Path| p.to_str().unwrap().to_owned();
    let pipeline = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/figure-3.toml");
    gtap(&[
        "run",
        &path(&pipeline),
        "--scale",
        "ci",
        "--set",
        "stage.beta_topn.estimate.samples=800",
        "--data-dir",
        &path(data),
        "--cache-dir",
        &path(&root.join("cache")),
        "--results-dir",
        &path(&other.join("results")),
        "--figures-dir",
        &path(&other.join("figures")),
    ]);
    let diff = root.join("compare.parquet");
    gtap(&[
        "compare",
        &path(&root.join("results/figure-3")),
        &path(&other.join("results/figure-3")),
        "--out",
        &path(&diff),
    ]);
    let table = ParquetReader::new(std::fs::File::open(diff).unwrap())
        .finish()
        .unwrap();
    let (method, index, strategy) = (
        strs(&table, "method"),
        strs(&table, "index"),
        strs(&table, "strategy"),
    );
    let changed: Vec<String> = f64s(&table, "test_accuracy_diff")
        .iter()
        .enumerate()
        .filter(|(_, d)| d.abs() > 1e-12)
        .map(|(i, _)| format!("{} {} {}", method[i], index[i], strategy[i]))
        .collect();
    assert!(
        !changed.is_empty(),
        "the changed method's curve moved nowhere"
    );
    assert!(
        changed.iter().all(|c| c == "gtap biased-banzhaf top-n"),
        "rows of other methods differ: {changed:?}"
    );
}
