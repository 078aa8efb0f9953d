//! Key cells as totally ordered values, so keys group, join and sort exactly.

use std::cmp::Ordering;
use std::fmt;

use polars::prelude::*;

use crate::{polars_err, CompareError};

/// One cell of a key (or seed) column. Within a column every value has the same variant or is
/// `Null`; `Null` sorts first. Floats compare by `total_cmp`: bit-exact, NaN equal to itself.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
}

impl Value {
    fn rank(&self) -> u8 {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int(_) => 2,
            Value::Float(_) => 3,
            Value::Str(_) => 4,
        }
    }
}

impl Ord for Value {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (Value::Float(a), Value::Float(b)) => a.total_cmp(b),
            (Value::Str(a), Value::Str(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => write!(f, "null"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Str(v) => write!(f, "{v:?}"),
        }
    }
}

/// A key column's cells.
pub(crate) fn column(df: &DataFrame, name: &str) -> Result<Vec<Value>, CompareError> {
    let col = df.column(name).map_err(polars_err(name))?;
    let dtype = col.dtype();
    let cast = |to: &DataType| col.cast(to).map_err(polars_err(name));
    let values = match dtype {
        DataType::Null => vec![Value::Null; col.len()],
        DataType::String => col
            .str()
            .map_err(polars_err(name))?
            .iter()
            .map(|v| v.map_or(Value::Null, |s| Value::Str(s.to_string())))
            .collect(),
        DataType::Boolean => col
            .bool()
            .map_err(polars_err(name))?
            .iter()
            .map(|v| v.map_or(Value::Null, Value::Bool))
            .collect(),
        d if d.is_signed_integer() && d != &DataType::Int128 => cast(&DataType::Int64)?
            .i64()
            .map_err(polars_err(name))?
            .iter()
            .map(|v| v.map_or(Value::Null, |v| Value::Int(v.into())))
            .collect(),
        d if d.is_unsigned_integer() && d != &DataType::UInt128 => cast(&DataType::UInt64)?
            .u64()
            .map_err(polars_err(name))?
            .iter()
            .map(|v| v.map_or(Value::Null, |v| Value::Int(v.into())))
            .collect(),
        d if d.is_float() => cast(&DataType::Float64)?
            .f64()
            .map_err(polars_err(name))?
            .iter()
            .map(|v| v.map_or(Value::Null, Value::Float))
            .collect(),
        d => {
            return Err(CompareError::KeyType {
                column: name.to_string(),
                dtype: d.to_string(),
            })
        }
    };
    Ok(values)
}
