//! Streaming digests of files (SHA-256, and MD5 where a dataset publishes only that), as
//! lower-case hex.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::DataError;

/// SHA-256 of a file's bytes as 64 lower-case hex digits, read in 64 KiB chunks.
pub fn sha256_file(path: &Path) -> Result<String, DataError> {
    digest_file(path, Hasher::Sha256(Sha256::new()))
}

/// The digest of a file's bytes under `hasher`, read in 64 KiB chunks.
fn digest_file(path: &Path, mut hasher: Hasher) -> Result<String, DataError> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DataError::io(path, e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish())
}

/// SHA-256 of a byte slice as 64 lower-case hex digits.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Checks that `path` has the SHA-256 digest `expected` (hex, any case).
///
/// Fails with [`DataError::Checksum`] naming the file, the expected and the actual digest.
pub fn verify_sha256(path: &Path, expected: &str) -> Result<(), DataError> {
    let actual = sha256_file(path)?;
    if actual.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(DataError::Checksum {
            path: path.to_path_buf(),
            algorithm: "sha256",
            expected: expected.to_ascii_lowercase(),
            actual,
        })
    }
}

/// A dataset file's pinned digest, as its publisher gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum<'a> {
    Sha256(&'a str),
    /// Fashion-MNIST, KMNIST and Tiny ImageNet publish MD5 only.
    Md5(&'a str),
}

impl Checksum<'_> {
    pub fn algorithm(&self) -> &'static str {
        match self {
            Checksum::Sha256(_) => "sha256",
            Checksum::Md5(_) => "md5",
        }
    }

    /// The expected digest, lower-case hex.
    pub fn hex(&self) -> String {
        match self {
            Checksum::Sha256(h) | Checksum::Md5(h) => h.to_ascii_lowercase(),
        }
    }

    /// A streaming hasher of this checksum's algorithm.
    pub(crate) fn hasher(&self) -> Hasher {
        match self {
            Checksum::Sha256(_) => Hasher::Sha256(Sha256::new()),
            Checksum::Md5(_) => Hasher::Md5(md5::Md5::new()),
        }
    }

    /// Whether `actual` (hex, any case) is this digest.
    pub(crate) fn matches(&self, actual: &str) -> bool {
        actual.eq_ignore_ascii_case(&self.hex())
    }

    /// Checks `path` against the digest: [`DataError::Checksum`] naming the file, the algorithm,
    /// the expected and the actual digest on mismatch.
    pub fn verify(&self, path: &Path) -> Result<(), DataError> {
        let actual = digest_file(path, self.hasher())?;
        if self.matches(&actual) {
            Ok(())
        } else {
            Err(DataError::Checksum {
                path: path.to_path_buf(),
                algorithm: self.algorithm(),
                expected: self.hex(),
                actual,
            })
        }
    }
}

/// A running digest of either algorithm.
pub(crate) enum Hasher {
    Sha256(Sha256),
    Md5(md5::Md5),
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Md5(h) => h.update(bytes),
        }
    }

    /// The digest, lower-case hex.
    pub fn finish(self) -> String {
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Md5(h) => hex::encode(h.finalize()),
        }
    }
}
