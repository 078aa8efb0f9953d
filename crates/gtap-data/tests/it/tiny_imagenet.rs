//! Tiny ImageNet from zips the tests build (and the extracted layout): labels, channel-major
//! RGB, grayscale, limits, and one error naming the entry for a corrupt JPEG, a missing
//! annotation, a wrong layout or an official-size archive with another MD5; then the shared
//! subset.

use std::path::Path;

use crate::fixtures::{tiny_entries, write_zip};

use gtap_data::{
    load_tiny_imagenet, tiny_imagenet_source, DataError, TinyImagenetConfig, TinyImagenetSource,
    TINY_IMAGENET_IMAGE_LEN, TINY_IMAGENET_SIZE,
};

/// Two classes (`n01`, `n02`), 3 training images each (image 2 of `n02` in grayscale), 3
/// validation images; `edit` may change the entries before they are written.
pub(crate) fn entries(edit: impl FnOnce(&mut Vec<(String, Vec<u8>)>)) -> Vec<(String, Vec<u8>)> {
    tiny_entries(3, edit)
}

pub(crate) fn small(probe: usize) -> TinyImagenetConfig {
    TinyImagenetConfig {
        probe_size: probe,
        ..Default::default()
    }
}

pub(crate) fn load_zip(
    edit: impl FnOnce(&mut Vec<(String, Vec<u8>)>),
    cfg: &TinyImagenetConfig,
) -> Result<gtap_data::TinyImagenetData, DataError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("subset.zip");
    write_zip(&path, &entries(edit));
    let source = tiny_imagenet_source(dir.path()).unwrap();
    assert_eq!(source, TinyImagenetSource::Zip(path));
    load_tiny_imagenet(&source, cfg)
}

#[test]
fn a_zip_in_the_official_layout_loads_into_three_splits() {
    let data = load_zip(|_| {}, &small(2)).unwrap();
    assert_eq!(data.wnids, ["n01", "n02"]);
    assert_eq!((data.train.len(), data.probe.len()), (4, 2));
    assert_eq!(data.train.image_len(), TINY_IMAGENET_IMAGE_LEN);
    // Validation in image-number order, labelled by the annotations.
    assert_eq!(data.test.labels(), [1, 0, 1]);
    let mut all: Vec<(u32, u8)> = data
        .train
        .indices()
        .iter()
        .zip(data.train.labels())
        .chain(data.probe.indices().iter().zip(data.probe.labels()))
        .map(|(&i, &l)| (i, l))
        .collect();
    all.sort();
    assert_eq!(all, [(0, 0), (1, 0), (2, 0), (3, 1), (4, 1), (5, 1)]);
    // Channel-major: a uniform image is three uniform planes; grayscale has equal planes.
    let image = |i: u32| {
        let (split, pos) = match data.train.indices().iter().position(|&j| j == i) {
            Some(p) => (&data.train, p),
            None => (
                &data.probe,
                data.probe.indices().iter().position(|&j| j == i).unwrap(),
            ),
        };
        split.pixels()[pos * TINY_IMAGENET_IMAGE_LEN..(pos + 1) * TINY_IMAGENET_IMAGE_LEN].to_vec()
    };
    let plane = 64 * 64;
    let colour = image(0);
    for c in 0..3 {
        let values = &colour[c * plane..(c + 1) * plane];
        assert!(values.iter().all(|&v| v == values[0]), "plane {c} uniform");
    }
    assert!(
        (colour[2 * plane] as i32 - 200).abs() <= 2,
        "blue plane last"
    );
    assert!((colour[0] as i32 - 40).abs() <= 2, "red plane first");
    let gray = image(5);
    assert_eq!(gray[..plane], gray[plane..2 * plane]);
    assert_eq!(gray[..plane], gray[2 * plane..]);
}

#[test]
fn limits_and_the_extracted_layout() {
    let cfg = TinyImagenetConfig {
        probe_size: 1,
        classes: Some(1),
        per_class: Some(2),
        ..Default::default()
    };
    let data = load_zip(|_| {}, &cfg).unwrap();
    assert_eq!(data.wnids, ["n01"]);
    assert_eq!(data.train.len() + data.probe.len(), 2);
    assert_eq!(
        data.test.labels(),
        [0],
        "validation keeps the kept classes only"
    );

    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in entries(|_| {}) {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let source = tiny_imagenet_source(dir.path()).unwrap();
    assert_eq!(
        source,
        TinyImagenetSource::Dir(dir.path().join("tiny-imagenet-200"))
    );
    let extracted = load_tiny_imagenet(&source, &small(2)).unwrap();
    assert_eq!(extracted, load_zip(|_| {}, &small(2)).unwrap());
}

#[test]
fn a_corrupt_jpeg_is_one_error_naming_the_entry() {
    let err = load_zip(
        |e| {
            let (_, bytes) = e
                .iter_mut()
                .find(|(n, _)| n.ends_with("n02_1.JPEG"))
                .unwrap();
            bytes.truncate(40);
        },
        &small(2),
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, DataError::Image { .. }), "{message}");
    assert!(
        message.contains("subset.zip: tiny-imagenet-200/train/n02/images/n02_1.JPEG: "),
        "{message}"
    );
}

#[test]
fn a_validation_image_without_annotation_is_an_error() {
    let err = load_zip(
        |e| {
            let (_, bytes) = e
                .iter_mut()
                .find(|(n, _)| n.ends_with("val_annotations.txt"))
                .unwrap();
            *bytes = b"val_0.JPEG\tn02\t0\t0\t63\t63\nval_1.JPEG\tn01\t0\t0\t63\t63\n".to_vec();
        },
        &small(2),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(
            "tiny-imagenet-200/val/images/val_2.JPEG: validation image without an annotation"
        ),
        "{err}"
    );
}

#[test]
fn a_wrong_layout_is_an_error() {
    let err = load_zip(|e| e.retain(|(n, _)| !n.ends_with("wnids.txt")), &small(2));
    // Without wnids.txt the zip is not recognised at all.
    let err = err.unwrap_err().to_string();
    assert!(
        err.contains("not the Tiny ImageNet layout: no wnids.txt"),
        "{err}"
    );
    let err = load_zip(|e| e.retain(|(n, _)| !n.contains("/train/n02/")), &small(2))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no training images under train/n02/images/ for class n02"),
        "{err}"
    );
}

#[test]
fn an_official_size_archive_must_have_the_official_md5() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-imagenet-200.zip");
    // A stub of exactly the official size (sparse, zeros).
    std::fs::File::create(&path)
        .unwrap()
        .set_len(TINY_IMAGENET_SIZE)
        .unwrap();
    let err = tiny_imagenet_source(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::Md5 { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("md5 mismatch: expected 90528d7ca1a48142e341f4ef8d21d0de"),
        "{err}"
    );
    // Any other size is not the official archive: accepted as a zip in the layout (or not).
    std::fs::File::create(&path).unwrap().set_len(10).unwrap();
    assert_eq!(
        tiny_imagenet_source(dir.path()).unwrap(),
        TinyImagenetSource::Zip(path)
    );
    let empty = tempfile::tempdir().unwrap();
    let err = tiny_imagenet_source(empty.path()).unwrap_err().to_string();
    assert!(
        err.contains("tiny-imagenet-200.zip (248100043 bytes"),
        "{err}"
    );
}

#[test]
fn the_shared_subset_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/datasets");
    if !dir.join("tiny-imagenet").exists() {
        assert!(
            std::env::var_os("GTAP_SKIP_REAL_DATA").is_some(),
            "the Tiny ImageNet subset expected at {}",
            dir.display()
        );
        return;
    }
    let source = tiny_imagenet_source(&dir).unwrap();
    let cfg = TinyImagenetConfig {
        probe_size: 100,
        classes: Some(10),
        ..Default::default()
    };
    let data = load_tiny_imagenet(&source, &cfg).unwrap();
    assert_eq!(data.wnids.len(), 10);
    assert_eq!(data.train.len() + data.probe.len(), 10 * 100);
    assert_eq!(data.test.len(), 10 * 50, "50 validation images per class");
    assert!(data.test.class_counts(10).iter().all(|&c| c == 50));
}

#[test]
fn a_missing_archive_is_downloaded_only_with_the_official_md5() {
    let dir = tempfile::tempdir().unwrap();
    let offline =
        gtap_data::tiny_imagenet_source_or_fetch(dir.path(), &gtap_data::FetchPolicy::Never)
            .unwrap_err()
            .to_string();
    assert!(offline.contains("downloading is disabled"), "{offline}");
    assert!(offline.contains(gtap_data::TINY_IMAGENET_MD5), "{offline}");
    // A mirror serving anything but the official archive: refused on its MD5, nothing kept.
    let mut files = std::collections::HashMap::new();
    files.insert(
        gtap_data::TINY_IMAGENET_ZIP.to_owned(),
        b"not the archive".to_vec(),
    );
    let base = crate::fixtures::serve(files);
    let err = gtap_data::tiny_imagenet_source_or_fetch(
        dir.path(),
        &gtap_data::FetchPolicy::DownloadFrom(vec![base]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("md5 mismatch"), "{err}");
    assert!(!dir.path().join(gtap_data::TINY_IMAGENET_ZIP).exists());
    // A folder that has it is used as it is, without the network.
    let subset_dir = tempfile::tempdir().unwrap();
    write_zip(&subset_dir.path().join("subset.zip"), &entries(|_| {}));
    let found = gtap_data::tiny_imagenet_source_or_fetch(
        subset_dir.path(),
        &gtap_data::FetchPolicy::DownloadFrom(vec![crate::fixtures::dead_url()]),
    )
    .unwrap();
    assert_eq!(found.path(), subset_dir.path().join("subset.zip"));
}
