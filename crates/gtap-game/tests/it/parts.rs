//! An estimate split into parts (one cluster job each): the parts' evaluations, concatenated,
//! are the whole run's bit for bit, batches included, and give the same estimate.

use gtap_game::{
    estimate, estimate_from_evaluations, evaluations, Coalition, Constraints, EstimateConfig, Game,
    GameError, Part,
};

use crate::common::{mc_configs, voting10, AsWalks};

/// A game whose values carry the size of the batch they were evaluated in, so a part that cut
/// the batches differently from the whole run would give different bits.
struct BatchStamped {
    batch: usize,
    walks: bool,
}

impl Game for BatchStamped {
    fn num_players(&self) -> usize {
        10
    }
    fn values(&self, coalitions: &[Coalition], out: &mut [f64]) {
        let mut inner = vec![0.0; out.len()];
        voting10().values(coalitions, &mut inner);
        for (o, v) in out.iter_mut().zip(inner) {
            *o = v + coalitions.len() as f64 * 1e-9;
        }
    }
    fn batch_size(&self) -> usize {
        self.batch
    }
    fn incremental(&self) -> bool {
        self.walks
    }
}

fn bits(xs: &[f64]) -> Vec<u64> {
    xs.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn parts_concatenate_to_the_whole_for_every_estimator() {
    let constraints = Constraints {
        always_in: vec![1],
        always_out: vec![8],
        restrict_to: None,
    };
    let games: [&dyn Game; 3] = [
        &BatchStamped {
            batch: 7,
            walks: false,
        },
        &BatchStamped {
            batch: 3,
            walks: true,
        },
        &AsWalks {
            inner: voting10(),
            batch: 5,
        },
    ];
    for game in games {
        for cfg in mc_configs(5) {
            let cfg = EstimateConfig {
                samples: cfg.samples / 20,
                ..cfg
            };
            let whole = evaluations(game, &cfg, &constraints, Part::WHOLE, &|_| {}).unwrap();
            let direct = estimate(game, &cfg, &constraints, &|_| {}).unwrap();
            for of in [1, 2, 7] {
                let mut joined = Vec::new();
                for index in 0..of {
                    let part = Part { index, of };
                    joined.extend(evaluations(game, &cfg, &constraints, part, &|_| {}).unwrap());
                }
                assert_eq!(bits(&joined), bits(&whole), "{cfg:?} in {of} parts");
                let merged = estimate_from_evaluations(game, &cfg, &constraints, &joined).unwrap();
                let pairs = |e: &[gtap_game::PlayerEstimate]| -> Vec<(usize, u64, u64)> {
                    e.iter()
                        .map(|p| (p.player, p.estimate.to_bits(), p.stderr.to_bits()))
                        .collect()
                };
                assert_eq!(pairs(&merged), pairs(&direct), "{cfg:?} in {of} parts");
            }
        }
    }
}

#[test]
fn a_part_outside_the_range_and_missing_evaluations_are_errors() {
    let game = voting10();
    let cfg = &mc_configs(0)[4];
    let none = Constraints::none();
    let err = evaluations(&game, cfg, &none, Part { index: 3, of: 3 }, &|_| {}).unwrap_err();
    assert!(matches!(err, GameError::InvalidPart { index: 3, of: 3 }));
    assert_eq!(
        err.to_string(),
        "part 3 of 3 does not exist (parts are 0..of, of at least 1)"
    );
    let first = evaluations(&game, cfg, &none, Part { index: 0, of: 2 }, &|_| {}).unwrap();
    let err = estimate_from_evaluations(&game, cfg, &none, &first).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "expected {} evaluations (every part, in order), got {}",
            cfg.samples,
            first.len()
        )
    );
}
