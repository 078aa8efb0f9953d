//! The IDX file format (as used by MNIST), plain or gzip-compressed.
//!
//! An IDX file is a big-endian header followed by unsigned bytes: images are
//! `0x00000803, count, rows, cols` then `count * rows * cols` pixels (row-major); labels are
//! `0x00000801, count` then `count` labels. The decompressed size must match the header exactly.

use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::Path;

use flate2::read::GzDecoder;

use crate::DataError;

/// Magic number of an IDX file of unsigned-byte 3-d data (images).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic number of an IDX file of unsigned-byte 1-d data (labels).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

/// Most payload bytes an IDX file may declare: 256 MiB, five times MNIST's 47 MB of training
/// images, so that a lying header of a small gzip bomb cannot make the reader hold gigabytes.
pub const MAX_IDX_PAYLOAD: u64 = 256 << 20;

/// Bytes a gzip file starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Images decoded from an IDX file: `count` images of `rows x cols` unsigned bytes, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `count * rows * cols` pixel bytes, image after image, each row-major.
    pub pixels: Vec<u8>,
}

/// Parses an uncompressed IDX image file from a reader; `origin` names it in error messages.
pub fn parse_idx_images(reader: impl Read, origin: &Path) -> Result<IdxImages, DataError> {
    parse_images(reader, origin, io_error)
}

/// Parses an uncompressed IDX label file from a reader; `origin` names it in error messages.
///
/// Label values are not range-checked here; the dataset loader does that.
pub fn parse_idx_labels(reader: impl Read, origin: &Path) -> Result<Vec<u8>, DataError> {
    parse_labels(reader, origin, io_error)
}

/// Reads a gzip-compressed IDX image file (e.g. `train-images-idx3-ubyte.gz`).
pub fn read_idx_images_gz(path: &Path) -> Result<IdxImages, DataError> {
    let reader = open_gz(path)?;
    parse_images(reader, path, gzip_error)
}

/// Reads a gzip-compressed IDX label file (e.g. `train-labels-idx1-ubyte.gz`).
pub fn read_idx_labels_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let reader = open_gz(path)?;
    parse_labels(reader, path, gzip_error)
}

/// How a read error of the stream is reported: plain I/O, or a corrupt gzip stream.
type ReadErr = fn(&Path, io::Error) -> DataError;

fn io_error(path: &Path, e: io::Error) -> DataError {
    DataError::io(path, e)
}

fn gzip_error(path: &Path, e: io::Error) -> DataError {
    DataError::Gzip {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Opens `path`, checks the gzip magic bytes and returns a decompressing reader.
fn open_gz(path: &Path) -> Result<impl Read, DataError> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut head = Vec::with_capacity(2);
    (&mut file)
        .take(2)
        .read_to_end(&mut head)
        .map_err(|e| DataError::io(path, e))?;
    if head != GZIP_MAGIC {
        let found = match head.as_slice() {
            [] => "an empty file".to_string(),
            bytes => format!(
                "first bytes {}",
                bytes
                    .iter()
                    .map(|b| format!("0x{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        };
        return Err(DataError::Gzip {
            path: path.to_path_buf(),
            reason: format!("not a gzip file: expected first bytes 0x1f 0x8b, found {found}"),
        });
    }
    Ok(GzDecoder::new(Cursor::new(head).chain(file)))
}

fn parse_images(reader: impl Read, origin: &Path, err: ReadErr) -> Result<IdxImages, DataError> {
    let mut reader = reader;
    let header = read_header::<4>(&mut reader, origin, IDX_IMAGES_MAGIC, "images", err)?;
    let [_, count, rows, cols] = header.map(|v| v as usize);
    let payload = (count as u64)
        .checked_mul(rows as u64)
        .and_then(|v| v.checked_mul(cols as u64))
        .ok_or_else(|| DataError::Truncated {
            path: origin.to_path_buf(),
            expected: u64::MAX,
            actual: 0,
            what: format!("header declares {count} images of {rows}x{cols}, too many to hold"),
        })?;
    let what = || format!("16-byte header + {count} images of {rows}x{cols}");
    let pixels = read_payload(&mut reader, origin, 16, payload, what, err)?;
    Ok(IdxImages {
        count,
        rows,
        cols,
        pixels,
    })
}

fn parse_labels(reader: impl Read, origin: &Path, err: ReadErr) -> Result<Vec<u8>, DataError> {
    let mut reader = reader;
    let [_, count] = read_header::<2>(&mut reader, origin, IDX_LABELS_MAGIC, "labels", err)?;
    let what = || format!("8-byte header + {count} labels");
    read_payload(&mut reader, origin, 8, count as u64, what, err)
}

/// Reads `N` big-endian u32 words, the first of which must be `magic`.
fn read_header<const N: usize>(
    reader: &mut impl Read,
    origin: &Path,
    magic: u32,
    what: &'static str,
    err: ReadErr,
) -> Result<[u32; N], DataError> {
    let len = 4 * N;
    let mut bytes = Vec::with_capacity(len);
    reader
        .take(len as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| err(origin, e))?;
    if bytes.len() >= 4 {
        let found = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if found != magic {
            return Err(DataError::BadMagic {
                path: origin.to_path_buf(),
                expected: magic,
                found,
                what,
            });
        }
    }
    if bytes.len() < len {
        return Err(DataError::Truncated {
            path: origin.to_path_buf(),
            expected: len as u64,
            actual: bytes.len() as u64,
            what: format!("{len}-byte header"),
        });
    }
    let mut words = [0u32; N];
    for (i, w) in words.iter_mut().enumerate() {
        *w = u32::from_be_bytes([
            bytes[4 * i],
            bytes[4 * i + 1],
            bytes[4 * i + 2],
            bytes[4 * i + 3],
        ]);
    }
    Ok(words)
}

/// Reads at most `len + 1` bytes. A header can lie, so memory is never taken on its word: the
/// buffer starts at 1 MiB and doubles as bytes arrive, but never past `len + 1` (a valid file
/// ends with one exact allocation's worth; a truncated one costs what it holds, at most twice).
fn read_growing(reader: &mut impl Read, len: u64) -> io::Result<Vec<u8>> {
    let limit = len.saturating_add(1) as usize;
    let mut data = vec![0u8; limit.min(1 << 20)];
    let mut filled = 0;
    loop {
        if filled == data.len() {
            if filled == limit {
                break;
            }
            let grown = (2 * data.len()).min(limit);
            data.reserve_exact(grown - data.len());
            data.resize(grown, 0);
        }
        match reader.read(&mut data[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    data.truncate(filled);
    Ok(data)
}

/// Reads exactly `len` payload bytes and checks that nothing follows them.
fn read_payload(
    reader: &mut impl Read,
    origin: &Path,
    header_len: u64,
    len: u64,
    what: impl Fn() -> String,
    err: ReadErr,
) -> Result<Vec<u8>, DataError> {
    if len > MAX_IDX_PAYLOAD {
        return Err(DataError::TooLarge {
            path: origin.to_path_buf(),
            what: what(),
            cap: MAX_IDX_PAYLOAD,
        });
    }
    let data = read_growing(reader, len).map_err(|e| err(origin, e))?;
    let got = data.len() as u64;
    if got < len {
        return Err(DataError::Truncated {
            path: origin.to_path_buf(),
            expected: header_len + len,
            actual: header_len + got,
            what: what(),
        });
    }
    if got > len {
        return Err(DataError::TrailingData {
            path: origin.to_path_buf(),
            expected: header_len + len,
        });
    }
    Ok(data)
}
