//! Tiny IDX files built in code, and a one-shot local HTTP server.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use gtap_data::{MnistFiles, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS};

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
