//! [`Coalition`]: a set of players as a bitset.

use std::fmt;

/// A set of players `0..n` as a bitset of `u64` words.
///
/// Invariant: bits at positions `>= n` are always zero, so the derived `Eq` and `Hash` compare
/// sets, not storage. Methods taking a player id panic if it is `>= n`: that is a caller bug, not
/// a recoverable condition.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Coalition {
    n: usize,
    words: Vec<u64>,
}

impl Coalition {
    /// The empty coalition of a game with `n` players.
    pub fn empty(n: usize) -> Self {
        Self {
            n,
            words: vec![0; n.div_ceil(64)],
        }
    }

    /// The grand coalition: all `n` players.
    pub fn full(n: usize) -> Self {
        let mut c = Self {
            n,
            words: vec![u64::MAX; n.div_ceil(64)],
        };
        if !n.is_multiple_of(64) {
            if let Some(last) = c.words.last_mut() {
                *last = (1u64 << (n % 64)) - 1;
            }
        }
        c
    }

    /// The coalition of the given players (duplicates are fine).
    pub fn from_players(n: usize, players: impl IntoIterator<Item = usize>) -> Self {
        let mut c = Self::empty(n);
        for i in players {
            c.insert(i);
        }
        c
    }

    /// Number of players of the game (not of the coalition; see [`Coalition::len`]).
    pub fn num_players(&self) -> usize {
        self.n
    }

    /// Whether player `i` is a member.
    pub fn contains(&self, i: usize) -> bool {
        self.check(i);
        self.words[i / 64] >> (i % 64) & 1 == 1
    }

    /// Adds player `i`.
    pub fn insert(&mut self, i: usize) {
        self.check(i);
        self.words[i / 64] |= 1 << (i % 64);
    }

    /// Removes player `i`.
    pub fn remove(&mut self, i: usize) {
        self.check(i);
        self.words[i / 64] &= !(1 << (i % 64));
    }

    /// Adds player `i` if absent, removes it if present.
    pub fn toggle(&mut self, i: usize) {
        self.check(i);
        self.words[i / 64] ^= 1 << (i % 64);
    }

    /// Adds every member of `other` (a coalition of the same game).
    pub fn union_with(&mut self, other: &Coalition) {
        assert_eq!(self.n, other.n, "coalitions of games of different sizes");
        for (a, b) in self.words.iter_mut().zip(&other.words) {
            *a |= b;
        }
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether there are no members.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// Members in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.words.iter().enumerate().flat_map(|(k, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let bit = w.trailing_zeros() as usize;
                    w &= w - 1;
                    k * 64 + bit
                })
            })
        })
    }

    /// The bitset: player `i` is bit `i % 64` of word `i / 64`.
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Writes 1.0/0.0 per player into `out` (len n): the mask a network multiplies activations by.
    pub fn write_mask(&self, out: &mut [f32]) {
        assert_eq!(
            out.len(),
            self.n,
            "mask length must equal the number of players"
        );
        for (chunk, &w) in out.chunks_mut(64).zip(&self.words) {
            for (b, x) in chunk.iter_mut().enumerate() {
                *x = if w >> b & 1 == 1 { 1.0 } else { 0.0 };
            }
        }
    }

    fn check(&self, i: usize) {
        assert!(
            i < self.n,
            "player {i} out of range for a game with {} players",
            self.n
        );
    }
}

impl fmt::Debug for Coalition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Coalition(n={}, ", self.n)?;
        f.debug_set().entries(self.iter()).finish()?;
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_has_no_stray_bits() {
        for n in [0, 1, 63, 64, 65, 130] {
            let c = Coalition::full(n);
            assert_eq!(c.len(), n);
            assert_eq!(c, Coalition::from_players(n, 0..n));
        }
    }

    #[test]
    fn insert_remove_iter_mask() {
        let mut c = Coalition::empty(70);
        assert!(c.is_empty());
        for i in [69, 0, 64, 3, 3] {
            c.insert(i);
        }
        c.remove(64);
        assert_eq!(c.iter().collect::<Vec<_>>(), vec![0, 3, 69]);
        assert_eq!(c.len(), 3);
        assert!(c.contains(69) && !c.contains(64));
        let mut mask = vec![0.5f32; 70];
        c.write_mask(&mut mask);
        let ones: Vec<usize> = (0..70).filter(|&i| mask[i] == 1.0).collect();
        assert_eq!(ones, vec![0, 3, 69]);
        assert!(mask.iter().all(|&x| x == 0.0 || x == 1.0));
        assert_eq!(format!("{c:?}"), "Coalition(n=70, {0, 3, 69})");
    }

    #[test]
    #[should_panic(expected = "player 5 out of range")]
    fn out_of_range_panics() {
        Coalition::empty(5).insert(5);
    }
}
