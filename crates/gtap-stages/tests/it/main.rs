//! Stage-level integration tests on the real MNIST files (../shared/datasets).

use std::path::{Path, PathBuf};

use gtap_engine::{Env, Overrides, Pipeline, Runner};
use gtap_nn::WeightCriterion;
use gtap_stages::methods::NoParams;
use gtap_stages::ranking::{by_descending_score, RankContext, Ranker, RankerStage};

/// The real datasets, or `None` when absent and `GTAP_SKIP_REAL_DATA` is set.
fn real_data() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets");
    if dir.join("mnist").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("GTAP_SKIP_REAL_DATA").is_some(),
        "real MNIST expected at {} (set GTAP_SKIP_REAL_DATA=1 to skip)",
        dir.display()
    );
    None
}

/// Cache, results and figures under `root`, datasets from `data`, portable numerics.
fn scratch_env(data: PathBuf, root: &Path) -> Env {
    Env {
        data_dir: data,
        cache_dir: root.join("cache"),
        results_dir: root.join("results"),
        figures_dir: root.join("figures"),
        progress: false,
        numerics: "portable-1".into(),
    }
}

/// A method that exists only in this test: WMP's order reversed (smallest weights kept first).
struct ReversedWmp;

impl Ranker for ReversedWmp {
    const METHOD: &'static str = "reversed-wmp";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "test only: keep the units with the smallest weights";
    type Params = NoParams;

    fn rank(_: &NoParams, cx: &RankContext<'_>) -> anyhow::Result<Vec<usize>> {
        let scores = cx.net.unit_scores(WeightCriterion::Magnitude, None)?;
        Ok(by_descending_score(&scores).into_iter().rev().collect())
    }
}

const PIPELINE: &str = r#"
[pipeline]
name = "plug-in"
seeds = [0]

[stage.mnist]
kind = "mnist"

[stage.train]
kind = "train"
inputs = { data = "mnist" }
model = "lenet-300-100"
epochs = 1

[stage.wmp]
kind = "wmp"
inputs = { model = "train", data = "mnist" }

[stage.reversed]
kind = "reversed-wmp"
inputs = { model = "train", data = "mnist" }

[stage.curves]
kind = "curves"
inputs = { model = "train", data = "mnist", rankings = ["wmp", "reversed"] }
points = 4
"#;

/// One `Ranker` impl and one registration line make a method: it runs as a stage and its rows
/// appear in the curves table beside the built-in methods.
#[test]
fn a_method_registered_in_a_test_shows_up_in_the_curves() {
    let Some(data) = real_data() else {
        return;
    };
    let mut registry = gtap_stages::registry();
    registry.register::<RankerStage<ReversedWmp>>();
    let root = tempfile::tempdir().unwrap();
    let env = scratch_env(data, root.path());
    let pipeline = Pipeline::parse(
        Path::new("plug-in.toml"),
        PIPELINE,
        &Overrides::default(),
        &registry,
    )
    .unwrap();
    Runner::new(&registry, &env).run(&pipeline, &[]).unwrap();
    let curves =
        gtap_engine::table::read_parquet(&env.results_dir.join("plug-in/curves.parquet")).unwrap();
    let method: Vec<String> = curves
        .column("method")
        .unwrap()
        .str()
        .unwrap()
        .iter()
        .map(|m| m.unwrap_or_default().to_owned())
        .collect();
    let fraction: Vec<f64> = curves
        .column("size_fraction")
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    let accuracy: Vec<f64> = curves
        .column("test_accuracy")
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(method.iter().filter(|m| *m == "reversed-wmp").count(), 4);
    assert_eq!(method.iter().filter(|m| *m == "wmp").count(), 4);
    // At size 1 both keep every unit: the same network, the same accuracy.
    let full: Vec<f64> = (0..curves.height())
        .filter(|&i| fraction[i] == 1.0)
        .map(|i| accuracy[i])
        .collect();
    assert_eq!(full.len(), 2);
    assert_eq!(full[0], full[1]);
    // Keeping the smallest-weight quarter is worse than keeping the largest.
    let at_quarter = |m: &str| {
        (0..curves.height())
            .find(|&i| method[i] == m && fraction[i] == 0.25)
            .map(|i| accuracy[i])
            .unwrap()
    };
    assert!(at_quarter("reversed-wmp") < at_quarter("wmp"), "{curves}");
}

const ADAPTIVE: &str = r#"
[pipeline]
name = "adaptive"
seeds = [0]

[stage.mnist]
kind = "mnist"

[stage.train]
kind = "train"
inputs = { data = "mnist" }
model = "lenet-300-100"
epochs = 1
train_examples = 2000

[stage.plain]
kind = "gtap"
inputs = { model = "train", data = "mnist" }
strategy = "iterated-pruning"
step = 100
estimate = { index = "banzhaf", estimator = "paired", samples = 4, probe_examples = 200 }

[stage.adaptive]
kind = "gtap"
inputs = { model = "train", data = "mnist" }
strategy = "iterated-pruning"
step = 100
estimate = { index = "banzhaf", estimator = "paired", samples = 4, probe_examples = 200 }
separate = { budget = 6000 }

[stage.curves]
kind = "curves"
inputs = { model = "train", data = "mnist", rankings = ["plain", "adaptive"] }
points = 4
"#;

/// `separate` chooses each Iterated Pruning step adaptively: the stage runs, ranks every unit,
/// and differs from the plain estimate's ranking; misuse is a validation error.
#[test]
fn iterated_pruning_can_choose_each_step_adaptively() {
    let Some(data) = real_data() else {
        return;
    };
    let registry = gtap_stages::registry();
    let root = tempfile::tempdir().unwrap();
    let env = scratch_env(data, root.path());
    let parse = |text: &str| {
        Pipeline::parse(
            Path::new("adaptive.toml"),
            text,
            &Overrides::default(),
            &registry,
        )
    };
    let pipeline = parse(ADAPTIVE).unwrap();
    Runner::new(&registry, &env).run(&pipeline, &[]).unwrap();
    // Each gtap entry's ranking, told apart by its parameters (`separate` in the pre-image).
    let read_order = |adaptive: bool| -> Vec<usize> {
        let entries = std::fs::read_dir(root.path().join("cache/entries/gtap")).unwrap();
        let dir = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.join("ranking.json").exists())
            .find(|p| {
                let pre = std::fs::read_to_string(p.join("preimage.json")).unwrap();
                pre.contains("\"separate\"") == adaptive
            })
            .unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("ranking.json")).unwrap()).unwrap();
        json["order"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect()
    };
    let (plain, adaptive) = (read_order(false), read_order(true));
    for order in [&plain, &adaptive] {
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            (0..400).collect::<Vec<_>>(),
            "a permutation of the units"
        );
    }
    assert_ne!(
        plain[300..],
        adaptive[300..],
        "the first step chose differently"
    );

    for (bad, message) in [
        (
            ADAPTIVE.replace("strategy = \"iterated-pruning\"\nstep = 100\nestimate = { index = \"banzhaf\", estimator = \"paired\", samples = 4, probe_examples = 200 }\nseparate", "strategy = \"top-n\"\nestimate = { index = \"banzhaf\", estimator = \"paired\", samples = 4, probe_examples = 200 }\nseparate"),
            "iterated strategies only",
        ),
        (
            ADAPTIVE.replace("separate = { budget = 6000 }", "separate = { budget = 6000, confidence = 1.0 }"),
            "must be in (0, 1)",
        ),
    ] {
        let err = format!("{:#}", parse(&bad).unwrap_err());
        assert!(err.contains(message), "{err}");
    }
}

const SPLIT: &str = r#"
[pipeline]
name = "split"
seeds = [0]

[stage.mnist]
kind = "mnist"

[stage.train]
kind = "train"
inputs = { data = "mnist" }
model = "lenet-300-100"
epochs = 1
train_examples = 2000

[stage.ip]
kind = "gtap"
inputs = { model = "train", data = "mnist" }
strategy = "iterated-pruning"
step = 150
ties = "random"
estimate = { index = "banzhaf", estimator = "shared", samples = 300, probe_examples = 200 }

[stage.ip_split]
kind = "gtap"
inputs = { model = "train", data = "mnist" }
strategy = "iterated-pruning"
step = 150
ties = "random"
estimate = { index = "banzhaf", estimator = "shared", samples = 300, probe_examples = 200, shards = 3 }

[stage.ib]
kind = "gtap"
inputs = { model = "train", data = "mnist" }
strategy = "iterated-building"
step = 150
estimate = { index = "banzhaf", estimator = "shared", samples = 300, probe_examples = 200 }

[stage.ib_split]
kind = "gtap"
inputs = { model = "train", data = "mnist" }
strategy = "iterated-building"
step = 150
estimate = { index = "banzhaf", estimator = "shared", samples = 300, probe_examples = 200, shards = 2 }

[stage.topn]
kind = "gtap"
inputs = { model = "train", data = "mnist" }
strategy = "top-n"
estimate = { index = "banzhaf", estimator = "shared", samples = 300, probe_examples = 200 }

[stage.topn_split]
kind = "gtap"
inputs = { model = "train", data = "mnist" }
strategy = "top-n"
estimate = { index = "banzhaf", estimator = "shared", samples = 300, probe_examples = 200, shards = 7 }
"#;

/// `shards`: Top-n's estimate and each iteration of Iterated Pruning / Building split into
/// parts (rounds of parts for the iterated strategies, ⌈400 / 150⌉ = 3) give the unsplit
/// stage's ranking byte for byte.
#[test]
fn rankings_split_in_parts_and_rounds_equal_the_unsplit_ones() {
    let Some(data) = real_data() else {
        return;
    };
    let registry = gtap_stages::registry();
    let root = tempfile::tempdir().unwrap();
    let env = scratch_env(data, root.path());
    let parse = |text: &str| {
        Pipeline::parse(
            Path::new("split.toml"),
            text,
            &Overrides::default(),
            &registry,
        )
    };
    let pipeline = parse(SPLIT).unwrap();
    let runner = Runner::new(&registry, &env).jobs(2);
    let report = runner.run(&pipeline, &[]).unwrap();
    let built = report.built();
    for id in [
        "ip_split[0].round1of3.part1of3",
        "ip_split[0].round1of3",
        "ip_split[0].round2of3.part3of3",
        "ip_split[0].round3of3.part2of3",
        "ip_split[0]",
        "ib_split[0].round2of3.part2of2",
        "topn_split[0].part7of7",
    ] {
        assert!(built.contains(&id), "{id} not in {built:?}");
    }
    assert!(
        !built.contains(&"ip_split[0].round3of3"),
        "the last round is the stage's own"
    );
    for (plain, split) in [
        ("ip", "ip_split"),
        ("ib", "ib_split"),
        ("topn", "topn_split"),
    ] {
        let ranking = |stage: &str| {
            let entry = runner
                .output(&pipeline, &format!("{stage}[0]"))
                .unwrap()
                .unwrap();
            (
                std::fs::read(entry.path("ranking.json")).unwrap(),
                entry.content_hash,
            )
        };
        let (a, b) = (ranking(plain), ranking(split));
        assert_eq!(a.0.len(), b.0.len());
        assert!(a.0 == b.0, "{split} ranks differently from {plain}");
        assert_eq!(a.1, b.1, "{split}'s entry differs from {plain}'s");
    }

    let bad = SPLIT.replace(
        "[stage.ip_split]\nkind = \"gtap\"\ninputs = { model = \"train\", data = \"mnist\" }",
        "[stage.ip_split]\nkind = \"gtap\"\ninputs = { model = \"mnist\", data = \"mnist\" }",
    );
    let err = format!("{:#}", parse(&bad).unwrap_err());
    assert!(
        err.contains("`stage.ip_split.estimate.shards`: an iterated strategy in parts needs its `model` input's architecture"),
        "{err}"
    );
}
