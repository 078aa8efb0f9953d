//! `mnist`: reads the canonical IDX files of MNIST (or Fashion-MNIST, KMNIST: the same layout),
//! verifies them, and writes train / probe / test splits.

use std::path::{Path, PathBuf};

use gtap_data::{FetchPolicy, IdxDataset, MnistConfig, Split};
use gtap_engine::{ensure, Env, Invalid, Stage, StageContext};
use serde::{Deserialize, Serialize};

pub struct MnistStage;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MnistParams {
    /// Which dataset in MNIST's IDX layout: `mnist` (the default, left out of the key),
    /// `fashion-mnist` or `kmnist` (files in `<data>/fashion-mnist/`, `<data>/kmnist/`; MD5s as
    /// published; normalised by their own training images' mean and std).
    #[serde(default = "default_dataset", skip_serializing_if = "is_mnist")]
    pub dataset: String,
    /// Check the files against the dataset's pinned digests (default). `false` reads a copy
    /// rebuilt locally as it is: the IDX parser then names whatever is wrong with it.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub verify: bool,
    /// Examples held out of the 60,000 training images for guidance (power indices, MCUE, W·GMP).
    #[serde(default = "default_probe")]
    pub probe_size: usize,
    /// Seed of the train / probe split; independent of the pipeline seeds, so every seed's model
    /// sees the same split.
    #[serde(default)]
    pub split_seed: u64,
    /// Keep only these digits (e.g. `[0, 1]` for the paper's binary Figure 2 panel).
    #[serde(default)]
    pub classes: Option<Vec<u8>>,
}

fn default_probe() -> usize {
    5000
}
fn default_dataset() -> String {
    "mnist".into()
}
fn is_mnist(name: &String) -> bool {
    name == "mnist"
}
fn default_true() -> bool {
    true
}
fn is_true(v: &bool) -> bool {
    *v
}

impl MnistParams {
    fn dataset(&self) -> IdxDataset {
        IdxDataset::named(&self.dataset).expect("validated")
    }
}

/// What a dataset stage writes as `dataset.json`, read by the stages downstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatasetInfo {
    /// `mnist`, or `mnist[0,1]` when filtered.
    pub name: String,
    pub num_classes: usize,
    /// Values per example (for token sequences, two per token).
    pub features: usize,
    /// For token sequences: how many token ids there are (padding, unknown, the words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_ids: Option<usize>,
    pub train: usize,
    pub probe: usize,
    pub test: usize,
}

pub fn split_file(split: &str) -> String {
    format!("{split}.split")
}

/// The fetch policy from the environment: `GTAP_OFFLINE=1` never touches the network.
pub fn fetch_policy() -> FetchPolicy {
    if std::env::var_os("GTAP_OFFLINE").is_some_and(|v| v == "1") {
        FetchPolicy::Never
    } else {
        FetchPolicy::Download
    }
}

impl Stage for MnistStage {
    type Params = MnistParams;
    const KIND: &'static str = "mnist";
    const VERSION: u32 = 1;
    const SEEDED: bool = false;
    const INPUTS: &'static [&'static str] = &[];
    const ABOUT: &'static str =
        "MNIST from the canonical IDX files: verified, split into train / probe / test";

    fn validate(p: &MnistParams) -> Result<(), Invalid> {
        ensure(IdxDataset::named(&p.dataset).is_some(), "dataset", || {
            let known: Vec<&str> = IdxDataset::ALL.iter().map(|d| d.name).collect();
            format!(
                "unknown IDX dataset `{}` (known: {})",
                p.dataset,
                known.join(", ")
            )
        })?;
        ensure(
            p.probe_size >= 1 && p.probe_size < 60_000,
            "probe_size",
            || format!("must be between 1 and 59999 (got {})", p.probe_size),
        )?;
        if let Some(classes) = &p.classes {
            ensure(!classes.is_empty(), "classes", || {
                "must list at least one digit".into()
            })?;
            ensure(classes.iter().all(|&c| c <= 9), "classes", || {
                format!("digits are 0-9 (got {classes:?})")
            })?;
            for (i, c) in classes.iter().enumerate() {
                ensure(!classes[..i].contains(c), "classes", || {
                    format!("digit {c} is listed twice")
                })?;
            }
        }
        Ok(())
    }

    fn external_files(p: &MnistParams, env: &Env) -> anyhow::Result<Vec<(String, PathBuf)>> {
        let files = gtap_data::idx_files(&p.dataset(), &env.data_dir, fetch_policy(), p.verify)?;
        Ok(files
            .with_sha256()
            .iter()
            .map(|(path, _)| (file_name(path), path.to_path_buf()))
            .collect())
    }

    fn run(p: &MnistParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let dataset = p.dataset();
        let files =
            gtap_data::idx_files(&dataset, &ctx.env.data_dir, FetchPolicy::Never, p.verify)?;
        let cfg = MnistConfig {
            normalisation: dataset.normalisation,
            dataset: dataset.title,
            probe_size: p.probe_size,
            split_seed: p.split_seed,
            classes: p.classes.clone(),
            ..MnistConfig::default()
        };
        let data = gtap_data::load_mnist(&files, &cfg)?;
        for (name, split) in [
            ("train", &data.train),
            ("probe", &data.probe),
            ("test", &data.test),
        ] {
            split.write_to(&ctx.out_dir().join(split_file(name)))?;
        }
        let name = match &p.classes {
            None => dataset.name.to_owned(),
            Some(c) => format!("{}{c:?}", dataset.name).replace(' ', ""),
        };
        let info = DatasetInfo {
            name,
            num_classes: 10,
            features: 784,
            token_ids: None,
            train: data.train.len(),
            probe: data.probe.len(),
            test: data.test.len(),
        };
        std::fs::write(
            ctx.out_dir().join("dataset.json"),
            serde_json::to_vec_pretty(&info)?,
        )?;
        Ok(())
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reads `dataset.json` of a dataset stage's output.
pub fn read_info(dir: &Path) -> anyhow::Result<DatasetInfo> {
    let path = dir.join("dataset.json");
    let bytes =
        std::fs::read(&path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    Ok(serde_json::from_slice(&bytes)?)
}

/// Reads one prepared split of a dataset stage's output.
pub fn read_split(dir: &Path, split: &str) -> anyhow::Result<Split> {
    Ok(Split::read_from(&dir.join(split_file(split)))?)
}
