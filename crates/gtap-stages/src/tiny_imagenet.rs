//! `tiny-imagenet`: Tiny ImageNet from the official zip (MD5-checked at its size), the layout
//! extracted, or a zip in that layout (the shared subset), decoded once into train / probe /
//! test splits: channel-major 3 × 64 × 64 bytes, `p / 255`; the validation set is the test split.

use std::path::PathBuf;

use gtap_data::{TinyImagenetConfig, TinyImagenetSource};
use gtap_engine::{ensure, Env, Invalid, Stage, StageContext};
use serde::{Deserialize, Serialize};

use crate::mnist::{split_file, DatasetInfo};

pub struct TinyImagenetStage;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TinyImagenetParams {
    /// Training images held out for guidance (power indices, MCUE, W·GMP).
    #[serde(default = "default_probe")]
    pub probe_size: usize,
    /// Seed of the train / probe split (independent of the pipeline seeds).
    #[serde(default)]
    pub split_seed: u64,
    /// Keep the first n classes of `wnids.txt` (all 200 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<usize>,
    /// Keep the first n training images of each class, by image number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_class: Option<usize>,
}

fn default_probe() -> usize {
    2000
}

impl Stage for TinyImagenetStage {
    type Params = TinyImagenetParams;
    const KIND: &'static str = "tiny-imagenet";
    const VERSION: u32 = 1;
    const SEEDED: bool = false;
    const INPUTS: &'static [&'static str] = &[];
    const ABOUT: &'static str =
        "Tiny ImageNet from its zip or folder: JPEGs decoded once into train / probe / test";

    fn validate(p: &TinyImagenetParams) -> Result<(), Invalid> {
        ensure(p.probe_size >= 1, "probe_size", || {
            "must be at least 1".into()
        })?;
        if let Some(c) = p.classes {
            // A classifier needs two classes.
            ensure((2..=200).contains(&c), "classes", || {
                format!("must be between 2 and 200 (got {c})")
            })?;
        }
        if let Some(n) = p.per_class {
            ensure((1..=500).contains(&n), "per_class", || {
                format!("must be between 1 and 500, the training images of a class (got {n})")
            })?;
        }
        let most = p.classes.unwrap_or(200) * p.per_class.unwrap_or(500);
        ensure(p.probe_size < most, "probe_size", || {
            format!(
                "must leave training images: below the {most} of the chosen classes (got {})",
                p.probe_size
            )
        })?;
        Ok(())
    }

    /// The zip itself (sha256 in the key); for an extracted folder, its class list and
    /// validation labels (the images are read as they are). Without either, the official
    /// archive is downloaded (MD5-checked) unless `GTAP_OFFLINE=1`.
    fn external_files(_: &TinyImagenetParams, env: &Env) -> anyhow::Result<Vec<(String, PathBuf)>> {
        let fetch = crate::mnist::fetch_policy();
        Ok(
            match gtap_data::tiny_imagenet_source_or_fetch(&env.data_dir, &fetch)? {
                TinyImagenetSource::Zip(path) => vec![("archive".into(), path)],
                TinyImagenetSource::Dir(root) => vec![
                    ("wnids.txt".into(), root.join("wnids.txt")),
                    (
                        "val_annotations.txt".into(),
                        root.join("val/val_annotations.txt"),
                    ),
                ],
            },
        )
    }

    fn run(p: &TinyImagenetParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let source = gtap_data::tiny_imagenet_source(&ctx.env.data_dir)?;
        let cfg = TinyImagenetConfig {
            probe_size: p.probe_size,
            split_seed: p.split_seed,
            classes: p.classes,
            per_class: p.per_class,
            ..TinyImagenetConfig::default()
        };
        let started = std::time::Instant::now();
        let data = gtap_data::load_tiny_imagenet(&source, &cfg)?;
        tracing::info!(
            "{}: {} + {} + {} images of {} classes decoded in {:.1}s",
            ctx.instance,
            data.train.len(),
            data.probe.len(),
            data.test.len(),
            data.wnids.len(),
            started.elapsed().as_secs_f64()
        );
        for (name, split) in [
            ("train", &data.train),
            ("probe", &data.probe),
            ("test", &data.test),
        ] {
            split.write_to(&ctx.out_dir().join(split_file(name)))?;
        }
        std::fs::write(
            ctx.out_dir().join("classes.txt"),
            data.wnids.join("\n") + "\n",
        )?;
        let name = match p.classes {
            None => "tiny-imagenet".to_owned(),
            Some(c) => format!("tiny-imagenet[{c}]"),
        };
        let info = DatasetInfo {
            name,
            num_classes: data.wnids.len(),
            features: gtap_data::TINY_IMAGENET_IMAGE_LEN,
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
