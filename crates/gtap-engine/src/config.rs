//! Pipeline files: raw TOML → scale preset and `--set` overrides → validated [`Pipeline`].
//!
//! ```toml
//! [pipeline]
//! name = "lenets"          # default: the file stem
//! seeds = [0, 1, 2]        # seeded stages run once per seed
//!
//! [stage.mnist]            # stage id
//! kind = "mnist"           # stage kind (see `gtap stages`)
//! probe_size = 5000        # the kind's own parameters
//!
//! [stage.train]
//! kind = "train"
//! inputs = { data = "mnist" }   # input name -> upstream stage id (declared above)
//! epochs = 10
//!
//! [scale.ci]               # merged over the file by `--scale ci`
//! pipeline.seeds = [0]
//! stage.train.epochs = 1
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::bounded;
use crate::stage::{Declared, Inputs, Invalid, Registry};
use crate::EngineError;

/// The scale used when neither the command line nor the file names one.
pub const DEFAULT_SCALE: &str = "full";

/// Overrides applied on top of the pipeline file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// A `[scale.<name>]` preset; `None` means the file's `pipeline.default_scale` or "full".
    pub scale: Option<String>,
    /// `key.path=value` pairs; values parse as TOML, falling back to a plain string.
    pub sets: Vec<String>,
}

/// A validated pipeline: every stage kind known, every parameter typed and range-checked.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub path: PathBuf,
    pub name: String,
    pub scale: String,
    pub seeds: Vec<u64>,
    /// Stages in file order, which is a dependency order (inputs must be declared earlier).
    pub stages: Vec<StageDecl>,
    /// The whole document after overrides, for provenance.
    pub resolved: serde_json::Value,
}

#[derive(Debug, Clone)]
pub struct StageDecl {
    pub id: String,
    pub kind: String,
    /// Input name → upstream stage ids (usually one; a list feeds e.g. a figure).
    pub inputs: BTreeMap<String, Vec<String>>,
    /// Parameters with defaults filled in, as they enter the cache key.
    pub params: serde_json::Value,
    /// Rounds of the stage's parts ([`crate::Stage::rounds`]); 1 for most stages.
    pub rounds: usize,
    /// `[stage.<id>.slurm]`: what a Slurm job building this stage asks for. Not in the key:
    /// where and how a stage runs never changes its bytes.
    pub slurm: SlurmResources,
}

/// Per-stage resources for `gtap run --executor slurm` (`[stage.<id>.slurm]`); every field
/// is optional and maps to one `sbatch` option.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmResources {
    /// `--cpus-per-task`; also the job's worker threads.
    pub cpus: Option<u32>,
    /// `--mem`, e.g. "8G".
    pub memory: Option<String>,
    /// `--time`, e.g. "01:30:00".
    pub time: Option<String>,
    /// `--gres`, e.g. "gpu:1".
    pub gres: Option<String>,
    /// `--partition`.
    pub partition: Option<String>,
    /// Further `sbatch` arguments, passed as they are.
    #[serde(default)]
    pub args: Vec<String>,
}

impl SlurmResources {
    /// The `sbatch` options these resources ask for.
    pub fn sbatch_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(cpus) = self.cpus {
            out.push(format!("--cpus-per-task={cpus}"));
        }
        let named = [
            ("--mem", &self.memory),
            ("--time", &self.time),
            ("--gres", &self.gres),
            ("--partition", &self.partition),
        ];
        for (flag, value) in named {
            if let Some(value) = value {
                out.push(format!("{flag}={value}"));
            }
        }
        out.extend(self.args.iter().cloned());
        out
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default = "default_seeds")]
    seeds: Vec<u64>,
    #[serde(default)]
    default_scale: Option<String>,
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}

impl Pipeline {
    /// Reads, overrides and validates a pipeline file.
    pub fn load(
        path: &Path,
        overrides: &Overrides,
        registry: &Registry,
    ) -> Result<Pipeline, EngineError> {
        let text = std::fs::read_to_string(path).map_err(|source| EngineError::ReadPipeline {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text, overrides, registry)
    }

    /// Like [`Pipeline::load`] on text already read; `path` is used in messages.
    pub fn parse(
        path: &Path,
        text: &str,
        overrides: &Overrides,
        registry: &Registry,
    ) -> Result<Pipeline, EngineError> {
        // Messages quote values (serde's "invalid value: string …"): bounded, whatever the input.
        let config_err = |key: &str, message: String| EngineError::Config {
            path: path.to_owned(),
            key: bounded(key, 200),
            message: bounded(&message, 500),
        };
        let mut doc: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| EngineError::Toml {
                    path: path.to_owned(),
                    message: toml_message(text, &e),
                })?;
        for key in doc.keys() {
            if !["pipeline", "stage", "scale"].contains(&key.as_str()) {
                return Err(config_err(
                    key,
                    "unknown top-level key (allowed: pipeline, stage, scale)".into(),
                ));
            }
        }

        // Scale preset: deep-merge `[scale.<name>]` over the document.
        let scales = match doc.remove("scale") {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(_) => return Err(config_err("scale", "must be a table of presets".into())),
        };
        let declared_default = doc
            .get("pipeline")
            .and_then(|p| p.get("default_scale"))
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let scale = overrides
            .scale
            .clone()
            .or(declared_default)
            .unwrap_or_else(|| DEFAULT_SCALE.to_owned());
        match scales.get(&scale) {
            Some(toml::Value::Table(preset)) => {
                merge_preset(&mut doc, preset, &format!("scale.{scale}"))
                    .map_err(|(key, msg)| config_err(&key, msg))?
            }
            Some(_) => {
                return Err(config_err(
                    &format!("scale.{scale}"),
                    "must be a table".into(),
                ))
            }
            None if scale == DEFAULT_SCALE => {}
            None => {
                let known: Vec<&str> = std::iter::once(DEFAULT_SCALE)
                    .chain(
                        scales
                            .keys()
                            .map(String::as_str)
                            .filter(|s| *s != DEFAULT_SCALE),
                    )
                    .collect();
                return Err(config_err(
                    "scale",
                    format!("no scale `{scale}` (available: {})", known.join(", ")),
                ));
            }
        }

        for set in &overrides.sets {
            apply_set(&mut doc, set)
                .map_err(|(key, msg)| config_err(&key, format!("--set {set}: {msg}")))?;
        }
        let resolved = serde_json::to_value(&doc).expect("TOML values convert to JSON");

        let header: RawHeader = match doc.remove("pipeline") {
            None => toml::from_str("").expect("empty header"),
            Some(value) => serde_path_to_error::deserialize(value).map_err(|e| {
                config_err(
                    &format!("pipeline.{}", e.path()),
                    e.into_inner().to_string(),
                )
            })?,
        };
        // Read above, before the preset was chosen; here they are only type-checked.
        let _ = (header.description, header.default_scale);
        if header.seeds.is_empty() {
            return Err(config_err(
                "pipeline.seeds",
                "must list at least one seed".into(),
            ));
        }
        let mut seen_seeds = header.seeds.clone();
        seen_seeds.sort_unstable();
        seen_seeds.dedup();
        if seen_seeds.len() != header.seeds.len() {
            return Err(config_err(
                "pipeline.seeds",
                "seeds must be distinct".into(),
            ));
        }
        let name = header.name.unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "pipeline".into())
        });

        let stage_table = match doc.remove("stage") {
            Some(toml::Value::Table(t)) => t,
            None => {
                return Err(config_err(
                    "stage",
                    "a pipeline needs at least one [stage.<id>]".into(),
                ))
            }
            Some(_) => return Err(config_err("stage", "must be a table of stages".into())),
        };
        let mut stages: Vec<StageDecl> = Vec::new();
        let mut declared: Vec<Declared> = Vec::new();
        for (id, body) in stage_table {
            let key = format!("stage.{id}");
            let toml::Value::Table(mut body) = body else {
                return Err(config_err(&key, "must be a table".into()));
            };
            let kind = match body.remove("kind") {
                Some(toml::Value::String(kind)) => kind,
                Some(_) => {
                    return Err(config_err(
                        &format!("{key}.kind"),
                        "must be a string".into(),
                    ))
                }
                None => {
                    return Err(config_err(
                        &format!("{key}.kind"),
                        "missing (every stage names its kind)".into(),
                    ))
                }
            };
            let Some(stage) = registry.get(&kind) else {
                return Err(config_err(
                    &format!("{key}.kind"),
                    format!("unknown stage kind `{kind}` (known: {})", registry.known()),
                ));
            };
            let mut inputs = BTreeMap::new();
            match body.remove("inputs") {
                None => {}
                Some(toml::Value::Table(t)) => {
                    for (name, upstream) in t {
                        let input_key = format!("{key}.inputs.{name}");
                        let upstream: Vec<String> = match &upstream {
                            toml::Value::String(id) => vec![id.clone()],
                            toml::Value::Array(ids)
                                if !ids.is_empty() && ids.iter().all(|v| v.is_str()) =>
                            {
                                ids.iter()
                                    .filter_map(|v| v.as_str().map(str::to_owned))
                                    .collect()
                            }
                            _ => {
                                return Err(config_err(
                                    &input_key,
                                    "must be an upstream stage id or a list of them".into(),
                                ))
                            }
                        };
                        let allowed: Vec<&str> = stage
                            .inputs()
                            .iter()
                            .chain(stage.optional_inputs())
                            .copied()
                            .collect();
                        if !allowed.contains(&name.as_str()) {
                            return Err(config_err(
                                &input_key,
                                format!(
                                    "stage kind `{kind}` has no input `{name}` (inputs: {})",
                                    list(&allowed)
                                ),
                            ));
                        }
                        for id_up in &upstream {
                            if !stages.iter().any(|s| &s.id == id_up) {
                                return Err(config_err(
                                    &input_key,
                                    format!("no stage `{id_up}` declared before `{id}` (inputs must refer to earlier stages)"),
                                ));
                            }
                        }
                        inputs.insert(name, upstream);
                    }
                }
                Some(_) => {
                    return Err(config_err(
                        &format!("{key}.inputs"),
                        "must be a table".into(),
                    ))
                }
            }
            if let Some(missing) = stage.inputs().iter().find(|n| !inputs.contains_key(**n)) {
                return Err(config_err(
                    &format!("{key}.inputs"),
                    format!(
                        "missing input `{missing}` (stage kind `{kind}` needs: {})",
                        list(stage.inputs())
                    ),
                ));
            }
            let slurm = match body.remove("slurm") {
                None => SlurmResources::default(),
                Some(value) => serde_path_to_error::deserialize(value).map_err(|e| {
                    let at = e.path().to_string();
                    let at = if at == "." {
                        String::new()
                    } else {
                        format!(".{at}")
                    };
                    config_err(&format!("{key}.slurm{at}"), e.into_inner().to_string())
                })?,
            };
            if slurm.cpus == Some(0) {
                return Err(config_err(
                    &format!("{key}.slurm.cpus"),
                    "must be at least 1".into(),
                ));
            }
            let params = stage.resolve(toml::Value::Table(body)).map_err(|invalid| {
                let full = if invalid.key.is_empty() {
                    key.clone()
                } else {
                    format!("{key}.{}", invalid.key)
                };
                config_err(&full, invalid.message)
            })?;
            // Upstream parameters, with their kind, for stages whose rounds depend on them.
            let upstream_params: BTreeMap<String, Vec<serde_json::Value>> = inputs
                .iter()
                .map(|(name, ids)| {
                    let params = ids
                        .iter()
                        .filter_map(|up| stages.iter().find(|s| &s.id == up))
                        .map(|s| {
                            let mut p = s.params.clone();
                            if let Some(obj) = p.as_object_mut() {
                                obj.insert("kind".into(), serde_json::json!(s.kind));
                            }
                            p
                        })
                        .collect();
                    (name.clone(), params)
                })
                .collect();
            let invalid_here = |invalid: Invalid| {
                let full = if invalid.key.is_empty() {
                    key.clone()
                } else {
                    format!("{key}.{}", invalid.key)
                };
                config_err(&full, invalid.message)
            };
            let rounds = stage
                .rounds(&params, &upstream_params)
                .map_err(invalid_here)?;
            let declared_inputs: Inputs = inputs
                .iter()
                .map(|(name, ids)| {
                    let ups = ids
                        .iter()
                        .filter_map(|up| declared.iter().find(|d| &d.id == up).cloned())
                        .collect();
                    (name.clone(), ups)
                })
                .collect();
            stage
                .validate_inputs(&params, &declared_inputs)
                .map_err(invalid_here)?;
            declared.push(Declared {
                id: id.clone(),
                kind: kind.clone(),
                params: params.clone(),
                inputs: declared_inputs,
            });
            stages.push(StageDecl {
                id,
                kind,
                inputs,
                params,
                rounds,
                slurm,
            });
        }
        Ok(Pipeline {
            path: path.to_owned(),
            name,
            scale,
            seeds: header.seeds,
            stages,
            resolved,
        })
    }

    /// sha256 of the resolved document: a job started later checks that the pipeline it loads
    /// is the one that was submitted.
    pub fn fingerprint(&self) -> String {
        crate::hash::sha256_hex(crate::hash::canonical_json(&self.resolved).as_bytes())
    }

    pub fn stage(&self, id: &str) -> Result<&StageDecl, EngineError> {
        self.stages
            .iter()
            .find(|s| s.id == id)
            .ok_or_else(|| EngineError::UnknownStage {
                stage: id.to_owned(),
                pipeline: self.path.display().to_string(),
                known: self
                    .stages
                    .iter()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// A TOML syntax error as `line L, column C: message` and the line around the column, never
/// the whole input (a malformed file may be one 10 MB line).
fn toml_message(text: &str, err: &toml::de::Error) -> String {
    let message = bounded(err.message().trim_end(), 300);
    let Some(span) = err.span() else {
        return message;
    };
    let mut at = span.start.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    let line = text[..at].matches('\n').count() + 1;
    let column = text[line_start..at].chars().count() + 1;
    // At most 40 characters either side of the error.
    let before: String = text[line_start..at]
        .chars()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    let after: String = text[at..line_end].chars().take(40).collect();
    let cut_before = before.len() < at - line_start;
    let cut_after = after.len() < line_end - at;
    let snippet = format!(
        "{}{before}{after}{}",
        if cut_before { "…" } else { "" },
        if cut_after { "…" } else { "" }
    );
    let caret = " ".repeat(before.chars().count() + usize::from(cut_before));
    format!("line {line}, column {column}: {message}\n  | {snippet}\n  | {caret}^")
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// Merges a scale preset into the document. A preset may only override stages that exist, so
/// a typo in a preset is an error rather than a silent no-op.
fn merge_preset(
    doc: &mut toml::Table,
    preset: &toml::Table,
    origin: &str,
) -> Result<(), (String, String)> {
    for (key, value) in preset {
        let here = format!("{origin}.{key}");
        match key.as_str() {
            "pipeline" => merge_tables(doc, key, value),
            "stage" => {
                let Some(stages) = value.as_table() else {
                    return Err((here, "must be a table".into()));
                };
                for (id, _) in stages {
                    let exists = doc.get("stage").and_then(|s| s.get(id)).is_some();
                    if !exists {
                        return Err((format!("{here}.{id}"), format!("the preset overrides stage `{id}`, which the pipeline does not declare")));
                    }
                }
                merge_tables(doc, key, value);
            }
            _ => {
                return Err((
                    here,
                    "a preset may set only `pipeline` and `stage` keys".into(),
                ))
            }
        }
    }
    Ok(())
}

fn merge_tables(into: &mut toml::Table, key: &str, value: &toml::Value) {
    match (into.get_mut(key), value) {
        (Some(toml::Value::Table(existing)), toml::Value::Table(new)) => {
            for (k, v) in new {
                merge_tables(existing, k, v);
            }
        }
        _ => {
            into.insert(key.to_owned(), value.clone());
        }
    }
}

/// Applies one `a.b.c=value` override. Every table on the path but the last key must exist.
fn apply_set(doc: &mut toml::Table, set: &str) -> Result<(), (String, String)> {
    let Some((path, raw_value)) = set.split_once('=') else {
        return Err((set.to_owned(), "expected KEY=VALUE".into()));
    };
    let path = path.trim();
    let value = parse_value(raw_value.trim());
    let parts: Vec<&str> = path.split('.').collect();
    if parts.len() < 2 || !["pipeline", "stage"].contains(&parts[0]) {
        return Err((
            path.to_owned(),
            "keys start with `pipeline.` or `stage.<id>.`".into(),
        ));
    }
    let mut table = doc;
    for (depth, part) in parts[..parts.len() - 1].iter().enumerate() {
        let here = parts[..=depth].join(".");
        if depth == 0 && *part == "pipeline" && !table.contains_key("pipeline") {
            table.insert("pipeline".into(), toml::Value::Table(toml::Table::new()));
        }
        table = match table.get_mut(*part) {
            Some(toml::Value::Table(t)) => t,
            Some(_) => return Err((here, "is not a table".into())),
            None => return Err((here, "no such table in the pipeline".into())),
        };
    }
    table.insert(parts[parts.len() - 1].to_owned(), value);
    Ok(())
}

fn parse_value(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").expect("parsed table has v"),
        Err(_) => toml::Value::String(raw.to_owned()),
    }
}
