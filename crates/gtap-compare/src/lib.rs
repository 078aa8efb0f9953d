//! Compare two runs' result tables, key by key.
//!
//! [`compare`] takes two tables with the same schema (say two `curves.parquet` from runs with
//! different code or settings), aggregates every metric over seeds per key (mean, sample
//! standard deviation, seed count), outer-joins the two sides on the key, and returns a
//! [`Comparison`]: the joined table, sorted by key, and a [`Summary`] (how many keys, how many
//! differ, the largest difference and where). [`locate`] and [`read`] turn a result directory or
//! a parquet file into a table.
//!
//! Key design decision: **column roles follow from the schema** ([`Roles::infer`]):
//! - the seed column is `seed`: aggregated over, its distinct values counted;
//! - metrics are the numeric columns except `size_fraction` (integers such as `params_kept`
//!   differ between seeds at one size, so they are averaged, not keyed);
//! - every other column (strings, booleans) is part of the key, `size_fraction` included. Keys join **exactly**
//!   (floats by bit pattern): both sides come from the same grid, and a tolerance would merge
//!   neighbouring points.
//!
//! A key named explicitly ([`Roles::with_key`], the CLI's `--on`) replaces the inferred one;
//! metrics are then the floating columns outside it, and columns that are neither key, seed nor
//! metric are dropped ([`Roles::ignored`]). The join is plain Rust over columns: keys are
//! grouped in a `BTreeMap`, so rows come out sorted by key (column by column, nulls first) and
//! the same inputs give the same table.
//!
//! ```no_run
//! # fn demo() -> Result<(), gtap_compare::CompareError> {
//! use std::path::Path;
//! let (_, a) = gtap_compare::read(Path::new("results/before"), "curves")?;
//! let (_, b) = gtap_compare::read(Path::new("results/after"), "curves")?;
//! let comparison = gtap_compare::compare(&a, &b, None)?;
//! println!("{}", comparison.summary);
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use gtap_engine::EngineError;
use polars::prelude::*;

mod value;

use value::Value;

/// The column aggregated over: one row per seed and key.
pub const SEED: &str = "seed";
/// The one floating column that is a key by default (the pruning grid), not a metric.
pub const SIZE_FRACTION: &str = "size_fraction";
/// A difference larger than this in absolute value counts as a difference.
pub const TOLERANCE: f64 = 1e-12;

/// Everything that can go wrong while reading or comparing two tables.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// A path given for one side does not exist.
    #[error("{path} does not exist")]
    NotFound { path: PathBuf },
    /// A result directory does not hold the requested table.
    #[error("{dir} has no table `{table}` (no {path}; tables there: {found})")]
    NoTable {
        dir: PathBuf,
        table: String,
        path: PathBuf,
        found: String,
    },
    /// A table could not be read.
    #[error(transparent)]
    Table(#[from] EngineError),
    /// The two tables do not have the same columns with the same types.
    #[error(
        "the tables' schemas differ: {}",
        describe_mismatch(only_a, only_b, dtypes)
    )]
    SchemaMismatch {
        /// Columns of A that B lacks, in A's order.
        only_a: Vec<String>,
        /// Columns of B that A lacks, in B's order.
        only_b: Vec<String>,
        /// `(column, dtype in A, dtype in B)`, in A's order.
        dtypes: Vec<(String, String, String)>,
    },
    /// A column named in the key is not in the tables.
    #[error("no column `{column}` to join on (columns: {columns})")]
    UnknownColumn { column: String, columns: String },
    /// A column is named twice in the key.
    #[error("column `{column}` is named twice in the key")]
    DuplicateKey { column: String },
    /// A key or seed column has a type that cannot be compared exactly.
    #[error(
        "column `{column}` has type {dtype} and cannot be a key (strings, integers up to 64 \
         bits, floats, booleans can)"
    )]
    KeyType { column: String, dtype: String },
    /// An output column's name is taken by an input column.
    #[error("output column `{column}` clashes with an input column of the same name")]
    NameClash { column: String },
    /// polars failed on a column.
    #[error("column `{column}`: {source}")]
    Polars {
        column: String,
        #[source]
        source: PolarsError,
    },
}

fn describe_mismatch(
    only_a: &[String],
    only_b: &[String],
    dtypes: &[(String, String, String)],
) -> String {
    let mut parts = Vec::new();
    if !only_a.is_empty() {
        parts.push(format!("only in A: {}", only_a.join(", ")));
    }
    if !only_b.is_empty() {
        parts.push(format!("only in B: {}", only_b.join(", ")));
    }
    if !dtypes.is_empty() {
        let list: Vec<String> = dtypes
            .iter()
            .map(|(c, a, b)| format!("{c} (A: {a}, B: {b})"))
            .collect();
        parts.push(format!("different types: {}", list.join(", ")));
    }
    parts.join("; ")
}

fn polars_err(column: &str) -> impl FnOnce(PolarsError) -> CompareError + '_ {
    move |source| CompareError::Polars {
        column: column.to_string(),
        source,
    }
}

fn column_list(df: &DataFrame) -> String {
    let names: Vec<&str> = df.columns().iter().map(|c| c.name().as_str()).collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// The parquet file for one side: `path` itself when it is a file, `<path>/<table>.parquet`
/// when it is a directory.
pub fn locate(path: &Path, table: &str) -> Result<PathBuf, CompareError> {
    if path.is_dir() {
        let file = path.join(format!("{table}.parquet"));
        if file.is_file() {
            return Ok(file);
        }
        let mut found: Vec<String> = std::fs::read_dir(path)
            .map_err(|source| EngineError::Io {
                path: path.to_owned(),
                source,
            })?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".parquet").map(str::to_string)
            })
            .collect();
        found.sort();
        return Err(CompareError::NoTable {
            dir: path.to_owned(),
            table: table.to_string(),
            path: file,
            found: if found.is_empty() {
                "none".to_string()
            } else {
                found.join(", ")
            },
        });
    }
    if path.exists() {
        Ok(path.to_owned())
    } else {
        Err(CompareError::NotFound {
            path: path.to_owned(),
        })
    }
}

/// Reads one side ([`locate`]), returning the file read and its table.
pub fn read(path: &Path, table: &str) -> Result<(PathBuf, DataFrame), CompareError> {
    let file = locate(path, table)?;
    let df = gtap_engine::table::read_parquet(&file)?;
    Ok((file, df))
}

/// What each column of the tables is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Roles {
    /// Columns joined on, in table order (or in the order given).
    pub keys: Vec<String>,
    /// The column aggregated over and counted, if the table has one outside the key.
    pub seed: Option<String>,
    /// Floating columns outside the key: averaged per key and compared.
    pub metrics: Vec<String>,
    /// Columns that are none of the above (only with an explicit key); dropped.
    pub ignored: Vec<String>,
}

impl Roles {
    /// The default: `seed` is the seed column, numeric columns other than `size_fraction` are
    /// metrics, everything else is the key.
    pub fn infer(df: &DataFrame) -> Roles {
        let mut roles = Roles {
            keys: Vec::new(),
            seed: None,
            metrics: Vec::new(),
            ignored: Vec::new(),
        };
        for col in df.columns() {
            let name = col.name().to_string();
            if name == SEED {
                roles.seed = Some(name);
            } else if col.dtype().is_primitive_numeric() && name != SIZE_FRACTION {
                roles.metrics.push(name);
            } else {
                roles.keys.push(name);
            }
        }
        roles
    }

    /// An explicit key: metrics are the floating columns outside it, `seed` (when outside it)
    /// is counted, and the remaining columns are ignored.
    pub fn with_key(df: &DataFrame, key: &[String]) -> Result<Roles, CompareError> {
        for (i, k) in key.iter().enumerate() {
            if df.column(k).is_err() {
                return Err(CompareError::UnknownColumn {
                    column: k.clone(),
                    columns: column_list(df),
                });
            }
            if key[..i].contains(k) {
                return Err(CompareError::DuplicateKey { column: k.clone() });
            }
        }
        let mut roles = Roles {
            keys: key.to_vec(),
            seed: None,
            metrics: Vec::new(),
            ignored: Vec::new(),
        };
        for col in df.columns() {
            let name = col.name().to_string();
            if key.contains(&name) {
                continue;
            } else if name == SEED {
                roles.seed = Some(name);
            } else if col.dtype().is_float() {
                roles.metrics.push(name);
            } else {
                roles.ignored.push(name);
            }
        }
        Ok(roles)
    }
}

/// Fails unless both tables have the same column names with the same types (order aside).
pub fn check_schemas(a: &DataFrame, b: &DataFrame) -> Result<(), CompareError> {
    let only = |x: &DataFrame, y: &DataFrame| -> Vec<String> {
        x.columns()
            .iter()
            .filter(|c| y.column(c.name()).is_err())
            .map(|c| c.name().to_string())
            .collect()
    };
    let dtypes: Vec<(String, String, String)> = a
        .columns()
        .iter()
        .filter_map(|ca| {
            let cb = b.column(ca.name()).ok()?;
            (ca.dtype() != cb.dtype()).then(|| {
                (
                    ca.name().to_string(),
                    ca.dtype().to_string(),
                    cb.dtype().to_string(),
                )
            })
        })
        .collect();
    let (only_a, only_b) = (only(a, b), only(b, a));
    if only_a.is_empty() && only_b.is_empty() && dtypes.is_empty() {
        Ok(())
    } else {
        Err(CompareError::SchemaMismatch {
            only_a,
            only_b,
            dtypes,
        })
    }
}

/// The outcome of [`compare`].
#[derive(Debug)]
pub struct Comparison {
    /// Key columns (their input types), then for each metric `<m>_a`, `<m>_a_std`, `<m>_b`,
    /// `<m>_b_std`, `<m>_diff` (B − A; all f64), then `seeds_a`, `seeds_b` (u64, 0 on a side
    /// without the key). One row per key of either side, sorted by key.
    pub table: DataFrame,
    pub roles: Roles,
    pub summary: Summary,
}

/// The headline numbers of a [`Comparison`].
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Rows of the joined table.
    pub keys: usize,
    /// Keys present in A only, and in B only.
    pub only_a: usize,
    pub only_b: usize,
    /// Keys where some metric's |B − A| exceeds [`TOLERANCE`] (or is NaN on one side only).
    pub differing: usize,
    /// The largest |B − A| over every key and metric present on both sides, NaN aside (the
    /// first in key order on ties); `None` when there is no such pair.
    pub max: Option<MaxDiff>,
}

/// Where the largest difference is.
#[derive(Clone, Debug, PartialEq)]
pub struct MaxDiff {
    pub abs: f64,
    pub metric: String,
    /// The key, as `column=value` pairs.
    pub key: String,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} keys ({} only in A, {} only in B), {} with |diff| > {TOLERANCE:e} in some metric",
            self.keys, self.only_a, self.only_b, self.differing
        )?;
        match &self.max {
            Some(m) => write!(f, "; max |diff| {:.3e} in {} at {}", m.abs, m.metric, m.key),
            None => write!(f, "; no metric present on both sides"),
        }
    }
}

/// Rows of one key on one side.
struct Group {
    rows: Vec<usize>,
    seeds: BTreeSet<Value>,
}

impl Group {
    fn seed_count(&self, has_seed: bool) -> u64 {
        if has_seed {
            self.seeds.len() as u64
        } else {
            self.rows.len() as u64
        }
    }
}

fn group(df: &DataFrame, roles: &Roles) -> Result<BTreeMap<Vec<Value>, Group>, CompareError> {
    let keys = roles
        .keys
        .iter()
        .map(|k| value::column(df, k))
        .collect::<Result<Vec<_>, _>>()?;
    let seeds = match &roles.seed {
        Some(s) => Some(value::column(df, s)?),
        None => None,
    };
    let mut groups: BTreeMap<Vec<Value>, Group> = BTreeMap::new();
    for row in 0..df.height() {
        let key: Vec<Value> = keys.iter().map(|k| k[row].clone()).collect();
        let g = groups.entry(key).or_insert_with(|| Group {
            rows: Vec::new(),
            seeds: BTreeSet::new(),
        });
        g.rows.push(row);
        if let Some(seeds) = &seeds {
            g.seeds.insert(seeds[row].clone());
        }
    }
    Ok(groups)
}

fn metric(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>, CompareError> {
    let col = df.column(name).map_err(polars_err(name))?;
    let col = col.cast(&DataType::Float64).map_err(polars_err(name))?;
    Ok(col.f64().map_err(polars_err(name))?.iter().collect())
}

/// Mean and sample standard deviation (n − 1) of the present values; the std is `None` for
/// fewer than two values, both are `None` for none. Values are summed in sorted order, so the
/// result does not depend on row order.
pub fn mean_std(values: impl IntoIterator<Item = Option<f64>>) -> (Option<f64>, Option<f64>) {
    let mut xs: Vec<f64> = values.into_iter().flatten().collect();
    if xs.is_empty() {
        return (None, None);
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let std = (xs.len() > 1)
        .then(|| (xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0)).sqrt());
    (Some(mean), std)
}

/// Aggregates each side over seeds per key and outer-joins them on the key; `key` overrides
/// the inferred key ([`Roles`]).
pub fn compare(
    a: &DataFrame,
    b: &DataFrame,
    key: Option<&[String]>,
) -> Result<Comparison, CompareError> {
    check_schemas(a, b)?;
    let roles = match key {
        None => Roles::infer(a),
        Some(key) => Roles::with_key(a, key)?,
    };
    let (ga, gb) = (group(a, &roles)?, group(b, &roles)?);
    let all: BTreeSet<&Vec<Value>> = ga.keys().chain(gb.keys()).collect();

    // Key columns keep their input types: rows taken from A's key columns stacked on B's.
    let key_frame = |df: &DataFrame| {
        df.select(roles.keys.iter().map(String::as_str))
            .map_err(polars_err("key"))
    };
    let stacked = key_frame(a)?
        .vstack(&key_frame(b)?)
        .map_err(polars_err("key"))?;
    let take: Vec<IdxSize> = all
        .iter()
        .map(|k| match ga.get(*k) {
            Some(g) => g.rows[0] as IdxSize,
            None => (a.height() + gb[*k].rows[0]) as IdxSize,
        })
        .collect();
    let mut columns: Vec<Column> = stacked
        .take(&IdxCa::from_vec("row".into(), take))
        .map_err(polars_err("key"))?
        .into_columns();

    let mut summary = Summary {
        keys: all.len(),
        only_a: all.iter().filter(|k| !gb.contains_key(**k)).count(),
        only_b: all.iter().filter(|k| !ga.contains_key(**k)).count(),
        differing: 0,
        max: None,
    };
    let mut differs = vec![false; all.len()];
    for m in &roles.metrics {
        let (va, vb) = (metric(a, m)?, metric(b, m)?);
        let stats =
            |groups: &BTreeMap<Vec<Value>, Group>, values: &[Option<f64>], k| match groups.get(k) {
                Some(g) => mean_std(g.rows.iter().map(|&r| values[r])),
                None => (None, None),
            };
        let (mut mean_a, mut std_a, mut mean_b, mut std_b, mut diff) =
            (vec![], vec![], vec![], vec![], vec![]);
        for (i, k) in all.iter().enumerate() {
            let (ma, sa) = stats(&ga, &va, *k);
            let (mb, sb) = stats(&gb, &vb, *k);
            let d = ma.zip(mb).map(|(ma, mb)| mb - ma);
            if let Some((ma, mb)) = ma.zip(mb) {
                // NaN on one side only is a difference; NaN on both is not.
                if (mb - ma).abs() > TOLERANCE || ma.is_nan() != mb.is_nan() {
                    differs[i] = true;
                }
            }
            if let Some(d) = d.filter(|d| !d.is_nan()) {
                if summary.max.as_ref().is_none_or(|best| d.abs() > best.abs) {
                    summary.max = Some(MaxDiff {
                        abs: d.abs(),
                        metric: m.clone(),
                        key: describe_key(&roles.keys, k),
                    });
                }
            }
            mean_a.push(ma);
            std_a.push(sa);
            mean_b.push(mb);
            std_b.push(sb);
            diff.push(d);
        }
        for (suffix, values) in [
            ("a", mean_a),
            ("a_std", std_a),
            ("b", mean_b),
            ("b_std", std_b),
            ("diff", diff),
        ] {
            columns.push(Column::new(format!("{m}_{suffix}").into(), values));
        }
    }
    summary.differing = differs.iter().filter(|d| **d).count();
    let has_seed = roles.seed.is_some();
    let count = |groups: &BTreeMap<Vec<Value>, Group>| -> Vec<u64> {
        all.iter()
            .map(|k| groups.get(*k).map_or(0, |g| g.seed_count(has_seed)))
            .collect()
    };
    columns.push(Column::new("seeds_a".into(), count(&ga)));
    columns.push(Column::new("seeds_b".into(), count(&gb)));

    let mut seen = BTreeSet::new();
    for c in &columns {
        if !seen.insert(c.name().as_str()) {
            return Err(CompareError::NameClash {
                column: c.name().to_string(),
            });
        }
    }
    let mut table = DataFrame::new(all.len(), columns).map_err(polars_err("output"))?;
    table.rechunk_mut();
    Ok(Comparison {
        table,
        roles,
        summary,
    })
}

fn describe_key(names: &[String], key: &[Value]) -> String {
    if names.is_empty() {
        return "the only key".to_string();
    }
    let pairs: Vec<String> = names
        .iter()
        .zip(key)
        .map(|(n, v)| format!("{n}={v}"))
        .collect();
    pairs.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(values: &[Option<f64>], expected: (Option<f64>, Option<f64>)) {
        assert_eq!(mean_std(values.iter().copied()), expected, "{values:?}");
    }

    #[test]
    fn mean_std_cases() {
        check(&[], (None, None));
        check(&[None], (None, None));
        check(&[Some(0.5)], (Some(0.5), None));
        check(&[Some(0.5), None], (Some(0.5), None));
        check(&[Some(1.0), Some(3.0)], (Some(2.0), Some(2f64.sqrt())));
        check(
            &[Some(0.5), Some(0.75), Some(1.0)],
            (Some(0.75), Some(0.25)),
        );
        check(
            &[Some(1.0), Some(0.5), Some(0.75)],
            (Some(0.75), Some(0.25)),
        );
    }
}
