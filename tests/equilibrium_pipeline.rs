//! `pipelines/equilibrium.toml` at ci scale on real MNIST: the four configurations train, the
//! L1 one removes units, the pruned network is an ordinary checkpoint, and the summary carries
//! the paper's numbers beside ours.

mod common;

use common::{f64s, strs, table};

#[test]
fn equilibrium_pipeline_at_ci_scale() {
    let Some(data) = common::real_data() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    common::run_shipped(root, &data, "equilibrium.toml");

    let runs = table(root, "equilibrium", "equilibrium");
    assert_eq!(runs.height(), 5, "{runs}");
    assert_eq!(f64s(&runs, "beta"), [0.1, 0.5, 0.001, 0.05, 0.1]);
    let players: Vec<u64> = runs
        .column("players")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    let kept: Vec<u64> = runs
        .column("players_kept")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert!(players.iter().all(|&p| p == 768));
    for ((k, p), pruned) in kept
        .iter()
        .zip(&players)
        .zip(f64s(&runs, "pruned_fraction"))
    {
        assert!((pruned - (1.0 - *k as f64 / *p as f64)).abs() < 1e-12);
    }
    // The L1 run (larger participation steps at ci scale) removes units, and costs less.
    assert!(kept[2] < 768, "{runs}");
    let params = f64s(&runs, "params_fraction");
    assert!(params[2] < 1.0 && params.iter().all(|&f| f > 0.0 && f <= 1.0));

    // Every neuron's final participation is in [0, 1]; kept exactly when ≥ ε = 0.01.
    let participation = table(root, "equilibrium", "participation");
    assert_eq!(participation.height(), 5 * 768);
    let s = f64s(&participation, "participation");
    let flags: Vec<bool> = participation
        .column("kept")
        .unwrap()
        .bool()
        .unwrap()
        .iter()
        .map(|k| k.unwrap())
        .collect();
    assert!(s.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(s.iter().zip(&flags).all(|(&v, &k)| k == (v >= 0.01)));
    assert_eq!(
        flags[2 * 768..3 * 768].iter().filter(|&&k| k).count() as u64,
        kept[2]
    );

    // The `evaluate` stage reads the pruned checkpoint and finds the accuracy the stage reported.
    let evaluation = table(root, "equilibrium", "evaluation");
    assert_eq!(strs(&evaluation, "model"), ["mlp-512-256", "mlp-512-256"]);
    assert_eq!(
        f64s(&evaluation, "test_accuracy")[1],
        f64s(&runs, "test_accuracy")[2]
    );

    let summary = table(root, "equilibrium", "summary");
    assert_eq!(
        strs(&summary, "config"),
        [
            "β = 0.1, γ = 0 (SGD)",
            "β = 0.5, γ = 0 (SGD)",
            "β = 0.001, γ = 0.1 (SGD)",
            "β = 0.05, γ = 0.05 (SGD)",
            "β = 0.1, γ = 0 (Adam)"
        ]
    );
    assert_eq!(
        f64s(&summary, "paper_test_accuracy"),
        [0.9664, 0.9115, 0.8957, 0.9154, 0.9664]
    );
    assert_eq!(
        f64s(&summary, "test_accuracy"),
        f64s(&runs, "test_accuracy")
    );
    for ext in ["png", "svg"] {
        assert!(root.join(format!("figures/equilibrium-ci.{ext}")).exists());
    }
}
