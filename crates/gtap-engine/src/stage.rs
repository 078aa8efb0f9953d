//! The `Stage` trait, its type-erased form, and the registry of stage kinds.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::table;

/// One kind of pipeline stage. Parameters are typed: the engine deserialises them from the
/// pipeline file (`deny_unknown_fields` on `Params` is expected), validates them, and keys the
/// cache on their resolved form (defaults filled in).
pub trait Stage: Send + Sync + 'static {
    /// Resolved parameters of the stage, as written under `[stage.<id>]`.
    type Params: Serialize + DeserializeOwned + Send + Sync;
    /// Name used as `kind = "..."` in pipeline files.
    const KIND: &'static str;
    /// Bump to invalidate every cached output of this kind (code changes that alter outputs).
    const VERSION: u32;
    /// Seeded stages run once per pipeline seed; unseeded ones once, shared by all seeds.
    const SEEDED: bool;
    /// Names of the inputs this stage reads; each maps to an upstream stage in the pipeline file.
    const INPUTS: &'static [&'static str];
    /// Inputs a pipeline may bind or leave out (e.g. an MCUE grid that supplies a bias).
    const OPTIONAL_INPUTS: &'static [&'static str] = &[];
    /// One line for `gtap stages`.
    const ABOUT: &'static str;
    /// Whether the stage's bytes depend on how the process computes floats (tensor stages):
    /// then [`Env::numerics`] enters its key.
    const FLOAT_MATH: bool = false;

    /// Into how many parts the stage's work is split (e.g. `shards = N`): each part is an
    /// instance of its own (its own cluster job), run with [`StageContext::part`] set; then the
    /// stage's own instance runs with the parts' outputs in [`StageContext::parts`] and merges
    /// them. 1 (the default): no parts.
    fn parts(_params: &Self::Params) -> usize {
        1
    }

    /// Rounds of parts, for work whose parts depend on the parts before (iterated pruning
    /// re-estimates after each step): round r's parts and merge see round r − 1's merge in
    /// [`StageContext::previous`]; the last round's merge is the stage's own instance. Known
    /// before anything runs, from the parameters and the inputs' resolved parameters (input
    /// name → one JSON object per upstream stage), so a cluster executor submits every job at
    /// once. Only asked when [`Stage::parts`] > 1. 1 (the default): no rounds.
    fn rounds(
        _params: &Self::Params,
        _inputs: &BTreeMap<String, Vec<serde_json::Value>>,
    ) -> Result<usize, Invalid> {
        Ok(1)
    }

    /// Range and consistency checks beyond what the types say.
    fn validate(_params: &Self::Params) -> Result<(), Invalid> {
        Ok(())
    }

    /// Checks that need the upstream stages as the pipeline declares them (kinds, parameters,
    /// and their own inputs in turn): a layer name against the architecture a `train` input
    /// declares, a shift against the image size of the dataset. Run before anything runs, so
    /// `gtap status` refuses what `gtap run` would.
    fn validate_inputs(_params: &Self::Params, _inputs: &Inputs) -> Result<(), Invalid> {
        Ok(())
    }

    /// Files outside the cache that the stage reads (datasets): their sha256 enters the key.
    /// May fetch them first.
    fn external_files(
        _params: &Self::Params,
        _env: &Env,
    ) -> anyhow::Result<Vec<(String, PathBuf)>> {
        Ok(Vec::new())
    }

    /// Computes the outputs into `ctx.out_dir()`.
    fn run(params: &Self::Params, ctx: &StageContext<'_>) -> anyhow::Result<()>;
}

/// Input name → the upstream stages bound to it, as declared.
pub type Inputs = BTreeMap<String, Vec<Declared>>;

/// A stage as its pipeline declares it (for [`Stage::validate_inputs`]): id, kind, resolved
/// parameters and its own inputs.
#[derive(Debug, Clone)]
pub struct Declared {
    pub id: String,
    pub kind: String,
    pub params: serde_json::Value,
    pub inputs: Inputs,
}

impl Declared {
    /// Parameter `name`, when present and of type `T`.
    pub fn param<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        self.params
            .get(name)
            .and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// The first upstream stage bound to input `name`.
    pub fn input(&self, name: &str) -> Option<&Declared> {
        self.inputs.get(name).and_then(|v| v.first())
    }

    /// Whether two declarations make the same outputs: same kind and parameters, and the same
    /// inputs in turn (stage ids aside).
    pub fn same_as(&self, other: &Declared) -> bool {
        self.kind == other.kind
            && self.params == other.params
            && self.inputs.len() == other.inputs.len()
            && self
                .inputs
                .iter()
                .zip(&other.inputs)
                .all(|((a, x), (b, y))| {
                    a == b && x.len() == y.len() && x.iter().zip(y).all(|(x, y)| x.same_as(y))
                })
    }
}

/// A parameter that failed validation: the key (relative to the stage) and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

impl Invalid {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Fails validation with `message` for `key` unless `ok`.
pub fn ensure(ok: bool, key: &str, message: impl FnOnce() -> String) -> Result<(), Invalid> {
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(key, message()))
    }
}

/// Where a run reads data and writes its cache and results.
#[derive(Debug, Clone)]
pub struct Env {
    pub data_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub results_dir: PathBuf,
    /// Where figures that stages write under `figures/` are copied after a run.
    pub figures_dir: PathBuf,
    /// Draw progress bars (off in tests and when stderr is not a terminal).
    pub progress: bool,
    /// The process's floating-point settings (e.g. `portable-1`, `fast`): part of the key of
    /// every stage with `FLOAT_MATH`, so entries computed under other settings never stand in.
    pub numerics: String,
}

/// The output of an upstream stage instance, as seen by a downstream stage.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub stage: String,
    pub kind: String,
    pub seed: Option<u64>,
    pub dir: PathBuf,
    pub content_hash: String,
}

impl Upstream {
    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    pub fn read_table(&self, name: &str) -> anyhow::Result<polars::prelude::DataFrame> {
        Ok(table::read_parquet(
            &self.dir.join(table::table_file(name)),
        )?)
    }
}

/// What a running stage sees: its seed, inputs, and the directory it writes to.
pub struct StageContext<'a> {
    pub env: &'a Env,
    pub instance: &'a str,
    pub seed: Option<u64>,
    /// `Some((index, of))` when this instance computes one part of a split stage.
    pub part: Option<(usize, usize)>,
    /// `Some((round, of))` when the stage's parts come in rounds ([`Stage::rounds`]).
    pub round: Option<(usize, usize)>,
    pub(crate) out_dir: &'a Path,
    pub(crate) inputs: &'a BTreeMap<String, Vec<Upstream>>,
}

impl StageContext<'_> {
    /// The (temporary) directory the outputs go to; renamed into the cache when the stage succeeds.
    pub fn out_dir(&self) -> &Path {
        self.out_dir
    }

    /// The single upstream output bound to input `name`.
    pub fn input(&self, name: &str) -> anyhow::Result<&Upstream> {
        match self.inputs(name) {
            [one] => Ok(one),
            many => anyhow::bail!(
                "stage `{}` expects exactly one output for input `{name}`, got {}",
                self.instance,
                many.len()
            ),
        }
    }

    /// Every upstream output bound to input `name` (several when a seeded stage feeds an
    /// unseeded one: one per seed, in seed order).
    pub fn inputs(&self, name: &str) -> &[Upstream] {
        self.inputs.get(name).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The outputs of this stage's parts (this round's), in part order, when it merges them
    /// (empty otherwise).
    pub fn parts(&self) -> &[Upstream] {
        self.inputs(crate::runner::PARTS_INPUT)
    }

    /// The round before's merge, in rounds after the first.
    pub fn previous(&self) -> Option<&Upstream> {
        self.inputs(crate::runner::PREVIOUS_INPUT).first()
    }

    /// Where a figure named `stem` goes (`<stem>.png`, `<stem>.svg`); copied to the figures
    /// directory after the run.
    pub fn figure_stem(&self, stem: &str) -> anyhow::Result<PathBuf> {
        let dir = self.out_dir.join("figures");
        std::fs::create_dir_all(&dir)?;
        Ok(dir.join(stem))
    }

    /// The seed of a seeded stage.
    pub fn seed(&self) -> anyhow::Result<u64> {
        self.seed
            .ok_or_else(|| anyhow::anyhow!("stage `{}` is not seeded", self.instance))
    }

    /// Writes a result table; the engine concatenates every instance's table of the same name
    /// into `results/<pipeline>/<name>.parquet`.
    pub fn write_table(
        &self,
        name: &str,
        df: &mut polars::prelude::DataFrame,
    ) -> anyhow::Result<()> {
        let path = self.out_dir.join(table::table_file(name));
        table::write_parquet(&path, df)?;
        Ok(())
    }
}

/// A stage kind with its types erased, so the registry can hold every kind in one map.
pub(crate) trait DynStage: Send + Sync {
    fn kind(&self) -> &'static str;
    fn version(&self) -> u32;
    fn seeded(&self) -> bool;
    fn inputs(&self) -> &'static [&'static str];
    fn optional_inputs(&self) -> &'static [&'static str];
    fn about(&self) -> &'static str;
    fn float_math(&self) -> bool;
    fn parts(&self, params: &serde_json::Value) -> usize;
    fn rounds(
        &self,
        params: &serde_json::Value,
        inputs: &BTreeMap<String, Vec<serde_json::Value>>,
    ) -> Result<usize, Invalid>;
    /// Raw TOML parameters → resolved JSON parameters, or (key, message).
    fn resolve(&self, raw: toml::Value) -> Result<serde_json::Value, Invalid>;
    fn validate_inputs(&self, params: &serde_json::Value, inputs: &Inputs) -> Result<(), Invalid>;
    fn external_files(
        &self,
        params: &serde_json::Value,
        env: &Env,
    ) -> anyhow::Result<Vec<(String, PathBuf)>>;
    fn run(&self, params: &serde_json::Value, ctx: &StageContext<'_>) -> anyhow::Result<()>;
}

struct Erased<S>(PhantomData<fn() -> S>);

impl<S: Stage> Erased<S> {
    fn params(value: &serde_json::Value) -> anyhow::Result<S::Params> {
        // Resolved parameters were produced by serialising S::Params, so this only fails on a
        // programming error.
        Ok(serde_json::from_value(value.clone())?)
    }
}

impl<S: Stage> DynStage for Erased<S> {
    fn kind(&self) -> &'static str {
        S::KIND
    }
    fn version(&self) -> u32 {
        S::VERSION
    }
    fn seeded(&self) -> bool {
        S::SEEDED
    }
    fn inputs(&self) -> &'static [&'static str] {
        S::INPUTS
    }
    fn optional_inputs(&self) -> &'static [&'static str] {
        S::OPTIONAL_INPUTS
    }
    fn about(&self) -> &'static str {
        S::ABOUT
    }
    fn float_math(&self) -> bool {
        S::FLOAT_MATH
    }
    fn parts(&self, params: &serde_json::Value) -> usize {
        Self::params(params).map_or(1, |p| S::parts(&p).max(1))
    }
    fn rounds(
        &self,
        params: &serde_json::Value,
        inputs: &BTreeMap<String, Vec<serde_json::Value>>,
    ) -> Result<usize, Invalid> {
        let params = Self::params(params).map_err(|e| Invalid::new("", e.to_string()))?;
        if S::parts(&params) <= 1 {
            return Ok(1);
        }
        Ok(S::rounds(&params, inputs)?.max(1))
    }
    fn resolve(&self, raw: toml::Value) -> Result<serde_json::Value, Invalid> {
        let params: S::Params = serde_path_to_error::deserialize(raw).map_err(|err| {
            let path = err.path().to_string();
            let key = if path == "." { String::new() } else { path };
            Invalid::new(key, err.into_inner().to_string())
        })?;
        S::validate(&params)?;
        serde_json::to_value(&params).map_err(|e| Invalid::new("", e.to_string()))
    }
    fn validate_inputs(&self, params: &serde_json::Value, inputs: &Inputs) -> Result<(), Invalid> {
        let params = Self::params(params).map_err(|e| Invalid::new("", e.to_string()))?;
        S::validate_inputs(&params, inputs)
    }
    fn external_files(
        &self,
        params: &serde_json::Value,
        env: &Env,
    ) -> anyhow::Result<Vec<(String, PathBuf)>> {
        S::external_files(&Self::params(params)?, env)
    }
    fn run(&self, params: &serde_json::Value, ctx: &StageContext<'_>) -> anyhow::Result<()> {
        S::run(&Self::params(params)?, ctx)
    }
}

/// Every stage kind a pipeline may name. Adding a kind is one `register` line.
#[derive(Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Box<dyn DynStage>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds stage kind `S`; a second kind with the same name replaces the first.
    pub fn register<S: Stage>(&mut self) -> &mut Self {
        self.kinds
            .insert(S::KIND, Box::new(Erased::<S>(PhantomData)));
        self
    }

    pub(crate) fn get(&self, kind: &str) -> Option<&dyn DynStage> {
        self.kinds.get(kind).map(|b| b.as_ref())
    }

    /// `(kind, about)` for every registered kind, sorted by kind.
    pub fn kinds(&self) -> Vec<(&'static str, &'static str)> {
        self.kinds.values().map(|s| (s.kind(), s.about())).collect()
    }

    pub(crate) fn known(&self) -> String {
        self.kinds.keys().copied().collect::<Vec<_>>().join(", ")
    }
}
