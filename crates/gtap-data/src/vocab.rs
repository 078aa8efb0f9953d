//! Tokenisation and the bag-of-words vocabulary of the text datasets.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::DataError;

/// The words of `text`: lower-cased maximal runs of word characters (Unicode alphanumeric or
/// `_`); everything else separates words. `"Fed's 0.5%-hike_ok"` gives
/// `["fed", "s", "0", "5", "hike_ok"]`.
pub fn tokenize(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() || c == '_' {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// Token id of the padding after a text's last word ([`Vocabulary::encode_tokens_into`]).
pub const PAD_TOKEN: u16 = 0;
/// Token id of a word outside the vocabulary.
pub const UNKNOWN_TOKEN: u16 = 1;
/// Vocabulary word `i` is token id `i + FIRST_WORD_TOKEN`.
pub const FIRST_WORD_TOKEN: usize = 2;
/// Most words a vocabulary can hold and still give every token id two bytes.
pub const MAX_TOKEN_VOCABULARY: usize = u16::MAX as usize + 1 - FIRST_WORD_TOKEN;

/// The words a bag-of-words model sees, in feature order.
///
/// Built from training texts only ([`Vocabulary::build`]): the `size` words that occur in the
/// most texts (document frequency), ties broken by the word itself (byte order), so the same
/// texts always give the same vocabulary whatever the hash seed. Serialises as a JSON list of
/// the words in index order ([`Vocabulary::to_json`]), so it can be a cached artefact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocabulary {
    words: Vec<String>,
    index: HashMap<String, usize>,
}

impl Vocabulary {
    /// The `size` words with the highest document frequency over `texts` (fewer if the texts
    /// hold fewer distinct words), most frequent first, ties in byte order of the word.
    pub fn build<S: AsRef<str>>(texts: &[S], size: usize) -> Vocabulary {
        let mut df: HashMap<String, u32> = HashMap::new();
        for text in texts {
            let mut words = tokenize(text.as_ref());
            words.sort_unstable();
            words.dedup();
            for w in words {
                *df.entry(w).or_insert(0) += 1;
            }
        }
        let mut ranked: Vec<(String, u32)> = df.into_iter().collect();
        ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked.truncate(size);
        Self::from_words_unchecked(ranked.into_iter().map(|(w, _)| w).collect())
    }

    fn from_words_unchecked(words: Vec<String>) -> Vocabulary {
        let index = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i))
            .collect();
        Vocabulary { words, index }
    }

    /// A vocabulary with these words in this order. Every word must be a single token as
    /// [`tokenize`] produces it (lower case, word characters only) and appear once; `origin`
    /// names the source in errors.
    pub fn from_words(words: Vec<String>, origin: &Path) -> Result<Vocabulary, DataError> {
        let bad = |reason: String| DataError::BadVocabulary {
            path: origin.to_path_buf(),
            reason,
        };
        let mut seen = HashSet::new();
        for (i, w) in words.iter().enumerate() {
            if tokenize(w) != [w.as_str()] {
                return Err(bad(format!(
                    "entry {i} ({w:?}) is not a single lower-case token"
                )));
            }
            if !seen.insert(w.as_str()) {
                return Err(bad(format!("entry {i} ({w:?}) occurs twice")));
            }
        }
        Ok(Self::from_words_unchecked(words))
    }

    /// Number of words (the feature count of the bag-of-words vectors).
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether the vocabulary holds no word.
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The words in feature order.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// The feature index of `word`, if it is in the vocabulary.
    pub fn index_of(&self, word: &str) -> Option<usize> {
        self.index.get(word).copied()
    }

    /// Writes the binary term-frequency vector of `text` into `row` (`len()` bytes): 1 where
    /// the word occurs in the text, 0 elsewhere. Words outside the vocabulary are ignored.
    pub fn encode_into(&self, text: &str, row: &mut [u8]) {
        assert_eq!(
            row.len(),
            self.len(),
            "row length must equal the vocabulary size"
        );
        row.fill(0);
        for w in tokenize(text) {
            if let Some(&i) = self.index.get(&w) {
                row[i] = 1;
            }
        }
    }

    /// The binary term-frequency vector of `text` (see [`Vocabulary::encode_into`]).
    pub fn encode(&self, text: &str) -> Vec<u8> {
        let mut row = vec![0; self.len()];
        self.encode_into(text, &mut row);
        row
    }

    /// Token ids of the sequences [`Vocabulary::encode_tokens_into`] writes: padding,
    /// unknown, and one per word.
    pub fn token_ids(&self) -> usize {
        self.len() + FIRST_WORD_TOKEN
    }

    /// Writes `text` as a sequence of `row.len() / 2` token ids for a sequence model: its
    /// words in order ([`tokenize`]), each as its id ([`FIRST_WORD_TOKEN`] + index, or
    /// [`UNKNOWN_TOKEN`]), cut after `row.len() / 2` words and padded with [`PAD_TOKEN`].
    /// Each id takes two bytes, low byte first, so a split of token sequences stores
    /// `2·length` byte values per example (what [`crate::Split`] holds) and a model reads
    /// id `j` as `row[2j] + 256·row[2j+1]`. The vocabulary must hold at most
    /// [`MAX_TOKEN_VOCABULARY`] words and `row` an even number of bytes.
    pub fn encode_tokens_into(&self, text: &str, row: &mut [u8]) {
        assert!(
            self.len() <= MAX_TOKEN_VOCABULARY,
            "{} words do not fit two-byte token ids",
            self.len()
        );
        assert_eq!(row.len() % 2, 0, "two bytes per token");
        row.fill(0);
        for (w, id) in tokenize(text).iter().zip(row.chunks_exact_mut(2)) {
            let token = match self.index.get(w) {
                Some(&i) => (i + FIRST_WORD_TOKEN) as u16,
                None => UNKNOWN_TOKEN,
            };
            id.copy_from_slice(&token.to_le_bytes());
        }
    }

    /// The words as a JSON list in index order, one per line.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.words).expect("a list of strings serialises")
    }

    /// Parses [`Vocabulary::to_json`]'s output; `origin` names the file in errors.
    pub fn from_json(bytes: &[u8], origin: &Path) -> Result<Vocabulary, DataError> {
        let words: Vec<String> =
            serde_json::from_slice(bytes).map_err(|e| DataError::BadVocabulary {
                path: origin.to_path_buf(),
                reason: format!("expected a JSON list of words: {e}"),
            })?;
        Self::from_words(words, origin)
    }

    /// Writes the JSON form to `path` (overwriting it).
    pub fn write_to(&self, path: &Path) -> Result<(), DataError> {
        std::fs::write(path, self.to_json()).map_err(|e| DataError::io(path, e))
    }

    /// Reads a vocabulary written by [`Vocabulary::write_to`].
    pub fn read_from(path: &Path) -> Result<Vocabulary, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        Self::from_json(&bytes, path)
    }
}
