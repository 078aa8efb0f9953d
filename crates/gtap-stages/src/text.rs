//! `text-dataset`: financial-tweet topics or CARER emotions as binary bag-of-words splits, in
//! the layout of `mnist`'s output (so `train`, `evaluate`, `mcue`, `power-indices` read it
//! unchanged), plus the vocabulary that defines the features. With `sequence_length`, token
//! sequences instead (two bytes per token id, for the `text-transformer`): the tokenizer is
//! the vocabulary stored beside the splits, built from the training split only.

use std::path::PathBuf;

use gtap_data::{
    FetchPolicy, Holdout, TextConfig, TextDataset, TextEncoding, DEFAULT_TWEETS_PROBE,
    DEFAULT_VOCAB_SIZE,
};
use gtap_engine::{ensure, Env, Invalid, Stage, StageContext};
use serde::{Deserialize, Serialize};

use crate::mnist::{fetch_policy, split_file, DatasetInfo};

pub struct TextDatasetStage;

/// `dataset = "tweets-topic"` or `"emotion"`, with the parameters that dataset has. The
/// resolved form (and so the cache key) always carries every default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "dataset", deny_unknown_fields)]
pub enum TextDatasetParams {
    /// zeroshot/twitter-financial-news-topic: 20 topics; `topic_valid.csv` is the test split.
    #[serde(rename = "tweets-topic")]
    TweetsTopic {
        /// Bag-of-words features: the most frequent words (by document frequency) of train.
        #[serde(default = "default_vocab")]
        vocab_size: usize,
        /// Tweets held out of `topic_train.csv` (16,990) for guidance.
        #[serde(default = "default_probe")]
        probe_size: usize,
        /// Seed of the train / probe split; independent of the pipeline seeds.
        #[serde(default)]
        split_seed: u64,
        /// Token sequences of this length instead of bags of words (see [`TextEncoding`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sequence_length: Option<usize>,
    },
    /// CARER emotions: 6 classes; `val.txt` is the probe split, `test.txt` the test split.
    #[serde(rename = "emotion")]
    Emotion {
        /// Bag-of-words features: the most frequent words (by document frequency) of train.
        #[serde(default = "default_vocab")]
        vocab_size: usize,
        /// Token sequences of this length instead of bags of words (see [`TextEncoding`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sequence_length: Option<usize>,
    },
}

fn default_vocab() -> usize {
    DEFAULT_VOCAB_SIZE
}
fn default_probe() -> usize {
    DEFAULT_TWEETS_PROBE
}

/// Most words a vocabulary may hold (the tweets have 41,911 distinct words, CARER 15,212).
const MAX_VOCAB: usize = 50_000;
/// Longest token sequence (CARER's longest text has 66 words, the tweets' 70).
const MAX_SEQUENCE: usize = 512;
/// Rows of `topic_train.csv`.
const TWEETS_TRAIN_ROWS: usize = 16_990;

impl TextDatasetParams {
    pub fn dataset(&self) -> TextDataset {
        match self {
            TextDatasetParams::TweetsTopic { .. } => TextDataset::TweetsTopic,
            TextDatasetParams::Emotion { .. } => TextDataset::Emotion,
        }
    }

    pub(crate) fn vocab_size(&self) -> usize {
        match *self {
            TextDatasetParams::TweetsTopic { vocab_size, .. }
            | TextDatasetParams::Emotion { vocab_size, .. } => vocab_size,
        }
    }

    /// Length of the token sequences, when the texts are encoded as tokens.
    pub(crate) fn sequence_length(&self) -> Option<usize> {
        match *self {
            TextDatasetParams::TweetsTopic {
                sequence_length, ..
            }
            | TextDatasetParams::Emotion {
                sequence_length, ..
            } => sequence_length,
        }
    }

    pub fn config(&self) -> TextConfig {
        TextConfig {
            vocab_size: self.vocab_size(),
            encoding: match self.sequence_length() {
                None => TextEncoding::BagOfWords,
                Some(length) => TextEncoding::Tokens { length },
            },
            holdout: match *self {
                TextDatasetParams::TweetsTopic {
                    probe_size,
                    split_seed,
                    ..
                } => Some(Holdout {
                    size: probe_size,
                    seed: split_seed,
                }),
                TextDatasetParams::Emotion { .. } => None,
            },
        }
    }
}

/// The vocabulary (JSON list of words, feature order) beside the splits.
pub const VOCABULARY: &str = "vocabulary.json";

impl Stage for TextDatasetStage {
    type Params = TextDatasetParams;
    const KIND: &'static str = "text-dataset";
    // 2: the held-out tweets probe split is in a seeded random order (the file is label-sorted).
    const VERSION: u32 = 2;
    const SEEDED: bool = false;
    const INPUTS: &'static [&'static str] = &[];
    const ABOUT: &'static str =
        "tweet topics or CARER emotions as binary bag-of-words (or token-sequence) train / probe / test splits";

    fn validate(p: &TextDatasetParams) -> Result<(), Invalid> {
        let v = p.vocab_size();
        ensure((1..=MAX_VOCAB).contains(&v), "vocab_size", || {
            format!("must be between 1 and {MAX_VOCAB} (got {v})")
        })?;
        if let Some(length) = p.sequence_length() {
            ensure(
                (1..=MAX_SEQUENCE).contains(&length),
                "sequence_length",
                || format!("must be between 1 and {MAX_SEQUENCE} tokens (got {length})"),
            )?;
        }
        if let TextDatasetParams::TweetsTopic { probe_size, .. } = *p {
            ensure(
                (1..TWEETS_TRAIN_ROWS).contains(&probe_size),
                "probe_size",
                || {
                    format!(
                        "must be between 1 and {} (topic_train.csv holds {TWEETS_TRAIN_ROWS} \
                         tweets; got {probe_size})",
                        TWEETS_TRAIN_ROWS - 1
                    )
                },
            )?;
        }
        Ok(())
    }

    fn external_files(p: &TextDatasetParams, env: &Env) -> anyhow::Result<Vec<(String, PathBuf)>> {
        let files = gtap_data::text_files(p.dataset(), &env.data_dir, fetch_policy())?;
        Ok(files
            .paths()
            .into_iter()
            .map(|path| {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                (name, path.to_path_buf())
            })
            .collect())
    }

    fn run(p: &TextDatasetParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let files = gtap_data::text_files(p.dataset(), &ctx.env.data_dir, FetchPolicy::Never)?;
        let data = gtap_data::load_text(&files, &p.config())?;
        for (name, split) in [
            ("train", &data.train),
            ("probe", &data.probe),
            ("test", &data.test),
        ] {
            split.write_to(&ctx.out_dir().join(split_file(name)))?;
        }
        data.vocabulary.write_to(&ctx.out_dir().join(VOCABULARY))?;
        let sequences = p.sequence_length().is_some();
        let info = DatasetInfo {
            name: p.dataset().name().to_owned(),
            num_classes: data.num_classes(),
            features: data.train.image_len(),
            token_ids: sequences.then(|| data.vocabulary.token_ids()),
            train: data.train.len(),
            probe: data.probe.len(),
            test: data.test.len(),
        };
        std::fs::write(
            ctx.out_dir().join("dataset.json"),
            serde_json::to_vec_pretty(&info)?,
        )?;
        tracing::info!(
            "{}: {} words, {} / {} / {} examples",
            ctx.instance,
            data.vocabulary.len(),
            info.train,
            info.probe,
            info.test
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(toml_src: &str) -> Result<serde_json::Value, String> {
        let raw: toml::Value = toml::from_str(toml_src).map_err(|e| e.to_string())?;
        let params: TextDatasetParams = raw.try_into().map_err(|e| e.to_string())?;
        TextDatasetStage::validate(&params).map_err(|i| format!("{}: {}", i.key, i.message))?;
        Ok(serde_json::to_value(&params).unwrap())
    }

    #[test]
    fn defaults_are_filled_per_dataset() {
        assert_eq!(
            resolve(r#"dataset = "tweets-topic""#).unwrap(),
            serde_json::json!({
                "dataset": "tweets-topic", "vocab_size": 5000, "probe_size": 2000, "split_seed": 0
            })
        );
        assert_eq!(
            resolve("dataset = \"emotion\"\nvocab_size = 300").unwrap(),
            serde_json::json!({"dataset": "emotion", "vocab_size": 300})
        );
        // Token sequences are asked for; bags of words keep the keys they had.
        assert_eq!(
            resolve("dataset = \"emotion\"\nsequence_length = 48").unwrap(),
            serde_json::json!({"dataset": "emotion", "vocab_size": 5000, "sequence_length": 48})
        );
    }

    #[test]
    fn parameters_that_do_not_apply_are_errors() {
        let check = |src: &str, expected: &str| {
            let err = resolve(src).unwrap_err();
            assert!(err.contains(expected), "{src}: {err}");
        };
        check(
            "dataset = \"emotion\"\nprobe_size = 10",
            "unknown field `probe_size`",
        );
        check(
            "dataset = \"tweets-topic\"\nvocab = 10",
            "unknown field `vocab`",
        );
        check(r#"dataset = "imdb""#, "unknown variant `imdb`");
        check("vocab_size = 10", "missing field `dataset`");
        check(
            "dataset = \"tweets-topic\"\nprobe_size = 16990",
            "probe_size: must be between 1 and 16989",
        );
        check(
            "dataset = \"emotion\"\nvocab_size = 0",
            "vocab_size: must be between 1",
        );
        check(
            "dataset = \"emotion\"\nsequence_length = 0",
            "sequence_length: must be between 1 and 512",
        );
    }
}
