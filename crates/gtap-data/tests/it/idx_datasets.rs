//! Other datasets in MNIST's IDX layout (Fashion-MNIST, KMNIST): their folders, published MD5s,
//! downloads checked against them, their own normalisation, and parser errors when a copy is read
//! unverified.

use std::collections::HashMap;

use gtap_data::{
    idx_files, load_mnist, Checksum, DataError, FetchPolicy, IdxDataset, MnistConfig,
    Normalisation, FASHION_MNIST, KMNIST, MNIST, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES,
    TRAIN_LABELS,
};

use crate::fixtures::{assert_mentions, gz, idx_images, idx_labels, mnist_fixture, serve, write};

/// A dataset like Fashion-MNIST whose pinned MD5s are those of `files` (name → bytes).
fn pinned_to(files: &HashMap<String, Vec<u8>>) -> IdxDataset {
    let md5 = |name: &str| -> &'static str {
        use md5::Digest;
        Box::leak(hex::encode(md5::Md5::digest(&files[name])).into_boxed_str())
    };
    IdxDataset {
        checksums: [
            Checksum::Md5(md5(TRAIN_IMAGES)),
            Checksum::Md5(md5(TRAIN_LABELS)),
            Checksum::Md5(md5(TEST_IMAGES)),
            Checksum::Md5(md5(TEST_LABELS)),
        ],
        ..FASHION_MNIST
    }
}

fn fixture_bytes(n: usize) -> HashMap<String, Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    let files = mnist_fixture(dir.path(), n, n);
    [
        (TRAIN_IMAGES, files.train_images),
        (TRAIN_LABELS, files.train_labels),
        (TEST_IMAGES, files.test_images),
        (TEST_LABELS, files.test_labels),
    ]
    .into_iter()
    .map(|(name, path)| (name.to_owned(), std::fs::read(path).unwrap()))
    .collect()
}

#[test]
fn datasets_are_named_and_live_in_their_own_folders() {
    assert_eq!(IdxDataset::named("fashion-mnist"), Some(FASHION_MNIST));
    assert_eq!(IdxDataset::named("kmnist"), Some(KMNIST));
    assert_eq!(IdxDataset::named("mnist"), Some(MNIST));
    assert_eq!(IdxDataset::named("emnist"), None);
    assert_eq!(FASHION_MNIST.folders, ["fashion-mnist"]);
    assert_eq!(
        FASHION_MNIST.checksums[0],
        Checksum::Md5("8d4fb7e6c68d591d4c3dfef9ec88bf0d")
    );
    // MNIST files at the top of the data directory are not Fashion-MNIST's.
    let dir = tempfile::tempdir().unwrap();
    mnist_fixture(dir.path(), 20, 10);
    let err = idx_files(&FASHION_MNIST, dir.path(), FetchPolicy::Never, true).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }), "{err}");
    assert_mentions(&err.to_string(), &["Fashion-MNIST", "fashion-mnist"]);
}

#[test]
fn files_on_disk_are_checked_against_the_published_md5() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("kmnist");
    std::fs::create_dir_all(&folder).unwrap();
    mnist_fixture(&folder, 20, 10);
    let err = idx_files(&KMNIST, dir.path(), FetchPolicy::Never, true).unwrap_err();
    assert!(
        matches!(
            err,
            DataError::Checksum {
                algorithm: "md5",
                ..
            }
        ),
        "{err}"
    );
    assert_mentions(
        &err.to_string(),
        &[
            TRAIN_IMAGES,
            "md5 mismatch",
            "bdb82020997e1d708af4cf47b453dcf7",
        ],
    );
    // Unverified, the same files load, normalised by their own training images.
    let files = idx_files(&KMNIST, dir.path(), FetchPolicy::Never, false).unwrap();
    let data = load_mnist(
        &files,
        &MnistConfig {
            probe_size: 5,
            normalisation: KMNIST.normalisation,
            dataset: KMNIST.title,
            ..MnistConfig::default()
        },
    )
    .unwrap();
    let Normalisation::MeanStd { mean, std } = data.train.normalisation() else {
        panic!("mean / std normalisation expected");
    };
    let pixels: Vec<f64> = (0..20)
        .flat_map(crate::fixtures::image_pixels)
        .map(|p| p as f64 / 255.0)
        .collect();
    let m = pixels.iter().sum::<f64>() / pixels.len() as f64;
    let s = (pixels.iter().map(|p| p * p).sum::<f64>() / pixels.len() as f64 - m * m).sqrt();
    assert_eq!(mean, ((m * 1e4).round() / 1e4) as f32);
    assert_eq!(std, ((s * 1e4).round() / 1e4) as f32);
}

#[test]
fn downloads_are_checked_against_the_md5_and_land_in_the_dataset_folder() {
    let files = fixture_bytes(12);
    let base = serve(files.clone());
    let dir = tempfile::tempdir().unwrap();
    let dataset = pinned_to(&files);
    let found = idx_files(
        &dataset,
        dir.path(),
        FetchPolicy::DownloadFrom(vec![base.clone()]),
        true,
    )
    .unwrap();
    assert_eq!(
        found.train_images,
        dir.path().join("fashion-mnist").join(TRAIN_IMAGES)
    );
    assert_eq!(
        std::fs::read(&found.test_labels).unwrap(),
        files[TEST_LABELS]
    );

    // A mirror serving other bytes: the download fails on the MD5 and leaves nothing behind.
    let mut wrong = files.clone();
    wrong.insert(TRAIN_LABELS.to_owned(), gz(&idx_labels(&[1, 2, 3])));
    let bad_base = serve(wrong);
    let empty = tempfile::tempdir().unwrap();
    let err = idx_files(
        &dataset,
        empty.path(),
        FetchPolicy::DownloadFrom(vec![bad_base]),
        true,
    )
    .unwrap_err();
    assert_mentions(&err.to_string(), &["md5 mismatch", TRAIN_LABELS]);
    assert!(!empty
        .path()
        .join("fashion-mnist")
        .join(TRAIN_LABELS)
        .exists());
}

#[test]
fn unverified_malformed_files_meet_the_parser_which_names_file_and_fault() {
    let setup = |name: &str, bytes: Vec<u8>| {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("fashion-mnist");
        std::fs::create_dir_all(&folder).unwrap();
        mnist_fixture(&folder, 20, 10);
        write(&folder, name, &bytes);
        let files = idx_files(&FASHION_MNIST, dir.path(), FetchPolicy::Never, false).unwrap();
        let cfg = MnistConfig {
            probe_size: 5,
            ..MnistConfig::default()
        };
        (dir, load_mnist(&files, &cfg).unwrap_err().to_string())
    };
    // Labels file where images belong: wrong magic.
    let (_d, message) = setup(TRAIN_IMAGES, gz(&idx_labels(&[0; 20])));
    assert_mentions(&message, &[TRAIN_IMAGES, "magic"]);
    // Fewer pixel bytes than the header declares: truncation.
    let mut short = idx_images(20, 28, 28, &vec![0; 20 * 784]);
    short.truncate(16 + 19 * 784);
    let (_d, message) = setup(TRAIN_IMAGES, gz(&short));
    assert_mentions(
        &message,
        &[TRAIN_IMAGES, "16-byte header + 20 images of 28x28"],
    );
    // 20 images but 7 labels: the counts disagree.
    let (_d, message) = setup(TRAIN_LABELS, gz(&idx_labels(&[0; 7])));
    assert_mentions(&message, &[TRAIN_LABELS, TRAIN_IMAGES, "20", "7"]);
}
