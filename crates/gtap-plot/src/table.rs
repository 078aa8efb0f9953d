//! Reading typed columns out of a [`DataFrame`], with errors that name the column.

use polars::prelude::*;

use crate::PlotError;

fn column_list(df: &DataFrame) -> String {
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

fn column<'a>(df: &'a DataFrame, name: &str) -> Result<&'a Column, PlotError> {
    df.column(name).map_err(|_| PlotError::MissingColumn {
        column: name.to_string(),
        columns: column_list(df),
    })
}

/// Fails on a table without rows, naming its columns.
pub(crate) fn require_rows(df: &DataFrame) -> Result<(), PlotError> {
    if df.height() == 0 {
        return Err(PlotError::EmptyTable {
            columns: column_list(df),
        });
    }
    Ok(())
}

fn polars_err(name: &str) -> impl FnOnce(PolarsError) -> PlotError + '_ {
    move |source| PlotError::Polars {
        column: name.to_string(),
        source,
    }
}

/// A numeric column as f64 (integers and f32 are widened); nulls stay `None`.
pub(crate) fn f64_column(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>, PlotError> {
    let col = column(df, name)?;
    if !col.dtype().is_primitive_numeric() {
        return Err(PlotError::WrongDtype {
            column: name.to_string(),
            expected: "a number (f64)",
            found: col.dtype().to_string(),
        });
    }
    let col = col.cast(&DataType::Float64).map_err(polars_err(name))?;
    let ca = col.f64().map_err(polars_err(name))?;
    Ok(ca.iter().collect())
}

/// A numeric column as f64 where every value must be present and finite.
pub(crate) fn finite_column(df: &DataFrame, name: &str) -> Result<Vec<f64>, PlotError> {
    f64_column(df, name)?
        .into_iter()
        .enumerate()
        .map(|(row, v)| match v {
            None => Err(PlotError::NullValue {
                column: name.to_string(),
                row,
            }),
            Some(v) if !v.is_finite() => Err(PlotError::NonFinite {
                column: name.to_string(),
                row,
                value: v,
            }),
            Some(v) => Ok(v),
        })
        .collect()
}

/// A string column; nulls stay `None`.
pub(crate) fn str_column(df: &DataFrame, name: &str) -> Result<Vec<Option<String>>, PlotError> {
    let col = column(df, name)?;
    if col.dtype() != &DataType::String {
        return Err(PlotError::WrongDtype {
            column: name.to_string(),
            expected: "a string",
            found: col.dtype().to_string(),
        });
    }
    let ca = col.str().map_err(polars_err(name))?;
    Ok(ca.iter().map(|v| v.map(str::to_string)).collect())
}

/// Any string, numeric or boolean column as display strings (for group keys); null is "null".
pub(crate) fn key_column(df: &DataFrame, name: &str) -> Result<Vec<String>, PlotError> {
    let col = column(df, name)?;
    let dtype = col.dtype();
    let col = if dtype == &DataType::String {
        col.clone()
    } else if dtype.is_primitive_numeric() || dtype.is_bool() {
        col.cast(&DataType::String).map_err(polars_err(name))?
    } else {
        return Err(PlotError::WrongDtype {
            column: name.to_string(),
            expected: "a string, number or boolean",
            found: dtype.to_string(),
        });
    };
    let ca = col.str().map_err(polars_err(name))?;
    Ok(ca.iter().map(|v| v.unwrap_or("null").to_string()).collect())
}
