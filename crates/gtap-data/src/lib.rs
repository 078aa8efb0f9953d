//! Dataset loaders: MNIST IDX and two text corpora, checksums, downloads, seeded splits.
//!
//! This crate knows nothing about tensors or libtorch: it returns plain Rust data (`Vec<u8>`,
//! `Vec<f32>`) and the model crate turns it into tensors.
//!
//! # Main types
//! - [`mnist_files`] finds the four MNIST gzip files in a directory (or its `mnist/`
//!   subdirectory), downloads missing ones if the [`FetchPolicy`] allows, and checks every file
//!   against its canonical SHA-256. It returns [`MnistFiles`].
//! - [`load_mnist`] parses them with an [`MnistConfig`] into [`MnistData`]: three [`Split`]s,
//!   `train`, `probe` and `test`.
//! - [`Split`] holds raw bytes (pixels, or 0/1 word indicators), their `f32` values, labels and
//!   original indices, and round-trips through a compact binary file ([`Split::write_to`] /
//!   [`Split::read_from`]) so the pipeline can cache a prepared split.
//! - [`text_files`] locates a [`TextDataset`] (financial-tweet topics, CARER emotions) in its
//!   own format (CSV, `text;label` lines) or as Hugging Face parquet; [`load_text`] turns it
//!   into [`TextData`]: train / probe / test [`Split`]s of binary bag-of-words vectors over a
//!   [`Vocabulary`] built from the training split only ([`tokenize`]: lower-cased runs of
//!   Unicode alphanumerics and `_`; the most frequent words by document frequency, ties by
//!   word; serialised as a JSON list).
//! - [`sha256_file`] (streaming, hex) is shared with the stage engine; [`DataError`] is the one
//!   error type, and every variant names the file or directory involved.
//!
//! # Key decisions
//! - **The probe split comes out of the training file.** A seeded permutation of the (class
//!   filtered) training examples puts the first `probe_size` into `probe` (5,000 by default),
//!   the rest into `train` (55,000). Every split keeps ascending original-index order. The
//!   permutation ([`seeded_permutation`]) uses only the ChaCha8 stream, not `rand`'s
//!   distribution code, so it stays the same across dependency upgrades.
//! - **Text splits reuse [`Split`].** A text example is `|V|` bytes, 1 where the word occurs,
//!   read with [`Normalisation::Identity`], so every model and stage that reads MNIST splits
//!   reads text splits too. The tweets' probe split is held out of train by the same seeded
//!   permutation; CARER's is its `val` file.
//! - **Labels are never remapped.** A class filter (e.g. digits 0 and 1) applies to all three
//!   splits, but models keep [`NUM_CLASSES`] = 10 outputs.
//! - **Normalisation is a setting.** By default pixels become `(p / 255 - 0.1307) / 0.3081`
//!   ([`Normalisation::MNIST`], the usual training-set statistics); [`Normalisation::UnitRange`]
//!   gives `p / 255`. Split files store raw bytes and the normalisation, not floats (4× smaller).
//! - **No silent network use.** Tests and offline runs use [`FetchPolicy::Never`]; a missing
//!   file is then one error that lists the files, the directory and how to fix it.
//!
//! # Example
//! ```no_run
//! use std::path::Path;
//! use gtap_data::{load_mnist, mnist_files, FetchPolicy, MnistConfig};
//!
//! let files = mnist_files(Path::new("data"), FetchPolicy::Never)?;
//! let data = load_mnist(&files, &MnistConfig { classes: Some(vec![0, 1]), ..Default::default() })?;
//! assert_eq!(data.train.image_len(), 784);
//! println!("{} train, {} probe, {} test", data.train.len(), data.probe.len(), data.test.len());
//! # Ok::<(), gtap_data::DataError>(())
//! ```

mod checksum;
mod error;
mod fetch;
mod idx;
mod mnist;
mod split;
mod text;
mod tiny_imagenet;
mod vocab;

pub use checksum::{sha256_bytes, sha256_file, verify_sha256, Checksum};
pub use error::{DataError, Location};
pub use fetch::{download_checked, download_verified, FetchPolicy};
pub use idx::{
    parse_idx_images, parse_idx_labels, read_idx_images_gz, read_idx_labels_gz, IdxImages,
    IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC,
};
pub use mnist::{
    idx_files, load_mnist, mnist_files, IdxDataset, MnistConfig, MnistData, MnistFiles,
    FASHION_MNIST, IMAGE_COLS, IMAGE_PIXELS, IMAGE_ROWS, KMNIST, MNIST, MNIST_MIRRORS,
    MNIST_SHA256, NUM_CLASSES, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS,
};
pub use split::{seeded_permutation, Normalisation, Split};
pub use text::{
    load_text, read_corpus, text_files, Corpus, Holdout, TextConfig, TextData, TextDataset,
    TextEncoding, TextFiles, TextFormat, DEFAULT_TWEETS_PROBE, DEFAULT_VOCAB_SIZE, EMOTION_LABELS,
    TWEET_TOPICS,
};
pub use tiny_imagenet::{
    decode_jpeg, load_tiny_imagenet, tiny_imagenet_source, tiny_imagenet_source_or_fetch,
    verify_official, TinyImagenetConfig, TinyImagenetData, TinyImagenetSource,
    TINY_IMAGENET_IMAGE_LEN, TINY_IMAGENET_MD5, TINY_IMAGENET_SIDE, TINY_IMAGENET_SIZE,
    TINY_IMAGENET_URL, TINY_IMAGENET_ZIP,
};
pub use vocab::{
    tokenize, Vocabulary, FIRST_WORD_TOKEN, MAX_TOKEN_VOCABULARY, PAD_TOKEN, UNKNOWN_TOKEN,
};
