//! Hostile inputs: every malformed archive, image, IDX or split file is one error naming what is
//! wrong, never a panic or an allocation the header asked for; property tests mutate valid
//! fixtures at random.

use std::io::Cursor;
use std::path::Path;

use gtap_data::{
    decode_jpeg, load_tiny_imagenet, parse_idx_images, parse_idx_labels, DataError, Normalisation,
    Split, TinyImagenetConfig, TinyImagenetSource,
};
use proptest::prelude::*;

use crate::fixtures::{idx_images, jpeg, jpeg_claiming, write_zip, write_zip_with};
use crate::tiny_imagenet::{entries, load_zip, small};

const ROOT: &str = "tiny-imagenet-200/";

fn refusal(result: Result<gtap_data::TinyImagenetData, DataError>) -> String {
    match result {
        Ok(_) => panic!("a malformed input loaded"),
        Err(e) => e.to_string(),
    }
}

fn check(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "{message:?} lacks {part:?}");
    }
}

fn load_path(path: &Path) -> Result<gtap_data::TinyImagenetData, DataError> {
    load_tiny_imagenet(&TinyImagenetSource::Zip(path.to_owned()), &small(1))
}

#[test]
fn an_entry_declaring_a_huge_size_is_refused_before_reading() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("subset.zip");
    write_zip(&path, &entries(|_| {}));
    // Patch the central directory's uncompressed size of one image to 0xFFFFFFF0 bytes.
    let mut bytes = std::fs::read(&path).unwrap();
    let name = format!("{ROOT}train/n01/images/n01_0.JPEG");
    let at = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == [0x50, 0x4b, 0x01, 0x02])
        .map(|(i, _)| i)
        .find(|&i| bytes[i + 46..].starts_with(name.as_bytes()))
        .unwrap();
    bytes[at + 24..at + 28].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let message = refusal(load_path(&path));
    check(&message, &["n01_0.JPEG"]);
}

#[test]
fn a_deflate_bomb_is_cut_at_the_entry_cap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("subset.zip");
    let bomb = format!("{ROOT}train/n01/images/n01_1.JPEG");
    let files = entries(|e| {
        for (name, bytes) in e.iter_mut() {
            if *name == bomb {
                *bytes = vec![0u8; 64 << 20];
            }
        }
    });
    write_zip_with(&path, &files, |n| n == bomb);
    assert!(std::fs::metadata(&path).unwrap().len() < 1 << 20);
    let message = refusal(load_path(&path));
    check(&message, &["n01_1.JPEG", "more than the 1048576 allowed"]);
}

#[test]
fn image_size_truncation_and_corruption_are_refused_naming_the_entry() {
    let message = decode_jpeg(&jpeg_claiming(13000, 13000), "big.JPEG")
        .unwrap_err()
        .to_string();
    check(
        &message,
        &["big.JPEG", "13000x13000 pixels, expected 64x64"],
    );
    let whole = jpeg([10, 20, 30], false);
    let message = decode_jpeg(&whole[..whole.len() - 100], "cut.JPEG")
        .unwrap_err()
        .to_string();
    check(&message, &["cut.JPEG", "truncated"]);
    assert!(decode_jpeg(&whole, "ok.JPEG").is_ok());

    let name = format!("{ROOT}train/n02/images/n02_1.JPEG");
    let message = refusal(load_zip(
        |e| {
            for (n, bytes) in e.iter_mut() {
                if *n == name {
                    let keep = bytes.len() / 2;
                    bytes.truncate(keep);
                }
            }
        },
        &small(1),
    ));
    // Cut in half, the decoder itself finds the end missing.
    check(&message, &["n02_1.JPEG", "Jpeg"]);
}

#[test]
fn a_class_listed_twice_is_refused() {
    let message = refusal(load_zip(
        |e| e[0].1 = b"n01\nn02\nn01\n".to_vec(),
        &small(1),
    ));
    check(&message, &["wnids.txt", "class n01 is listed twice"]);
}

#[test]
fn a_validation_image_of_an_unlisted_class_is_refused_with_a_class_limit_too() {
    let annotations = b"val_0.JPEG\tn99\t0\t0\t63\t63\nval_1.JPEG\tn01\t0\t0\t63\t63\nval_2.JPEG\tn02\t1\t1\t60\t60\n".to_vec();
    for classes in [None, Some(1)] {
        let cfg = TinyImagenetConfig {
            classes,
            ..small(1)
        };
        let message = refusal(load_zip(
            |e| {
                let last = e.len() - 1;
                e[last].1 = annotations.clone();
            },
            &cfg,
        ));
        check(&message, &["val_0.JPEG", "n99", "wnids.txt does not list"]);
    }
    // A listed class beyond the limit is left out, as before.
    let cfg = TinyImagenetConfig {
        classes: Some(1),
        ..small(1)
    };
    let data = load_zip(|_| {}, &cfg).unwrap();
    assert_eq!(data.test.len(), 1);
}

#[test]
fn an_entry_name_that_leaves_the_folder_is_refused() {
    for bad in [
        format!("{ROOT}train/n01/images/../n01_9.JPEG"),
        "/etc/n01_9.JPEG".to_owned(),
        format!("{ROOT}./train/n01/images/n01_9.JPEG"),
    ] {
        let message = refusal(load_zip(
            |e| e.push((bad.clone(), jpeg([1, 2, 3], false))),
            &small(1),
        ));
        check(&message, &[bad.as_str(), "leaves the archive's folder"]);
    }
}

#[cfg(unix)]
#[test]
fn a_link_cycle_in_an_extracted_folder_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tiny-imagenet-200");
    for (name, bytes) in entries(|_| {}) {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    std::os::unix::fs::symlink(&root, root.join("train/n01/images/loop")).unwrap();
    std::os::unix::fs::symlink("..", root.join("val/up")).unwrap();
    let data = load_tiny_imagenet(&TinyImagenetSource::Dir(root), &small(1)).unwrap();
    assert_eq!(data.train.len() + data.probe.len(), 6);
    assert_eq!(data.test.len(), 3);
}

#[test]
fn an_idx_header_declaring_gigabytes_is_refused_before_reading() {
    let header = idx_images(1 << 20, 1000, 1000, &[]);
    let message = parse_idx_images(Cursor::new(header), Path::new("x-idx3-ubyte"))
        .unwrap_err()
        .to_string();
    check(&message, &["x-idx3-ubyte", "bytes allowed"]);
}

fn valid_split() -> Vec<u8> {
    let split = Split::from_raw(
        (0..4 * 9).map(|i| i as u8).collect(),
        vec![0, 1, 2, 3],
        vec![7, 8, 9, 10],
        9,
        Normalisation::UnitRange,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.split");
    split.write_to(&path).unwrap();
    std::fs::read(path).unwrap()
}

/// `bytes` with one byte replaced at `at` (modulo its length) and cut to `keep` of its length.
fn mutate(mut bytes: Vec<u8>, at: usize, value: u8, keep: f64) -> Vec<u8> {
    if !bytes.is_empty() {
        let i = at % bytes.len();
        bytes[i] = value;
    }
    let len = (bytes.len() as f64 * keep) as usize;
    bytes.truncate(len);
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn mutated_idx_files_give_a_value_or_an_error(at in 0usize..64, value: u8, keep in 0.0f64..1.2) {
        let images = idx_images(2, 3, 3, &[5; 18]);
        let _ = parse_idx_images(Cursor::new(mutate(images, at, value, keep)), Path::new("i"));
        let labels = crate::fixtures::idx_labels(&[1, 2, 3]);
        let _ = parse_idx_labels(Cursor::new(mutate(labels, at, value, keep)), Path::new("l"));
    }

    #[test]
    fn random_bytes_are_no_idx_file(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        prop_assert!(parse_idx_images(Cursor::new(&bytes), Path::new("r")).is_err() || bytes.len() >= 16);
    }

    #[test]
    fn mutated_split_files_give_a_value_or_an_error(at in 0usize..200, value: u8, keep in 0.0f64..1.2) {
        let _ = Split::from_bytes(&mutate(valid_split(), at, value, keep), Path::new("s"));
    }

    #[test]
    fn mutated_jpegs_give_an_image_or_an_error(at in 0usize..4000, value: u8, keep in 0.0f64..1.0) {
        let bytes = mutate(jpeg([30, 60, 90], false), at, value, keep);
        if let Ok(pixels) = decode_jpeg(&bytes, "m.JPEG") {
            prop_assert_eq!(pixels.len(), gtap_data::TINY_IMAGENET_IMAGE_LEN);
        }
    }

    #[test]
    fn mutated_zips_give_data_or_an_error(at in 0usize..60_000, value: u8, keep in 0.5f64..1.0) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subset.zip");
        write_zip(&path, &entries(|_| {}));
        let bytes = mutate(std::fs::read(&path).unwrap(), at, value, keep);
        std::fs::write(&path, bytes).unwrap();
        let _ = load_path(&path);
    }

    #[test]
    fn mutated_text_corpora_give_a_corpus_or_an_error(
        lines in proptest::collection::vec("[ -~;\t\"]{0,40}", 0..12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let text = lines.join("\n");
        for (format, name) in [(gtap_data::TextFormat::Csv, "t.csv"), (gtap_data::TextFormat::Lines, "t.txt")] {
            let path = dir.path().join(name);
            std::fs::write(&path, &text).unwrap();
            for dataset in [gtap_data::TextDataset::TweetsTopic, gtap_data::TextDataset::Emotion] {
                let _ = gtap_data::read_corpus(dataset, format, &path);
            }
        }
    }
}
