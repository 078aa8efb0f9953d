use super::*;

#[test]
fn a_variant_tells_apart_rankings_of_one_index_and_strategy() {
    let rows = df!(
        "method" => ["gtap", "gtap", "gtap", "wmp"],
        "index" => ["biased-banzhaf", "biased-banzhaf", "shapley", ""],
        "strategy" => ["top-n", "top-n", "iterated-pruning", "unit"],
        "variant" => ["", "control variate", "control variate", ""],
    )
    .unwrap();
    assert_eq!(
        labels(&rows, false).unwrap(),
        [
            "GTAP β_d",
            "GTAP β_d, control variate",
            "GTAP Shapley, control variate",
            "WMP"
        ]
    );
    assert_eq!(
        labels(&rows, true).unwrap()[2],
        "GTAP Shapley, control variate (Iterated Pruning)"
    );
}

fn bias_upstream(root: &std::path::Path, stage: &str, seed: u64, d: f64) -> Upstream {
    let dir = root.join(format!("{stage}-{seed}"));
    std::fs::create_dir_all(&dir).unwrap();
    let chosen = crate::mcue::ChosenBias {
        t: 1.0 - d,
        d,
        variance: 0.1,
    };
    std::fs::write(dir.join("bias.json"), serde_json::to_vec(&chosen).unwrap()).unwrap();
    Upstream {
        stage: stage.into(),
        kind: "mcue-bias".into(),
        seed: Some(seed),
        dir,
        content_hash: String::new(),
    }
}

fn panel(bias: Option<&str>) -> PanelSpec {
    PanelSpec {
        title: "(a)".into(),
        strategies: vec!["top-n".into()],
        methods: None,
        indices: None,
        dataset: None,
        bias: bias.map(str::to_owned),
        retraining: None,
        model: None,
    }
}

#[test]
fn params_curves_are_read_off_a_common_grid_per_seed() {
    // Two seeds whose parameter fractions differ: seed 0 at 0.2 / 0.6 / 1.0, seed 1 at
    // 0.4 / 1.0 (twice at 1.0: averaged).
    let rows = df!(
        "label" => ["m", "m", "m", "m", "m", "m"],
        "seed" => [0u64, 0, 0, 1, 1, 1],
        "params_fraction" => [0.2, 0.6, 1.0, 0.4, 1.0, 1.0],
        "test_accuracy" => [0.2, 0.6, 1.0, 0.5, 0.8, 1.0],
    )
    .unwrap();
    let out = resample(&rows, "params_fraction", 5).unwrap();
    let col = |c: &str| -> Vec<f64> {
        out.column(c)
            .unwrap()
            .f64()
            .unwrap()
            .into_no_null_iter()
            .collect()
    };
    // Seed 0 on 0.2..1.0 (the identity); seed 1 from 0.4: 0.5, then linear to 0.9 at 1.0.
    assert_eq!(col("x"), [0.2, 0.4, 0.6, 0.8, 1.0, 0.4, 0.6, 0.8, 1.0]);
    let y = col("test_accuracy");
    let want = [
        0.2,
        0.4,
        0.6,
        0.8,
        1.0,
        0.5,
        0.5 + 0.4 / 3.0,
        0.5 + 0.8 / 3.0,
        0.9,
    ];
    assert!(
        y.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12),
        "{y:?}"
    );
}

#[test]
fn each_panel_marks_the_mean_d_of_its_own_bias_stage() {
    let root = tempfile::tempdir().unwrap();
    let inputs = [
        bias_upstream(root.path(), "bias_a", 0, 0.6),
        bias_upstream(root.path(), "bias_a", 1, 0.7),
        bias_upstream(root.path(), "bias_b", 0, 0.9),
    ];
    let of = |name| critical_size(&inputs, &panel(Some(name))).unwrap().unwrap();
    assert!((of("bias_a") - 0.65).abs() < 1e-12);
    assert_eq!(of("bias_b"), 0.9);
    let only = critical_size(&inputs[..2], &panel(None)).unwrap().unwrap();
    assert!((only - 0.65).abs() < 1e-12, "one bias stage needs no name");
    assert_eq!(critical_size(&[], &panel(None)).unwrap(), None);
}

#[test]
fn an_ambiguous_or_unknown_bias_stage_is_an_error_naming_the_stages() {
    let root = tempfile::tempdir().unwrap();
    let inputs = [
        bias_upstream(root.path(), "bias_a", 0, 0.6),
        bias_upstream(root.path(), "bias_b", 0, 0.9),
    ];
    let ambiguous = critical_size(&inputs, &panel(None))
        .unwrap_err()
        .to_string();
    assert!(
        ambiguous.contains(r#"several stages ["bias_a", "bias_b"]"#),
        "{ambiguous}"
    );
    let unknown = critical_size(&inputs, &panel(Some("bias_c")))
        .unwrap_err()
        .to_string();
    assert!(
        unknown.contains("names bias stage `bias_c`, which is not a `bias` input"),
        "{unknown}"
    );
}
