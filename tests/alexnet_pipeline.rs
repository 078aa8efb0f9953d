//! `pipelines/alexnet.toml` at ci scale on the shared Tiny ImageNet subset: Figures 6-8 and
//! their tables, the layer-budget property of Figure 7, byte-for-byte reruns, and the default
//! and full scales validated without running.

mod common;

use std::path::Path;

use common::{f64s, strs, table};

#[test]
fn alexnet_pipeline_draws_figures_6_7_and_8_and_reproduces() {
    let Some(data) = common::real_data() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    common::run_shipped(root, &data, "alexnet.toml");

    // Figure 6: three 5 x 5 grids (step 0.25), one per panel.
    let mcue = table(root, "alexnet", "mcue");
    let mut panels = strs(&mcue, "panel");
    panels.dedup();
    assert_eq!(
        panels,
        [
            "AlexNet: whole network",
            "AlexNet: conv layers",
            "AlexNet: FC layers"
        ]
    );
    assert_eq!(mcue.height(), 3 * 25);

    // Figure 7: every method at every size; layer-wise GTAP keeps, at each size, as many units
    // per layer as WMP does, so its parameter count (a function of the per-layer counts alone)
    // equals WMP's at every size.
    let curves = table(root, "alexnet", "curves");
    let method = strs(&curves, "method");
    let index = strs(&curves, "index");
    let strategy = strs(&curves, "strategy");
    let size = curves
        .column("players_kept")
        .unwrap()
        .u32()
        .unwrap()
        .to_vec();
    let params = curves
        .column("params_kept")
        .unwrap()
        .u64()
        .unwrap()
        .to_vec();
    let mut ids: Vec<String> = (0..curves.height())
        .map(|i| format!("{} {} {}", method[i], index[i], strategy[i]))
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids,
        [
            "gtap banzhaf layer-wise, wmp budgets",
            "gtap biased-banzhaf layer-wise, wmp budgets",
            "gtap shapley layer-wise, wmp budgets",
            "random  unit",
            "wgmp  unit",
            "wmp  unit",
        ]
    );
    assert_eq!(curves.height(), 6 * 4, "four sizes per curve at ci scale");
    let wmp_params = |s: Option<u32>| {
        (0..curves.height())
            .find(|&i| method[i] == "wmp" && size[i] == s)
            .map(|i| params[i])
    };
    let mut compared = 0;
    for i in (0..curves.height()).filter(|&i| method[i] == "gtap") {
        assert_eq!(params[i], wmp_params(size[i]).unwrap(), "row {i}: {curves}");
        compared += 1;
    }
    assert_eq!(compared, 3 * 4);
    // Random keeps other per-layer counts: its parameters differ from WMP's somewhere.
    assert!((0..curves.height())
        .filter(|&i| method[i] == "random")
        .any(|i| params[i] != wmp_params(size[i]).unwrap()));

    // Figure 8: one Spearman ρ per player layer, from β_d's layer-wise estimates.
    let spearman = table(root, "alexnet", "index_vs_weight_spearman");
    assert_eq!(
        strs(&spearman, "layer"),
        ["conv1", "conv2", "conv3", "conv4", "conv5", "fc1", "fc2"]
    );
    assert!(f64s(&spearman, "spearman")
        .iter()
        .all(|r| (-1.0..=1.0).contains(r)));
    let points = table(root, "alexnet", "index_vs_weight");
    // Width 1/16: 4 + 12 + 24 + 16 + 16 channels and 256 + 256 neurons.
    assert_eq!(points.height(), 584);
    for figure in [
        "figure-6-ci",
        "figure-7-ci",
        "figure-7-params-ci",
        "figure-8-ci",
    ] {
        for ext in ["png", "svg"] {
            assert!(
                root.join(format!("figures/{figure}.{ext}")).exists(),
                "{figure}.{ext}"
            );
        }
    }

    // A fresh cache gives the same bytes.
    let again = tempfile::tempdir().unwrap();
    common::run_shipped(again.path(), &data, "alexnet.toml");
    for name in ["curves", "mcue", "index_vs_weight", "training"] {
        let read =
            |r: &Path| std::fs::read(r.join(format!("results/alexnet/{name}.parquet"))).unwrap();
        assert!(
            read(root) == read(again.path()),
            "{name}.parquet differs between two runs"
        );
    }
}

#[test]
fn alexnet_default_and_full_scales_are_valid_pipelines() {
    let Some(data) = common::real_data() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let pipeline = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/alexnet.toml");
    for scale in ["default", "full"] {
        let out = common::gtap_command(
            root.path(),
            &data,
            &["status", pipeline.to_str().unwrap(), "--scale", scale],
        )
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "{scale}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(listing.contains("figure_8"), "{scale}: {listing}");
    }
}
