//! Tests on the real MNIST files (`/work/shared/datasets/mnist`). They fail when the files
//! are absent, unless `GTAP_SKIP_REAL_DATA=1`.

use std::sync::OnceLock;

use gtap_data::{
    load_mnist, mnist_files, read_idx_images_gz, read_idx_labels_gz, FetchPolicy, MnistConfig,
    MnistData, MnistFiles, Split,
};

use crate::fixtures::real_mnist_dir;

const TRAIN_HISTOGRAM: [usize; 10] = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949];
const TEST_HISTOGRAM: [usize; 10] = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009];

/// The real files, checksums verified (once per test binary).
fn files() -> Option<&'static MnistFiles> {
    static FILES: OnceLock<MnistFiles> = OnceLock::new();
    let dir = real_mnist_dir()?;
    Some(FILES.get_or_init(|| mnist_files(&dir, FetchPolicy::Never).unwrap()))
}

/// MNIST with the default configuration (loaded once per test binary).
fn default_data() -> Option<&'static MnistData> {
    static DATA: OnceLock<MnistData> = OnceLock::new();
    let files = files()?;
    Some(DATA.get_or_init(|| load_mnist(files, &MnistConfig::default()).unwrap()))
}

fn add(a: Vec<usize>, b: Vec<usize>) -> Vec<usize> {
    a.iter().zip(&b).map(|(x, y)| x + y).collect()
}

#[test]
fn real_checksums_verify() {
    let Some(files) = files() else { return };
    files.verify().unwrap();
}

#[test]
fn real_counts_and_first_label() {
    let Some(files) = files() else { return };
    let labels = read_idx_labels_gz(&files.train_labels).unwrap();
    assert_eq!(labels.len(), 60_000);
    assert_eq!(labels[0], 5);
    assert_eq!(
        read_idx_labels_gz(&files.test_labels).unwrap().len(),
        10_000
    );
    let test_images = read_idx_images_gz(&files.test_images).unwrap();
    assert_eq!(
        (test_images.count, test_images.rows, test_images.cols),
        (10_000, 28, 28)
    );
}

#[test]
fn real_default_split() {
    let Some(data) = default_data() else { return };
    assert_eq!(
        (data.train.len(), data.probe.len(), data.test.len()),
        (55_000, 5_000, 10_000)
    );
    let all = add(data.train.class_counts(10), data.probe.class_counts(10));
    assert_eq!(all, TRAIN_HISTOGRAM);
    assert_eq!(all.iter().sum::<usize>(), 60_000);
    assert_eq!(data.test.class_counts(10), TEST_HISTOGRAM);
    // Example 0 (a 5) is in train or probe.
    let first = |s: &Split| (s.indices().first() == Some(&0)).then(|| s.labels()[0]);
    assert_eq!(first(&data.train).or(first(&data.probe)), Some(5));
}

#[test]
fn real_normalisation_matches_the_data() {
    let Some(data) = default_data() else { return };
    let (mut sum, mut sq, mut n) = (0f64, 0f64, 0f64);
    for s in [&data.train, &data.probe] {
        for &p in s.pixels() {
            let x = f64::from(p) / 255.0;
            sum += x;
            sq += x * x;
            n += 1.0;
        }
    }
    let mean = sum / n;
    let std = (sq / n - mean * mean).sqrt();
    assert!((mean - 0.1307).abs() < 5e-4, "mean {mean}");
    assert!((std - 0.3081).abs() < 5e-4, "std {std}");
}

#[test]
fn real_digits_zero_and_one() {
    let Some(files) = files() else { return };
    let cfg = MnistConfig {
        classes: Some(vec![0, 1]),
        ..Default::default()
    };
    let data = load_mnist(files, &cfg).unwrap();
    assert_eq!(data.train.len() + data.probe.len(), 12_665);
    assert_eq!((data.train.len(), data.probe.len()), (7_665, 5_000));
    assert_eq!(data.test.len(), 2_115);
    assert_eq!(data.test.class_counts(10)[..2], [980, 1135]);
}

#[test]
fn real_probe_split_round_trips_through_a_file() {
    let Some(data) = default_data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probe.split");
    data.probe.write_to(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        32 + 5_000 * (4 + 784 + 1)
    );
    assert_eq!(&Split::read_from(&path).unwrap(), &data.probe);
}
