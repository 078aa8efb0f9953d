//! A split of a dataset (raw bytes per example, their floats, labels, original indices), its
//! compact binary file form, and the seeded permutation used to carve splits. Examples are
//! images (MNIST pixels) or binary bag-of-words vectors (text, one byte per word).

use std::fs;
use std::path::Path;

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::DataError;

/// How raw bytes `p` (0..=255: pixels, or 0/1 word indicators) become model inputs.
///
/// The value of each byte is computed once in `f32` as `p as f32 / 255.0` (unit range), then
/// `(that - mean) / std` (mean/std), or as `p as f32` (identity), so the floats are the same on
/// every machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Normalisation {
    /// `p / 255`, in `[0, 1]`.
    UnitRange,
    /// `(p / 255 - mean) / std`.
    MeanStd {
        /// Subtracted after scaling to `[0, 1]`.
        mean: f32,
        /// Divided by after subtracting the mean; must be positive.
        std: f32,
    },
    /// `p` itself as a float: 0/1 indicators (bag-of-words) or small counts.
    Identity,
}

impl Normalisation {
    /// The usual MNIST statistics of the 60,000 training images: mean 0.1307, std 0.3081
    /// (as in the PyTorch examples). The default for MNIST.
    pub const MNIST: Normalisation = Normalisation::MeanStd {
        mean: 0.1307,
        std: 0.3081,
    };

    /// The float for one pixel byte.
    pub fn apply(self, p: u8) -> f32 {
        let x = f32::from(p) / 255.0;
        match self {
            Normalisation::UnitRange => x,
            Normalisation::MeanStd { mean, std } => (x - mean) / std,
            Normalisation::Identity => f32::from(p),
        }
    }

    /// The floats for all 256 byte values.
    fn table(self) -> [f32; 256] {
        let mut t = [0f32; 256];
        for (p, v) in t.iter_mut().enumerate() {
            *v = self.apply(p as u8);
        }
        t
    }

    /// Tag, mean and std as stored in a split file.
    fn encode(self) -> (u32, f32, f32) {
        match self {
            Normalisation::UnitRange => (0, 0.0, 1.0),
            Normalisation::MeanStd { mean, std } => (1, mean, std),
            Normalisation::Identity => (2, 0.0, 1.0),
        }
    }

    fn decode(tag: u32, mean: f32, std: f32) -> Result<Self, String> {
        match tag {
            0 => Ok(Normalisation::UnitRange),
            1 if mean.is_finite() && std.is_finite() && std > 0.0 => {
                Ok(Normalisation::MeanStd { mean, std })
            }
            1 => Err(format!(
                "normalisation mean {mean} / std {std} is invalid (need finite values, std > 0)"
            )),
            2 => Ok(Normalisation::Identity),
            t => Err(format!(
                "unknown normalisation tag {t} (expected 0 = unit range, 1 = mean/std or \
                 2 = identity)"
            )),
        }
    }
}

/// One split of a classification dataset, e.g. MNIST's train, probe or test split, or a text
/// dataset's bag-of-words vectors (one byte per vocabulary word).
///
/// Holds the raw pixel bytes (the source of truth, used for hashing and the split file), the
/// normalised `f32` images derived from them, the labels and each example's index in the
/// original file. Examples are in ascending original-index order. Fields are private so the
/// raw and normalised views cannot drift apart.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pixels: Vec<u8>,
    labels: Vec<u8>,
    indices: Vec<u32>,
    image_len: usize,
    normalisation: Normalisation,
    images: Vec<f32>,
}

/// Magic bytes of a split file; the trailing digit is the format version.
const SPLIT_MAGIC: &[u8; 8] = b"GTAPSPL1";
/// Bytes before the per-example data in a split file.
const SPLIT_HEADER_LEN: usize = 32;

impl Split {
    /// Builds a split from raw parts: `labels.len()` examples of `image_len` pixel bytes each,
    /// with their original indices. Fails with [`DataError::Config`] if the lengths disagree.
    pub fn from_raw(
        pixels: Vec<u8>,
        labels: Vec<u8>,
        indices: Vec<u32>,
        image_len: usize,
        normalisation: Normalisation,
    ) -> Result<Split, DataError> {
        let n = labels.len();
        if indices.len() != n || Some(pixels.len()) != n.checked_mul(image_len) {
            return Err(DataError::Config {
                dataset: "split",
                reason: format!(
                    "{n} labels need {n} indices and {n} x {image_len} pixel bytes, \
                     got {} indices and {} bytes",
                    indices.len(),
                    pixels.len()
                ),
            });
        }
        let table = normalisation.table();
        let images = pixels.iter().map(|&p| table[p as usize]).collect();
        Ok(Split {
            pixels,
            labels,
            indices,
            image_len,
            normalisation,
            images,
        })
    }

    /// Takes the examples at `indices` (ascending) out of full-dataset arrays.
    pub(crate) fn gather(
        all_pixels: &[u8],
        all_labels: &[u8],
        image_len: usize,
        indices: Vec<u32>,
        normalisation: Normalisation,
    ) -> Split {
        let mut pixels = Vec::with_capacity(indices.len() * image_len);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in &indices {
            let i = i as usize;
            pixels.extend_from_slice(&all_pixels[i * image_len..(i + 1) * image_len]);
            labels.push(all_labels[i]);
        }
        Split::from_raw(pixels, labels, indices, image_len, normalisation)
            .expect("gather builds consistent lengths")
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the split holds no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes (features) per example: 784 pixels for MNIST, the vocabulary size for text.
    pub fn image_len(&self) -> usize {
        self.image_len
    }

    /// Normalised images, `len() * image_len()` floats, example after example (row-major).
    pub fn images(&self) -> &[f32] {
        &self.images
    }

    /// The normalised image of example `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        &self.images[i * self.image_len..(i + 1) * self.image_len]
    }

    /// Raw pixel bytes (0..=255), laid out like [`Split::images`].
    pub fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    /// Labels, one per example (original class labels, never remapped).
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }

    /// Each example's zero-based index in the original dataset file, ascending.
    pub fn indices(&self) -> &[u32] {
        &self.indices
    }

    /// How [`Split::images`] was computed from [`Split::pixels`].
    pub fn normalisation(&self) -> Normalisation {
        self.normalisation
    }

    /// Number of examples per label value, for labels `0..num_classes` (larger ones are not counted).
    pub fn class_counts(&self, num_classes: usize) -> Vec<usize> {
        let mut counts = vec![0; num_classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// Consumes the split and returns the normalised images.
    pub fn into_images(self) -> Vec<f32> {
        self.images
    }

    /// The split in its file form (see [`Split::write_to`]).
    pub fn to_bytes(&self) -> Vec<u8> {
        let n = self.len();
        let mut out = Vec::with_capacity(SPLIT_HEADER_LEN + n * (4 + self.image_len + 1));
        let (tag, mean, std) = self.normalisation.encode();
        out.extend_from_slice(SPLIT_MAGIC);
        out.extend_from_slice(&(self.image_len as u32).to_le_bytes());
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&mean.to_le_bytes());
        out.extend_from_slice(&std.to_le_bytes());
        out.extend_from_slice(&(n as u64).to_le_bytes());
        for &i in &self.indices {
            out.extend_from_slice(&i.to_le_bytes());
        }
        out.extend_from_slice(&self.pixels);
        out.extend_from_slice(&self.labels);
        out
    }

    /// Parses the file form produced by [`Split::to_bytes`]; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &Path) -> Result<Split, DataError> {
        let bad = |reason: String| DataError::BadSplitFile {
            path: origin.to_path_buf(),
            reason,
        };
        if bytes.len() < SPLIT_HEADER_LEN {
            return Err(bad(format!(
                "file is {} bytes, shorter than the {SPLIT_HEADER_LEN}-byte header",
                bytes.len()
            )));
        }
        if &bytes[..8] != SPLIT_MAGIC {
            return Err(bad(format!(
                "wrong magic: expected {:?}, found {:?}",
                String::from_utf8_lossy(SPLIT_MAGIC),
                String::from_utf8_lossy(&bytes[..8])
            )));
        }
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
        let f32_at = |o: usize| f32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
        let image_len = u32_at(8) as usize;
        let normalisation =
            Normalisation::decode(u32_at(12), f32_at(16), f32_at(20)).map_err(bad)?;
        let n = u64::from_le_bytes(bytes[24..32].try_into().expect("8 bytes"));
        let expected = (n as u128) * (4 + image_len as u128 + 1) + SPLIT_HEADER_LEN as u128;
        if expected != bytes.len() as u128 {
            return Err(bad(format!(
                "header declares {n} examples of {image_len} pixels, which needs {expected} bytes, \
                 but the file holds {}",
                bytes.len()
            )));
        }
        let n = n as usize;
        let idx_end = SPLIT_HEADER_LEN + 4 * n;
        let pix_end = idx_end + n * image_len;
        let indices: Vec<u32> = bytes[SPLIT_HEADER_LEN..idx_end]
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        let pixels = bytes[idx_end..pix_end].to_vec();
        let labels = bytes[pix_end..].to_vec();
        Split::from_raw(pixels, labels, indices, image_len, normalisation)
    }

    /// Writes the split to `path` in its compact binary form (overwriting it).
    ///
    /// Layout, little-endian: magic `GTAPSPL1`; `u32` pixels per image; `u32` normalisation tag
    /// (0 unit range, 1 mean/std, 2 identity), `f32` mean, `f32` std; `u64` example count `n`; `n` × `u32`
    /// original indices; `n × image_len` pixel bytes; `n` label bytes. Pixels are stored as raw
    /// bytes (4× smaller than floats) and normalised again on read, so a write/read round trip
    /// gives back an identical split. The file is written in place; callers that need atomicity
    /// write into a temporary directory and rename it (as the stage engine does).
    pub fn write_to(&self, path: &Path) -> Result<(), DataError> {
        fs::write(path, self.to_bytes()).map_err(|e| DataError::io(path, e))
    }

    /// Reads a split written by [`Split::write_to`], checking magic, header and file length.
    pub fn read_from(path: &Path) -> Result<Split, DataError> {
        let bytes = fs::read(path).map_err(|e| DataError::io(path, e))?;
        Split::from_bytes(&bytes, path)
    }
}

/// A seeded uniformly random permutation of `0..n` (Fisher–Yates).
///
/// Depends only on the ChaCha8 stream of `rand_chacha`: the 32-byte key is `seed` in
/// little-endian followed by zeros, and bounded integers are drawn by rejection from
/// `next_u64`. No `rand` distribution code is involved, so the permutation is stable across
/// `rand` upgrades and platforms.
pub fn seeded_permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key);
    let mut perm: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = below(&mut rng, i as u64 + 1) as usize;
        perm.swap(i, j);
    }
    perm
}

/// A uniform integer in `0..bound` (`bound > 0`), by rejection of the biased low range.
fn below(rng: &mut ChaCha8Rng, bound: u64) -> u64 {
    let threshold = bound.wrapping_neg() % bound; // 2^64 mod bound
    loop {
        let x = rng.next_u64();
        if x >= threshold {
            return x % bound;
        }
    }
}
