//! Loading MNIST-shaped fixtures: contents, splits, class filter and file-level errors.

use std::collections::BTreeSet;

use gtap_data::{load_mnist, DataError, MnistConfig, MnistData, MnistFiles, Normalisation, Split};

use crate::fixtures::{
    assert_mentions, gz, idx_images, idx_labels, image_pixels, mnist_fixture, write,
};

fn load(files: &MnistFiles, probe_size: usize, seed: u64, classes: Option<Vec<u8>>) -> MnistData {
    let cfg = MnistConfig {
        probe_size,
        split_seed: seed,
        classes,
        ..Default::default()
    };
    load_mnist(files, &cfg).unwrap()
}

/// Each example's pixels and label are those of its original index in the fixture.
fn check_contents(split: &Split) {
    assert_eq!(split.len(), split.labels().len());
    assert_eq!(split.pixels().len(), split.len() * 784);
    assert_eq!(split.images().len(), split.len() * 784);
    for (k, &i) in split.indices().iter().enumerate() {
        let i = i as usize;
        assert_eq!(split.labels()[k], (i % 10) as u8);
        assert_eq!(
            &split.pixels()[k * 784..(k + 1) * 784],
            &image_pixels(i)[..]
        );
        let expected: Vec<f32> = image_pixels(i)
            .iter()
            .map(|&p| Normalisation::MNIST.apply(p))
            .collect();
        assert_eq!(split.image(k), &expected[..]);
    }
    assert!(
        split.indices().windows(2).all(|w| w[0] < w[1]),
        "not ascending"
    );
}

#[test]
fn default_config() {
    let cfg = MnistConfig::default();
    assert_eq!(
        (cfg.probe_size, cfg.split_seed, cfg.classes),
        (5000, 0, None)
    );
    assert_eq!(cfg.normalisation, Some(Normalisation::MNIST));
}

#[test]
fn splits_have_exact_contents_and_partition_the_training_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = mnist_fixture(dir.path(), 40, 7);
    let data = load(&files, 10, 3, None);
    assert_eq!(
        (data.train.len(), data.probe.len(), data.test.len()),
        (30, 10, 7)
    );
    assert_eq!(data.num_classes(), 10);
    for split in [&data.train, &data.probe, &data.test] {
        check_contents(split);
    }
    let train: BTreeSet<u32> = data.train.indices().iter().copied().collect();
    let probe: BTreeSet<u32> = data.probe.indices().iter().copied().collect();
    assert!(train.is_disjoint(&probe));
    assert_eq!(train.union(&probe).count(), 40);
    assert_eq!(data.test.indices(), (0..7).collect::<Vec<u32>>());
}

#[test]
fn split_is_deterministic_in_the_seed() {
    let dir = tempfile::tempdir().unwrap();
    let files = mnist_fixture(dir.path(), 50, 1);
    let a = load(&files, 10, 7, None);
    let b = load(&files, 10, 7, None);
    let c = load(&files, 10, 8, None);
    assert_eq!(a, b);
    assert_ne!(a.probe.indices(), c.probe.indices());
    assert_eq!(c.probe.len(), 10);
}

#[test]
fn class_filter_applies_to_all_splits_and_keeps_labels() {
    let dir = tempfile::tempdir().unwrap();
    // 60 training examples, labels i % 10: 12 of them are 0 or 1; test: 6 of 25.
    let files = mnist_fixture(dir.path(), 60, 25);
    let data = load(&files, 4, 1, Some(vec![1, 0]));
    assert_eq!(
        (data.train.len(), data.probe.len(), data.test.len()),
        (8, 4, 6)
    );
    for split in [&data.train, &data.probe, &data.test] {
        check_contents(split);
        assert!(
            split.labels().iter().all(|&l| l <= 1),
            "{:?}",
            split.labels()
        );
    }
    assert_eq!(data.test.labels(), [0, 1, 0, 1, 0, 1]);
    assert_eq!(data.num_classes(), 10);
}

#[test]
fn zero_probe_size_keeps_everything_in_train() {
    let dir = tempfile::tempdir().unwrap();
    let files = mnist_fixture(dir.path(), 5, 1);
    let data = load(&files, 0, 0, None);
    assert_eq!((data.train.len(), data.probe.len()), (5, 0));
    assert!(data.probe.is_empty());
}

#[test]
fn bad_configurations_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let files = mnist_fixture(dir.path(), 60, 5);
    let check = |probe_size: usize, classes: Option<Vec<u8>>, parts: &[&str]| {
        let cfg = MnistConfig {
            probe_size,
            classes,
            ..Default::default()
        };
        let err = load_mnist(&files, &cfg).unwrap_err();
        assert!(matches!(err, DataError::Config { .. }), "{err}");
        assert_mentions(&err.to_string(), parts);
    };
    let labels = files.train_labels.display().to_string();
    check(
        60,
        None,
        &[
            "probe_size 60 must be smaller than the 60 training examples",
            &labels,
        ],
    );
    check(
        12,
        Some(vec![0, 1]),
        &["probe_size 12", "12 training examples of classes [0, 1]"],
    );
    check(1, Some(vec![]), &["classes is empty"]);
    check(
        1,
        Some(vec![3, 10]),
        &["class 10 in [3, 10] is not a digit 0-9"],
    );
}

#[test]
fn count_mismatch_names_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = mnist_fixture(dir.path(), 5, 3);
    files.train_labels = write(
        dir.path(),
        "short-labels.gz",
        &gz(&idx_labels(&[1, 2, 3, 4])),
    );
    let err = load_mnist(
        &files,
        &MnistConfig {
            probe_size: 1,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(
        err,
        DataError::CountMismatch {
            images: 5,
            labels: 4,
            ..
        }
    ));
    assert_mentions(
        &err.to_string(),
        &[
            &format!("{} holds 5 images", files.train_images.display()),
            &format!("{} holds 4 labels", files.train_labels.display()),
        ],
    );
}

#[test]
fn label_above_nine_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = mnist_fixture(dir.path(), 3, 3);
    files.test_labels = write(dir.path(), "bad-labels.gz", &gz(&idx_labels(&[1, 12, 3])));
    let err = load_mnist(
        &files,
        &MnistConfig {
            probe_size: 1,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(
        err,
        DataError::BadLabel {
            index: 1,
            label: 12,
            ..
        }
    ));
    assert_mentions(
        &err.to_string(),
        &[
            &files.test_labels.display().to_string(),
            "label 12 at index 1",
            "0..=9",
        ],
    );
}

#[test]
fn images_must_be_28_by_28() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = mnist_fixture(dir.path(), 3, 2);
    files.test_images = write(
        dir.path(),
        "small.gz",
        &gz(&idx_images(2, 14, 14, &[0; 2 * 196])),
    );
    let err = load_mnist(
        &files,
        &MnistConfig {
            probe_size: 1,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_mentions(
        &err.to_string(),
        &[
            &files.test_images.display().to_string(),
            "expected 28x28 images, found 14x14",
        ],
    );
}

#[test]
fn file_errors_propagate_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut files = mnist_fixture(dir.path(), 3, 2);
    files.train_images = write(dir.path(), "corrupt.gz", b"garbage");
    let err = load_mnist(
        &files,
        &MnistConfig {
            probe_size: 1,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert_mentions(
        &err.to_string(),
        &[&files.train_images.display().to_string(), "corrupt gzip"],
    );
}
