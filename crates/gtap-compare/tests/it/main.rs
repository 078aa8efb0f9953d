//! Integration tests: hand-made curves tables in, joined tables and errors out.

use gtap_compare::{compare, read, CompareError, Comparison, Roles};
use polars::prelude::*;

/// One row of a curves table: (method, index, size_fraction, seed, test_accuracy).
type Row<'a> = (&'a str, Option<&'a str>, f64, u64, f64);

/// A curves table with the columns pruning stages write; model and strategy are fixed.
fn curves(rows: &[Row<'_>]) -> DataFrame {
    let n = rows.len();
    let players: Vec<i64> = rows.iter().map(|r| (r.2 * 100.0).round() as i64).collect();
    df!(
        "model" => vec!["lenet-300-100"; n],
        "method" => rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        "index" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        "strategy" => vec!["global"; n],
        "size_fraction" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        "players_kept" => players.clone(),
        "params_kept" => players.iter().map(|p| p * 785).collect::<Vec<_>>(),
        "flops_kept" => players.iter().map(|p| p * 1570).collect::<Vec<_>>(),
        "seed" => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        "test_accuracy" => rows.iter().map(|r| r.4).collect::<Vec<_>>(),
    )
    .unwrap()
}

/// Every (method, index) at three size fractions and three seeds, with distinct accuracies.
fn grid() -> Vec<Row<'static>> {
    let mut rows = Vec::new();
    for (m, (method, index)) in [
        ("power-index", Some("shapley")),
        ("power-index", Some("banzhaf")),
        ("random", None),
        ("magnitude", Some("")),
    ]
    .into_iter()
    .enumerate()
    {
        for (f, sf) in [1.0, 0.5, 0.25].into_iter().enumerate() {
            for seed in 0..3u64 {
                let acc = 0.9 - 0.1 * f as f64 - 0.01 * m as f64 + 0.001 * seed as f64;
                rows.push((method, index, sf, seed, acc));
            }
        }
    }
    rows
}

fn f64s(df: &DataFrame, name: &str) -> Vec<Option<f64>> {
    df.column(name).unwrap().f64().unwrap().iter().collect()
}

fn strs(df: &DataFrame, name: &str) -> Vec<Option<String>> {
    let col = df.column(name).unwrap();
    col.str()
        .unwrap()
        .iter()
        .map(|v| v.map(str::to_string))
        .collect()
}

fn u64s(df: &DataFrame, name: &str) -> Vec<u64> {
    df.column(name)
        .unwrap()
        .u64()
        .unwrap()
        .iter()
        .map(Option::unwrap)
        .collect()
}

fn run(a: &DataFrame, b: &DataFrame) -> Comparison {
    compare(a, b, None).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn default_roles_follow_the_schema() {
    let roles = Roles::infer(&curves(&grid()));
    assert_eq!(
        roles.keys,
        ["model", "method", "index", "strategy", "size_fraction",]
    );
    assert_eq!(roles.seed.as_deref(), Some("seed"));
    // Integer counts differ between seeds at one size: averaged, not keyed.
    assert_eq!(
        roles.metrics,
        ["players_kept", "params_kept", "flops_kept", "test_accuracy"]
    );
    assert!(roles.ignored.is_empty());
}

#[test]
fn one_method_changed_gives_diffs_on_its_rows_only() {
    let a = curves(&grid());
    let changed: Vec<Row<'_>> = grid()
        .into_iter()
        .map(|(method, index, sf, seed, acc)| {
            let acc = if method == "random" { acc - 0.02 } else { acc };
            (method, index, sf, seed, acc)
        })
        .collect();
    let b = curves(&changed);
    let c = run(&a, &b);
    let t = &c.table;
    assert_eq!(t.height(), 12);
    let methods = strs(t, "method");
    let diffs = f64s(t, "test_accuracy_diff");
    for (method, diff) in methods.iter().zip(&diffs) {
        let diff = diff.unwrap();
        if method.as_deref() == Some("random") {
            assert!((diff + 0.02).abs() < 1e-12, "{method:?}: {diff}");
        } else {
            assert_eq!(diff, 0.0, "{method:?}");
        }
    }
    assert_eq!(c.summary.keys, 12);
    assert_eq!((c.summary.only_a, c.summary.only_b), (0, 0));
    assert_eq!(c.summary.differing, 3);
    let max = c.summary.max.as_ref().unwrap();
    assert_eq!(max.metric, "test_accuracy");
    assert!(max.key.contains("method=\"random\""), "{}", max.key);
    assert!(
        c.summary.to_string().starts_with(
            "12 keys (0 only in A, 0 only in B), 3 with |diff| > 1e-12 in some metric; max |diff| 2.000e-2 \
             in test_accuracy at model=\"lenet-300-100\", method=\"random\", index=null"
        ),
        "{}",
        c.summary
    );
    assert_eq!(u64s(t, "seeds_a"), vec![3; 12]);
    assert_eq!(u64s(t, "seeds_b"), vec![3; 12]);
}

#[test]
fn identical_tables_differ_nowhere_whatever_the_row_order() {
    let a = curves(&grid());
    let mut reversed = grid();
    reversed.reverse();
    let c = run(&a, &curves(&reversed));
    assert_eq!(c.summary.differing, 0);
    assert_eq!(c.summary.max.as_ref().unwrap().abs, 0.0);
    assert!(f64s(&c.table, "test_accuracy_diff")
        .iter()
        .all(|d| *d == Some(0.0)));
    // Same table either way round: grouping sorts, and sums run in sorted order.
    let back = run(&curves(&reversed), &a);
    assert!(c.table.equals_missing(&back.table));
}

#[test]
fn mean_and_sample_std_over_seeds_are_exact() {
    let a = curves(&[
        ("random", None, 0.5, 0, 0.5),
        ("random", None, 0.5, 1, 0.75),
        ("random", None, 0.5, 2, 1.0),
        ("random", None, 0.25, 7, 0.25),
        ("power-index", Some("shapley"), 0.5, 0, 0.8),
    ]);
    let b = curves(&[
        ("random", None, 0.5, 0, 1.0),
        ("random", None, 0.5, 1, 3.0),
        ("power-index", Some("banzhaf"), 0.5, 0, 0.6),
    ]);
    let c = run(&a, &b);
    let t = &c.table;
    let names: Vec<&str> = t.columns().iter().map(|c| c.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "model",
            "method",
            "index",
            "strategy",
            "size_fraction",
            "players_kept_a",
            "players_kept_a_std",
            "players_kept_b",
            "players_kept_b_std",
            "players_kept_diff",
            "params_kept_a",
            "params_kept_a_std",
            "params_kept_b",
            "params_kept_b_std",
            "params_kept_diff",
            "flops_kept_a",
            "flops_kept_a_std",
            "flops_kept_b",
            "flops_kept_b_std",
            "flops_kept_diff",
            "test_accuracy_a",
            "test_accuracy_a_std",
            "test_accuracy_b",
            "test_accuracy_b_std",
            "test_accuracy_diff",
            "seeds_a",
            "seeds_b"
        ]
    );
    // Key types are kept; integer metrics become floats.
    assert_eq!(t.column("method").unwrap().dtype(), &DataType::String);
    assert_eq!(
        t.column("players_kept_a").unwrap().dtype(),
        &DataType::Float64
    );
    assert_eq!(
        t.column("size_fraction").unwrap().dtype(),
        &DataType::Float64
    );
    // Sorted by key: method, then index (nulls first), then size_fraction.
    assert_eq!(
        strs(t, "method"),
        [
            Some("power-index".to_string()),
            Some("power-index".to_string()),
            Some("random".to_string()),
            Some("random".to_string())
        ]
    );
    assert_eq!(
        strs(t, "index"),
        [
            Some("banzhaf".to_string()),
            Some("shapley".to_string()),
            None,
            None
        ]
    );
    assert_eq!(
        f64s(t, "size_fraction"),
        [Some(0.5), Some(0.5), Some(0.25), Some(0.5)]
    );
    assert_eq!(
        f64s(t, "test_accuracy_a"),
        [None, Some(0.8), Some(0.25), Some(0.75)]
    );
    assert_eq!(
        f64s(t, "test_accuracy_a_std"),
        [None, None, None, Some(0.25)]
    );
    assert_eq!(
        f64s(t, "test_accuracy_b"),
        [Some(0.6), None, None, Some(2.0)]
    );
    assert_eq!(
        f64s(t, "test_accuracy_b_std"),
        [None, None, None, Some(2f64.sqrt())]
    );
    assert_eq!(
        f64s(t, "test_accuracy_diff"),
        [None, None, None, Some(1.25)]
    );
    assert_eq!(u64s(t, "seeds_a"), [0, 1, 1, 3]);
    assert_eq!(u64s(t, "seeds_b"), [1, 0, 0, 2]);
    assert_eq!(
        (c.summary.keys, c.summary.only_a, c.summary.only_b),
        (4, 2, 1)
    );
    assert_eq!(c.summary.differing, 1);
}

#[test]
fn float_keys_join_exactly() {
    let a = curves(&[("random", None, 0.1 + 0.2, 0, 0.5)]);
    let b = curves(&[("random", None, 0.3, 0, 0.5)]);
    let c = run(&a, &b);
    assert_eq!(
        (c.summary.keys, c.summary.only_a, c.summary.only_b),
        (2, 1, 1)
    );
    assert!(c.summary.max.is_none());
    assert!(c
        .summary
        .to_string()
        .ends_with("; no metric present on both sides"));
}

#[test]
fn schema_mismatch_names_every_differing_column() {
    let a = curves(&grid());
    let mut b = curves(&grid());
    b.with_column(Column::new("lr".into(), vec![0.001; b.height()]))
        .unwrap();
    let seed = b.column("seed").unwrap().cast(&DataType::Int64).unwrap();
    b.with_column(seed).unwrap();
    let mut a = a;
    a.with_column(Column::new("loss".into(), vec![0.1; a.height()]))
        .unwrap();
    let err = compare(&a, &b, None).unwrap_err();
    match &err {
        CompareError::SchemaMismatch {
            only_a,
            only_b,
            dtypes,
        } => {
            assert_eq!(only_a, &["loss"]);
            assert_eq!(only_b, &["lr"]);
            assert_eq!(
                dtypes,
                &[("seed".to_string(), "u64".to_string(), "i64".to_string())]
            );
        }
        other => panic!("{other}"),
    }
    assert_eq!(
        err.to_string(),
        "the tables' schemas differ: only in A: loss; only in B: lr; different types: seed (A: \
         u64, B: i64)"
    );
}

#[test]
fn an_explicit_key_drops_the_other_columns() {
    let a = curves(&grid());
    let key = ["method".to_string(), "index".to_string()];
    let c = compare(&a, &a, Some(&key)).unwrap();
    assert_eq!(c.roles.keys, key);
    assert_eq!(c.roles.metrics, ["size_fraction", "test_accuracy"]);
    assert_eq!(
        c.roles.ignored,
        [
            "model",
            "strategy",
            "players_kept",
            "params_kept",
            "flops_kept"
        ]
    );
    assert_eq!(c.table.height(), 4);
    assert_eq!(u64s(&c.table, "seeds_a"), [3; 4]);

    let err = compare(&a, &a, Some(&["method".to_string(), "epochs".to_string()])).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("no column `epochs` to join on (columns: model, method, index,"),
        "{err}"
    );
    let err = compare(&a, &a, Some(&["method".to_string(), "method".to_string()])).unwrap_err();
    assert_eq!(err.to_string(), "column `method` is named twice in the key");
}

#[test]
fn missing_file_or_table_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere/curves.parquet");
    let err = read(&missing, "curves").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{} does not exist", missing.display())
    );

    let mut df = curves(&grid());
    gtap_engine::table::write_parquet(&dir.path().join("evaluation.parquet"), &mut df).unwrap();
    let err = read(dir.path(), "curves").unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{} has no table `curves` (no {}; tables there: evaluation)",
            dir.path().display(),
            dir.path().join("curves.parquet").display()
        )
    );
    let (file, read_back) = read(dir.path(), "evaluation").unwrap();
    assert_eq!(file, dir.path().join("evaluation.parquet"));
    assert!(read_back.equals_missing(&df));
    let (file, _) = read(&file, "ignored for files").unwrap();
    assert_eq!(file, dir.path().join("evaluation.parquet"));
}

#[test]
fn same_inputs_write_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let a = curves(&grid());
    let mut rows = grid();
    rows[5].4 += 0.5;
    let b = curves(&rows);
    let write = |name: &str| {
        let path = dir.path().join(name);
        let mut t = run(&a, &b).table;
        gtap_engine::table::write_parquet(&path, &mut t).unwrap();
        std::fs::read(&path).unwrap()
    };
    assert_eq!(write("one.parquet"), write("two.parquet"));
}

#[test]
fn nan_on_one_side_differs_and_never_hides_the_maximum() {
    let a = curves(&[
        ("random", None, 0.5, 0, f64::NAN),
        ("random", None, 0.25, 0, f64::NAN),
        ("random", None, 0.1, 0, 0.5),
    ]);
    let b = curves(&[
        ("random", None, 0.5, 0, 0.4),
        ("random", None, 0.25, 0, f64::NAN),
        ("random", None, 0.1, 0, 0.25),
    ]);
    let c = run(&a, &b);
    assert_eq!(c.summary.differing, 2);
    let max = c.summary.max.unwrap();
    assert_eq!(max.abs, 0.25);
    assert!(max.key.ends_with("size_fraction=0.1"), "{}", max.key);
}
