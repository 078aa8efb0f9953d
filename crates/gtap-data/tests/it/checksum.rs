//! SHA-256 of files.

use gtap_data::{sha256_bytes, sha256_file, verify_sha256, DataError};

use crate::fixtures::{assert_mentions, write};

const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

#[test]
fn sha256_of_known_content() {
    let dir = tempfile::tempdir().unwrap();
    let check = |content: &[u8], expected: &str| {
        let path = write(dir.path(), "f", content);
        assert_eq!(sha256_file(&path).unwrap(), expected);
        assert_eq!(sha256_bytes(content), expected);
    };
    check(b"abc", ABC_SHA256);
    check(
        b"",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    );
    // Larger than one 64 KiB read buffer.
    let big = vec![b'a'; 1_000_000];
    check(
        &big,
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
    );
}

#[test]
fn checksum_mismatch_names_file_expected_and_actual() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "data.gz", b"abd");
    verify_sha256(&write(dir.path(), "ok", b"abc"), &ABC_SHA256.to_uppercase()).unwrap();
    let err = verify_sha256(&path, ABC_SHA256).unwrap_err();
    assert!(matches!(err, DataError::Checksum { .. }));
    assert_mentions(
        &err.to_string(),
        &[
            &path.display().to_string(),
            "sha256 mismatch",
            &format!("expected {ABC_SHA256}"),
            &format!("found {}", sha256_bytes(b"abd")),
        ],
    );
}

#[test]
fn sha256_of_missing_file_names_it() {
    let err = sha256_file(std::path::Path::new("/nonexistent/x.gz")).unwrap_err();
    assert_mentions(&err.to_string(), &["/nonexistent/x.gz"]);
}
