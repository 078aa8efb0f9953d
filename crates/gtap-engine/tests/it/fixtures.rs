use std::path::Path;

use gtap_engine::{
    ensure, Env, Invalid, Overrides, Pipeline, Registry, RunReport, Runner, Stage, StageContext,
};
use polars::prelude::*;
use serde::{Deserialize, Serialize};

/// Unseeded source: writes `value` to `value.txt`. `note` does not affect the output, which
/// lets tests check early cutoff.
pub struct Source;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceParams {
    pub value: i64,
    #[serde(default)]
    pub note: String,
}

impl Stage for Source {
    type Params = SourceParams;
    const KIND: &'static str = "source";
    const VERSION: u32 = 1;
    const SEEDED: bool = false;
    const INPUTS: &'static [&'static str] = &[];
    const ABOUT: &'static str = "writes a number";
    fn run(params: &SourceParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        std::fs::write(ctx.out_dir().join("value.txt"), params.value.to_string())?;
        Ok(())
    }
}

/// Seeded: reads the source's value and writes a table row (seed, value * factor) and the
/// product as its own `value.txt`.
pub struct Scale;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScaleParams {
    #[serde(default = "one")]
    pub factor: i64,
    #[serde(default)]
    pub fail: bool,
    /// Panics in the instance of this seed (out of the key when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub panic_seed: Option<u64>,
    /// Sleeps this long before writing (out of the key when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_ms: Option<u64>,
}

fn one() -> i64 {
    1
}

impl Stage for Scale {
    type Params = ScaleParams;
    const KIND: &'static str = "scale";
    const VERSION: u32 = 1;
    const SEEDED: bool = true;
    const INPUTS: &'static [&'static str] = &["x"];
    const ABOUT: &'static str = "multiplies by a factor, per seed";
    // Stands in for a tensor stage: its key follows `Env::numerics`.
    const FLOAT_MATH: bool = true;
    fn validate(params: &ScaleParams) -> Result<(), Invalid> {
        ensure((1..=10).contains(&params.factor), "factor", || {
            format!("must be between 1 and 10 (got {})", params.factor)
        })
    }
    fn run(params: &ScaleParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        if params.fail {
            // Leave a half-written output behind, as a crash would.
            std::fs::write(ctx.out_dir().join("partial.txt"), "half")?;
            anyhow::bail!("asked to fail");
        }
        let value: i64 = std::fs::read_to_string(ctx.input("x")?.path("value.txt"))?.parse()?;
        let seed = ctx.seed()?;
        if let Some(ms) = params.sleep_ms {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        if params.panic_seed == Some(seed) {
            // Half an output first, as a crash would leave it.
            std::fs::write(ctx.out_dir().join("partial.txt"), "half")?;
            let empty: Vec<i64> = Vec::new();
            let _ = empty[seed as usize];
        }
        let mut df = df!("seed" => [seed], "value" => [value * params.factor])?;
        ctx.write_table("scaled", &mut df)?;
        // So that a scale stage can feed another.
        std::fs::write(
            ctx.out_dir().join("value.txt"),
            (value * params.factor).to_string(),
        )?;
        Ok(())
    }
}

/// Unseeded sink over every seed of its input: sums the scaled values.
pub struct Sum;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SumParams {}

impl Stage for Sum {
    type Params = SumParams;
    const KIND: &'static str = "sum";
    const VERSION: u32 = 1;
    const SEEDED: bool = false;
    const INPUTS: &'static [&'static str] = &["parts"];
    const ABOUT: &'static str = "sums over seeds";
    fn run(_: &SumParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let mut total = 0i64;
        for part in ctx.inputs("parts") {
            let df = part.read_table("scaled")?;
            total += df.column("value")?.i64()?.sum().unwrap_or(0);
        }
        let mut df = df!("total" => [total])?;
        ctx.write_table("total", &mut df)?;
        Ok(())
    }
}

/// Seeded, split into `shards` parts: part k sums its share of `0..100` times the source's
/// value; the stage's own instance adds the parts up. The same table whatever `shards`.
pub struct Split;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitParams {
    #[serde(default = "one_usize")]
    pub shards: usize,
}

fn one_usize() -> usize {
    1
}

impl Stage for Split {
    type Params = SplitParams;
    const KIND: &'static str = "split";
    const VERSION: u32 = 1;
    const SEEDED: bool = true;
    const INPUTS: &'static [&'static str] = &["x"];
    const ABOUT: &'static str = "sums 0..100 in parts";
    fn parts(params: &SplitParams) -> usize {
        params.shards
    }
    fn run(_: &SplitParams, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        let value: i64 = std::fs::read_to_string(ctx.input("x")?.path("value.txt"))?.parse()?;
        let share =
            |index: i64, of: i64| -> i64 { (100 * index / of..100 * (index + 1) / of).sum() };
        if let Some((index, of)) = ctx.part {
            let sum = share(index as i64, of as i64) * value;
            std::fs::write(ctx.out_dir().join("part.txt"), sum.to_string())?;
            return Ok(());
        }
        let total: i64 = if ctx.parts().is_empty() {
            share(0, 1) * value
        } else {
            let mut total = 0;
            for part in ctx.parts() {
                total += std::fs::read_to_string(part.path("part.txt"))?.parse::<i64>()?;
            }
            total
        };
        let mut df = df!("seed" => [ctx.seed()?], "total" => [total])?;
        ctx.write_table("split", &mut df)?;
        Ok(())
    }
}

pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register::<Source>()
        .register::<Scale>()
        .register::<Sum>()
        .register::<Split>();
    r
}

pub const PIPELINE: &str = r#"
[pipeline]
name = "toy"
seeds = [0, 1]

[stage.src]
kind = "source"
value = 3

[stage.scaled]
kind = "scale"
inputs = { x = "src" }
factor = 2

[stage.total]
kind = "sum"
inputs = { parts = "scaled" }

[scale.ci]
pipeline.seeds = [0]
stage.scaled.factor = 5
"#;

/// A scratch project: cache, results and the pipeline text.
pub struct Project {
    _dir: tempfile::TempDir,
    pub env: Env,
    pub registry: Registry,
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let env = Env {
            data_dir: root.join("data"),
            cache_dir: root.join("cache"),
            results_dir: root.join("results"),
            figures_dir: root.join("figures"),
            progress: false,
            numerics: "portable-1".into(),
        };
        Project {
            _dir: dir,
            env,
            registry: registry(),
        }
    }

    pub fn pipeline(&self, text: &str, overrides: &Overrides) -> Pipeline {
        Pipeline::parse(Path::new("toy.toml"), text, overrides, &self.registry).unwrap()
    }

    pub fn run(&self, text: &str) -> RunReport {
        self.run_with(text, &Overrides::default(), &[])
    }

    pub fn run_with(&self, text: &str, overrides: &Overrides, force: &[String]) -> RunReport {
        let pipeline = self.pipeline(text, overrides);
        Runner::new(&self.registry, &self.env)
            .run(&pipeline, force)
            .unwrap()
    }

    pub fn result(&self, table: &str) -> DataFrame {
        gtap_engine::table::read_parquet(
            &self
                .env
                .results_dir
                .join("toy")
                .join(format!("{table}.parquet")),
        )
        .unwrap()
    }
}
