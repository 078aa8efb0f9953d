//! Tiny ImageNet (CS231N): 200 classes of 64×64 RGB JPEGs, read from the official zip as it is,
//! from the same layout already extracted, or from any zip in that layout (a subset).
//!
//! Layout under one root folder (`tiny-imagenet-200/` in the official zip):
//! `wnids.txt` (class ids, one per line: the class order), `train/<wnid>/images/*.JPEG`,
//! `val/images/*.JPEG` and `val/val_annotations.txt` (`file<TAB>wnid<TAB>box…`). The official
//! test set has no labels; the validation set is the test split here, and the probe split is
//! a seeded part of train (guidance never sees test images).
//!
//! Images become `3 × 64 × 64` bytes in channel-major order (R plane, G plane, B plane), the
//! layout a convolution reads; grayscale JPEGs (a few hundred in the official set) are
//! replicated to three channels.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use rayon::prelude::*;

use crate::checksum::Checksum;
use crate::fetch::{download_checked, FetchPolicy};
use crate::split::{seeded_permutation, Normalisation, Split};
use crate::DataError;

/// File name of the official archive.
pub const TINY_IMAGENET_ZIP: &str = "tiny-imagenet-200.zip";
/// Size in bytes of the official archive: a file of this size must have [`TINY_IMAGENET_MD5`].
pub const TINY_IMAGENET_SIZE: u64 = 248_100_043;
/// MD5 of the official archive, as published.
pub const TINY_IMAGENET_MD5: &str = "90528d7ca1a48142e341f4ef8d21d0de";
/// The canonical download location of the official archive.
pub const TINY_IMAGENET_URL: &str = "http://cs231n.stanford.edu/tiny-imagenet-200.zip";
/// Side of every image.
pub const TINY_IMAGENET_SIDE: usize = 64;
/// Bytes per image: 3 channels of 64 × 64.
pub const TINY_IMAGENET_IMAGE_LEN: usize = 3 * TINY_IMAGENET_SIDE * TINY_IMAGENET_SIDE;
/// Most bytes one image entry may hold, compressed or not: the official JPEGs are at most
/// about 3 KB, so 1 MiB leaves room for any metadata and keeps a bomb from growing memory.
pub const MAX_IMAGE_BYTES: u64 = 1 << 20;
/// Most bytes a text entry (`wnids.txt`, `val/val_annotations.txt`, about 350 KB) may hold.
pub const MAX_TEXT_BYTES: u64 = 16 << 20;
/// Images read (and held undecoded) at a time: what malformed input can make the loader hold
/// beyond the decoded images is at most this many times [`MAX_IMAGE_BYTES`].
const READ_CHUNK: usize = 256;

/// Where the images are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TinyImagenetSource {
    /// A zip in the official layout (the official archive or a subset).
    Zip(PathBuf),
    /// The layout extracted: the folder holding `wnids.txt`.
    Dir(PathBuf),
}

impl TinyImagenetSource {
    pub fn path(&self) -> &Path {
        match self {
            TinyImagenetSource::Zip(p) | TinyImagenetSource::Dir(p) => p,
        }
    }
}

/// [`tiny_imagenet_source`], downloading the official archive into `dir` (MD5-checked, through
/// a temporary file) when nothing is found and `fetch` allows it.
pub fn tiny_imagenet_source_or_fetch(
    dir: &Path,
    fetch: &FetchPolicy,
) -> Result<TinyImagenetSource, DataError> {
    let (found, searched) = find_tiny_imagenet(dir)?;
    if let Some(source) = found {
        return Ok(source);
    }
    let mut failures = Vec::new();
    for base in fetch.mirrors(&[TINY_IMAGENET_URL_BASE]) {
        let url = format!("{}{TINY_IMAGENET_ZIP}", crate::mnist::ensure_slash(&base));
        let dest = dir.join(TINY_IMAGENET_ZIP);
        match download_checked(&url, &dest, Checksum::Md5(TINY_IMAGENET_MD5)) {
            Ok(()) => return Ok(TinyImagenetSource::Zip(dest)),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let mut err = not_found(&searched);
    if let DataError::Config { reason, .. } = &mut err {
        if failures.is_empty() {
            reason.push_str("; downloading is disabled");
        } else {
            reason.push_str(&format!("; {}", failures.join("; ")));
        }
    }
    Err(err)
}

/// The folder the official archive is downloaded from.
const TINY_IMAGENET_URL_BASE: &str = "http://cs231n.stanford.edu/";

/// Finds Tiny ImageNet in `dir` or its `tiny-imagenet/` subfolder: the official
/// `tiny-imagenet-200.zip`, else an extracted `tiny-imagenet-200/` folder, else the one zip
/// there (a subset in the same layout). A file of the official archive's size must have its
/// MD5; a mismatch is an error, not a reason to use another file.
pub fn tiny_imagenet_source(dir: &Path) -> Result<TinyImagenetSource, DataError> {
    match find_tiny_imagenet(dir)? {
        (Some(source), _) => Ok(source),
        (None, searched) => Err(not_found(&searched)),
    }
}

/// What [`tiny_imagenet_source`] finds, or `None` with the folders it searched.
fn find_tiny_imagenet(dir: &Path) -> Result<(Option<TinyImagenetSource>, Vec<String>), DataError> {
    let mut searched = Vec::new();
    for base in [dir.to_path_buf(), dir.join("tiny-imagenet")] {
        let official = base.join(TINY_IMAGENET_ZIP);
        if official.is_file() {
            verify_official(&official)?;
            return Ok((Some(TinyImagenetSource::Zip(official)), searched));
        }
        let extracted = base.join("tiny-imagenet-200");
        if extracted.join("wnids.txt").is_file() {
            return Ok((Some(TinyImagenetSource::Dir(extracted)), searched));
        }
        if base.join("wnids.txt").is_file() {
            return Ok((Some(TinyImagenetSource::Dir(base)), searched));
        }
        let zips: Vec<PathBuf> = std::fs::read_dir(&base)
            .map(|entries| {
                let mut zips: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "zip"))
                    .collect();
                zips.sort();
                zips
            })
            .unwrap_or_default();
        match zips.as_slice() {
            [] => {}
            [one] => {
                verify_official(one)?;
                return Ok((Some(TinyImagenetSource::Zip(one.clone())), searched));
            }
            many => {
                return Err(DataError::Config {
                    dataset: "Tiny ImageNet",
                    reason: format!(
                        "{} zips in {} ({}); keep one, or name the official {TINY_IMAGENET_ZIP}",
                        many.len(),
                        base.display(),
                        many.iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })
            }
        }
        searched.push(base.display().to_string());
    }
    Ok((None, searched))
}

/// The error for a data directory without Tiny ImageNet: where it looked, what to put there.
fn not_found(searched: &[String]) -> DataError {
    DataError::Config {
        dataset: "Tiny ImageNet",
        reason: format!(
            "not found in {}: put the official {TINY_IMAGENET_ZIP} ({TINY_IMAGENET_SIZE} bytes, \
             MD5 {TINY_IMAGENET_MD5}, from {TINY_IMAGENET_URL}) there, or its extracted \
             tiny-imagenet-200/ folder",
            searched.join(" or ")
        ),
    }
}

/// A file with the official archive's size must be the official archive.
pub fn verify_official(path: &Path) -> Result<(), DataError> {
    let io = |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size != TINY_IMAGENET_SIZE {
        return Ok(());
    }
    let mut file = File::open(path).map_err(io)?;
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
    }
    let found = hex::encode(md5.finalize());
    if found != TINY_IMAGENET_MD5 {
        return Err(DataError::Md5 {
            path: path.to_path_buf(),
            expected: TINY_IMAGENET_MD5.to_string(),
            actual: found,
        });
    }
    Ok(())
}

/// How Tiny ImageNet is split and limited.
#[derive(Debug, Clone, PartialEq)]
pub struct TinyImagenetConfig {
    /// Training images moved into the probe split (default 2,000), by a seeded permutation.
    pub probe_size: usize,
    /// Seed of that permutation.
    pub split_seed: u64,
    /// Keep the first `n` classes of `wnids.txt` (all 200 by default).
    pub classes: Option<usize>,
    /// Keep the first `n` training images of each class, by image number (all by default).
    pub per_class: Option<usize>,
    /// How bytes become floats (default: `p / 255`).
    pub normalisation: Normalisation,
}

impl Default for TinyImagenetConfig {
    fn default() -> Self {
        TinyImagenetConfig {
            probe_size: 2000,
            split_seed: 0,
            classes: None,
            per_class: None,
            normalisation: Normalisation::UnitRange,
        }
    }
}

/// Tiny ImageNet in three splits.
#[derive(Debug, Clone, PartialEq)]
pub struct TinyImagenetData {
    pub train: Split,
    pub probe: Split,
    /// The validation set (the official test set has no labels).
    pub test: Split,
    /// Class ids (`wnids.txt` order, after the class limit): label `k` is `wnids[k]`.
    pub wnids: Vec<String>,
}

/// Entries of the layout, by path relative to its root folder.
trait Layout {
    fn names(&self) -> Vec<String>;
    /// The entry's bytes, refused past `cap` bytes (declared or actual) before they are held.
    fn read(&mut self, name: &str, cap: u64) -> Result<Vec<u8>, DataError>;
    fn origin(&self, name: &str) -> String;
}

/// Reads at most `cap` bytes of `reader` into memory, allocating as bytes arrive; more is an
/// error (a size in a header can lie, so the stream is cut as well).
fn read_capped(reader: impl Read, declared: u64, cap: u64) -> Result<Vec<u8>, String> {
    if declared > cap {
        return Err(format!(
            "declares {declared} bytes, more than the {cap} allowed"
        ));
    }
    let mut bytes = Vec::with_capacity(declared as usize);
    reader
        .take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > cap {
        return Err(format!("holds more than the {cap} bytes allowed"));
    }
    Ok(bytes)
}

struct ZipLayout<R: Read + Seek> {
    path: PathBuf,
    archive: zip::ZipArchive<R>,
    /// Relative name → name in the archive.
    names: BTreeMap<String, String>,
}

impl<R: Read + Seek> Layout for ZipLayout<R> {
    fn names(&self) -> Vec<String> {
        self.names.keys().cloned().collect()
    }
    fn read(&mut self, name: &str, cap: u64) -> Result<Vec<u8>, DataError> {
        let full = &self.names[name];
        let error = |reason: String| DataError::Archive {
            path: self.path.clone(),
            entry: full.clone(),
            reason,
        };
        let file = self
            .archive
            .by_name(full)
            .map_err(|e| error(e.to_string()))?;
        let declared = file.size();
        read_capped(file, declared, cap).map_err(error)
    }
    fn origin(&self, name: &str) -> String {
        format!("{}: {}", self.path.display(), self.names[name])
    }
}

struct DirLayout {
    root: PathBuf,
}

impl Layout for DirLayout {
    fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                // Never through a link to a folder: a link cycle would be walked forever.
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    stack.push(path);
                } else if kind.is_symlink() && path.is_dir() {
                    continue;
                } else if let Ok(rel) = path.strip_prefix(&self.root) {
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        out.sort();
        out
    }
    fn read(&mut self, name: &str, cap: u64) -> Result<Vec<u8>, DataError> {
        let path = self.root.join(name);
        let io = |source| DataError::Io {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io)?;
        let declared = file.metadata().map_err(io)?.len();
        read_capped(file, declared, cap).map_err(|reason| DataError::Image {
            entry: path.display().to_string(),
            reason,
        })
    }
    fn origin(&self, name: &str) -> String {
        self.root.join(name).display().to_string()
    }
}

/// Opens a zip and strips the one root folder of its layout (the folder holding `wnids.txt`).
fn open_zip(path: &Path) -> Result<ZipLayout<File>, DataError> {
    let file = File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let archive = zip::ZipArchive::new(file).map_err(|e| DataError::Archive {
        path: path.to_path_buf(),
        entry: String::new(),
        reason: format!("not a readable zip: {e}"),
    })?;
    let all: Vec<String> = archive.file_names().map(str::to_owned).collect();
    // An entry that climbs out of the layout's folder (`a/../b`, `/etc/x`, `C:\\x`) is refused,
    // not read as the file its name seems to be.
    if let Some(bad) = all.iter().find(|n| !is_plain_entry_name(n)) {
        return Err(DataError::Archive {
            path: path.to_path_buf(),
            entry: bad.clone(),
            reason: "entry name leaves the archive's folder (`..`, `.`, or an absolute path)"
                .into(),
        });
    }
    let root = all
        .iter()
        .filter_map(|n| n.strip_suffix("wnids.txt"))
        .filter(|prefix| prefix.is_empty() || prefix.ends_with('/'))
        .min_by_key(|prefix| prefix.len())
        .map(str::to_owned)
        .ok_or_else(|| layout_error(path, "no wnids.txt in the archive"))?;
    let names = all
        .into_iter()
        .filter(|n| !n.ends_with('/'))
        .filter_map(|n| n.strip_prefix(&root).map(|rel| (rel.to_owned(), n.clone())))
        .collect();
    Ok(ZipLayout {
        path: path.to_path_buf(),
        archive,
        names,
    })
}

/// A relative `/`-separated name without `..` or `.` components or a drive prefix.
fn is_plain_entry_name(name: &str) -> bool {
    !name.starts_with('/')
        && !name.contains('\\')
        && !name.contains(':')
        && name
            .trim_end_matches('/')
            .split('/')
            .all(|part| !part.is_empty() && part != ".." && part != ".")
}

fn layout_error(path: &Path, reason: impl Into<String>) -> DataError {
    DataError::Archive {
        path: path.to_path_buf(),
        entry: String::new(),
        reason: format!(
            "not the Tiny ImageNet layout: {} (expected wnids.txt, train/<wnid>/images/*.JPEG, \
             val/images/*.JPEG, val/val_annotations.txt under one folder)",
            reason.into()
        ),
    }
}

/// Loads and splits Tiny ImageNet from `source`. Every JPEG is decoded once; a corrupt image,
/// a validation image without annotation (or an annotation without image), a class outside
/// `wnids.txt` or a missing part of the layout is one error naming the entry.
pub fn load_tiny_imagenet(
    source: &TinyImagenetSource,
    cfg: &TinyImagenetConfig,
) -> Result<TinyImagenetData, DataError> {
    match source {
        TinyImagenetSource::Zip(path) => load_from(&mut open_zip(path)?, source.path(), cfg),
        TinyImagenetSource::Dir(root) => {
            load_from(&mut DirLayout { root: root.clone() }, source.path(), cfg)
        }
    }
}

fn load_from(
    layout: &mut dyn Layout,
    origin: &Path,
    cfg: &TinyImagenetConfig,
) -> Result<TinyImagenetData, DataError> {
    let names = layout.names();
    if !names.iter().any(|n| n == "wnids.txt") {
        return Err(layout_error(origin, "no wnids.txt"));
    }
    let text = |layout: &mut dyn Layout, name: &str| -> Result<String, DataError> {
        String::from_utf8(layout.read(name, MAX_TEXT_BYTES)?).map_err(|_| DataError::Archive {
            path: origin.to_path_buf(),
            entry: name.to_owned(),
            reason: "not UTF-8 text".into(),
        })
    };
    let mut wnids: Vec<String> = text(layout, "wnids.txt")?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect();
    if wnids.is_empty() || wnids.len() > 256 {
        return Err(layout_error(
            origin,
            format!("wnids.txt lists {} classes (1 to 256 allowed)", wnids.len()),
        ));
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some(twice) = wnids.iter().find(|w| !seen.insert(w.as_str())) {
        return Err(DataError::Archive {
            path: origin.to_path_buf(),
            entry: "wnids.txt".into(),
            reason: format!("class {twice} is listed twice (it would get two labels)"),
        });
    }
    let listed: std::collections::BTreeSet<String> = wnids.iter().cloned().collect();
    if let Some(limit) = cfg.classes {
        if limit == 0 || limit > wnids.len() {
            return Err(DataError::Config {
                dataset: "Tiny ImageNet",
                reason: format!("classes = {limit}, but wnids.txt lists {}", wnids.len()),
            });
        }
        wnids.truncate(limit);
    }
    let class_of: BTreeMap<&str, u8> = wnids
        .iter()
        .enumerate()
        .map(|(k, w)| (w.as_str(), k as u8))
        .collect();

    // Training images: train/<wnid>/images/<file>, the first `per_class` by image number.
    let mut train: Vec<(String, u8)> = Vec::new();
    for (k, wnid) in wnids.iter().enumerate() {
        let prefix = format!("train/{wnid}/images/");
        let mut files: Vec<&String> = names
            .iter()
            .filter(|n| n.starts_with(&prefix) && is_jpeg(n))
            .collect();
        if files.is_empty() {
            return Err(layout_error(
                origin,
                format!("no training images under {prefix} for class {wnid}"),
            ));
        }
        files.sort_by_key(|n| (image_number(n), (*n).clone()));
        let keep = cfg.per_class.unwrap_or(usize::MAX).min(files.len());
        train.extend(files[..keep].iter().map(|n| ((*n).clone(), k as u8)));
    }

    // Validation images, labelled by val/val_annotations.txt.
    if !names.iter().any(|n| n == "val/val_annotations.txt") {
        return Err(layout_error(origin, "no val/val_annotations.txt"));
    }
    let mut annotated: BTreeMap<String, String> = BTreeMap::new();
    for (line_no, line) in text(layout, "val/val_annotations.txt")?.lines().enumerate() {
        let mut fields = line.split('\t');
        let (Some(file), Some(wnid)) = (fields.next(), fields.next()) else {
            if line.trim().is_empty() {
                continue;
            }
            return Err(DataError::Archive {
                path: origin.to_path_buf(),
                entry: "val/val_annotations.txt".into(),
                reason: format!("line {}: expected file<TAB>wnid<TAB>…", line_no + 1),
            });
        };
        annotated.insert(file.to_owned(), wnid.to_owned());
    }
    let mut val: Vec<(String, u8)> = Vec::new();
    for name in names
        .iter()
        .filter(|n| n.starts_with("val/images/") && is_jpeg(n))
    {
        let file = &name["val/images/".len()..];
        let Some(wnid) = annotated.remove(file) else {
            return Err(DataError::Archive {
                path: origin.to_path_buf(),
                entry: layout.origin(name),
                reason: "validation image without an annotation in val/val_annotations.txt".into(),
            });
        };
        if let Some(&k) = class_of.get(wnid.as_str()) {
            val.push((name.clone(), k));
        } else if !listed.contains(&wnid) {
            // Beyond the class limit an image is dropped; of no listed class it is an error.
            return Err(DataError::Archive {
                path: origin.to_path_buf(),
                entry: layout.origin(name),
                reason: format!("annotated with class {wnid}, which wnids.txt does not list"),
            });
        }
    }
    if let Some((file, _)) = annotated.into_iter().next() {
        return Err(DataError::Archive {
            path: origin.to_path_buf(),
            entry: "val/val_annotations.txt".into(),
            reason: format!("annotates {file}, which is not under val/images/"),
        });
    }
    val.sort_by_key(|(n, _)| (image_number(n), n.clone()));

    if cfg.probe_size >= train.len() {
        return Err(DataError::Config {
            dataset: "Tiny ImageNet",
            reason: format!(
                "probe_size {} must be smaller than the {} training images",
                cfg.probe_size,
                train.len()
            ),
        });
    }
    let train_pixels = decode_all(layout, &train)?;
    let val_pixels = decode_all(layout, &val)?;
    let train_labels: Vec<u8> = train.iter().map(|(_, k)| *k).collect();
    let val_labels: Vec<u8> = val.iter().map(|(_, k)| *k).collect();

    let perm = seeded_permutation(train.len(), cfg.split_seed);
    let mut probe_idx: Vec<u32> = perm[..cfg.probe_size].iter().map(|&i| i as u32).collect();
    let mut train_idx: Vec<u32> = perm[cfg.probe_size..].iter().map(|&i| i as u32).collect();
    probe_idx.sort_unstable();
    train_idx.sort_unstable();
    let norm = cfg.normalisation;
    let len = TINY_IMAGENET_IMAGE_LEN;
    Ok(TinyImagenetData {
        train: Split::gather(&train_pixels, &train_labels, len, train_idx, norm),
        probe: Split::gather(&train_pixels, &train_labels, len, probe_idx, norm),
        test: Split::gather(
            &val_pixels,
            &val_labels,
            len,
            (0..val.len() as u32).collect(),
            norm,
        ),
        wnids,
    })
}

fn is_jpeg(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".jpeg") || lower.ends_with(".jpg")
}

/// The number in `…_<n>.JPEG` (train) or `val_<n>.JPEG`, so the "first n" images are 0, 1, 2,
/// … rather than 0, 1, 10, 100.
fn image_number(name: &str) -> u64 {
    let stem = name.rsplit('/').next().unwrap_or(name);
    let stem = stem.split('.').next().unwrap_or(stem);
    stem.rsplit('_')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

/// Reads every image (in order) and decodes them in parallel into channel-major bytes.
/// Chunk by chunk, so that undecoded bytes never pile up: the memory held is the decoded images
/// plus one chunk.
fn decode_all(layout: &mut dyn Layout, images: &[(String, u8)]) -> Result<Vec<u8>, DataError> {
    let mut out = Vec::with_capacity(images.len() * TINY_IMAGENET_IMAGE_LEN);
    for chunk in images.chunks(READ_CHUNK) {
        let mut raw = Vec::with_capacity(chunk.len());
        for (name, _) in chunk {
            raw.push((layout.origin(name), layout.read(name, MAX_IMAGE_BYTES)?));
        }
        let decoded: Vec<Result<Vec<u8>, DataError>> = raw
            .par_iter()
            .map(|(origin, bytes)| decode_jpeg(bytes, origin))
            .collect();
        for image in decoded {
            out.extend(image?);
        }
    }
    Ok(out)
}

/// One JPEG as 3 × 64 × 64 bytes, channel-major; grayscale becomes three equal channels.
///
/// The size is read from the header before anything is decoded, and a JPEG that does not end
/// in its end-of-image marker is refused as truncated (the decoder would fill the rest in).
pub fn decode_jpeg(bytes: &[u8], origin: &str) -> Result<Vec<u8>, DataError> {
    let bad = |reason: String| DataError::Image {
        entry: origin.to_owned(),
        reason,
    };
    let side = TINY_IMAGENET_SIDE as u32;
    let reader =
        || image::ImageReader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Jpeg);
    let (width, height) = reader().into_dimensions().map_err(|e| bad(e.to_string()))?;
    if (width, height) != (side, side) {
        return Err(bad(format!(
            "{width}x{height} pixels, expected {side}x{side}"
        )));
    }
    if !bytes.ends_with(&[0xFF, 0xD9]) {
        return Err(bad(
            "truncated: no end-of-image marker (FF D9) at the end".into()
        ));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    limits.max_alloc = Some(16 * TINY_IMAGENET_IMAGE_LEN as u64);
    let mut reader = reader();
    reader.limits(limits);
    let image = reader.decode().map_err(|e| bad(e.to_string()))?.to_rgb8();
    if image.width() != side || image.height() != side {
        return Err(DataError::Image {
            entry: origin.to_owned(),
            reason: format!(
                "{}x{} pixels, expected {side}x{side}",
                image.width(),
                image.height()
            ),
        });
    }
    let plane = TINY_IMAGENET_SIDE * TINY_IMAGENET_SIDE;
    let mut out = vec![0u8; TINY_IMAGENET_IMAGE_LEN];
    for (i, pixel) in image.pixels().enumerate() {
        for c in 0..3 {
            out[c * plane + i] = pixel.0[c];
        }
    }
    Ok(out)
}
