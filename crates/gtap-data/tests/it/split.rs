//! Seeded permutation, normalisation and the split file format.

use std::path::Path;

use gtap_data::{seeded_permutation, DataError, Normalisation, Split};

use crate::fixtures::{assert_mentions, write};

#[test]
fn permutation_is_a_permutation_and_seeded() {
    for n in [0, 1, 2, 17, 1000] {
        let mut p = seeded_permutation(n, 42);
        assert_eq!(p, seeded_permutation(n, 42));
        p.sort_unstable();
        assert_eq!(p, (0..n).collect::<Vec<_>>());
    }
    assert_ne!(seeded_permutation(1000, 1), seeded_permutation(1000, 2));
}

/// Pins the permutation so that a change of split (and of every cached result) is deliberate.
#[test]
fn permutation_snapshot() {
    assert_eq!(seeded_permutation(10, 0), SNAPSHOT_10_SEED_0);
}
const SNAPSHOT_10_SEED_0: [usize; 10] = [3, 0, 5, 9, 6, 7, 2, 4, 1, 8];

#[test]
fn normalisation_values() {
    let check = |n: Normalisation, p: u8, expected: f32| {
        assert!(
            (n.apply(p) - expected).abs() < 1e-6,
            "{n:?} {p}: {} vs {expected}",
            n.apply(p)
        );
    };
    check(Normalisation::UnitRange, 0, 0.0);
    check(Normalisation::UnitRange, 255, 1.0);
    check(Normalisation::UnitRange, 51, 0.2);
    check(Normalisation::Identity, 0, 0.0);
    check(Normalisation::Identity, 1, 1.0);
    check(Normalisation::Identity, 255, 255.0);
    check(Normalisation::MNIST, 0, -0.1307 / 0.3081);
    check(Normalisation::MNIST, 255, (1.0 - 0.1307) / 0.3081);
    check(
        Normalisation::MeanStd {
            mean: 0.5,
            std: 0.5,
        },
        255,
        1.0,
    );
}

fn sample(norm: Normalisation) -> Split {
    let pixels: Vec<u8> = (0..12).map(|i| i * 20).collect();
    Split::from_raw(pixels, vec![3, 9, 0], vec![2, 5, 11], 4, norm).unwrap()
}

#[test]
fn from_raw_checks_lengths() {
    let s = sample(Normalisation::UnitRange);
    assert_eq!((s.len(), s.image_len()), (3, 4));
    assert_eq!(
        s.image(1),
        [80.0 / 255.0, 100.0 / 255.0, 120.0 / 255.0, 140.0 / 255.0]
    );
    assert_eq!(s.class_counts(10), [1, 0, 0, 1, 0, 0, 0, 0, 0, 1]);
    let err = Split::from_raw(
        vec![0; 11],
        vec![1, 2, 3],
        vec![0, 1, 2],
        4,
        Normalisation::MNIST,
    )
    .unwrap_err();
    assert!(matches!(err, DataError::Config { .. }));
    assert!(Split::from_raw(
        vec![0; 12],
        vec![1, 2, 3],
        vec![0, 1],
        4,
        Normalisation::MNIST
    )
    .is_err());
}

#[test]
fn split_file_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    for norm in [
        Normalisation::MNIST,
        Normalisation::UnitRange,
        Normalisation::Identity,
    ] {
        let s = sample(norm);
        let path = dir.path().join("split.bin");
        s.write_to(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            32 + 3 * (4 + 4 + 1)
        );
        assert_eq!(Split::read_from(&path).unwrap(), s);
    }
    let empty = Split::from_raw(vec![], vec![], vec![], 784, Normalisation::MNIST).unwrap();
    assert_eq!(
        Split::from_bytes(&empty.to_bytes(), Path::new("mem")).unwrap(),
        empty
    );
}

#[test]
fn malformed_split_files_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let good = sample(Normalisation::MNIST).to_bytes();
    let check = |name: &str, bytes: &[u8], detail: &str| {
        let path = write(dir.path(), name, bytes);
        let err = Split::read_from(&path).unwrap_err();
        assert!(matches!(err, DataError::BadSplitFile { .. }), "{err}");
        assert_mentions(
            &err.to_string(),
            &[&path.display().to_string(), "invalid split file", detail],
        );
    };
    check("short", &good[..20], "shorter than the 32-byte header");
    let mut magic = good.clone();
    magic[0] = b'X';
    check("magic", &magic, "wrong magic");
    check(
        "truncated",
        &good[..good.len() - 1],
        "needs 59 bytes, but the file holds 58",
    );
    let mut longer = good.clone();
    longer.push(0);
    check("longer", &longer, "but the file holds 60");
    let mut tag = good.clone();
    tag[12] = 7;
    check("tag", &tag, "unknown normalisation tag 7");
    let mut std = good.clone();
    std[20..24].copy_from_slice(&0f32.to_le_bytes());
    check("std", &std, "std 0 is invalid");

    let err = Split::read_from(&dir.path().join("absent")).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }));
}
