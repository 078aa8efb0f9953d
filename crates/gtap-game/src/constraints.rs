//! [`Constraints`]: which players are free, which always present, which always absent.

use crate::{Coalition, GameError};

/// Which players are free.
///
/// Players in `always_in` are in every sampled coalition, `always_out` in none; if `restrict_to`
/// is `Some(set)`, only those players are free and every other player not in `always_out` is
/// treated as always present (e.g. one layer's power indices with all other layers present).
/// A player in both `restrict_to` and `always_in` (or `always_out`) is not free. Estimates are
/// reported only for free players. Duplicates are allowed; ids must lie in `0..n`, and
/// `always_in ∩ always_out` must be empty.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Constraints {
    /// Players present in every coalition.
    pub always_in: Vec<usize>,
    /// Players absent from every coalition.
    pub always_out: Vec<usize>,
    /// If set, the only candidates for free players; all others (not `always_out`) are present.
    pub restrict_to: Option<Vec<usize>>,
}

/// Constraints checked against a game size: the free players and the always-present set `A`.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Free players in increasing order.
    pub free: Vec<usize>,
    /// The players present in every evaluated coalition.
    pub base: Coalition,
}

impl Constraints {
    /// No constraints: every player is free.
    pub fn none() -> Self {
        Self::default()
    }

    /// Validates the constraints for a game with `n` players and splits the players into free,
    /// always present (`base`) and always absent (neither).
    pub fn resolve(&self, n: usize) -> Result<Resolved, GameError> {
        let lists = [
            ("always_in", Some(&self.always_in)),
            ("always_out", Some(&self.always_out)),
            ("restrict_to", self.restrict_to.as_ref()),
        ];
        for (field, list) in lists {
            if let Some(&player) = list.into_iter().flatten().find(|&&p| p >= n) {
                return Err(GameError::PlayerOutOfRange { field, player, n });
            }
        }
        let always_in = Coalition::from_players(n, self.always_in.iter().copied());
        let always_out = Coalition::from_players(n, self.always_out.iter().copied());
        if let Some(p) = always_in.iter().find(|&p| always_out.contains(p)) {
            return Err(GameError::ConflictingConstraints(p));
        }
        let candidates = match &self.restrict_to {
            Some(r) => Coalition::from_players(n, r.iter().copied()),
            None => Coalition::full(n),
        };
        let free: Vec<usize> = candidates
            .iter()
            .filter(|&p| !always_in.contains(p) && !always_out.contains(p))
            .collect();
        // Present: everyone not free and not always out.
        let mut base = Coalition::empty(n);
        for p in 0..n {
            let is_free =
                candidates.contains(p) && !always_in.contains(p) && !always_out.contains(p);
            if !is_free && !always_out.contains(p) {
                base.insert(p);
            }
        }
        Ok(Resolved { free, base })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restrict_to_makes_the_rest_present() {
        let c = Constraints {
            always_in: vec![1],
            always_out: vec![4, 2],
            restrict_to: Some(vec![0, 1, 2, 3]),
        };
        let r = c.resolve(6).unwrap();
        assert_eq!(r.free, vec![0, 3]);
        assert_eq!(r.base.iter().collect::<Vec<_>>(), vec![1, 5]);
    }

    #[test]
    fn no_constraints_frees_everyone() {
        let r = Constraints::none().resolve(3).unwrap();
        assert_eq!(r.free, vec![0, 1, 2]);
        assert!(r.base.is_empty());
    }
}
