//! `pipelines/text-models.toml` at ci scale on the real text datasets: both datasets prepared,
//! the bag-of-words MLP trained and evaluated on each; and the message when the files are absent.

mod common;

use std::path::Path;

use polars::prelude::*;

fn pipeline() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/text-models.toml")
}

fn table(root: &Path, name: &str) -> DataFrame {
    let file =
        std::fs::File::open(root.join(format!("results/text-models/{name}.parquet"))).unwrap();
    ParquetReader::new(file).finish().unwrap()
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
    let strs = |column: &str| -> Vec<String> {
        evaluation
            .column(column)
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(strs("model"), ["mlp-3x256", "mlp-3x256"]);
    assert_eq!(strs("dataset"), ["tweets-topic", "emotion"]);
    let accuracy: Vec<f64> = evaluation
        .column("test_accuracy")
        .unwrap()
        .f64()
        .unwrap()
        .into_no_null_iter()
        .collect();
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
