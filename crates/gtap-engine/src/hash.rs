//! Content hashing: sha256 of files, directories and canonical JSON pre-images.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::EngineError;

/// Hex sha256 of a byte string.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hex sha256 of a file's contents, streamed.
pub fn sha256_file(path: &Path) -> Result<String, EngineError> {
    let io = |source| EngineError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Canonical serialisation of a JSON value: object keys sorted (serde_json's map is a BTreeMap),
/// no whitespace. Floats print with the shortest round-trip form, so the bytes are stable.
pub fn canonical_json(value: &serde_json::Value) -> String {
    serde_json::to_string(value).expect("a serde_json::Value always serialises")
}

/// One file of a directory: its path relative to the directory (`/`-separated), size, sha256.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileHash {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Every regular file below `dir` but those in `skip`, hashed, in the order [`hash_dir`] uses.
pub fn hash_files(dir: &Path, skip: &[&str]) -> Result<Vec<FileHash>, EngineError> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| EngineError::Io {
            path: dir.to_owned(),
            source: e.into(),
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(dir)
            .expect("walkdir yields paths below its root")
            .to_string_lossy()
            .replace('\\', "/");
        if skip.contains(&rel.as_str()) {
            continue;
        }
        let bytes = entry
            .metadata()
            .map_err(|e| EngineError::Io {
                path: entry.path().to_owned(),
                source: e.into(),
            })?
            .len();
        files.push(FileHash {
            path: rel,
            bytes,
            sha256: sha256_file(entry.path())?,
        });
    }
    Ok(files)
}

/// The directory hash of files listed by [`hash_files`]: sha256 over the `(path, sha256)` list.
pub fn combine(files: &[FileHash]) -> String {
    let lines: String = files
        .iter()
        .map(|f| format!("{}\t{}\n", f.path, f.sha256))
        .collect();
    sha256_hex(lines.as_bytes())
}

/// Hash of a directory's contents: sha256 over the sorted `(relative path, file sha256)` list.
/// Used as the identity of a stage output, so a downstream key depends on what an upstream
/// produced, not on how (early cutoff: a re-run that yields the same bytes changes nothing below).
pub fn hash_dir(dir: &Path, skip: &[&str]) -> Result<String, EngineError> {
    Ok(combine(&hash_files(dir, skip)?))
}

/// Lines that differ between two JSON documents, as `path: old -> new`, for "why did this re-run".
pub fn diff_json(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_into("", old, new, &mut out);
    out
}

fn diff_into(path: &str, old: &serde_json::Value, new: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => diff_into(&sub, x, y, out),
                    (Some(x), None) => out.push(format!("{sub}: {x} -> (absent)")),
                    (None, Some(y)) => out.push(format!("{sub}: (absent) -> {y}")),
                    (None, None) => unreachable!(),
                }
            }
        }
        _ if old != new => out.push(format!("{path}: {old} -> {new}")),
        _ => {}
    }
}
