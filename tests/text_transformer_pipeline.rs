//! `pipelines/text-transformer.toml` at ci scale on the real CARER and tweet files: token
//! sequences, the text transformer trained on both, exact Shapley values of CARER's 8 heads,
//! Held & Yang's removal and the heads curves.

mod common;

use common::{f64s, strs, table};

#[test]
fn text_transformer_pipeline_at_ci_scale() {
    let Some(data) = common::real_data() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    common::run_shipped(root, &data, "text-transformer.toml");

    let evaluation = table(root, "text-transformer", "evaluation");
    assert_eq!(evaluation.height(), 2, "{evaluation}");
    assert!(strs(&evaluation, "model")
        .iter()
        .all(|m| m == "text-transformer"));
    let accuracy = f64s(&evaluation, "test_accuracy");
    // One epoch on 4,000 texts: well above chance (1/6 and 1/20), far from trained.
    assert!(
        accuracy.iter().all(|&a| a > 0.25 && a <= 1.0),
        "{accuracy:?}"
    );

    // The 8 heads, then the 4 sublayers as whole players: exact values, no standard error.
    let indices = table(root, "text-transformer", "power_indices");
    assert_eq!(indices.height(), 8 + 4, "{indices}");
    assert!(strs(&indices, "estimator").iter().all(|e| e == "exact"));
    let mut layers = strs(&indices, "layer");
    layers.sort();
    layers.dedup();
    assert_eq!(
        layers,
        ["block1.attn", "block1.ffn", "block2.attn", "block2.ffn"],
        "{indices}"
    );
    // Efficiency on the sublayer game: its 4 Shapley values sum to ν(N) − ν(∅), which is
    // at most 1 in magnitude (accuracies).
    let sublayer_sum: f64 = f64s(&indices, "estimate")
        .iter()
        .zip(strs(&indices, "layer"))
        .filter(|(_, l)| l.ends_with(".ffn"))
        .map(|(v, _)| v)
        .sum();
    assert!(sublayer_sum.abs() <= 1.0, "{indices}");
    let removal = table(root, "text-transformer", "negative_removal");
    assert_eq!(removal.height(), 2, "{removal}");

    let curves = table(root, "text-transformer", "curves");
    let methods = strs(&curves, "method");
    for m in ["gtap", "michel", "random", "leave-one-out", "wmp"] {
        assert!(methods.iter().any(|x| x == m), "{m} missing: {methods:?}");
    }
    assert!(f64s(&curves, "test_accuracy")
        .iter()
        .all(|a| (0.0..=1.0).contains(a)));
}
