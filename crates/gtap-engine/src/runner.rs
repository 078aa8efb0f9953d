//! Running a pipeline: expand stages per seed, key each instance, build what is missing,
//! materialise the result tables.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::json;

use crate::cache::{Cache, Corruption, Lookup, Manifest};
use crate::config::{Pipeline, StageDecl};
use crate::stage::{DynStage, Env, Registry, StageContext, Upstream};
use crate::{hash, table, EngineError};

/// One execution of a stage: the stage itself for unseeded kinds, one per seed for seeded ones.
#[derive(Debug, Clone)]
pub struct Instance {
    /// `stage` or `stage[seed]`.
    pub id: String,
    pub stage: String,
    pub kind: String,
    pub seed: Option<u64>,
    /// `(index, of)` for one part of a stage split in parts (`Stage::parts`): id
    /// `stage[seed].part<index+1>of<of>`; the stage's own instance then merges its parts.
    pub part: Option<(usize, usize)>,
    /// `(round, of)` when the stage's parts come in rounds (`Stage::rounds` > 1): each round's
    /// parts read the round before's merge. Rounds but the last have ids
    /// `stage[seed].round<r+1>of<of>`; the last round's merge is the stage's own instance.
    pub round: Option<(usize, usize)>,
}

impl Instance {
    /// Whether downstream stages and the results see this instance: not a part, not an
    /// intermediate round.
    pub fn is_final(&self) -> bool {
        self.part.is_none() && self.round.is_none_or(|(r, of)| r + 1 == of)
    }
}

/// The input name under which a split stage's merge receives its (round's) parts.
pub(crate) const PARTS_INPUT: &str = "#parts";
/// The input name under which a round's parts and merge receive the round before's merge.
pub(crate) const PREVIOUS_INPUT: &str = "#previous";

/// Fault injection for tests of the binary and its executors: the instance whose id this
/// variable holds panics as it starts.
pub const INJECT_PANIC: &str = "GTAP_INJECT_PANIC";

/// How an instance fared in a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Cached,
    Built { seconds: f64 },
}

#[derive(Debug, Clone)]
pub struct InstanceReport {
    pub instance: Instance,
    pub key: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
pub struct RunReport {
    pub instances: Vec<InstanceReport>,
    /// The materialised tables under `results/<pipeline>/`.
    pub tables: Vec<PathBuf>,
}

impl RunReport {
    pub fn built(&self) -> Vec<&str> {
        self.instances
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Built { .. }))
            .map(|r| r.instance.id.as_str())
            .collect()
    }
}

/// State of an instance for `gtap status`.
#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Cached,
    Missing,
    /// The key depends on upstream outputs that do not exist yet.
    Blocked,
}

#[derive(Debug, Clone)]
pub struct InstanceStatus {
    pub instance: Instance,
    pub key: Option<String>,
    pub state: State,
}

/// What changed for one instance since the pre-image recorded by the last run.
#[derive(Debug, Clone)]
pub struct Why {
    pub instance: Instance,
    /// `None` when no run of this pipeline recorded the instance yet.
    pub changes: Option<Vec<String>>,
    /// `None` when upstream outputs are missing, so the current pre-image is not known yet.
    pub current_key: Option<String>,
}

/// How much of a cache entry [`Runner::survey`] checks before it counts as cached.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Check {
    /// A manifest that parses (cheap: `gtap status`).
    Manifest,
    /// Files that match the manifest; a corrupt entry is removed and counts as missing.
    Contents,
}

/// One cached instance's entry as [`Runner::verify`] found it.
#[derive(Debug, Clone)]
pub struct Verified {
    pub instance: Instance,
    pub key: String,
    /// Bytes of the entry's files (0 when corrupt or recorded before per-file records).
    pub bytes: u64,
    /// `None` when every file matches the manifest.
    pub problem: Option<Corruption>,
}

/// Runs pipelines against one cache.
pub struct Runner<'a> {
    pub(crate) registry: &'a Registry,
    pub(crate) env: &'a Env,
    pub(crate) cache: Cache,
    jobs: usize,
}

/// An instance whose inputs are built: everything its build needs.
struct Ready<'p> {
    index: usize,
    decl: &'p StageDecl,
    instance: Instance,
    inputs: BTreeMap<String, Vec<Upstream>>,
    preimage: serde_json::Value,
    key: String,
    forced: bool,
}

impl<'a> Runner<'a> {
    pub fn new(registry: &'a Registry, env: &'a Env) -> Self {
        Runner {
            registry,
            env,
            cache: Cache::new(&env.cache_dir),
            jobs: 1,
        }
    }

    /// Builds up to `jobs` instances at once (those whose inputs are built); 1 by default.
    /// Instances are keyed and reported in pipeline order whatever order they finish in.
    pub fn jobs(mut self, jobs: usize) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Every instance in dependency order.
    pub fn instances(&self, pipeline: &Pipeline) -> Vec<Instance> {
        let mut out = Vec::new();
        for decl in &self.decls(pipeline) {
            out.extend(self.expand(pipeline, decl.0, decl.1));
        }
        out
    }

    pub(crate) fn decls<'p>(
        &self,
        pipeline: &'p Pipeline,
    ) -> Vec<(&'p StageDecl, &'a dyn DynStage)> {
        pipeline
            .stages
            .iter()
            .map(|d| {
                (
                    d,
                    self.registry
                        .get(&d.kind)
                        .expect("validated pipelines name known kinds"),
                )
            })
            .collect()
    }

    pub(crate) fn expand(
        &self,
        pipeline: &Pipeline,
        decl: &StageDecl,
        stage: &dyn DynStage,
    ) -> Vec<Instance> {
        let parts = stage.parts(&decl.params);
        let rounds = decl.rounds;
        let one =
            |seed: Option<u64>, round: Option<(usize, usize)>, part: Option<(usize, usize)>| {
                let mut id = match seed {
                    Some(s) => format!("{}[{s}]", decl.id),
                    None => decl.id.clone(),
                };
                if let Some((r, of)) = round {
                    if r + 1 < of || part.is_some() {
                        id.push_str(&format!(".round{}of{of}", r + 1));
                    }
                }
                if let Some((index, of)) = part {
                    id.push_str(&format!(".part{}of{of}", index + 1));
                }
                Instance {
                    id,
                    stage: decl.id.clone(),
                    kind: decl.kind.clone(),
                    seed,
                    part,
                    round,
                }
            };
        let seeds: Vec<Option<u64>> = if stage.seeded() {
            pipeline.seeds.iter().map(|&s| Some(s)).collect()
        } else {
            vec![None]
        };
        let mut out = Vec::new();
        for seed in seeds {
            for r in 0..rounds {
                let round = (rounds > 1).then_some((r, rounds));
                if parts > 1 {
                    out.extend((0..parts).map(|index| one(seed, round, Some((index, parts)))));
                }
                out.push(one(seed, round, None));
            }
        }
        out
    }

    /// The upstream instances bound to each input of `instance`: the same seed when both are
    /// seeded, every seed when a seeded stage feeds an unseeded one, the one instance otherwise.
    pub(crate) fn upstream_of(
        &self,
        pipeline: &Pipeline,
        decl: &StageDecl,
        instance: &Instance,
    ) -> BTreeMap<String, Vec<Instance>> {
        let mut out = BTreeMap::new();
        for (name, upstream_ids) in &decl.inputs {
            let mut chosen = Vec::new();
            for upstream_id in upstream_ids {
                let up_decl = pipeline.stage(upstream_id).expect("validated inputs exist");
                let up_stage = self.registry.get(&up_decl.kind).expect("known kind");
                // A split stage feeds its merged instance downstream, never its parts.
                let all: Vec<Instance> = self
                    .expand(pipeline, up_decl, up_stage)
                    .into_iter()
                    .filter(Instance::is_final)
                    .collect();
                match (up_stage.seeded(), instance.seed) {
                    (true, Some(seed)) => {
                        chosen.extend(all.into_iter().filter(|u| u.seed == Some(seed)))
                    }
                    _ => chosen.extend(all),
                }
            }
            out.insert(name.clone(), chosen);
        }
        let stage = self.registry.get(&decl.kind).expect("known kind");
        let siblings: Vec<Instance> = self
            .expand(pipeline, decl, stage)
            .into_iter()
            .filter(|i| i.seed == instance.seed)
            .collect();
        let round_of = |i: &Instance| i.round.map(|(r, _)| r);
        if instance.part.is_none() {
            let parts: Vec<Instance> = siblings
                .iter()
                .filter(|p| p.part.is_some() && round_of(p) == round_of(instance))
                .cloned()
                .collect();
            if !parts.is_empty() {
                out.insert(PARTS_INPUT.to_owned(), parts);
            }
        }
        if let Some((r, _)) = instance.round.filter(|(r, _)| *r > 0) {
            let previous: Vec<Instance> = siblings
                .into_iter()
                .filter(|p| p.part.is_none() && round_of(p) == Some(r - 1))
                .collect();
            out.insert(PREVIOUS_INPUT.to_owned(), previous);
        }
        out
    }

    /// The canonical pre-image of an instance given its upstream content hashes.
    fn preimage(
        &self,
        decl: &StageDecl,
        stage: &dyn DynStage,
        instance: &Instance,
        inputs: &BTreeMap<String, Vec<Upstream>>,
        files: &BTreeMap<String, String>,
    ) -> serde_json::Value {
        let inputs: BTreeMap<&String, Vec<&str>> = inputs
            .iter()
            .map(|(name, ups)| (name, ups.iter().map(|u| u.content_hash.as_str()).collect()))
            .collect();
        let mut preimage = json!({
            "stage": decl.kind,
            "version": stage.version(),
            "params": decl.params,
            "seed": instance.seed,
            "inputs": inputs,
            "files": files,
        });
        if stage.float_math() {
            preimage["numerics"] = json!(self.env.numerics);
        }
        if let Some((index, of)) = instance.part {
            preimage["part"] = json!([index, of]);
        }
        if let Some((round, of)) = instance.round {
            preimage["round"] = json!([round, of]);
        }
        preimage
    }

    fn external_files(
        &self,
        decl: &StageDecl,
        stage: &dyn DynStage,
        memo: &mut BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<BTreeMap<String, String>, EngineError> {
        if let Some(files) = memo.get(&decl.id) {
            return Ok(files.clone());
        }
        let listed = stage
            .external_files(&decl.params, self.env)
            .map_err(|source| EngineError::StageFailed {
                instance: decl.id.clone(),
                source,
            })?;
        let mut files = BTreeMap::new();
        for (name, path) in listed {
            files.insert(name, hash::sha256_file(&path)?);
        }
        memo.insert(decl.id.clone(), files.clone());
        Ok(files)
    }

    /// Runs what is missing (and the stages in `force`), then writes the result tables.
    pub fn run(&self, pipeline: &Pipeline, force: &[String]) -> Result<RunReport, EngineError> {
        for id in force {
            pipeline.stage(id)?;
        }
        let plan: Vec<(&StageDecl, &dyn DynStage, Instance)> = self
            .decls(pipeline)
            .into_iter()
            .flat_map(|(decl, stage)| {
                self.expand(pipeline, decl, stage)
                    .into_iter()
                    .map(move |instance| (decl, stage, instance))
            })
            .collect();
        let upstream: Vec<BTreeMap<String, Vec<Instance>>> = plan
            .iter()
            .map(|(decl, _, instance)| self.upstream_of(pipeline, decl, instance))
            .collect();
        // Concurrent stages would draw over each other's progress bars.
        let env = Env {
            progress: self.env.progress && self.jobs == 1,
            ..self.env.clone()
        };
        let mut done: BTreeMap<String, (Manifest, PathBuf)> = BTreeMap::new();
        let mut reports: Vec<Option<InstanceReport>> = vec![None; plan.len()];
        let mut started = vec![false; plan.len()];
        let mut files_memo = BTreeMap::new();
        let mut failure = None;
        std::thread::scope(|scope| {
            let (finished, results) = std::sync::mpsc::channel();
            let mut running = 0;
            loop {
                for (i, (decl, stage, instance)) in plan.iter().enumerate() {
                    if failure.is_some() || running >= self.jobs {
                        break;
                    }
                    let inputs_built = upstream[i]
                        .values()
                        .flatten()
                        .all(|u| done.contains_key(&u.id));
                    if started[i] || !inputs_built {
                        continue;
                    }
                    started[i] = true;
                    match self.ready(
                        i,
                        decl,
                        *stage,
                        instance,
                        &upstream[i],
                        &done,
                        force,
                        &mut files_memo,
                    ) {
                        Ok(ready) => {
                            running += 1;
                            let finished = finished.clone();
                            let env = &env;
                            let stage = *stage;
                            scope.spawn(move || {
                                let index = ready.index;
                                let instance = ready.instance.id.clone();
                                // Stage code's panics are caught inside `build`; this catches
                                // the rest, so that every builder reports and the walk ends.
                                let result = crate::panics::capture(|| {
                                    self.build(pipeline, stage, ready, env)
                                })
                                .unwrap_or_else(|message| {
                                    Err(EngineError::StagePanicked { instance, message })
                                });
                                let _ = finished.send((index, result));
                            });
                        }
                        Err(err) => failure = Some(err),
                    }
                }
                if running == 0 {
                    break;
                }
                let (i, result) = results.recv().expect("a builder thread reports");
                running -= 1;
                match result {
                    Ok((report, manifest)) => {
                        let dir = self.cache.entry_dir(&report.instance.kind, &report.key);
                        done.insert(report.instance.id.clone(), (manifest, dir));
                        reports[i] = Some(report);
                    }
                    Err(err) => {
                        failure.get_or_insert(err);
                    }
                }
            }
        });
        if let Some(err) = failure {
            return Err(err);
        }
        let reports: Vec<InstanceReport> = reports
            .into_iter()
            .map(|r| r.expect("every instance is built once its inputs are"))
            .collect();
        let tables = self.materialise(pipeline, &reports, &done)?;
        Ok(RunReport {
            instances: reports,
            tables,
        })
    }

    /// Binds the built inputs of instance `index` and computes its pre-image and key.
    #[allow(clippy::too_many_arguments)]
    fn ready<'p>(
        &self,
        index: usize,
        decl: &'p StageDecl,
        stage: &dyn DynStage,
        instance: &Instance,
        upstream: &BTreeMap<String, Vec<Instance>>,
        done: &BTreeMap<String, (Manifest, PathBuf)>,
        force: &[String],
        files_memo: &mut BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<Ready<'p>, EngineError> {
        let inputs: BTreeMap<String, Vec<Upstream>> = upstream
            .iter()
            .map(|(name, ups)| {
                let bound = ups
                    .iter()
                    .map(|u| {
                        let (manifest, dir) = &done[&u.id];
                        Upstream {
                            stage: u.stage.clone(),
                            kind: u.kind.clone(),
                            seed: u.seed,
                            dir: dir.clone(),
                            content_hash: manifest.content_hash.clone(),
                        }
                    })
                    .collect();
                (name.clone(), bound)
            })
            .collect();
        let files = self.external_files(decl, stage, files_memo)?;
        let preimage = self.preimage(decl, stage, instance, &inputs, &files);
        let key = hash::sha256_hex(hash::canonical_json(&preimage).as_bytes());
        Ok(Ready {
            index,
            decl,
            instance: instance.clone(),
            inputs,
            preimage,
            key,
            forced: force.contains(&decl.id),
        })
    }

    /// Builds one ready instance (or finds it cached) and records its pre-image.
    fn build(
        &self,
        pipeline: &Pipeline,
        stage: &dyn DynStage,
        ready: Ready<'_>,
        env: &Env,
    ) -> Result<(InstanceReport, Manifest), EngineError> {
        let Ready {
            decl,
            instance,
            inputs,
            preimage,
            key,
            forced,
            ..
        } = ready;
        let (manifest, built) = self.cache.build(
            &decl.kind,
            &key,
            &instance.id,
            &preimage,
            forced,
            |out_dir| {
                tracing::info!("running {} ({})", instance.id, &key[..12]);
                let ctx = StageContext {
                    env,
                    instance: &instance.id,
                    seed: instance.seed,
                    part: instance.part,
                    round: instance.round,
                    out_dir,
                    inputs: &inputs,
                };
                // Caught here, inside the build, so that its temporary directory is removed
                // and nothing is cached.
                crate::panics::capture(|| {
                    if std::env::var(INJECT_PANIC).is_ok_and(|id| id == instance.id) {
                        panic!("injected by {INJECT_PANIC}");
                    }
                    stage.run(&decl.params, &ctx)
                })
                .map_err(|message| EngineError::StagePanicked {
                    instance: instance.id.clone(),
                    message,
                })?
                .map_err(|source| EngineError::StageFailed {
                    instance: instance.id.clone(),
                    source,
                })
            },
        )?;
        if !built {
            tracing::info!("cached  {} ({})", instance.id, &key[..12]);
        }
        self.cache.record(&pipeline.name, &instance.id, &preimage)?;
        let outcome = if built {
            Outcome::Built {
                seconds: manifest.seconds,
            }
        } else {
            Outcome::Cached
        };
        Ok((
            InstanceReport {
                instance,
                key,
                outcome,
            },
            manifest,
        ))
    }

    /// Concatenates every instance's table of the same name, in pipeline order, into
    /// `results/<pipeline>/<table>.parquet`, and writes `provenance.json` beside them.
    fn materialise(
        &self,
        pipeline: &Pipeline,
        reports: &[InstanceReport],
        done: &BTreeMap<String, (Manifest, PathBuf)>,
    ) -> Result<Vec<PathBuf>, EngineError> {
        let out_dir = self.env.results_dir.join(&pipeline.name);
        let mut by_table: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        let mut provenance = Vec::new();
        for report in reports {
            let (manifest, dir) = &done[&report.instance.id];
            // Parts and intermediate rounds are their stage's business; its own instance reports.
            let tables = if !report.instance.is_final() {
                &[][..]
            } else {
                &manifest.tables[..]
            };
            for name in tables {
                by_table
                    .entry(name.clone())
                    .or_default()
                    .push(dir.join(table::table_file(name)));
            }
            provenance.push(json!({
                "instance": report.instance.id,
                "kind": report.instance.kind,
                "key": report.key,
                "content_hash": manifest.content_hash,
                "tables": manifest.tables,
            }));
        }
        let mut written = Vec::new();
        for report in reports {
            let (_, dir) = &done[&report.instance.id];
            written.extend(copy_figures(&dir.join("figures"), &self.env.figures_dir)?);
        }
        for (name, paths) in &by_table {
            let mut df = table::concat(paths)?;
            let path = out_dir.join(format!("{name}.parquet"));
            table::write_parquet(&path, &mut df)?;
            written.push(path);
        }
        let doc = json!({
            "pipeline": pipeline.path.display().to_string(),
            "name": pipeline.name,
            "scale": pipeline.scale,
            "seeds": pipeline.seeds,
            "config": pipeline.resolved,
            "instances": provenance,
        });
        let path = out_dir.join("provenance.json");
        std::fs::create_dir_all(&out_dir).map_err(|source| EngineError::Io {
            path: out_dir.clone(),
            source,
        })?;
        std::fs::write(
            &path,
            serde_json::to_vec_pretty(&doc).expect("JSON serialises"),
        )
        .map_err(|source| EngineError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(written)
    }

    /// Builds exactly one instance (`stage` or `stage[seed]`) whose inputs are all built, as
    /// one job of a cluster executor does; `force` rebuilds it even if cached.
    pub fn build_instance(
        &self,
        pipeline: &Pipeline,
        id: &str,
        force: bool,
    ) -> Result<InstanceReport, EngineError> {
        let (decl, stage, instance) = self
            .decls(pipeline)
            .into_iter()
            .find_map(|(decl, stage)| {
                self.expand(pipeline, decl, stage)
                    .into_iter()
                    .find(|i| i.id == id)
                    .map(|instance| (decl, stage, instance))
            })
            .ok_or_else(|| EngineError::UnknownInstance {
                instance: id.to_owned(),
                pipeline: pipeline.path.display().to_string(),
            })?;
        let upstream = self.upstream_of(pipeline, decl, &instance);
        let mut done = BTreeMap::new();
        let needed: BTreeSet<&str> = upstream.values().flatten().map(|u| u.id.as_str()).collect();
        for (status, _) in self.survey(pipeline, Check::Manifest)? {
            if !needed.contains(status.instance.id.as_str()) {
                continue;
            }
            let built = match (&status.state, &status.key) {
                (State::Cached, Some(key)) => self
                    .cache
                    .lookup_verified(&status.instance.kind, key)?
                    .map(|m| (m, self.cache.entry_dir(&status.instance.kind, key))),
                _ => None,
            };
            match built {
                Some(entry) => {
                    done.insert(status.instance.id.clone(), entry);
                }
                None => {
                    return Err(EngineError::InputNotBuilt {
                        instance: id.to_owned(),
                        input: status.instance.id,
                    })
                }
            }
        }
        let force = if force {
            vec![decl.id.clone()]
        } else {
            Vec::new()
        };
        let ready = self.ready(
            0,
            decl,
            stage,
            &instance,
            &upstream,
            &done,
            &force,
            &mut BTreeMap::new(),
        )?;
        let env = Env {
            progress: false,
            ..self.env.clone()
        };
        Ok(self.build(pipeline, stage, ready, &env)?.0)
    }

    /// Keys and states of every instance, without running anything.
    pub fn status(&self, pipeline: &Pipeline) -> Result<Vec<InstanceStatus>, EngineError> {
        Ok(self
            .survey(pipeline, Check::Manifest)?
            .into_iter()
            .map(|(status, _)| status)
            .collect())
    }

    /// The cache entry of instance `instance` (`stage` or `stage[seed]`) as a downstream stage
    /// would see it, or `None` while it is not built (missing, blocked, or no such instance).
    pub fn output(
        &self,
        pipeline: &Pipeline,
        instance: &str,
    ) -> Result<Option<Upstream>, EngineError> {
        let Some((status, _)) = self
            .survey(pipeline, Check::Manifest)?
            .into_iter()
            .find(|(s, _)| s.instance.id == instance)
        else {
            return Ok(None);
        };
        let (State::Cached, Some(key)) = (&status.state, &status.key) else {
            return Ok(None);
        };
        let kind = &status.instance.kind;
        Ok(self
            .cache
            .lookup_verified(kind, key)?
            .map(|manifest| Upstream {
                stage: status.instance.stage.clone(),
                kind: kind.clone(),
                seed: status.instance.seed,
                dir: self.cache.entry_dir(kind, key),
                content_hash: manifest.content_hash,
            }))
    }

    /// For the instances of `stage_id`: which pre-image fields changed since the last run.
    pub fn why(&self, pipeline: &Pipeline, stage_id: &str) -> Result<Vec<Why>, EngineError> {
        pipeline.stage(stage_id)?;
        let mut out = Vec::new();
        for (status, preimage) in self.survey(pipeline, Check::Manifest)? {
            if status.instance.stage != stage_id {
                continue;
            }
            let recorded = self.cache.recorded(&pipeline.name, &status.instance.id)?;
            let changes = match (&recorded, &preimage) {
                (Some(old), Some(new)) => Some(hash::diff_json(old, new)),
                (Some(_), None) => Some(vec![
                    "(upstream outputs missing: run the pipeline to compare)".into(),
                ]),
                (None, _) => None,
            };
            out.push(Why {
                instance: status.instance,
                changes,
                current_key: status.key,
            });
        }
        Ok(out)
    }

    /// Every instance of `pipeline` as a [`Verified`] check of its entry's files against its
    /// manifest (sizes and sha256); instances without an entry are left out. Removes nothing.
    pub fn verify(&self, pipeline: &Pipeline) -> Result<Vec<Verified>, EngineError> {
        let mut out = Vec::new();
        for (status, _) in self.survey(pipeline, Check::Manifest)? {
            // Missing too: an entry whose manifest does not parse counts as missing.
            let Some(key) = &status.key else {
                continue;
            };
            let kind = &status.instance.kind;
            let (bytes, problem) = match self.cache.lookup_checked(kind, key)? {
                Lookup::Sound(manifest) => (manifest.bytes(), None),
                Lookup::Corrupt(corruption) => (0, Some(corruption)),
                Lookup::Absent => continue,
            };
            out.push(Verified {
                instance: status.instance,
                key: key.clone(),
                bytes,
                problem,
            });
        }
        Ok(out)
    }

    pub(crate) fn survey(
        &self,
        pipeline: &Pipeline,
        check: Check,
    ) -> Result<Vec<(InstanceStatus, Option<serde_json::Value>)>, EngineError> {
        let mut hashes: BTreeMap<String, String> = BTreeMap::new();
        let mut files_memo = BTreeMap::new();
        let mut out = Vec::new();
        for (decl, stage) in self.decls(pipeline) {
            for instance in self.expand(pipeline, decl, stage) {
                let mut inputs = BTreeMap::new();
                let mut is_blocked = false;
                for (name, ups) in self.upstream_of(pipeline, decl, &instance) {
                    let mut bound = Vec::new();
                    for u in ups {
                        match hashes.get(&u.id) {
                            Some(h) => bound.push(Upstream {
                                stage: u.stage.clone(),
                                kind: u.kind.clone(),
                                seed: u.seed,
                                dir: PathBuf::new(),
                                content_hash: h.clone(),
                            }),
                            None => is_blocked = true,
                        }
                    }
                    inputs.insert(name, bound);
                }
                // Per instance: one seed's (or part's) missing input never blocks another's.
                if is_blocked {
                    out.push((
                        InstanceStatus {
                            instance,
                            key: None,
                            state: State::Blocked,
                        },
                        None,
                    ));
                    continue;
                }
                let files = self.external_files(decl, stage, &mut files_memo)?;
                let preimage = self.preimage(decl, stage, &instance, &inputs, &files);
                let key = hash::sha256_hex(hash::canonical_json(&preimage).as_bytes());
                let found = match check {
                    // A manifest that does not parse is no entry; the next run rebuilds it.
                    Check::Manifest => match self.cache.lookup(&decl.kind, &key) {
                        Err(EngineError::CorruptManifest { .. }) => None,
                        found => found?,
                    },
                    Check::Contents => self.cache.lookup_verified(&decl.kind, &key)?,
                };
                let state = match found {
                    Some(manifest) => {
                        hashes.insert(instance.id.clone(), manifest.content_hash);
                        State::Cached
                    }
                    None => State::Missing,
                };
                out.push((
                    InstanceStatus {
                        instance,
                        key: Some(key),
                        state,
                    },
                    Some(preimage),
                ));
            }
        }
        Ok(out)
    }
}

/// Copies the figures a stage wrote under `figures/` into the figures directory.
fn copy_figures(from: &std::path::Path, to: &std::path::Path) -> Result<Vec<PathBuf>, EngineError> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(from) else {
        return Ok(out);
    };
    std::fs::create_dir_all(to).map_err(|source| EngineError::Io {
        path: to.to_owned(),
        source,
    })?;
    let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        let target = to.join(&name);
        let tmp = table::tmp_sibling(&target);
        std::fs::copy(from.join(&name), &tmp).map_err(|source| EngineError::Io {
            path: tmp.clone(),
            source,
        })?;
        std::fs::rename(&tmp, &target).map_err(|source| EngineError::Io {
            path: target.clone(),
            source,
        })?;
        out.push(target);
    }
    Ok(out)
}
