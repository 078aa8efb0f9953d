//! Parquet tables: deterministic writes and the concatenation into `results/`.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::EngineError;

/// Where a stage keeps table `name` inside its output directory.
pub fn table_file(name: &str) -> String {
    format!("tables/{name}.parquet")
}

fn table_err(path: &Path, message: impl ToString) -> EngineError {
    let table = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    EngineError::Table {
        table,
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// Writes `df` as parquet (zstd; no timestamps in the file, so equal frames give equal bytes),
/// through a temporary file renamed into place.
pub fn write_parquet(path: &Path, df: &mut DataFrame) -> Result<(), EngineError> {
    let io = |source| EngineError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let tmp = tmp_sibling(path);
    let file = std::fs::File::create(&tmp).map_err(io)?;
    ParquetWriter::new(file)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(df)
        .map_err(|e| table_err(path, e))?;
    std::fs::rename(&tmp, path).map_err(io)
}

pub fn read_parquet(path: &Path) -> Result<DataFrame, EngineError> {
    let file = std::fs::File::open(path).map_err(|source| EngineError::Io {
        path: path.to_owned(),
        source,
    })?;
    ParquetReader::new(file)
        .finish()
        .map_err(|e| table_err(path, e))
}

/// Stacks tables with identical schemas, in the order given.
pub fn concat(paths: &[PathBuf]) -> Result<DataFrame, EngineError> {
    let mut out: Option<DataFrame> = None;
    for path in paths {
        let df = read_parquet(path)?;
        match out.as_mut() {
            None => out = Some(df),
            Some(acc) => {
                if acc.schema() != df.schema() {
                    return Err(table_err(
                        path,
                        format!(
                            "columns {:?} differ from the first table's {:?}",
                            df.get_column_names(),
                            acc.get_column_names()
                        ),
                    ));
                }
                acc.vstack_mut(&df).map_err(|e| table_err(path, e))?;
            }
        }
    }
    let mut df = out.ok_or_else(|| table_err(Path::new("-"), "no tables to concatenate"))?;
    df.rechunk_mut();
    Ok(df)
}

pub(crate) fn tmp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{name}.tmp-{}-{}",
        crate::cache::host_name(),
        std::process::id()
    ))
}
