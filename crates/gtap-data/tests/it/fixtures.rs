//! Tiny IDX files and Tiny ImageNet archives built in code, and a one-shot local HTTP server.
//! Shared by the `it` and `memory` test binaries.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use gtap_data::{MnistFiles, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};
use image::{ImageEncoder, Luma, Rgb};

/// An uncompressed IDX image file with the given header and pixel bytes.
pub fn idx_images(count: u32, rows: u32, cols: u32, pixels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for word in [0x0803, count, rows, cols] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out.extend_from_slice(pixels);
    out
}

/// An uncompressed IDX label file.
pub fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for word in [0x0801, labels.len() as u32] {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out.extend_from_slice(labels);
    out
}

/// Gzip-compresses `bytes`.
pub fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The pixel bytes of fixture image `i`: 784 bytes that differ between images.
pub fn image_pixels(i: usize) -> Vec<u8> {
    (0..784).map(|j| ((i * 31 + j * 7) % 256) as u8).collect()
}

/// Four valid 28x28 MNIST-style gzip files in `dir`: `n_train` training and `n_test` test
/// examples, example `i` labelled `i % 10`. Checksums are of course not the canonical ones.
pub fn mnist_fixture(dir: &Path, n_train: usize, n_test: usize) -> MnistFiles {
    let pair = |n: usize| {
        let pixels: Vec<u8> = (0..n).flat_map(image_pixels).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        (
            gz(&idx_images(n as u32, 28, 28, &pixels)),
            gz(&idx_labels(&labels)),
        )
    };
    let (tri, trl) = pair(n_train);
    let (tei, tel) = pair(n_test);
    MnistFiles {
        train_images: write(dir, TRAIN_IMAGES, &tri),
        train_labels: write(dir, TRAIN_LABELS, &trl),
        test_images: write(dir, TEST_IMAGES, &tei),
        test_labels: write(dir, TEST_LABELS, &tel),
    }
}

/// Asserts that `message` contains every one of `parts`.
#[track_caller]
pub fn assert_mentions(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(
            message.contains(part),
            "message does not mention {part:?}:\n{message}"
        );
    }
}

/// Serves `files` (URL path → body) over HTTP on 127.0.0.1 from a background thread;
/// returns the base URL (ending in `/`). Unknown paths get 404.
pub fn serve(files: HashMap<String, Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            loop {
                let mut line = String::new();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line == "\r\n" => break,
                    Ok(_) => {}
                }
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("/");
            let (status, body): (&str, &[u8]) = match files.get(path.trim_start_matches('/')) {
                Some(body) => ("200 OK", body),
                None => ("404 Not Found", b"not found"),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    base
}

/// A base URL on 127.0.0.1 where nothing listens (connection refused).
pub fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    base
}

/// The directory of the real MNIST files, or `None` when absent and `GTAP_SKIP_REAL_DATA=1`.
///
/// Panics when the directory is absent and skipping was not asked for.
pub fn real_mnist_dir() -> Option<PathBuf> {
    real_dataset_dir("mnist")
}

/// `../shared/datasets/<folder>` of the project, or `None` when absent and
/// `GTAP_SKIP_REAL_DATA=1`. Panics when the directory is absent and skipping was not asked for.
pub fn real_dataset_dir(folder: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/datasets")
        .join(folder);
    if dir.is_dir() {
        return Some(dir);
    }
    if std::env::var("GTAP_SKIP_REAL_DATA").as_deref() == Ok("1") {
        eprintln!(
            "skipping: no real data at {} (GTAP_SKIP_REAL_DATA=1)",
            dir.display()
        );
        return None;
    }
    panic!(
        "real dataset not found at {}; put the files there or set GTAP_SKIP_REAL_DATA=1",
        dir.display()
    );
}

/// A 64×64 JPEG: RGB with a colour per channel, or grayscale.
pub fn jpeg(colour: [u8; 3], gray: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 100);
    if gray {
        let img = image::ImageBuffer::from_pixel(64, 64, Luma([colour[0]]));
        encoder
            .write_image(img.as_raw(), 64, 64, image::ExtendedColorType::L8)
            .unwrap();
    } else {
        let img = image::ImageBuffer::from_pixel(64, 64, Rgb(colour));
        encoder
            .write_image(img.as_raw(), 64, 64, image::ExtendedColorType::Rgb8)
            .unwrap();
    }
    out
}

/// A Tiny ImageNet archive's entries: two classes (`n01`, `n02`), `per_class` training images
/// each (image 2 of `n02` in grayscale), 3 validation images; `edit` may change the entries
/// before they are written.
pub fn tiny_entries(
    per_class: usize,
    edit: impl FnOnce(&mut Vec<(String, Vec<u8>)>),
) -> Vec<(String, Vec<u8>)> {
    let root = "tiny-imagenet-200/";
    let mut e: Vec<(String, Vec<u8>)> = vec![(format!("{root}wnids.txt"), b"n01\nn02\n".to_vec())];
    for (k, wnid) in ["n01", "n02"].iter().enumerate() {
        for i in 0..per_class {
            let gray = k == 1 && i == 2;
            let colour = [40 * (k as u8 + 1), (10 * i % 250) as u8, 200];
            e.push((
                format!("{root}train/{wnid}/images/{wnid}_{i}.JPEG"),
                jpeg(colour, gray),
            ));
        }
        e.push((format!("{root}train/{wnid}/{wnid}_boxes.txt"), Vec::new()));
    }
    for (i, wnid) in ["n02", "n01", "n02"].iter().enumerate() {
        e.push((
            format!("{root}val/images/val_{i}.JPEG"),
            jpeg([90, 90, 90], false),
        ));
        let _ = wnid;
    }
    e.push((
        format!("{root}val/val_annotations.txt"),
        b"val_0.JPEG\tn02\t0\t0\t63\t63\nval_1.JPEG\tn01\t0\t0\t63\t63\nval_2.JPEG\tn02\t1\t1\t60\t60\n"
            .to_vec(),
    ));
    edit(&mut e);
    e
}

/// Writes `entries` into a zip, stored (not compressed).
pub fn write_zip(path: &Path, entries: &[(String, Vec<u8>)]) {
    write_zip_with(path, entries, |_| false);
}

/// Writes `entries` into a zip, deflating the ones `deflate` selects.
pub fn write_zip_with(path: &Path, entries: &[(String, Vec<u8>)], deflate: impl Fn(&str) -> bool) {
    let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in entries {
        let method = if deflate(name) {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        zip.start_file(name.as_str(), options).unwrap();
        zip.write_all(bytes).unwrap();
    }
    zip.finish().unwrap();
}

/// A 64×64 JPEG whose header claims `width`×`height`.
pub fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = jpeg([10, 20, 30], false);
    let sof = bytes
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("a baseline JPEG");
    bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}
