//! Constraints give the values of the reduced game.

use gtap_game::{exact, Coalition, Constraints, FnGame, Game, IndexKind};

use crate::common::{
    assert_close, assert_within_4se, exact_values, mc_configs, pairwise10, run, voting10,
};

fn constraint_cases() -> Vec<Constraints> {
    let c =
        |always_in: &[usize], always_out: &[usize], restrict_to: Option<&[usize]>| Constraints {
            always_in: always_in.to_vec(),
            always_out: always_out.to_vec(),
            restrict_to: restrict_to.map(<[usize]>::to_vec),
        };
    vec![
        c(&[0, 5], &[], None),
        c(&[], &[2, 9, 9], None),
        c(&[1], &[3, 7], None),
        c(&[], &[], Some(&[2, 3, 4, 5])),
        // restrict_to overlapping the other lists: 6 is present, 8 absent, 0..2 present.
        c(&[6], &[8], Some(&[3, 4, 6, 7, 8, 9])),
    ]
}

/// The reduced game over the free players, built by hand: ν'(S) = ν(S ∪ A).
fn reduced<'a>(
    game: &'a dyn Game,
    constraints: &Constraints,
) -> (Vec<usize>, FnGame<impl Fn(&Coalition) -> f64 + Sync + 'a>) {
    let n = game.num_players();
    let out = Coalition::from_players(n, constraints.always_out.iter().copied());
    let inn = Coalition::from_players(n, constraints.always_in.iter().copied());
    let free: Vec<usize> = (0..n)
        .filter(|&i| !out.contains(i) && !inn.contains(i))
        .filter(|i| {
            constraints
                .restrict_to
                .as_ref()
                .is_none_or(|r| r.contains(i))
        })
        .collect();
    let present: Vec<usize> = (0..n)
        .filter(|&i| !out.contains(i) && !free.contains(&i))
        .collect();
    let map = free.clone();
    let value = move |s: &Coalition| {
        let c = Coalition::from_players(n, s.iter().map(|k| map[k]).chain(present.iter().copied()));
        let mut v = [0.0];
        game.values(&[c], &mut v);
        v[0]
    };
    (free.clone(), FnGame::new(free.len(), value))
}

#[test]
fn exact_values_are_those_of_the_reduced_game() {
    let games: [&dyn Game; 2] = [&voting10(), &pairwise10()];
    for game in games {
        for constraints in constraint_cases() {
            let (free, small) = reduced(game, &constraints);
            for index in [IndexKind::Shapley, IndexKind::BiasedBanzhaf { d: 0.35 }] {
                let est = exact(game, &index, &constraints).unwrap();
                assert_eq!(est.iter().map(|e| e.player).collect::<Vec<_>>(), free);
                let want = exact_values(&small, index, &Constraints::none());
                let got: Vec<f64> = est.iter().map(|e| e.estimate).collect();
                assert_close(&got, &want, 1e-12);
            }
        }
    }
}

/// Closed form: with A present and O absent, a pair term (i, j) adds b_ij to i's value if j ∈ A,
/// half (Shapley) or d (β_d) of it if j is free, nothing if j ∈ O.
#[test]
fn pairwise_closed_form_under_constraints() {
    let game = pairwise10();
    let constraints = Constraints {
        always_in: vec![1, 5],
        always_out: vec![0, 7],
        restrict_to: None,
    };
    let (a, o) = (&constraints.always_in, &constraints.always_out);
    let free: Vec<usize> = (0..10)
        .filter(|i| !a.contains(i) && !o.contains(i))
        .collect();
    for (index, share) in [
        (IndexKind::Shapley, 0.5),
        (IndexKind::BiasedBanzhaf { d: 0.2 }, 0.2),
    ] {
        let want: Vec<f64> = free
            .iter()
            .map(|&i| {
                let pairs = game
                    .pairs
                    .iter()
                    .filter_map(|&(p, q, b)| match (p == i, q == i) {
                        (true, _) => Some((q, b)),
                        (_, true) => Some((p, b)),
                        _ => None,
                    });
                let gain: f64 = pairs
                    .map(|(j, b)| {
                        if a.contains(&j) {
                            b
                        } else if o.contains(&j) {
                            0.0
                        } else {
                            share * b
                        }
                    })
                    .sum();
                game.linear[i] + gain
            })
            .collect();
        assert_close(&exact_values(&game, index, &constraints), &want, 1e-12);
    }
}

#[test]
fn estimators_respect_constraints() {
    let game = voting10();
    let constraints = Constraints {
        always_in: vec![0],
        always_out: vec![3],
        restrict_to: Some(vec![1, 2, 3, 4, 5, 6, 7]),
    };
    for cfg in mc_configs(21) {
        let est = run(&game, &cfg, &constraints);
        assert_eq!(
            est.iter().map(|e| e.player).collect::<Vec<_>>(),
            vec![1, 2, 4, 5, 6, 7]
        );
        let want = exact_values(&game, cfg.index, &constraints);
        assert_within_4se(&est, &want, &format!("{cfg:?}"));
    }
}

#[test]
fn no_free_players_gives_no_estimates() {
    let game = pairwise10();
    let constraints = Constraints {
        always_in: vec![0, 1],
        always_out: vec![],
        restrict_to: Some(vec![0, 1]),
    };
    assert!(exact(&game, &IndexKind::Shapley, &constraints)
        .unwrap()
        .is_empty());
    for cfg in mc_configs(0) {
        assert!(run(&game, &cfg, &constraints).is_empty());
    }
}
