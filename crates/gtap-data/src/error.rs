//! The one error type of this crate. Every variant names the file (or directory) involved;
//! errors about one record of a text dataset also name its line (or parquet row).

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while locating, fetching, checking, parsing or caching a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// Opening, reading or writing a file failed at the operating-system level.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A `.gz` file is not a gzip file, or its compressed stream is corrupt or cut short.
    #[error("{}: corrupt gzip file: {reason}", path.display())]
    Gzip {
        /// The gzip file.
        path: PathBuf,
        /// What the decompressor reported.
        reason: String,
    },

    /// An IDX file starts with the wrong magic number (e.g. a label file given as images).
    #[error(
        "{}: wrong IDX magic number: expected 0x{expected:08x} ({what}), found 0x{found:08x}",
        path.display()
    )]
    BadMagic {
        /// The IDX file.
        path: PathBuf,
        /// The magic number this kind of file must start with.
        expected: u32,
        /// The magic number the file starts with.
        found: u32,
        /// What the file should hold, e.g. "images".
        what: &'static str,
    },

    /// A file's header declares more data than a reader may hold (refused before reading it).
    #[error("{}: {what} declared, more than the {cap} bytes allowed", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// What the header declares, e.g. "16-byte header + 1000000 images of 1000x1000".
        what: String,
        /// The most bytes allowed.
        cap: u64,
    },

    /// An IDX file (after decompression) is shorter than its header says.
    #[error(
        "{}: truncated IDX file: expected {expected} bytes ({what}), found {actual}",
        path.display()
    )]
    Truncated {
        /// The IDX file.
        path: PathBuf,
        /// Bytes the header (or the header itself) requires.
        expected: u64,
        /// Bytes actually present.
        actual: u64,
        /// Which part is short, e.g. "16-byte header" or "header + 3 images of 28x28".
        what: String,
    },

    /// An IDX file (after decompression) holds more bytes than its header says.
    #[error(
        "{}: trailing data in IDX file: header implies {expected} bytes, file holds more",
        path.display()
    )]
    TrailingData {
        /// The IDX file.
        path: PathBuf,
        /// Bytes the header implies.
        expected: u64,
    },

    /// Images are not of the size the dataset requires (MNIST: 28x28).
    #[error(
        "{}: expected {expected_rows}x{expected_cols} images, found {rows}x{cols}",
        path.display()
    )]
    BadShape {
        /// The image file.
        path: PathBuf,
        /// Rows found in the header.
        rows: usize,
        /// Columns found in the header.
        cols: usize,
        /// Rows required.
        expected_rows: usize,
        /// Columns required.
        expected_cols: usize,
    },

    /// The image file and the label file of one split disagree on the number of examples.
    #[error(
        "{} holds {images} images but {} holds {labels} labels",
        images_path.display(),
        labels_path.display()
    )]
    CountMismatch {
        /// The image file.
        images_path: PathBuf,
        /// Number of images it holds.
        images: usize,
        /// The label file.
        labels_path: PathBuf,
        /// Number of labels it holds.
        labels: usize,
    },

    /// A label is outside the dataset's class range.
    #[error(
        "{}: label {label} at index {index} is out of range (classes are 0..={max})",
        path.display()
    )]
    BadLabel {
        /// The label file.
        path: PathBuf,
        /// Zero-based position of the offending label.
        index: usize,
        /// The offending label.
        label: u8,
        /// The largest valid label.
        max: u8,
    },

    /// A file's SHA-256 digest differs from the canonical one.
    #[error(
        "{}: {algorithm} mismatch: expected {expected}, found {actual}",
        path.display()
    )]
    Checksum {
        /// The file that was hashed.
        path: PathBuf,
        /// `sha256` or `md5`: the digest the dataset publishes.
        algorithm: &'static str,
        /// The canonical digest (lower-case hex).
        expected: String,
        /// The digest of the file on disk (lower-case hex).
        actual: String,
    },

    /// A file of the official Tiny ImageNet archive's size whose MD5 is not the published one.
    #[error(
        "{}: md5 mismatch: expected {expected}, found {actual} (a file of the official archive's size must be the official archive)",
        path.display()
    )]
    Md5 {
        /// The archive.
        path: PathBuf,
        /// The published digest.
        expected: String,
        /// The file's digest.
        actual: String,
    },

    /// An archive (zip) entry cannot be read, or the archive is not in the expected layout.
    /// `entry` is empty when the archive as a whole is at fault.
    #[error("{}{}{entry}: {reason}", path.display(), if entry.is_empty() { "" } else { ": " })]
    Archive {
        /// The archive or extracted folder.
        path: PathBuf,
        /// The entry at fault, as named in the archive.
        entry: String,
        /// What is wrong.
        reason: String,
    },

    /// An image does not decode, or has the wrong size.
    #[error("{entry}: {reason}")]
    Image {
        /// `<archive>: <entry>` or the image file.
        entry: String,
        /// What the decoder reported.
        reason: String,
    },

    /// One download attempt failed (connection, HTTP status, I/O or checksum of the received bytes).
    #[error("{}: download from {url} failed: {reason}", path.display())]
    Download {
        /// Where the file was to be written.
        path: PathBuf,
        /// The URL tried.
        url: String,
        /// Why it failed.
        reason: String,
    },

    /// Dataset files are absent and could not be downloaded; says what to do about it.
    #[error(
        "{dataset} files missing: {} not found in {}; {download}; to fix this, pass --data-dir \
         or set GTAP_DATA_DIR to a directory holding the files {}",
        missing.join(", "),
        searched.join(" or "),
        expected.join(", ")
    )]
    Missing {
        /// Dataset name, e.g. "MNIST".
        dataset: &'static str,
        /// The directories searched, in order (marked when they do not exist).
        searched: Vec<String>,
        /// The file names not found there.
        missing: Vec<String>,
        /// Every file name the dataset needs.
        expected: Vec<String>,
        /// What happened to the download: disabled, or which URL failed and why.
        download: String,
    },

    /// A loader configuration is invalid (e.g. a probe split as large as the training set).
    #[error("invalid {dataset} configuration: {reason}")]
    Config {
        /// Dataset name, e.g. "MNIST".
        dataset: &'static str,
        /// What is wrong and what is allowed.
        reason: String,
    },

    /// A cached split file is malformed (bad magic, inconsistent header, wrong length).
    #[error("{}: invalid split file: {reason}", path.display())]
    BadSplitFile {
        /// The split file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A line of a `text;label` file has no `;` between text and label.
    #[error(
        "{}: line {line} has no `;` separating text and label (expected `text;label`)",
        path.display()
    )]
    MissingSeparator {
        /// The text file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
    },

    /// A label name is not one of the dataset's classes.
    #[error(
        "{}: line {line}: unknown label `{label}` (expected one of {})",
        path.display(),
        known.join(", ")
    )]
    UnknownLabel {
        /// The text file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// The label as written.
        label: String,
        /// The dataset's label names, in class-id order.
        known: Vec<String>,
    },

    /// A numeric label of a text dataset is outside `0..classes`.
    #[error(
        "{}: {at}: label {label} is out of range (classes are 0..={})",
        path.display(),
        classes - 1
    )]
    LabelOutOfRange {
        /// The CSV or parquet file.
        path: PathBuf,
        /// Where the record is.
        at: Location,
        /// The offending label.
        label: i64,
        /// Number of classes of the dataset.
        classes: usize,
    },

    /// A line (or CSV record) is not valid UTF-8.
    #[error("{}: line {line} is not valid UTF-8", path.display())]
    InvalidUtf8 {
        /// The text file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
    },

    /// A record of a text dataset is malformed otherwise (CSV structure, missing column, a
    /// label that is not an integer, a null).
    #[error("{}: {at}: {reason}", path.display())]
    BadRecord {
        /// The text file.
        path: PathBuf,
        /// Where the record is.
        at: Location,
        /// What is wrong with it.
        reason: String,
    },

    /// A dataset file holds no examples.
    #[error("{}: file holds no examples", path.display())]
    EmptyFile {
        /// The empty file.
        path: PathBuf,
    },

    /// A parquet file cannot be read or lacks the expected columns.
    #[error("{}: invalid parquet file: {reason}", path.display())]
    BadParquet {
        /// The parquet file.
        path: PathBuf,
        /// What the reader reported, or which column is missing or of the wrong type.
        reason: String,
    },

    /// A cached vocabulary file is malformed (not a JSON list of distinct tokens).
    #[error("{}: invalid vocabulary file: {reason}", path.display())]
    BadVocabulary {
        /// The vocabulary file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Where a record sits in a dataset file: a 1-based line (text, CSV) or row (parquet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// 1-based line of a text or CSV file.
    Line(u64),
    /// 1-based data row of a parquet file.
    Row(u64),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Row(n) => write!(f, "row {n}"),
        }
    }
}

impl DataError {
    /// Shorthand for [`DataError::Io`].
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
