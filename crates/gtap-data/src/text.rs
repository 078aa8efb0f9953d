//! The two text-classification datasets of the paper's Figure 5: financial-tweet topics
//! (zeroshot/twitter-financial-news-topic) and CARER emotions (dair-ai/emotion, "split"
//! configuration). Locating, fetching and checking their files, parsing them, and turning the
//! texts into binary bag-of-words [`Split`]s.
//!
//! Sources (what [`text_files`] downloads, checked against pinned SHA-256s):
//! - tweets: `topic_train.csv` and `topic_valid.csv` from the dataset's Hugging Face repository
//!   (`zeroshot/twitter-financial-news-topic`, `resolve/main/`), the files its card publishes;
//! - CARER: `train.txt`, `val.txt`, `test.txt` from the authors' links that the Hugging Face
//!   `dair-ai/emotion` loading script used. That repository now serves only a parquet
//!   conversion, whose bytes could not be pinned here, so it is accepted when present locally
//!   (as `train.parquet`, `validation.parquet`, `test.parquet`) but not fetched. Other mirrors
//!   can be given with [`FetchPolicy::DownloadFrom`] (base URL + file name).

use std::fs;
use std::path::{Path, PathBuf};

use polars::prelude::{DataType, ParquetReader, SerReader};

use crate::checksum::verify_sha256;
use crate::error::Location;
use crate::fetch::{download_verified, FetchPolicy};
use crate::mnist::ensure_slash;
use crate::split::{seeded_permutation, Normalisation, Split};
use crate::vocab::{Vocabulary, MAX_TOKEN_VOCABULARY};
use crate::DataError;

/// The topic names of twitter-financial-news-topic, in label-id order (its `classes.txt`).
pub const TWEET_TOPICS: [&str; 20] = [
    "Analyst Update",
    "Fed | Central Banks",
    "Company | Product News",
    "Treasuries | Corporate Debt",
    "Dividend",
    "Earnings",
    "Energy | Oil",
    "Financials",
    "Currencies",
    "General News | Opinion",
    "Gold | Metals | Materials",
    "IPO",
    "Legal | Regulation",
    "M&A | Investments",
    "Macro",
    "Markets",
    "Politics",
    "Personnel Change",
    "Stock Commentary",
    "Stock Movement",
];

/// The CARER emotion label names, in label-id order (as in the Hugging Face dataset).
pub const EMOTION_LABELS: [&str; 6] = ["sadness", "joy", "love", "anger", "fear", "surprise"];

/// Default number of bag-of-words features (see [`TextConfig`]).
pub const DEFAULT_VOCAB_SIZE: usize = 5000;
/// Default number of tweets held out of `topic_train.csv` as the probe split.
pub const DEFAULT_TWEETS_PROBE: usize = 2000;

/// Which text dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextDataset {
    /// zeroshot/twitter-financial-news-topic: 16,990 train and 4,117 validation tweets, 20 topics.
    /// The validation file is the test split; the probe split is held out of train.
    TweetsTopic,
    /// CARER emotions: 16,000 train, 2,000 val, 2,000 test texts, 6 emotions. `val` is the probe.
    Emotion,
}

/// How a dataset's files are laid out on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFormat {
    /// CSV with a header and columns `text,label` (label an integer id): the tweets' own files.
    Csv,
    /// One `text;label` per line, label a name (split at the last `;`): CARER's own files.
    Lines,
    /// Hugging Face parquet files with columns `text` (string) and `label` (integer id).
    Parquet,
}

/// Which split a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Train,
    Probe,
    Test,
}

/// One file of a layout: name, role, pinned SHA-256 (if known) and canonical URL (if we fetch it).
struct FileSpec {
    name: &'static str,
    role: Role,
    sha256: Option<&'static str>,
    url: Option<&'static str>,
}

/// The tweets' canonical CSV files, fetched from the Hugging Face dataset repository.
const TWEETS_CSV: &[FileSpec] = &[
    FileSpec {
        name: "topic_train.csv",
        role: Role::Train,
        sha256: Some("63b9ea8183728dd5ddc6a57289341556509ddc0a8d037616519319a316b54490"),
        url: Some("https://huggingface.co/datasets/zeroshot/twitter-financial-news-topic/resolve/main/topic_train.csv"),
    },
    FileSpec {
        name: "topic_valid.csv",
        role: Role::Test,
        sha256: Some("67396d6cd4a21c3755de783f20fb5842f12ae8edb9367eed5d2644dd85ca9243"),
        url: Some("https://huggingface.co/datasets/zeroshot/twitter-financial-news-topic/resolve/main/topic_valid.csv"),
    },
];

/// The tweets as Hugging Face parquet (read when present, never fetched).
const TWEETS_PARQUET: &[FileSpec] = &[
    FileSpec {
        name: "train.parquet",
        role: Role::Train,
        sha256: Some("664be463b95ea5b0a4424f67b0ce3c0503c340c2e2cd6f8c334592eb24d648d2"),
        url: None,
    },
    FileSpec {
        name: "validation.parquet",
        role: Role::Test,
        sha256: Some("c67ac0fbac5657f2abec5585f1facf1376b014306b3ab4fd563a5d53167a2047"),
        url: None,
    },
];

/// CARER's original text files, at the URLs the dataset's Hugging Face loading script used
/// (the authors' own links); the Hugging Face repository now holds only a parquet conversion.
const EMOTION_TXT: &[FileSpec] = &[
    FileSpec {
        name: "train.txt",
        role: Role::Train,
        sha256: Some("3ab03d945a6cb783d818ccd06dafd52d2ed8b4f62f0f85a09d7d11870865b190"),
        url: Some("https://www.dropbox.com/s/1pzkadrvffbqw6o/train.txt?dl=1"),
    },
    FileSpec {
        name: "val.txt",
        role: Role::Probe,
        sha256: Some("34faaa31962fe63cdf5dbf6c132ef8ab166c640254ab991af78f3aea375e79ef"),
        url: Some("https://www.dropbox.com/s/2mzialpsgf9k5l3/val.txt?dl=1"),
    },
    FileSpec {
        name: "test.txt",
        role: Role::Test,
        sha256: Some("60f531690d20127339e7f054edc299a82c627b5ec0dd5d552d53d544e0cfcc17"),
        url: Some("https://www.dropbox.com/s/ikkqxfdbdec3fuj/test.txt?dl=1"),
    },
];

/// CARER as parquet (read when present, never fetched; no pinned digest on hand).
const EMOTION_PARQUET: &[FileSpec] = &[
    FileSpec {
        name: "train.parquet",
        role: Role::Train,
        sha256: None,
        url: None,
    },
    FileSpec {
        name: "validation.parquet",
        role: Role::Probe,
        sha256: None,
        url: None,
    },
    FileSpec {
        name: "test.parquet",
        role: Role::Test,
        sha256: None,
        url: None,
    },
];

impl TextDataset {
    /// Both datasets.
    pub const ALL: [TextDataset; 2] = [TextDataset::TweetsTopic, TextDataset::Emotion];

    /// The pipeline name: `tweets-topic` or `emotion`.
    pub fn name(self) -> &'static str {
        match self {
            TextDataset::TweetsTopic => "tweets-topic",
            TextDataset::Emotion => "emotion",
        }
    }

    /// The conventional folder name inside a data directory.
    pub fn folder(self) -> &'static str {
        match self {
            TextDataset::TweetsTopic => "twitter-financial-news-topic",
            TextDataset::Emotion => "emotion",
        }
    }

    /// Class names in label-id order.
    pub fn class_names(self) -> &'static [&'static str] {
        match self {
            TextDataset::TweetsTopic => &TWEET_TOPICS,
            TextDataset::Emotion => &EMOTION_LABELS,
        }
    }

    /// Number of classes (20 or 6).
    pub fn num_classes(self) -> usize {
        self.class_names().len()
    }

    /// The canonical layout (fetched when missing) and the parquet alternative.
    fn layouts(self) -> [(TextFormat, &'static [FileSpec]); 2] {
        match self {
            TextDataset::TweetsTopic => [
                (TextFormat::Csv, TWEETS_CSV),
                (TextFormat::Parquet, TWEETS_PARQUET),
            ],
            TextDataset::Emotion => [
                (TextFormat::Lines, EMOTION_TXT),
                (TextFormat::Parquet, EMOTION_PARQUET),
            ],
        }
    }

    /// `(file name, sha256, URL)` of the canonical files that [`text_files`] downloads.
    pub fn canonical_files(self) -> Vec<(&'static str, &'static str, &'static str)> {
        self.layouts()[0]
            .1
            .iter()
            .map(|f| {
                (
                    f.name,
                    f.sha256.expect("canonical files are pinned"),
                    f.url.expect("canonical files have a URL"),
                )
            })
            .collect()
    }
}

impl std::fmt::Display for TextDataset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The located files of one text dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextFiles {
    /// Which dataset.
    pub dataset: TextDataset,
    /// How the files are laid out.
    pub format: TextFormat,
    /// The training file (`topic_train.csv`, `train.txt`, `train.parquet`).
    pub train: PathBuf,
    /// A separate probe file (CARER's `val.txt` / `validation.parquet`); `None` for the tweets,
    /// whose probe split is held out of train.
    pub probe: Option<PathBuf>,
    /// The test file (the tweets' validation file, CARER's `test.txt` / `test.parquet`).
    pub test: PathBuf,
}

impl TextFiles {
    /// Every file, in the order train, probe (if any), test.
    pub fn paths(&self) -> Vec<&Path> {
        let mut out = vec![self.train.as_path()];
        out.extend(self.probe.as_deref());
        out.push(self.test.as_path());
        out
    }

    fn from_specs(
        dataset: TextDataset,
        format: TextFormat,
        dir: &Path,
        specs: &[FileSpec],
    ) -> Self {
        let path = |role| {
            specs
                .iter()
                .find(|f| f.role == role)
                .map(|f| dir.join(f.name))
        };
        TextFiles {
            dataset,
            format,
            train: path(Role::Train).expect("every layout has a train file"),
            probe: path(Role::Probe),
            test: path(Role::Test).expect("every layout has a test file"),
        }
    }
}

/// Locates a text dataset's files, downloading missing canonical files if `fetch` allows, and
/// checks every file that has a pinned SHA-256.
///
/// `dir` is the dataset folder itself or its parent (holding `twitter-financial-news-topic/`
/// or `emotion/`): both are searched, in that order. A layout counts only when all its files
/// are in one directory; the dataset's own format (tweets: CSV, CARER: `text;label` lines) is
/// preferred over the Hugging Face parquet files when both are complete. When neither is,
/// the canonical files are downloaded (into `dir` if it is the dataset folder, else into
/// `dir/<folder>`), each through a temporary file renamed into place only after its checksum
/// matches. Otherwise the error is [`DataError::Missing`]: what is missing, where it looked,
/// why nothing was downloaded and how to fix it.
///
/// The canonical files and the tweets' parquet files are checked against their pinned digests
/// ([`DataError::Checksum`]); CARER's parquet files have no pinned digest and are checked only
/// by parsing.
pub fn text_files(
    dataset: TextDataset,
    dir: &Path,
    fetch: FetchPolicy,
) -> Result<TextFiles, DataError> {
    let folder = dataset.folder();
    let is_folder = dir.file_name().is_some_and(|n| n == folder);
    let mut candidates = vec![dir.to_path_buf()];
    if !is_folder {
        candidates.push(dir.join(folder));
    }
    let layouts = dataset.layouts();

    for (format, specs) in layouts {
        for d in &candidates {
            if specs.iter().all(|f| d.join(f.name).is_file()) {
                for f in specs {
                    if let Some(sha) = f.sha256 {
                        verify_sha256(&d.join(f.name), sha)?;
                    }
                }
                return Ok(TextFiles::from_specs(dataset, format, d, specs));
            }
        }
    }

    // Nothing complete: fetch the canonical layout.
    let (format, specs) = (layouts[0].0, layouts[0].1);
    let target = if is_folder {
        dir.to_path_buf()
    } else {
        dir.join(folder)
    };
    let created = !target.exists();
    let mut download_note = String::new();
    let mut fetched = true;
    for f in specs {
        let dest = target.join(f.name);
        if dest.is_file() {
            continue;
        }
        let urls = download_urls(&fetch, f);
        if urls.is_empty() {
            download_note = "downloading is disabled (FetchPolicy::Never)".to_string();
            fetched = false;
            break;
        }
        let sha = f.sha256.expect("canonical files are pinned");
        let mut failures = Vec::new();
        let mut ok = false;
        for url in urls {
            match download_verified(&url, &dest, sha) {
                Ok(()) => {
                    ok = true;
                    break;
                }
                Err(DataError::Download { url, reason, .. }) => {
                    failures.push(format!("download from {url} failed: {reason}"))
                }
                Err(other) => failures.push(format!("download from {url} failed: {other}")),
            }
        }
        if !ok {
            // The cause is nearly always shared (no network), so report the first file's.
            download_note = failures.join("; ");
            fetched = false;
            break;
        }
    }
    if fetched {
        for f in specs {
            verify_sha256(&target.join(f.name), f.sha256.expect("pinned"))?;
        }
        return Ok(TextFiles::from_specs(dataset, format, &target, specs));
    }

    if created {
        // Leave no empty folder behind (fails harmlessly if a download put files there).
        let _ = fs::remove_dir(&target);
    }
    let missing: Vec<String> = specs
        .iter()
        .filter(|f| !candidates.iter().any(|d| d.join(f.name).is_file()))
        .map(|f| f.name.to_string())
        .collect();
    let names = |specs: &[FileSpec]| specs.iter().map(|f| f.name).collect::<Vec<_>>();
    let mut expected: Vec<String> = names(specs).iter().map(|n| n.to_string()).collect();
    expected.push(format!(
        "or the Hugging Face parquet files {}",
        names(layouts[1].1).join(" + ")
    ));
    Err(DataError::Missing {
        dataset: dataset.name(),
        searched: crate::fetch::describe_dirs(&candidates),
        missing: if missing.is_empty() {
            // Every file exists somewhere, but not all in one directory.
            vec![format!(
                "{} (all in one directory)",
                names(specs).join(" + ")
            )]
        } else {
            missing
        },
        expected,
        download: download_note,
    })
}

/// The URLs to try for one file: its canonical URL, or each mirror base with the name appended.
fn download_urls(fetch: &FetchPolicy, f: &FileSpec) -> Vec<String> {
    match fetch {
        FetchPolicy::Never => Vec::new(),
        FetchPolicy::Download => f.url.iter().map(|u| u.to_string()).collect(),
        FetchPolicy::DownloadFrom(bases) => bases
            .iter()
            .map(|b| format!("{}{}", ensure_slash(b), f.name))
            .collect(),
    }
}

/// The examples of one file: texts and their label ids, in file order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Corpus {
    /// The raw texts.
    pub texts: Vec<String>,
    /// Label ids, `0..num_classes`.
    pub labels: Vec<u8>,
}

impl Corpus {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the corpus holds no example.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Reads one file of `dataset` in `format`, checking every label.
///
/// Errors name the file and the line (or parquet row): a line without `;`, an unknown label
/// name, a label out of range or not an integer, invalid UTF-8, a malformed CSV record, a
/// missing column; a file without examples is [`DataError::EmptyFile`].
pub fn read_corpus(
    dataset: TextDataset,
    format: TextFormat,
    path: &Path,
) -> Result<Corpus, DataError> {
    let corpus = match format {
        TextFormat::Csv => read_csv(path, dataset.num_classes())?,
        TextFormat::Lines => read_lines(path, dataset.class_names())?,
        TextFormat::Parquet => read_parquet(path, dataset.num_classes())?,
    };
    if corpus.is_empty() {
        return Err(DataError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    Ok(corpus)
}

/// Checks a numeric label against the class count.
fn check_label(path: &Path, at: Location, label: i64, classes: usize) -> Result<u8, DataError> {
    if label < 0 || label as u64 >= classes as u64 {
        return Err(DataError::LabelOutOfRange {
            path: path.to_path_buf(),
            at,
            label,
            classes,
        });
    }
    Ok(label as u8)
}

fn read_csv(path: &Path, classes: usize) -> Result<Corpus, DataError> {
    let bad = |line: u64, reason: String| DataError::BadRecord {
        path: path.to_path_buf(),
        at: Location::Line(line),
        reason,
    };
    let csv_err = |e: csv::Error| {
        if e.is_io_error() {
            match e.into_kind() {
                csv::ErrorKind::Io(io) => DataError::io(path, io),
                _ => unreachable!("is_io_error guarantees ErrorKind::Io"),
            }
        } else {
            bad(e.position().map_or(0, |p| p.line()), e.to_string())
        }
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_path(path)
        .map_err(csv_err)?;
    let headers = reader.byte_headers().map_err(csv_err)?.clone();
    if headers.is_empty() || headers.as_slice().is_empty() {
        return Ok(Corpus::default());
    }
    let column = |name: &str| -> Result<usize, DataError> {
        headers
            .iter()
            .position(|h| h == name.as_bytes())
            .ok_or_else(|| {
                let found: Vec<String> = headers
                    .iter()
                    .map(|h| String::from_utf8_lossy(h).into_owned())
                    .collect();
                bad(
                    1,
                    format!(
                        "header has no `{name}` column (found: {})",
                        found.join(", ")
                    ),
                )
            })
    };
    let (text_col, label_col) = (column("text")?, column("label")?);

    let mut corpus = Corpus::default();
    for record in reader.byte_records() {
        let record = record.map_err(csv_err)?;
        let line = record.position().map_or(0, |p| p.line());
        let field = |i: usize| -> Result<&str, DataError> {
            std::str::from_utf8(&record[i]).map_err(|_| DataError::InvalidUtf8 {
                path: path.to_path_buf(),
                line,
            })
        };
        let text = field(text_col)?;
        let label_text = field(label_col)?.trim();
        let label: i64 = label_text
            .parse()
            .map_err(|_| bad(line, format!("label `{label_text}` is not an integer")))?;
        corpus
            .labels
            .push(check_label(path, Location::Line(line), label, classes)?);
        corpus.texts.push(text.to_owned());
    }
    Ok(corpus)
}

fn read_lines(path: &Path, names: &[&str]) -> Result<Corpus, DataError> {
    let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
    let mut corpus = Corpus::default();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(corpus); // reported as an empty file
    }
    let pieces: Vec<&[u8]> = bytes.split(|&b| b == b'\n').collect();
    let last = pieces.len() - 1;
    for (i, raw) in pieces.into_iter().enumerate() {
        let line = i as u64 + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if i == last && raw.is_empty() {
            break; // the newline that ends the file
        }
        let text = std::str::from_utf8(raw).map_err(|_| DataError::InvalidUtf8 {
            path: path.to_path_buf(),
            line,
        })?;
        let (text, label) = text
            .rsplit_once(';')
            .ok_or_else(|| DataError::MissingSeparator {
                path: path.to_path_buf(),
                line,
            })?;
        let label = label.trim();
        let id = names
            .iter()
            .position(|n| *n == label)
            .ok_or_else(|| DataError::UnknownLabel {
                path: path.to_path_buf(),
                line,
                label: label.to_owned(),
                known: names.iter().map(|n| n.to_string()).collect(),
            })?;
        corpus.texts.push(text.to_owned());
        corpus.labels.push(id as u8);
    }
    Ok(corpus)
}

fn read_parquet(path: &Path, classes: usize) -> Result<Corpus, DataError> {
    let bad = |reason: String| DataError::BadParquet {
        path: path.to_path_buf(),
        reason,
    };
    let file = fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|e| bad(e.to_string()))?;
    let column = |name: &str| {
        df.column(name).map_err(|_| {
            let found: Vec<String> = df
                .get_column_names()
                .iter()
                .map(|c| c.to_string())
                .collect();
            bad(format!("no `{name}` column (found: {})", found.join(", ")))
        })
    };
    let (texts, labels) = (column("text")?, column("label")?);
    let texts = texts.str().map_err(|_| {
        bad(format!(
            "column `text` has type {}, expected strings",
            texts.dtype()
        ))
    })?;
    if !labels.dtype().is_integer() {
        return Err(bad(format!(
            "column `label` has type {}, expected integers",
            labels.dtype()
        )));
    }
    let labels = labels
        .cast(&DataType::Int64)
        .map_err(|e| bad(e.to_string()))?;
    let labels = labels.i64().map_err(|e| bad(e.to_string()))?;

    let mut corpus = Corpus::default();
    for (i, (text, label)) in texts.iter().zip(labels.iter()).enumerate() {
        let at = Location::Row(i as u64 + 1);
        let null = |column: &str| DataError::BadRecord {
            path: path.to_path_buf(),
            at,
            reason: format!("`{column}` is null"),
        };
        let text = text.ok_or_else(|| null("text"))?;
        let label = label.ok_or_else(|| null("label"))?;
        corpus.labels.push(check_label(path, at, label, classes)?);
        corpus.texts.push(text.to_owned());
    }
    Ok(corpus)
}

/// A probe split carved out of the training file by a seeded permutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holdout {
    /// Examples moved from train to probe; must be smaller than the training file.
    pub size: usize,
    /// Seed of [`seeded_permutation`].
    pub seed: u64,
}

/// What a text becomes for a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TextEncoding {
    /// `|V|` values, 1 where the word occurs ([`Vocabulary::encode_into`]).
    #[default]
    BagOfWords,
    /// Its first `length` words as token ids, padded, two bytes each
    /// ([`Vocabulary::encode_tokens_into`]): `2·length` values.
    Tokens { length: usize },
}

/// How a text dataset becomes bag-of-words or token-sequence splits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextConfig {
    /// At most this many words (features, or token ids less two), chosen on the training
    /// split only.
    pub vocab_size: usize,
    /// Bag of words or token sequences.
    pub encoding: TextEncoding,
    /// The tweets' probe split, held out of `topic_train.csv`. Must be `None` for CARER,
    /// whose probe split is its `val` file.
    pub holdout: Option<Holdout>,
}

impl TextConfig {
    /// The defaults for `dataset`: 5,000 words; tweets hold out 2,000 probe examples (seed 0).
    ///
    /// 5,000 words keep every word of CARER's training split that occurs in at least 3 texts,
    /// and every tweet word in at least 6 (86% of tweet tokens, 96% of CARER tokens).
    pub fn for_dataset(dataset: TextDataset) -> TextConfig {
        TextConfig {
            vocab_size: DEFAULT_VOCAB_SIZE,
            encoding: TextEncoding::BagOfWords,
            holdout: match dataset {
                TextDataset::TweetsTopic => Some(Holdout {
                    size: DEFAULT_TWEETS_PROBE,
                    seed: 0,
                }),
                TextDataset::Emotion => None,
            },
        }
    }
}

/// A text dataset as bag-of-words splits, and the vocabulary that defines the features.
#[derive(Debug, Clone, PartialEq)]
pub struct TextData {
    /// Which dataset.
    pub dataset: TextDataset,
    /// Training examples (tweets: those not held out as probe).
    pub train: Split,
    /// Guidance examples: held out of train (tweets) or CARER's `val` file.
    pub probe: Split,
    /// The test file's examples; the only split accuracy is reported on.
    pub test: Split,
    /// Feature `j` of every split is whether `vocabulary.words()[j]` occurs in the text
    /// (bag of words), or token id `j + 2` is that word (token sequences).
    pub vocabulary: Vocabulary,
    /// How the splits encode texts.
    pub encoding: TextEncoding,
}

impl TextData {
    /// Number of model outputs (20 or 6).
    pub fn num_classes(&self) -> usize {
        self.dataset.num_classes()
    }
}

/// Loads a text dataset and turns it into binary bag-of-words (or token-sequence) splits.
///
/// Reads the files ([`read_corpus`]); for the tweets, permutes the training file with
/// [`seeded_permutation`]`(n, holdout.seed)` and moves the first `holdout.size` to probe (both
/// splits keep ascending file order); builds the vocabulary from the training split only
/// ([`Vocabulary::build`]); encodes every text as `|V|` bytes, 1 where the word occurs, with
/// [`Normalisation::Identity`] (so the model sees 0.0 / 1.0), or, for [`TextEncoding::Tokens`],
/// as `2·length` bytes of token ids. Example indices are positions in
/// the source file. Checksums are not re-checked here; [`text_files`] does that.
pub fn load_text(files: &TextFiles, cfg: &TextConfig) -> Result<TextData, DataError> {
    let dataset = files.dataset;
    let config_err = |reason: String| DataError::Config {
        dataset: dataset.name(),
        reason,
    };
    if cfg.vocab_size == 0 {
        return Err(config_err("vocab_size must be at least 1".to_string()));
    }
    if let TextEncoding::Tokens { length } = cfg.encoding {
        if length == 0 {
            return Err(config_err(
                "a token sequence needs a length of at least 1".into(),
            ));
        }
        if cfg.vocab_size > MAX_TOKEN_VOCABULARY {
            return Err(config_err(format!(
                "token ids take two bytes: at most {MAX_TOKEN_VOCABULARY} words (got {})",
                cfg.vocab_size
            )));
        }
    }
    let read = |path: &Path| read_corpus(dataset, files.format, path);
    let train_file = read(&files.train)?;
    let test = read(&files.test)?;
    let all: Vec<u32> = (0..train_file.len() as u32).collect();
    let (train_idx, probe, probe_idx) = match (&files.probe, cfg.holdout) {
        (Some(probe_path), None) => {
            let probe = read(probe_path)?;
            let idx = (0..probe.len() as u32).collect();
            (all, probe, idx)
        }
        (None, Some(h)) => {
            if !(1..train_file.len()).contains(&h.size) {
                return Err(config_err(format!(
                    "probe size {} must be between 1 and {} (the {} examples in {} less one)",
                    h.size,
                    train_file.len().saturating_sub(1),
                    train_file.len(),
                    files.train.display()
                )));
            }
            let perm = seeded_permutation(train_file.len(), h.seed);
            // The probe stays in the permutation's order: topic_train.csv is sorted by label,
            // and stages that read the first N probe examples (ν on `probe_examples`) must get
            // a uniform sample, not the first few classes.
            let probe_idx: Vec<u32> = perm[..h.size].iter().map(|&k| k as u32).collect();
            let mut train_idx: Vec<u32> = perm[h.size..].iter().map(|&k| k as u32).collect();
            train_idx.sort_unstable();
            let probe = subset(&train_file, &probe_idx);
            (train_idx, probe, probe_idx)
        }
        (Some(p), Some(_)) => {
            return Err(config_err(format!(
                "the probe split is {}; a held-out probe split does not apply",
                p.display()
            )))
        }
        (None, None) => {
            return Err(config_err(
                "no probe file, so the probe split must be held out of train (set a holdout)"
                    .to_string(),
            ))
        }
    };
    let train = subset(&train_file, &train_idx);
    let vocabulary = Vocabulary::build(&train.texts, cfg.vocab_size);
    if vocabulary.is_empty() {
        return Err(config_err(format!(
            "the training texts of {} contain no words",
            files.train.display()
        )));
    }
    let encode = |c: &Corpus, idx: Vec<u32>| {
        let v = match cfg.encoding {
            TextEncoding::BagOfWords => vocabulary.len(),
            TextEncoding::Tokens { length } => 2 * length,
        };
        let mut rows = vec![0u8; c.len() * v];
        for (text, row) in c.texts.iter().zip(rows.chunks_exact_mut(v)) {
            match cfg.encoding {
                TextEncoding::BagOfWords => vocabulary.encode_into(text, row),
                TextEncoding::Tokens { .. } => vocabulary.encode_tokens_into(text, row),
            }
        }
        Split::from_raw(rows, c.labels.clone(), idx, v, Normalisation::Identity)
    };
    let test_idx = (0..test.len() as u32).collect();
    Ok(TextData {
        dataset,
        train: encode(&train, train_idx)?,
        probe: encode(&probe, probe_idx)?,
        test: encode(&test, test_idx)?,
        vocabulary,
        encoding: cfg.encoding,
    })
}

/// The examples of `c` at `idx` (ascending).
fn subset(c: &Corpus, idx: &[u32]) -> Corpus {
    Corpus {
        texts: idx.iter().map(|&i| c.texts[i as usize].clone()).collect(),
        labels: idx.iter().map(|&i| c.labels[i as usize]).collect(),
    }
}
