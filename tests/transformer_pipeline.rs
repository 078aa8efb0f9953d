//! `pipelines/transformer.toml` at ci scale on real MNIST: a ViT's heads and FFN neurons as
//! two games on one set of weights; exact power indices of the 8 heads, the literature's head
//! baselines, Held & Yang's negative-head removal, and the heatmap.

mod common;

use common::{f64s, strs, table, u32s};

#[test]
fn transformer_pipeline_at_ci_scale() {
    let Some(data) = common::real_data() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    common::run_shipped(root, &data, "transformer.toml");

    // Exact values of the 8 heads: every coalition evaluated, no standard error.
    let indices = table(root, "transformer", "power_indices");
    assert_eq!(indices.height(), 2 * 8, "{indices}");
    assert!(strs(&indices, "estimator").iter().all(|e| e == "exact"));
    assert!(f64s(&indices, "stderr").iter().all(|&s| s == 0.0));
    let layers = strs(&indices, "layer");
    assert!(layers.iter().all(|l| l.ends_with(".attn")), "{layers:?}");
    let samples: Vec<u64> = indices
        .column("samples")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert!(samples.iter().all(|&s| s == 256));

    // Held & Yang: the heads removed are exactly those of negative Shapley value.
    let shapley: Vec<f64> = f64s(&indices, "estimate")
        .into_iter()
        .zip(strs(&indices, "index"))
        .filter(|(_, i)| i == "shapley")
        .map(|(e, _)| e)
        .collect();
    let removal = table(root, "transformer", "negative_removal");
    let negative = removal.column("negative").unwrap().u32().unwrap().get(0);
    let count = shapley.iter().filter(|&&v| v < 0.0).count() as u32;
    assert_eq!(negative, Some(count), "{removal}");
    if count == 0 {
        assert_eq!(
            f64s(&removal, "test_accuracy"),
            f64s(&removal, "test_accuracy_without")
        );
    }

    // Heads curves: 11 methods at 1..8 heads; all 8 kept is the trained network.
    let evaluation = table(root, "transformer", "evaluation");
    let full = f64s(&evaluation, "test_accuracy")[0];
    let curves = table(root, "transformer", "curves");
    let kept = u32s(&curves, "players_kept");
    let accuracy = f64s(&curves, "test_accuracy");
    let heads = kept.iter().filter(|&&k| k <= 8).count();
    assert!(heads >= 11 * 8, "{curves}");
    let at_eight: Vec<f64> = kept
        .iter()
        .zip(&accuracy)
        .filter(|(&k, _)| k == 8)
        .map(|(_, &a)| a)
        .collect();
    assert!(at_eight.len() >= 11 && at_eight.iter().all(|&a| a == full));
    let methods = strs(&curves, "method");
    for m in ["gtap", "michel", "leave-one-out", "wmp", "random"] {
        assert!(methods.iter().any(|x| x == m), "no {m} curve");
    }

    // Equilibrium with a participation per head: the 8 heads are the only players, the
    // summary counts the participations at or above ε, and each run is a point on the figure.
    let participation = table(root, "transformer", "participation");
    assert_eq!(participation.height(), 3 * 8, "{participation}");
    assert!(strs(&participation, "layer")
        .iter()
        .all(|l| l.ends_with(".attn")));
    let runs = table(root, "transformer", "equilibrium");
    let u64s = |c: &str| -> Vec<u64> {
        runs.column(c)
            .unwrap()
            .u64()
            .unwrap()
            .into_no_null_iter()
            .collect()
    };
    assert_eq!(u64s("players"), [8; 3], "{runs}");
    let shares = f64s(&participation, "participation");
    let above = shares.iter().filter(|&&s| s >= 0.01).count() as u64;
    assert_eq!(u64s("players_kept").iter().sum::<u64>(), above, "{runs}");

    // Michel's importance, normalised per layer: each layer's vector has unit norm (two
    // michel stages per game, one-shot and iterative, both write it at ξ = 1).
    let importance = table(root, "transformer", "importance");
    let (layer, norm) = (strs(&importance, "layer"), f64s(&importance, "normalised"));
    for name in ["block1.attn", "block2.attn", "block1.ffn", "block2.ffn"] {
        let sq: f64 = layer
            .iter()
            .zip(&norm)
            .filter(|(l, _)| *l == name)
            .map(|(_, v)| v * v)
            .sum();
        assert!((sq - 2.0).abs() < 1e-9, "{name}: {sq}");
    }
    // The pruned ViT exported: half of the heads cut out of the Q/K/V projections and the
    // output projection's columns; it predicts what the masked network predicts, and its
    // layout holds the layer sequence a loader builds.
    let pipeline =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/transformer.toml");
    let out_dir = root.join("pruned");
    let export = common::gtap_command(
        root,
        &data,
        &[
            "export",
            pipeline.to_str().unwrap(),
            "--scale",
            "ci",
            "--ranking",
            "shapley_ip_heads",
            "--size",
            "0.5",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&export.stdout);
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    assert!(stdout.contains("players kept   4 of 8"), "{stdout}");
    assert!(stdout.contains("agree on 10000 of 10000"), "{stdout}");
    let layout: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("model.json")).unwrap()).unwrap();
    let kinds: Vec<&str> = layout["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "patches",
            "position",
            "residual",
            "residual",
            "residual",
            "residual",
            "layer-norm",
            "mean-pool",
            "dense"
        ],
        "{layout}"
    );

    for name in [
        "transformer-heads",
        "transformer-ffn",
        "transformer-head-grid",
    ] {
        for ext in ["png", "svg"] {
            assert!(
                root.join(format!("figures/{name}.{ext}")).exists(),
                "{name}.{ext}"
            );
        }
    }
}

/// `pipelines/estimators-exact.toml` at ci scale: every estimator against the exact power
/// indices of the ViT's 8 heads. The exact stage is both references, so the split-half
/// agreement is 1 and no correction applies.
#[test]
fn estimators_against_an_exact_game_at_ci_scale() {
    let Some(data) = common::real_data() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    common::run_shipped(root, &data, "estimators-exact.toml");

    let agreement = table(root, "estimators-exact", "agreement");
    assert_eq!(agreement.height(), 9 + 3, "{agreement}");
    assert!(f64s(&agreement, "reference_split_half")
        .iter()
        .all(|&r| r == 1.0));
    assert_eq!(
        f64s(&agreement, "spearman"),
        f64s(&agreement, "spearman_corrected")
    );
    assert!(f64s(&agreement, "spearman")
        .iter()
        .all(|r| (-1.0..=1.0).contains(r)));
    let indices = table(root, "estimators-exact", "power_indices");
    let exact: Vec<f64> = f64s(&indices, "stderr")
        .into_iter()
        .zip(strs(&indices, "estimator"))
        .filter(|(_, e)| e == "exact")
        .map(|(s, _)| s)
        .collect();
    assert_eq!(exact, vec![0.0; 2 * 8]);
    for name in ["estimators-exact-banzhaf-ci", "estimators-exact-shapley-ci"] {
        assert!(root.join(format!("figures/{name}.png")).exists(), "{name}");
    }
}
