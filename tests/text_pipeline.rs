//! `pipelines/text-models.toml` and `pipelines/figure-5.toml` at ci scale on the real text
//! datasets: both datasets prepared, the bag-of-words MLP trained, evaluated and pruned by every
//! method on each; and the message when the files are absent.

mod common;

use std::path::Path;

use common::{f64s, strs};
use polars::prelude::*;

fn pipeline() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/text-models.toml")
}

fn table(root: &Path, name: &str) -> DataFrame {
    common::table(root, "text-models", name)
}

#[test]
fn text_models_at_ci_scale_train_the_mlp_on_both_datasets() {
    let Some(data) = common::real_data() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let out = common::run_ci(root.path(), &data, &pipeline());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let evaluation = table(root.path(), "evaluation");
    assert_eq!(strs(&evaluation, "model"), ["mlp-3x256", "mlp-3x256"]);
    assert_eq!(strs(&evaluation, "dataset"), ["tweets-topic", "emotion"]);
    let accuracy = f64s(&evaluation, "test_accuracy");
    // One epoch on 1,000 words: well above chance (1/20, 1/6), below the full-scale numbers.
    assert!(accuracy.iter().all(|&a| a > 0.6), "{evaluation}");
    let parameters: Vec<u64> = evaluation
        .column("parameters")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    let mlp = |c: u64| 1000 * 256 + 256 + 2 * (256 * 256 + 256) + 256 * c + c;
    assert_eq!(parameters, [mlp(20), mlp(6)]);
    assert_eq!(table(root.path(), "training").height(), 2);

    // Figure 5 on the same cache: the trained models are reused, every method prunes both.
    common::run_shipped(root.path(), &data, "figure-5.toml");
    check_figure_5(root.path(), &accuracy);
}

/// Nine curves per dataset (six GTAP, three unit baselines), ten sizes each; at size 1 every
/// curve is the unpruned model's accuracy; each panel marks its own dataset's critical size.
fn check_figure_5(root: &Path, unpruned: &[f64]) {
    let curves = common::table(root, "figure-5", "curves");
    let (method, index, strategy, dataset) = (
        strs(&curves, "method"),
        strs(&curves, "index"),
        strs(&curves, "strategy"),
        strs(&curves, "dataset"),
    );
    let (fraction, accuracy) = (
        f64s(&curves, "size_fraction"),
        f64s(&curves, "test_accuracy"),
    );
    for (name, unpruned) in ["tweets-topic", "emotion"].into_iter().zip(unpruned) {
        let rows: Vec<usize> = (0..curves.height())
            .filter(|&i| dataset[i] == name)
            .collect();
        let mut ids: Vec<String> = rows
            .iter()
            .map(|&i| format!("{} {} {}", method[i], index[i], strategy[i]))
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(
            ids,
            [
                "gtap banzhaf iterated-pruning",
                "gtap banzhaf top-n",
                "gtap biased-banzhaf iterated-pruning",
                "gtap biased-banzhaf top-n",
                "gtap shapley iterated-pruning",
                "gtap shapley top-n",
                "random  unit",
                "wgmp  unit",
                "wmp  unit",
            ],
            "{name}"
        );
        assert_eq!(rows.len(), 9 * 10, "{name}: ten sizes per curve");
        for &i in rows.iter().filter(|&&i| fraction[i] == 1.0) {
            assert!(
                (accuracy[i] - unpruned).abs() <= 1e-3,
                "{name} {} {} at size 1: {} vs unpruned {unpruned}",
                method[i],
                strategy[i],
                accuracy[i]
            );
        }
    }
    let critical = common::table(root, "figure-5", "critical_accuracy");
    let sizes = f64s(&critical, "critical_size");
    let panels = strs(&critical, "panel");
    let size_of = |prefix: &str| -> Vec<f64> {
        let mut v: Vec<f64> = (0..sizes.len())
            .filter(|&i| panels[i].starts_with(prefix))
            .map(|i| sizes[i])
            .collect();
        v.dedup();
        v
    };
    let bias = common::table(root, "figure-5", "mcue_bias");
    let (bias_panel, d) = (strs(&bias, "panel"), f64s(&bias, "d"));
    let d_of = |panel: &str| d[bias_panel.iter().position(|p| p == panel).unwrap()];
    assert_eq!(
        size_of("(a)"),
        [d_of("tweets")],
        "panel (a) marks the tweets d"
    );
    assert_eq!(
        size_of("(b)"),
        [d_of("emotion")],
        "panel (b) marks the emotion d"
    );
    for stem in ["figure-5-ci", "figure-5-iterated-ci"] {
        for ext in ["png", "svg"] {
            assert!(root.join(format!("figures/{stem}.{ext}")).exists());
        }
    }
}

#[test]
fn missing_text_data_exits_2_naming_the_files_and_the_fix() {
    let root = tempfile::tempdir().unwrap();
    let empty = root.path().join("data");
    std::fs::create_dir(&empty).unwrap();
    let out = common::run_ci(root.path(), &empty, &pipeline());
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for part in [
        "tweets-topic files missing: topic_train.csv, topic_valid.csv not found",
        "twitter-financial-news-topic (does not exist)",
        "GTAP_DATA_DIR",
    ] {
        assert!(stderr.contains(part), "no {part:?} in:\n{stderr}");
    }
    assert!(!root.path().join("results").exists(), "nothing is written");
}
