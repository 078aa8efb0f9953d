//! IDX parsing: exact contents, and one clear error per kind of damage.

use std::path::Path;

use gtap_data::{
    parse_idx_images, parse_idx_labels, read_idx_images_gz, read_idx_labels_gz, DataError,
    IdxImages,
};

use crate::fixtures::{assert_mentions, gz, idx_images, idx_labels, write};

#[test]
fn good_images_parse_to_exact_pixels() {
    let pixels: Vec<u8> = (0..12).collect();
    let parsed = parse_idx_images(&idx_images(2, 2, 3, &pixels)[..], Path::new("mem")).unwrap();
    let expected = IdxImages {
        count: 2,
        rows: 2,
        cols: 3,
        pixels,
    };
    assert_eq!(parsed, expected);

    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "img.gz",
        &gz(&idx_images(2, 2, 3, &expected.pixels)),
    );
    assert_eq!(read_idx_images_gz(&path).unwrap(), expected);
}

#[test]
fn good_labels_parse_to_exact_values() {
    let labels = [5u8, 0, 4, 1, 9];
    let parsed = parse_idx_labels(&idx_labels(&labels)[..], Path::new("mem")).unwrap();
    assert_eq!(parsed, labels);

    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "lab.gz", &gz(&idx_labels(&labels)));
    assert_eq!(read_idx_labels_gz(&path).unwrap(), labels);
}

#[test]
fn empty_files_are_valid() {
    let images = parse_idx_images(&idx_images(0, 28, 28, &[])[..], Path::new("mem")).unwrap();
    assert_eq!((images.count, images.pixels.len()), (0, 0));
    assert!(parse_idx_labels(&idx_labels(&[])[..], Path::new("mem"))
        .unwrap()
        .is_empty());
}

/// Writes `bytes` gzip-compressed as `name`, reads it as images (or labels) and returns the error.
fn gz_error(name: &str, bytes: &[u8], as_images: bool) -> (String, DataError) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), name, &gz(bytes));
    let err = if as_images {
        read_idx_images_gz(&path).unwrap_err()
    } else {
        read_idx_labels_gz(&path).unwrap_err()
    };
    (path.display().to_string(), err)
}

#[test]
fn wrong_magic_says_expected_and_found() {
    // A label file passed as images, and an image file passed as labels.
    let (path, err) = gz_error("train-images-idx3-ubyte.gz", &idx_labels(&[1, 2]), true);
    assert!(matches!(
        err,
        DataError::BadMagic {
            expected: 0x803,
            found: 0x801,
            ..
        }
    ));
    assert_mentions(
        &err.to_string(),
        &[
            &path,
            "wrong IDX magic",
            "expected 0x00000803 (images)",
            "found 0x00000801",
        ],
    );

    let (path, err) = gz_error("labels.gz", &idx_images(1, 1, 1, &[0]), false);
    assert_mentions(
        &err.to_string(),
        &[&path, "expected 0x00000801 (labels)", "found 0x00000803"],
    );
}

#[test]
fn truncated_payload_says_expected_and_actual_bytes() {
    // Header: 3 images of 2x2 = 12 pixel bytes; only 10 present.
    let (path, err) = gz_error("img.gz", &idx_images(3, 2, 2, &[0; 10]), true);
    assert!(matches!(
        err,
        DataError::Truncated {
            expected: 28,
            actual: 26,
            ..
        }
    ));
    assert_mentions(
        &err.to_string(),
        &[
            &path,
            "truncated",
            "expected 28 bytes",
            "3 images of 2x2",
            "found 26",
        ],
    );

    let (path, err) = gz_error("lab.gz", &idx_labels(&[1, 2, 3])[..9], false);
    assert_mentions(
        &err.to_string(),
        &[&path, "truncated", "expected 11 bytes", "found 9"],
    );
}

#[test]
fn truncated_header_is_reported() {
    let (path, err) = gz_error("img.gz", &idx_images(3, 28, 28, &[])[..10], true);
    assert_mentions(
        &err.to_string(),
        &[
            &path,
            "truncated",
            "expected 16 bytes (16-byte header)",
            "found 10",
        ],
    );
}

#[test]
fn trailing_bytes_are_reported() {
    let (path, err) = gz_error("img.gz", &idx_images(1, 2, 2, &[0; 5]), true);
    assert!(matches!(err, DataError::TrailingData { expected: 20, .. }));
    assert_mentions(&err.to_string(), &[&path, "trailing data", "20 bytes"]);
}

#[test]
fn corrupt_gzip_is_reported() {
    let good = gz(&idx_images(4, 28, 28, &[7; 4 * 784]));
    let dir = tempfile::tempdir().unwrap();
    let check = |name: &str, bytes: &[u8], detail: &str| {
        let path = write(dir.path(), name, bytes);
        let err = read_idx_images_gz(&path).unwrap_err();
        assert!(matches!(err, DataError::Gzip { .. }), "{name}: {err}");
        assert_mentions(
            &err.to_string(),
            &[&path.display().to_string(), "corrupt gzip", detail],
        );
    };
    // Not gzip at all (an uncompressed IDX file), and an empty file.
    check("plain.gz", &idx_images(1, 1, 1, &[0]), "not a gzip file");
    check("empty.gz", &[], "found an empty file");
    // A gzip stream cut in half.
    check("cut.gz", &good[..good.len() / 2], "");
    // A damaged byte in the compressed data (caught by inflate or the CRC).
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    check("flipped.gz", &flipped, "");
    // A damaged CRC in the trailer.
    let mut bad_crc = good.clone();
    let at = bad_crc.len() - 8;
    bad_crc[at] ^= 0x01;
    check("crc.gz", &bad_crc, "");
}

#[test]
fn missing_file_names_the_path() {
    let err = read_idx_images_gz(Path::new("/nonexistent/dir/img.gz")).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }));
    assert_mentions(&err.to_string(), &["/nonexistent/dir/img.gz"]);
}
