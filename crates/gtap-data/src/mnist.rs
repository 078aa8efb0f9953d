//! MNIST: the four canonical gzip IDX files, their checksums and mirrors, and the
//! train / probe / test splits.

use std::path::{Path, PathBuf};

use crate::checksum::{verify_sha256, Checksum};
use crate::fetch::{download_checked, FetchPolicy};
use crate::idx::{read_idx_images_gz, read_idx_labels_gz, IdxImages};
use crate::split::{seeded_permutation, Normalisation, Split};
use crate::DataError;

/// Rows of an MNIST image.
pub const IMAGE_ROWS: usize = 28;
/// Columns of an MNIST image.
pub const IMAGE_COLS: usize = 28;
/// Pixels of an MNIST image (28 × 28).
pub const IMAGE_PIXELS: usize = IMAGE_ROWS * IMAGE_COLS;
/// Number of MNIST classes (digits 0-9). Models keep 10 outputs even under a class filter.
pub const NUM_CLASSES: usize = 10;

/// File name of the training images.
pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte.gz";
/// File name of the training labels.
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte.gz";
/// File name of the test images.
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte.gz";
/// File name of the test labels.
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte.gz";

/// SHA-256 of the canonical files, as `(file name, hex digest)`.
pub const MNIST_SHA256: [(&str, &str); 4] = [
    (
        TRAIN_IMAGES,
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    (
        TRAIN_LABELS,
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    (
        TEST_IMAGES,
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    (
        TEST_LABELS,
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
];

/// Canonical mirrors of the MNIST files, tried in order (base URLs; the file name is appended).
pub const MNIST_MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];

/// A dataset in MNIST's IDX layout: the same four file names, 28×28 grey images, 10 classes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdxDataset {
    /// The name pipelines use (`dataset = "fashion-mnist"`) and `dataset.json` records.
    pub name: &'static str,
    /// How error messages name it (`MNIST`, `Fashion-MNIST`).
    pub title: &'static str,
    /// Folders of the data directory searched in order (`""`: the data directory itself).
    /// Every IDX dataset uses MNIST's file names, so the others live in their own folder.
    pub folders: &'static [&'static str],
    /// Pinned digests of train images, train labels, test images, test labels.
    pub checksums: [Checksum<'static>; 4],
    /// Base URLs the files are downloaded from, in order.
    pub mirrors: &'static [&'static str],
    /// How pixels become floats; `None`: by the mean and std of the dataset's own training
    /// images (computed at load time, rounded to 4 decimals).
    pub normalisation: Option<Normalisation>,
}

impl IdxDataset {
    /// Every IDX dataset a pipeline may name.
    pub const ALL: [IdxDataset; 3] = [MNIST, FASHION_MNIST, KMNIST];

    /// The dataset called `name`.
    pub fn named(name: &str) -> Option<IdxDataset> {
        Self::ALL.into_iter().find(|d| d.name == name)
    }
}

/// MNIST (LeCun, Cortes, Burges): SHA-256 pinned, the usual mean / std.
pub const MNIST: IdxDataset = IdxDataset {
    name: "mnist",
    title: "MNIST",
    folders: &["", "mnist"],
    checksums: [
        Checksum::Sha256(MNIST_SHA256[0].1),
        Checksum::Sha256(MNIST_SHA256[1].1),
        Checksum::Sha256(MNIST_SHA256[2].1),
        Checksum::Sha256(MNIST_SHA256[3].1),
    ],
    mirrors: &MNIST_MIRRORS,
    normalisation: Some(Normalisation::MNIST),
};

/// Fashion-MNIST (Xiao, Rasul, Vollgraf 2017), in `<data>/fashion-mnist/`; the MD5s its
/// authors publish.
pub const FASHION_MNIST: IdxDataset = IdxDataset {
    name: "fashion-mnist",
    title: "Fashion-MNIST",
    folders: &["fashion-mnist"],
    checksums: [
        Checksum::Md5("8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        Checksum::Md5("25c81989df183df01b3e8a0aad5dffbe"),
        Checksum::Md5("bef4ecab320f06d8554ea6380940ec79"),
        Checksum::Md5("bb300cfdad3c16e7a12a480ee83cd310"),
    ],
    mirrors: &[
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ],
    normalisation: None,
};

/// Kuzushiji-MNIST (Clanuwat et al. 2018), in `<data>/kmnist/`; the MD5s of the published files.
pub const KMNIST: IdxDataset = IdxDataset {
    name: "kmnist",
    title: "KMNIST",
    folders: &["kmnist"],
    checksums: [
        Checksum::Md5("bdb82020997e1d708af4cf47b453dcf7"),
        Checksum::Md5("e144d726b3acfaa3e44228e80efcd344"),
        Checksum::Md5("5c965bf0a639b31b8f53240b1b52f4d7"),
        Checksum::Md5("7320c461ea6c1c855c0b718fb2a4b134"),
    ],
    mirrors: &["http://codh.rois.ac.jp/kmnist/dataset/kmnist/"],
    normalisation: None,
};

/// Paths of the four MNIST files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MnistFiles {
    /// `train-images-idx3-ubyte.gz`.
    pub train_images: PathBuf,
    /// `train-labels-idx1-ubyte.gz`.
    pub train_labels: PathBuf,
    /// `t10k-images-idx3-ubyte.gz`.
    pub test_images: PathBuf,
    /// `t10k-labels-idx1-ubyte.gz`.
    pub test_labels: PathBuf,
}

impl MnistFiles {
    /// The canonical file names inside `dir`, without checking that they exist.
    pub fn in_dir(dir: &Path) -> MnistFiles {
        MnistFiles {
            train_images: dir.join(TRAIN_IMAGES),
            train_labels: dir.join(TRAIN_LABELS),
            test_images: dir.join(TEST_IMAGES),
            test_labels: dir.join(TEST_LABELS),
        }
    }

    /// The four paths with their canonical SHA-256, in the order of [`MNIST_SHA256`].
    pub fn with_sha256(&self) -> [(&Path, &'static str); 4] {
        [
            (self.train_images.as_path(), MNIST_SHA256[0].1),
            (self.train_labels.as_path(), MNIST_SHA256[1].1),
            (self.test_images.as_path(), MNIST_SHA256[2].1),
            (self.test_labels.as_path(), MNIST_SHA256[3].1),
        ]
    }

    /// Checks every file against its canonical SHA-256 ([`DataError::Checksum`] on mismatch).
    pub fn verify(&self) -> Result<(), DataError> {
        for (path, sha) in self.with_sha256() {
            verify_sha256(path, sha)?;
        }
        Ok(())
    }
}

/// Locates the four MNIST files, downloading missing ones if `fetch` allows, and verifies
/// every file against its canonical SHA-256 ([`idx_files`] of [`MNIST`]).
pub fn mnist_files(dir: &Path, fetch: FetchPolicy) -> Result<MnistFiles, DataError> {
    idx_files(&MNIST, dir, fetch, true)
}

/// Locates the four files of an IDX dataset, downloading missing ones if `fetch` allows.
///
/// Each file is looked up in the dataset's folders of `dir` in order (MNIST: `dir`, then
/// `dir/mnist`). A missing file is downloaded into the first folder from the dataset's mirrors
/// (first that works), through a temporary file renamed into place only after its pinned digest
/// matches. Files found on disk are checked against the pinned digests when `verify` (a copy
/// rebuilt locally may opt out; the IDX parser then meets whatever is wrong with it). If files
/// stay missing the error is [`DataError::Missing`]: which files, where it looked, why the
/// download failed (or that it was disabled) and how to fix it.
pub fn idx_files(
    dataset: &IdxDataset,
    dir: &Path,
    fetch: FetchPolicy,
    verify: bool,
) -> Result<MnistFiles, DataError> {
    let names = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];
    // `dir.join("")` would add a trailing separator to messages.
    let candidates: Vec<PathBuf> = dataset
        .folders
        .iter()
        .map(|f| {
            if f.is_empty() {
                dir.to_path_buf()
            } else {
                dir.join(f)
            }
        })
        .collect();
    let locate = |name: &str| -> Option<PathBuf> {
        candidates
            .iter()
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    };

    let mut found: Vec<Option<PathBuf>> = names.iter().map(|n| locate(n)).collect();
    let mut downloaded = [false; 4];
    let mirrors = fetch.mirrors(dataset.mirrors);
    let mut download_note = if mirrors.is_empty() {
        "downloading is disabled (FetchPolicy::Never)".to_string()
    } else {
        String::new()
    };

    if !mirrors.is_empty() {
        for (k, name) in names.iter().enumerate() {
            if found[k].is_some() {
                continue;
            }
            let dest = candidates[0].join(name);
            let mut failures = Vec::new();
            for base in &mirrors {
                let url = format!("{}{name}", ensure_slash(base));
                match download_checked(&url, &dest, dataset.checksums[k]) {
                    Ok(()) => {
                        found[k] = Some(dest.clone());
                        downloaded[k] = true;
                        break;
                    }
                    Err(DataError::Download { url, reason, .. }) => {
                        failures.push(format!("download from {url} failed: {reason}"))
                    }
                    Err(other) => failures.push(format!("download from {url} failed: {other}")),
                }
            }
            if found[k].is_none() {
                // The cause is nearly always shared (no network), so report the first file's.
                download_note = failures.join("; ");
                break;
            }
        }
    }

    let missing: Vec<String> = names
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(name, _)| name.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(DataError::Missing {
            dataset: dataset.title,
            searched: crate::fetch::describe_dirs(&candidates),
            missing,
            expected: names.iter().map(|n| n.to_string()).collect(),
            download: download_note,
        });
    }

    let [a, b, c, d] = <[Option<PathBuf>; 4]>::try_from(found).expect("four entries");
    let files = MnistFiles {
        train_images: a.expect("checked above"),
        train_labels: b.expect("checked above"),
        test_images: c.expect("checked above"),
        test_labels: d.expect("checked above"),
    };
    if verify {
        let paths = [
            &files.train_images,
            &files.train_labels,
            &files.test_images,
            &files.test_labels,
        ];
        for ((path, checksum), fresh) in paths.into_iter().zip(dataset.checksums).zip(downloaded) {
            if !fresh {
                checksum.verify(path)?;
            }
        }
    }
    Ok(files)
}

pub(crate) fn ensure_slash(base: &str) -> String {
    if base.ends_with('/') {
        base.to_string()
    } else {
        format!("{base}/")
    }
}

/// How MNIST is split and normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct MnistConfig {
    /// Examples moved from the training file into the probe split (default 5,000). Taken
    /// after the class filter; must be smaller than the number of (filtered) training examples.
    pub probe_size: usize,
    /// Seed of the train/probe permutation (default 0).
    pub split_seed: u64,
    /// Keep only these digits in all three splits (e.g. `[0, 1]`); `None` keeps all ten.
    /// Labels are not remapped: a filtered model still has [`NUM_CLASSES`] outputs.
    pub classes: Option<Vec<u8>>,
    /// How pixel bytes become floats (default [`Normalisation::MNIST`]: mean 0.1307, std 0.3081);
    /// `None`: the mean and std of the training file's images, rounded to 4 decimals.
    pub normalisation: Option<Normalisation>,
    /// Which IDX dataset the files are (names it in errors).
    pub dataset: &'static str,
}

impl Default for MnistConfig {
    fn default() -> Self {
        MnistConfig {
            probe_size: 5000,
            split_seed: 0,
            classes: None,
            normalisation: Some(Normalisation::MNIST),
            dataset: "MNIST",
        }
    }
}

/// MNIST in three splits: train and probe carved from the 60,000 training examples, and the
/// 10,000 test examples.
#[derive(Debug, Clone, PartialEq)]
pub struct MnistData {
    /// Training examples not in the probe split (55,000 by default).
    pub train: Split,
    /// Held-out examples from the training file, for power indices, MCUE and gradients.
    pub probe: Split,
    /// The test file's examples; the only split accuracy is reported on.
    pub test: Split,
}

impl MnistData {
    /// Number of model outputs: always 10, also under a class filter.
    pub fn num_classes(&self) -> usize {
        NUM_CLASSES
    }
}

/// Loads and splits MNIST.
///
/// Parses the four files (checking magic numbers, sizes, 28×28 images, labels 0-9 and that
/// images and labels agree in count), applies the class filter to all three splits, then
/// permutes the (filtered) training examples with [`seeded_permutation`]`(n, split_seed)`: the
/// first `probe_size` go to the probe split, the rest to train. Every split is kept in ascending
/// original-index order. Checksums are not re-checked here; [`mnist_files`] does that.
pub fn load_mnist(files: &MnistFiles, cfg: &MnistConfig) -> Result<MnistData, DataError> {
    let keep = class_mask(cfg)?;
    let (train_images, train_labels) = read_pair(&files.train_images, &files.train_labels)?;
    let (test_images, test_labels) = read_pair(&files.test_images, &files.test_labels)?;

    let candidates: Vec<u32> = (0..train_labels.len() as u32)
        .filter(|&i| keep[train_labels[i as usize] as usize])
        .collect();
    if cfg.probe_size >= candidates.len() {
        let of = match &cfg.classes {
            Some(c) => format!(" of classes {c:?}"),
            None => String::new(),
        };
        return Err(DataError::Config {
            dataset: cfg.dataset,
            reason: format!(
                "probe_size {} must be smaller than the {} training examples{of} in {}",
                cfg.probe_size,
                candidates.len(),
                files.train_labels.display()
            ),
        });
    }
    let perm = seeded_permutation(candidates.len(), cfg.split_seed);
    let mut probe_idx: Vec<u32> = perm[..cfg.probe_size]
        .iter()
        .map(|&k| candidates[k])
        .collect();
    let mut train_idx: Vec<u32> = perm[cfg.probe_size..]
        .iter()
        .map(|&k| candidates[k])
        .collect();
    probe_idx.sort_unstable();
    train_idx.sort_unstable();
    let test_idx: Vec<u32> = (0..test_labels.len() as u32)
        .filter(|&i| keep[test_labels[i as usize] as usize])
        .collect();

    let norm = cfg
        .normalisation
        .unwrap_or_else(|| own_statistics(&train_images.pixels));
    let gather = |images: &IdxImages, labels: &[u8], idx: Vec<u32>| {
        Split::gather(&images.pixels, labels, IMAGE_PIXELS, idx, norm)
    };
    Ok(MnistData {
        train: gather(&train_images, &train_labels, train_idx),
        probe: gather(&train_images, &train_labels, probe_idx),
        test: gather(&test_images, &test_labels, test_idx),
    })
}

/// Mean and std of pixels `p / 255`, rounded to 4 decimals (as MNIST's 0.1307 / 0.3081 are).
fn own_statistics(pixels: &[u8]) -> Normalisation {
    let n = pixels.len().max(1) as f64;
    let (sum, squares) = pixels.iter().fold((0u64, 0u64), |(s, q), &p| {
        (s + u64::from(p), q + u64::from(p) * u64::from(p))
    });
    let mean = sum as f64 / 255.0 / n;
    let std = (squares as f64 / (255.0 * 255.0) / n - mean * mean)
        .max(0.0)
        .sqrt();
    let round = |v: f64| ((v * 1e4).round() / 1e4) as f32;
    Normalisation::MeanStd {
        mean: round(mean),
        std: round(std).max(1e-4),
    }
}

/// Which labels the class filter keeps; validates the filter.
fn class_mask(cfg: &MnistConfig) -> Result<[bool; NUM_CLASSES], DataError> {
    let Some(classes) = &cfg.classes else {
        return Ok([true; NUM_CLASSES]);
    };
    let bad = |reason: String| DataError::Config {
        dataset: cfg.dataset,
        reason,
    };
    if classes.is_empty() {
        return Err(bad(
            "classes is empty; list digits 0-9 to keep, or leave it unset for all".to_string(),
        ));
    }
    let mut keep = [false; NUM_CLASSES];
    for &c in classes {
        match keep.get_mut(c as usize) {
            Some(k) => *k = true,
            None => return Err(bad(format!("class {c} in {classes:?} is not a digit 0-9"))),
        }
    }
    Ok(keep)
}

/// Reads an image file and its label file, checking shape, label range and matching counts.
fn read_pair(images_path: &Path, labels_path: &Path) -> Result<(IdxImages, Vec<u8>), DataError> {
    let images = read_idx_images_gz(images_path)?;
    if images.rows != IMAGE_ROWS || images.cols != IMAGE_COLS {
        return Err(DataError::BadShape {
            path: images_path.to_path_buf(),
            rows: images.rows,
            cols: images.cols,
            expected_rows: IMAGE_ROWS,
            expected_cols: IMAGE_COLS,
        });
    }
    let labels = read_idx_labels_gz(labels_path)?;
    if let Some((index, &label)) = labels
        .iter()
        .enumerate()
        .find(|(_, &l)| l as usize >= NUM_CLASSES)
    {
        return Err(DataError::BadLabel {
            path: labels_path.to_path_buf(),
            index,
            label,
            max: (NUM_CLASSES - 1) as u8,
        });
    }
    if images.count != labels.len() {
        return Err(DataError::CountMismatch {
            images_path: images_path.to_path_buf(),
            images: images.count,
            labels_path: labels_path.to_path_buf(),
            labels: labels.len(),
        });
    }
    Ok((images, labels))
}
