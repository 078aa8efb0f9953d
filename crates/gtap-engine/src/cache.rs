//! The content-addressed cache: one directory per stage output, keyed by sha256 of its pre-image.
//!
//! Layout: `<root>/entries/<kind>/<key>/{manifest.json, preimage.json, outputs…}` and
//! `<root>/index/<pipeline>/<instance>.json` (the pre-image last used by each pipeline stage, for
//! `gtap why`). An entry is built in `<key>.tmp-<host>-<pid>-<n>`, the manifest is written last,
//! and the directory is renamed into place; an entry without a manifest does not exist.
//!
//! Concurrency, on one machine or many sharing the cache over a network filesystem: the
//! per-entry lock (`flock`; NFS clients map it to POSIX locks) only saves duplicate work.
//! Correctness rests on the rename: a builder's directory becomes the entry in one atomic
//! `rename`, and a builder that finds the entry already there (another node won) drops its own
//! copy and uses the existing one (keys pin the bytes, so both are the same). Where the
//! filesystem refuses locks (`ENOLCK`, unsupported), or `GTAP_CACHE_LOCKS=off` says they are
//! not shared between nodes (NFS mounted `nolock`), builders proceed unlocked; then a
//! temporary directory is never assumed abandoned, since another node may be writing it. A
//! builder killed mid-way (a scheduler's time limit, preemption) leaves only its temporary
//! directory, which nothing reads and the next locked builder of that key removes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::hash::{self, FileHash};
use crate::EngineError;

pub const MANIFEST: &str = "manifest.json";
pub const PREIMAGE: &str = "preimage.json";

/// What a finished cache entry records about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub key: String,
    pub kind: String,
    /// The pipeline stage instance that built the entry (informative only).
    pub built_by: String,
    /// sha256 over the output files (manifest and pre-image excluded): the identity downstream
    /// stages are keyed on.
    pub content_hash: String,
    /// Names of the tables the entry holds under `tables/`.
    pub tables: Vec<String>,
    pub seconds: f64,
    /// Every file of the entry but the manifest (the pre-image too), with size and sha256:
    /// what [`Cache::verify`] checks. Empty in entries written before verification existed;
    /// those are checked against `content_hash` alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileHash>,
    /// sha256 of this manifest's canonical JSON without `check`, so that a changed byte in
    /// the manifest itself is noticed too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
}

impl Manifest {
    fn self_hash(&self) -> String {
        let mut bare = self.clone();
        bare.check = None;
        let value = serde_json::to_value(&bare).expect("manifests serialise");
        hash::sha256_hex(hash::canonical_json(&value).as_bytes())
    }

    /// Total bytes of the entry's files, as recorded.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// Why a cache entry's files do not match its manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Corruption {
    pub entry: PathBuf,
    /// The first difference found, naming the file.
    pub reason: String,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.entry.display(), self.reason)
    }
}

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
    /// Whether builders take the per-entry lock (`GTAP_CACHE_LOCKS=off` clears it).
    locks: bool,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EngineError + '_ {
    move |source| EngineError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cache {
            root: root.into(),
            locks: std::env::var("GTAP_CACHE_LOCKS").map_or(true, |v| v != "off"),
        }
    }

    /// Builders proceed without the per-entry lock, as on a filesystem whose locks are not
    /// shared between nodes: concurrent builds of one entry may duplicate work, and the first
    /// rename wins.
    pub fn without_locks(mut self) -> Self {
        self.locks = false;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn entry_dir(&self, kind: &str, key: &str) -> PathBuf {
        self.root.join("entries").join(kind).join(key)
    }

    /// The manifest of a finished entry, or `None` if there is no finished entry.
    pub fn lookup(&self, kind: &str, key: &str) -> Result<Option<Manifest>, EngineError> {
        read_json_if_present(&self.entry_dir(kind, key).join(MANIFEST))
    }

    /// Builds entry `key` with `produce` unless a finished one exists (or `force`), holding a
    /// per-entry lock so concurrent runs sharing the cache build it once.
    pub fn build(
        &self,
        kind: &str,
        key: &str,
        built_by: &str,
        preimage: &serde_json::Value,
        force: bool,
        produce: impl FnOnce(&Path) -> Result<(), EngineError>,
    ) -> Result<(Manifest, bool), EngineError> {
        let final_dir = self.entry_dir(kind, key);
        let parent = final_dir.parent().expect("entry dirs have a parent");
        std::fs::create_dir_all(parent).map_err(io(parent))?;
        let lock_path = parent.join(format!("{key}.lock"));
        let locked = if self.locks {
            lock_entry(&lock_path, kind, key)?
        } else {
            None
        };
        let mut replace = force;
        if !force {
            match self.lookup_checked(kind, key)? {
                Lookup::Sound(manifest) => return Ok((manifest, false)),
                Lookup::Corrupt(corruption) => {
                    tracing::warn!("corrupt cache entry {corruption}; rebuilding it");
                    replace = true;
                }
                Lookup::Absent => {}
            }
        }
        if locked.is_some() {
            // Under the lock, any temporary directory for this key is a leftover of a killed
            // or crashed builder.
            remove_leftovers(parent, key)?;
        }
        let tmp = parent.join(format!("{key}.tmp-{}", builder_tag()));
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let started = Instant::now();
        let result = produce(&tmp).and_then(|()| {
            let pre = serde_json::to_vec_pretty(preimage).expect("JSON serialises");
            std::fs::write(tmp.join(PREIMAGE), pre).map_err(io(&tmp))?;
            let files = hash::hash_files(&tmp, &[MANIFEST])?;
            let tables = list_tables(&tmp)?;
            let mut manifest = Manifest {
                key: key.to_owned(),
                kind: kind.to_owned(),
                built_by: built_by.to_owned(),
                content_hash: content_hash(&files),
                tables,
                seconds: recorded_seconds(started.elapsed().as_secs_f64()),
                files,
                check: None,
            };
            manifest.check = Some(manifest.self_hash());
            let path = tmp.join(MANIFEST);
            std::fs::write(
                &path,
                serde_json::to_vec_pretty(&manifest).expect("JSON serialises"),
            )
            .map_err(io(&path))?;
            Ok(manifest)
        });
        let manifest = match result {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let replace = replace || (locked.is_some() && self.lookup(kind, key)?.is_none());
        if replace && final_dir.exists() {
            // A forced rebuild, or (under the lock) a directory left without a manifest:
            // replace it. Between the two renames there is no entry at all, which readers
            // treat as missing.
            let old = parent.join(format!("{key}.old-{}", builder_tag()));
            std::fs::rename(&final_dir, &old).map_err(io(&final_dir))?;
            std::fs::remove_dir_all(&old).map_err(io(&old))?;
        }
        if let Err(err) = std::fs::rename(&tmp, &final_dir) {
            // Another builder (an unlocked node) renamed its copy into place first.
            if let Some(theirs) = self.lookup(kind, key)? {
                tracing::info!(
                    "{kind}/{} was built elsewhere meanwhile; using that entry",
                    &key[..12]
                );
                let _ = std::fs::remove_dir_all(&tmp);
                return Ok((theirs, false));
            }
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(io(&final_dir)(err));
        }
        drop(locked);
        Ok((manifest, true))
    }

    /// The manifest of a finished entry whose files all match it (sizes and sha256), or why
    /// they do not: a cache notices rot instead of handing it on.
    pub fn lookup_checked(&self, kind: &str, key: &str) -> Result<Lookup, EngineError> {
        let manifest = match self.lookup(kind, key) {
            Ok(Some(manifest)) => manifest,
            Ok(None) => return Ok(Lookup::Absent),
            Err(EngineError::CorruptManifest { message, .. }) => {
                return Ok(Lookup::Corrupt(Corruption {
                    entry: self.entry_dir(kind, key),
                    reason: format!("{MANIFEST} does not parse ({message})"),
                }))
            }
            Err(err) => return Err(err),
        };
        Ok(match self.verify(kind, key, &manifest) {
            Ok(()) => Lookup::Sound(manifest),
            Err(corruption) => Lookup::Corrupt(corruption),
        })
    }

    /// Like [`Cache::lookup`], but a corrupt entry is reported, removed and treated as absent
    /// (it is a cache: its inputs can make it again).
    pub fn lookup_verified(&self, kind: &str, key: &str) -> Result<Option<Manifest>, EngineError> {
        match self.lookup_checked(kind, key)? {
            Lookup::Sound(manifest) => Ok(Some(manifest)),
            Lookup::Absent => Ok(None),
            Lookup::Corrupt(corruption) => {
                tracing::warn!("corrupt cache entry {corruption}; removing it");
                self.discard(kind, key)?;
                // Another builder may have replaced it meanwhile.
                self.lookup(kind, key)
            }
        }
    }

    /// Checks entry `key`'s files against `manifest`: the manifest's own check hash, then every
    /// file's size and sha256 (entries from before per-file records: the content hash).
    pub fn verify(&self, kind: &str, key: &str, manifest: &Manifest) -> Result<(), Corruption> {
        let dir = self.entry_dir(kind, key);
        let bad = |reason: String| {
            Err(Corruption {
                entry: dir.clone(),
                reason,
            })
        };
        if manifest.key != key || manifest.kind != kind {
            return bad(format!(
                "{MANIFEST} names entry {}/{}",
                manifest.kind, manifest.key
            ));
        }
        if manifest
            .check
            .as_ref()
            .is_some_and(|c| *c != manifest.self_hash())
        {
            return bad(format!("{MANIFEST} does not match its own check hash"));
        }
        let found = match hash::hash_files(&dir, &[MANIFEST]) {
            Ok(found) => found,
            Err(err) => return bad(format!("{err:#}")),
        };
        if manifest.files.is_empty() {
            if content_hash(&found) != manifest.content_hash {
                return bad("its files do not hash to the manifest's content hash".into());
            }
            return Ok(());
        }
        for recorded in &manifest.files {
            let Some(file) = found.iter().find(|f| f.path == recorded.path) else {
                return bad(format!("file {} is missing", recorded.path));
            };
            if file.bytes != recorded.bytes {
                return bad(format!(
                    "file {} has {} bytes, its manifest records {}",
                    recorded.path, file.bytes, recorded.bytes
                ));
            }
            if file.sha256 != recorded.sha256 {
                return bad(format!(
                    "file {} does not match its recorded sha256 (its bytes changed)",
                    recorded.path
                ));
            }
        }
        if let Some(extra) = found.iter().find(|f| !manifest.files.contains(f)) {
            return bad(format!("file {} is not in its manifest", extra.path));
        }
        if content_hash(&manifest.files) != manifest.content_hash {
            return bad("the manifest's file list does not give its content hash".into());
        }
        Ok(())
    }

    /// Removes entry `key` (under its lock, if it is still corrupt then).
    fn discard(&self, kind: &str, key: &str) -> Result<(), EngineError> {
        let dir = self.entry_dir(kind, key);
        let parent = dir.parent().expect("entry dirs have a parent");
        let lock_path = parent.join(format!("{key}.lock"));
        let _locked = if self.locks {
            lock_entry(&lock_path, kind, key)?
        } else {
            None
        };
        if !matches!(self.lookup_checked(kind, key)?, Lookup::Corrupt(_)) {
            return Ok(());
        }
        let old = parent.join(format!("{key}.corrupt-{}", builder_tag()));
        std::fs::rename(&dir, &old).map_err(io(&dir))?;
        std::fs::remove_dir_all(&old).map_err(io(&old))
    }

    fn index_path(&self, pipeline: &str, instance: &str) -> PathBuf {
        self.root
            .join("index")
            .join(pipeline)
            .join(format!("{}.json", sanitize(instance)))
    }

    /// Remembers the pre-image last used by a pipeline's stage instance.
    pub fn record(
        &self,
        pipeline: &str,
        instance: &str,
        preimage: &serde_json::Value,
    ) -> Result<(), EngineError> {
        let path = self.index_path(pipeline, instance);
        let dir = path.parent().expect("index files have a parent");
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let tmp = crate::table::tmp_sibling(&path);
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(preimage).expect("JSON serialises"),
        )
        .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    pub fn recorded(
        &self,
        pipeline: &str,
        instance: &str,
    ) -> Result<Option<serde_json::Value>, EngineError> {
        read_json_if_present(&self.index_path(pipeline, instance))
    }
}

/// Takes the per-entry lock, waiting for another builder that holds it. `None` when the
/// filesystem refuses locks: build unlocked.
fn lock_entry(lock_path: &Path, kind: &str, key: &str) -> Result<Option<File>, EngineError> {
    let lock = File::create(lock_path).map_err(io(lock_path))?;
    let unsupported = |e: &std::io::Error| {
        e.kind() == std::io::ErrorKind::Unsupported || e.raw_os_error() == Some(37)
        // ENOLCK
    };
    match lock.try_lock() {
        Ok(()) => return Ok(Some(lock)),
        Err(std::fs::TryLockError::Error(e)) if unsupported(&e) => {
            warn_unlocked(lock_path, &e);
            return Ok(None);
        }
        Err(_) => {}
    }
    tracing::info!("waiting for another run building {kind}/{}", &key[..12]);
    match lock.lock() {
        Ok(()) => Ok(Some(lock)),
        Err(e) if unsupported(&e) => {
            warn_unlocked(lock_path, &e);
            Ok(None)
        }
        Err(e) => Err(io(lock_path)(e)),
    }
}

fn warn_unlocked(lock_path: &Path, err: &std::io::Error) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::warn!(
            "the cache's filesystem refuses file locks ({err}, on {}): building unlocked; \
             concurrent builders of one entry may duplicate work, never corrupt it",
            lock_path.display()
        )
    });
}

/// Unique to one build: host, process and a counter (threads of one process build too).
fn builder_tag() -> String {
    static BUILDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{}-{n}", host_name(), std::process::id())
}

/// This machine's name, so temporary directories of builders on different nodes never clash.
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

/// A JSON file's contents, `None` if the file does not exist.
fn read_json_if_present<T: serde::de::DeserializeOwned>(
    path: &Path,
) -> Result<Option<T>, EngineError> {
    match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| EngineError::CorruptManifest {
                    path: path.to_owned(),
                    message: e.to_string(),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// An instance id as a file name: every character but `[A-Za-z0-9._-]` becomes `_`.
pub(crate) fn sanitize(instance: &str) -> String {
    instance
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn remove_leftovers(parent: &Path, key: &str) -> Result<(), EngineError> {
    // Building, replaced and discarded copies of the entry.
    let prefixes = ["tmp", "old", "corrupt"].map(|what| format!("{key}.{what}-"));
    for entry in std::fs::read_dir(parent).map_err(io(parent))? {
        let entry = entry.map_err(io(parent))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if prefixes.iter().any(|p| name.starts_with(p.as_str())) {
            tracing::warn!(
                "removing leftover of an interrupted run: {}",
                entry.path().display()
            );
            std::fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
        }
    }
    Ok(())
}

/// A build time as the manifest records it: rounded to the millisecond, a decimal that every
/// JSON parser reads back to the same float (serde_json's default parser is not exact for
/// every 17-digit float, and a changed float would fail the manifest's self hash).
fn recorded_seconds(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// What [`Cache::lookup_checked`] found.
#[derive(Debug, Clone)]
pub enum Lookup {
    Absent,
    /// A finished entry whose files match its manifest.
    Sound(Manifest),
    Corrupt(Corruption),
}

/// An entry's content hash: its files but the pre-image.
fn content_hash(files: &[FileHash]) -> String {
    let outputs: Vec<FileHash> = files
        .iter()
        .filter(|f| f.path != PREIMAGE)
        .cloned()
        .collect();
    hash::combine(&outputs)
}

fn list_tables(dir: &Path) -> Result<Vec<String>, EngineError> {
    let tables_dir = dir.join("tables");
    if !tables_dir.exists() {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&tables_dir).map_err(io(&tables_dir))? {
        let name = entry
            .map_err(io(&tables_dir))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if let Some(stem) = name.strip_suffix(".parquet") {
            if !stem.starts_with('.') {
                names.push(stem.to_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(seconds: f64) -> Manifest {
        let mut m = Manifest {
            key: "k".into(),
            kind: "train".into(),
            built_by: "train[0]".into(),
            content_hash: "c".into(),
            tables: vec![],
            seconds: recorded_seconds(seconds),
            files: vec![],
            check: None,
        };
        m.check = Some(m.self_hash());
        m
    }

    /// A manifest read back from its file checks against its own hash, whatever the build
    /// time: serde_json's default float parser is not exact for every 17-digit float, so an
    /// unrounded `seconds` made some sound entries look corrupt.
    #[test]
    fn a_written_manifest_reads_back_sound_for_any_build_time() {
        for i in 0..20_000u32 {
            let seconds =
                f64::from(i).mul_add(0.7919, 0.1).sin().abs() * 10f64.powi((i % 7) as i32);
            let m = manifest(seconds);
            let text = serde_json::to_vec_pretty(&m).unwrap();
            let read: Manifest = serde_json::from_slice(&text).unwrap();
            assert_eq!(read.check, Some(read.self_hash()), "seconds {seconds}");
        }
    }
}
