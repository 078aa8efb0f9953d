//! `mcue-maxima`: the diagonal maximum t* of every reading of every MCUE grid, per seed and
//! over seeds (the table that compares readings with the paper's 0.825 / 0.775).

use std::collections::BTreeMap;

use gtap_engine::{Inputs, Invalid, Stage, StageContext};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use super::{diagonal_argmax, mean_variance};

/// (p, q, mean, variance) of one cell, as [`diagonal_argmax`] reads it.
type CellRow = (f64, f64, f64, f64);

pub struct McueMaximaStage;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McueMaximaParams {}

/// One reading of one grid: what tells it apart from the others.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Reading {
    panel: String,
    statistic: String,
    dilution: String,
    players: u32,
}

impl Reading {
    /// The columns that name each reading (panel, statistic, dilution, players), one row each.
    fn columns<'a>(readings: impl Iterator<Item = &'a Reading> + Clone) -> PolarsResult<DataFrame> {
        let text = |f: fn(&Reading) -> &str| readings.clone().map(f).collect::<Vec<_>>();
        df!(
            "panel" => text(|r| &r.panel),
            "statistic" => text(|r| &r.statistic),
            "dilution" => text(|r| &r.dilution),
            "players" => readings.clone().map(|r| r.players).collect::<Vec<_>>(),
        )
    }
}

impl Stage for McueMaximaStage {
    type Params = McueMaximaParams;
    const KIND: &'static str = "mcue-maxima";
    const VERSION: u32 = 1;
    const SEEDED: bool = false;
    const INPUTS: &'static [&'static str] = &["grids"];
    const ABOUT: &'static str =
        "the diagonal maximum t* (d = 1 − t*) of every MCUE reading, per seed and over seeds";

    fn validate_inputs(_: &McueMaximaParams, inputs: &Inputs) -> Result<(), Invalid> {
        crate::checks::input_kinds(inputs, "grids", &["mcue"])
    }

    fn run(_: &McueMaximaParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        // Per reading, per seed: t* and its variance; readings in input order.
        let mut order: Vec<Reading> = Vec::new();
        let mut found: BTreeMap<(usize, u64), (f64, f64)> = BTreeMap::new();
        for upstream in ctx.inputs("grids") {
            let df = upstream.read_table("mcue")?;
            let text = |name: &str| -> anyhow::Result<Vec<String>> {
                let column = df.column(name)?.str()?;
                Ok((0..column.len())
                    .map(|i| column.get(i).unwrap_or_default().to_owned())
                    .collect())
            };
            let float = |name: &str| -> anyhow::Result<Vec<f64>> {
                Ok(df.column(name)?.f64()?.into_no_null_iter().collect())
            };
            let (panel, statistic, dilution) =
                (text("panel")?, text("statistic")?, text("dilution")?);
            let players: Vec<u32> = df.column("players")?.u32()?.into_no_null_iter().collect();
            let seeds: Vec<u64> = df.column("seed")?.u64()?.into_no_null_iter().collect();
            let (p, q, variance) = (float("p")?, float("q")?, float("variance")?);
            let mut cells: BTreeMap<(usize, u64), Vec<CellRow>> = BTreeMap::new();
            for i in 0..p.len() {
                let reading = Reading {
                    panel: panel[i].clone(),
                    statistic: statistic[i].clone(),
                    dilution: dilution[i].clone(),
                    players: players[i],
                };
                let at = order.iter().position(|r| *r == reading).unwrap_or_else(|| {
                    order.push(reading);
                    order.len() - 1
                });
                cells
                    .entry((at, seeds[i]))
                    .or_default()
                    .push((p[i], q[i], 0.0, variance[i]));
            }
            for (key, cells) in cells {
                let (t, variance) = diagonal_argmax(&cells);
                anyhow::ensure!(
                    t.is_finite(),
                    "`{}`: the MCUE grid has no interior cell with p = q",
                    upstream.stage
                );
                anyhow::ensure!(
                    found.insert(key, (t, variance)).is_none(),
                    "reading {:?} of seed {} comes from two grids; give them different panels",
                    order[key.0],
                    key.1
                );
            }
        }
        let rows: Vec<(&Reading, u64, f64, f64)> = found
            .iter()
            .map(|(&(at, seed), &(t, v))| (&order[at], seed, t, v))
            .collect();
        let per_seed_values = df!(
            "seed" => rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            "t" => rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            "d" => rows.iter().map(|r| 1.0 - r.2).collect::<Vec<_>>(),
            "variance" => rows.iter().map(|r| r.3).collect::<Vec<_>>(),
        )?;
        let mut per_seed =
            Reading::columns(rows.iter().map(|r| r.0))?.hstack(per_seed_values.columns())?;
        ctx.write_table("mcue_maxima", &mut per_seed)?;

        let summary: Vec<(&Reading, Vec<f64>)> = order
            .iter()
            .enumerate()
            .map(|(at, reading)| {
                let ts = found
                    .iter()
                    .filter(|((a, _), _)| *a == at)
                    .map(|(_, &(t, _))| t)
                    .collect();
                (reading, ts)
            })
            .collect();
        let stat = |f: fn(&[f64]) -> f64| summary.iter().map(|s| f(&s.1)).collect::<Vec<_>>();
        let over_seeds_values = df!(
            "seeds" => summary.iter().map(|s| s.1.len() as u32).collect::<Vec<_>>(),
            "t_mean" => stat(|ts| mean_variance(ts).0),
            "t_sd" => stat(|ts| mean_variance(ts).1.sqrt()),
            "t_min" => stat(|ts| ts.iter().copied().fold(f64::INFINITY, f64::min)),
            "t_max" => stat(|ts| ts.iter().copied().fold(f64::NEG_INFINITY, f64::max)),
        )?;
        let mut over_seeds =
            Reading::columns(summary.iter().map(|s| s.0))?.hstack(over_seeds_values.columns())?;
        ctx.write_table("mcue_maxima_summary", &mut over_seeds)?;
        Ok(())
    }
}
