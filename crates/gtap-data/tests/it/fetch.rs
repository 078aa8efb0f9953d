//! Locating and fetching files. Downloads only ever go to 127.0.0.1.

use std::collections::HashMap;
use std::path::Path;

use gtap_data::{
    download_verified, mnist_files, sha256_bytes, DataError, FetchPolicy, MNIST_SHA256,
    TEST_LABELS, TRAIN_IMAGES,
};

use crate::fixtures::{assert_mentions, dead_url, mnist_fixture, real_mnist_dir, serve};

const ALL_FOUR: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

/// File names in `dir`, sorted (to see that no temporary file was left behind).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn missing_files_with_never_give_one_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let err = mnist_files(dir.path(), FetchPolicy::Never).unwrap_err();
    assert!(matches!(err, DataError::Missing { .. }));
    let msg = err.to_string();
    assert_mentions(&msg, &ALL_FOUR);
    assert_mentions(
        &msg,
        &[
            "MNIST files missing",
            &dir.path().display().to_string(),
            &dir.path().join("mnist").display().to_string(),
            "downloading is disabled (FetchPolicy::Never)",
            "--data-dir",
            "GTAP_DATA_DIR",
        ],
    );
    assert!(
        listing(dir.path()).is_empty(),
        "Never must not write anything"
    );
}

#[test]
fn only_the_missing_files_are_listed_as_missing() {
    let dir = tempfile::tempdir().unwrap();
    mnist_fixture(dir.path(), 1, 1);
    std::fs::remove_file(dir.path().join(TEST_LABELS)).unwrap();
    let msg = mnist_files(dir.path(), FetchPolicy::Never)
        .unwrap_err()
        .to_string();
    assert_mentions(
        &msg,
        &["MNIST files missing: t10k-labels-idx1-ubyte.gz not found"],
    );
}

#[test]
fn nonexistent_directory_is_said_to_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("nope");
    let msg = mnist_files(&absent, FetchPolicy::Never)
        .unwrap_err()
        .to_string();
    assert_mentions(&msg, &[&format!("{} (does not exist)", absent.display())]);
    assert!(!absent.exists());
}

#[test]
fn wrong_checksum_names_file_expected_and_actual() {
    // Files in the `mnist/` subdirectory are found too; these fixtures are not the real files.
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("mnist");
    std::fs::create_dir(&sub).unwrap();
    let files = mnist_fixture(&sub, 3, 2);
    let actual = sha256_bytes(&std::fs::read(&files.train_images).unwrap());
    let err = mnist_files(dir.path(), FetchPolicy::Never).unwrap_err();
    assert!(matches!(err, DataError::Checksum { .. }));
    assert_mentions(
        &err.to_string(),
        &[
            &sub.join(TRAIN_IMAGES).display().to_string(),
            "sha256 mismatch",
            &format!("expected {}", MNIST_SHA256[0].1),
            &format!("found {actual}"),
        ],
    );
}

#[test]
fn failed_download_names_url_cause_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dead_url();
    let err = mnist_files(dir.path(), FetchPolicy::DownloadFrom(vec![dead.clone()])).unwrap_err();
    let msg = err.to_string();
    assert_mentions(&msg, &ALL_FOUR);
    assert_mentions(
        &msg,
        &[
            &format!("download from {dead}{TRAIN_IMAGES} failed: "),
            "--data-dir",
            "GTAP_DATA_DIR",
        ],
    );
    assert!(
        listing(dir.path()).is_empty(),
        "left behind: {:?}",
        listing(dir.path())
    );
}

#[test]
fn every_mirror_is_tried_and_bad_bytes_are_rejected() {
    // The second mirror serves the wrong bytes: the checksum rejects them, nothing stays.
    let dir = tempfile::tempdir().unwrap();
    let dead = dead_url();
    let wrong = serve(HashMap::from([(
        TRAIN_IMAGES.to_string(),
        b"not mnist".to_vec(),
    )]));
    let policy = FetchPolicy::DownloadFrom(vec![dead.clone(), wrong.clone()]);
    let msg = mnist_files(dir.path(), policy).unwrap_err().to_string();
    assert_mentions(
        &msg,
        &[
            &format!("download from {dead}{TRAIN_IMAGES} failed"),
            &format!("download from {wrong}{TRAIN_IMAGES} failed: sha256 mismatch"),
            MNIST_SHA256[0].1,
            &sha256_bytes(b"not mnist"),
        ],
    );
    assert!(
        listing(dir.path()).is_empty(),
        "left behind: {:?}",
        listing(dir.path())
    );
}

#[test]
fn download_verified_writes_only_verified_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let base = serve(HashMap::from([("f.bin".to_string(), b"abc".to_vec())]));
    let dest = dir.path().join("sub").join("f.bin");
    let good = sha256_bytes(b"abc");

    download_verified(&format!("{base}f.bin"), &dest, &good).unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"abc");
    assert_eq!(listing(&dir.path().join("sub")), ["f.bin"]);

    let dest2 = dir.path().join("g.bin");
    let err = download_verified(&format!("{base}f.bin"), &dest2, &sha256_bytes(b"x")).unwrap_err();
    assert!(matches!(err, DataError::Download { .. }));
    assert_mentions(
        &err.to_string(),
        &[&dest2.display().to_string(), "sha256 mismatch"],
    );

    let err = download_verified(&format!("{base}missing"), &dest2, &good).unwrap_err();
    assert_mentions(&err.to_string(), &[&format!("{base}missing"), "404"]);
    assert_eq!(listing(dir.path()), ["sub"]);
}

#[test]
fn download_of_real_files_from_a_local_mirror() {
    let Some(real) = real_mnist_dir() else { return };
    let files: HashMap<String, Vec<u8>> = ALL_FOUR
        .iter()
        .map(|n| (format!("mnist/{n}"), std::fs::read(real.join(n)).unwrap()))
        .collect();
    let base = serve(files);
    let dir = tempfile::tempdir().unwrap();
    let policy = FetchPolicy::DownloadFrom(vec![dead_url(), format!("{base}mnist")]);
    let found = mnist_files(dir.path(), policy).unwrap();
    assert_eq!(found.train_images, dir.path().join(TRAIN_IMAGES));
    assert_eq!(found.test_labels, dir.path().join(TEST_LABELS));
    assert_eq!(listing(dir.path()), {
        let mut v = ALL_FOUR.to_vec();
        v.sort();
        v
    });
    // Second call finds them locally and needs no mirror.
    assert_eq!(mnist_files(dir.path(), FetchPolicy::Never).unwrap(), found);
}
