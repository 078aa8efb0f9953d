//! `figure-unit-grid`: a layer × unit heatmap per input, values averaged over seeds: a
//! transformer's heads (one row per block, one column per head) by exact Shapley value beside
//! Michel et al.'s importance. Inputs `indices` (power-indices stages: their estimates) and
//! `importance` (michel stages: their layer-normalised importance at ξ = 1).

use std::collections::BTreeMap;

use gtap_engine::{Inputs, Invalid, Stage, StageContext, Upstream};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

pub struct FigureUnitGridStage;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FigureUnitGridParams {
    /// File stem under figures/.
    pub name: String,
}

/// One panel's values: (layer in first-seen order, unit) → the seeds' values.
struct Cells {
    title: String,
    signed: bool,
    layers: Vec<String>,
    values: BTreeMap<(usize, u32), Vec<f64>>,
}

impl Cells {
    fn add(&mut self, layer: &str, unit: u32, value: f64) {
        let at = match self.layers.iter().position(|l| l == layer) {
            Some(at) => at,
            None => {
                self.layers.push(layer.to_owned());
                self.layers.len() - 1
            }
        };
        self.values.entry((at, unit)).or_default().push(value);
    }
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// The stages bound to `name`, each with its seed instances, in input order.
fn by_stage<'a>(ctx: &'a StageContext<'_>, name: &str) -> Vec<(String, Vec<&'a Upstream>)> {
    let mut out: Vec<(String, Vec<&Upstream>)> = Vec::new();
    for up in ctx.inputs(name) {
        match out.iter_mut().find(|(s, _)| *s == up.stage) {
            Some((_, all)) => all.push(up),
            None => out.push((up.stage.clone(), vec![up])),
        }
    }
    out
}

fn read_cells(
    instances: &[&Upstream],
    table: &str,
    column: &str,
    cells: &mut Cells,
) -> anyhow::Result<()> {
    for up in instances {
        let df = up.read_table(table)?;
        let layer = df.column("layer")?.str()?.clone();
        let unit = df.column("unit")?.u32()?.clone();
        let value = df.column(column)?.f64()?.clone();
        for ((l, u), v) in layer.iter().zip(unit.iter()).zip(value.iter()) {
            if let (Some(l), Some(u), Some(v)) = (l, u, v) {
                cells.add(l, u, v);
            }
        }
    }
    Ok(())
}

impl Stage for FigureUnitGridStage {
    type Params = FigureUnitGridParams;
    const KIND: &'static str = "figure-unit-grid";
    const VERSION: u32 = 1;
    const SEEDED: bool = false;
    const INPUTS: &'static [&'static str] = &["indices"];
    const OPTIONAL_INPUTS: &'static [&'static str] = &["importance"];
    const ABOUT: &'static str =
        "layer x unit heatmaps (a transformer's heads) of power indices and Michel importance";

    fn validate(p: &FigureUnitGridParams) -> Result<(), Invalid> {
        crate::checks::file_stem("name", &p.name)
    }

    fn validate_inputs(_: &FigureUnitGridParams, inputs: &Inputs) -> Result<(), Invalid> {
        crate::checks::input_kinds(inputs, "indices", &["power-indices"])?;
        crate::checks::input_kinds(inputs, "importance", &["michel"])
    }

    fn run(p: &FigureUnitGridParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let mut panels: Vec<Cells> = Vec::new();
        for (stage, instances) in by_stage(ctx, "indices") {
            let first = instances[0].read_table("power_indices")?;
            let index = first
                .column("index")?
                .str()?
                .get(0)
                .unwrap_or("")
                .to_owned();
            let estimator = first
                .column("estimator")?
                .str()?
                .get(0)
                .unwrap_or("")
                .to_owned();
            let mut cells = Cells {
                title: format!("{index} ({estimator}), {stage}"),
                signed: true,
                layers: Vec::new(),
                values: BTreeMap::new(),
            };
            read_cells(&instances, "power_indices", "estimate", &mut cells)?;
            panels.push(cells);
        }
        for (stage, instances) in by_stage(ctx, "importance") {
            let mut cells = Cells {
                title: format!("Michel et al. importance, {stage}"),
                signed: false,
                layers: Vec::new(),
                values: BTreeMap::new(),
            };
            read_cells(&instances, "importance", "normalised", &mut cells)?;
            panels.push(cells);
        }
        let mut rows: (
            Vec<String>,
            Vec<String>,
            Vec<u32>,
            Vec<f64>,
            Vec<f64>,
            Vec<u32>,
        ) = Default::default();
        let mut plotted = Vec::new();
        for cells in &panels {
            let seeds = cells.values.values().map(Vec::len).max().unwrap_or(0);
            let units = cells
                .values
                .keys()
                .map(|(_, u)| *u as usize + 1)
                .max()
                .unwrap_or(0);
            let mut grid = vec![vec![None; units]; cells.layers.len()];
            for (&(layer, unit), v) in &cells.values {
                let (mean, std) = mean_std(v);
                grid[layer][unit as usize] = Some(mean);
                rows.0.push(cells.title.clone());
                rows.1.push(cells.layers[layer].clone());
                rows.2.push(unit);
                rows.3.push(mean);
                rows.4.push(std);
                rows.5.push(v.len() as u32);
            }
            plotted.push(gtap_plot::GridPanel {
                title: format!("{} (mean of {seeds} seeds)", cells.title),
                rows: cells.layers.clone(),
                values: grid,
                signed: cells.signed,
            });
        }
        gtap_plot::unit_grid_figure(&plotted, &ctx.figure_stem(&p.name)?)?;
        let mut df = df!(
            "panel" => rows.0,
            "layer" => rows.1,
            "unit" => rows.2,
            "mean" => rows.3,
            "std" => rows.4,
            "seeds" => rows.5,
        )?;
        ctx.write_table("unit_grid", &mut df)?;
        Ok(())
    }
}
