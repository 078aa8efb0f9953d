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

    let indices = table(root, "text-transformer", "power_indices");
    assert_eq!(indices.height(), 8, "{indices}");
    assert!(strs(&indices, "estimator").iter().all(|e| e == "exact"));
    let removal = table(root, "text-transformer", "negative_removal");
    assert_eq!(removal.height(), 1, "{removal}");

    let curves = table(root, "text-transformer", "curves");
    let methods = strs(&curves, "method");
    for m in ["gtap", "michel", "random"] {
        assert!(methods.iter().any(|x| x == m), "{m} missing: {methods:?}");
    }
    assert!(f64s(&curves, "test_accuracy")
        .iter()
        .all(|a| (0.0..=1.0).contains(a)));
}
