//! What cluster executors rely on: one instance built on its own once its inputs are, a cache
//! that stays correct when builders cannot lock, per-stage resources outside the keys.

use std::sync::{Arc, Barrier};

use gtap_engine::{Cache, EngineError, Overrides, Runner, SlurmResources};

use crate::fixtures::{Project, PIPELINE};

#[test]
fn one_instance_is_built_alone_once_its_inputs_are() {
    let p = Project::new();
    let pipeline = p.pipeline(PIPELINE, &Overrides::default());
    let runner = Runner::new(&p.registry, &p.env);
    let err = runner
        .build_instance(&pipeline, "scaled[1]", false)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot build `scaled[1]`: its input `src` is not built"
    );
    assert!(runner.build_instance(&pipeline, "src", false).is_ok());
    let built = runner
        .build_instance(&pipeline, "scaled[1]", false)
        .unwrap();
    assert_eq!(built.instance.id, "scaled[1]");
    assert!(matches!(built.outcome, gtap_engine::Outcome::Built { .. }));
    let again = runner
        .build_instance(&pipeline, "scaled[1]", false)
        .unwrap();
    assert_eq!(again.outcome, gtap_engine::Outcome::Cached);
    assert_eq!(again.key, built.key);
    // A whole run then builds only what the single builds left.
    let report = runner.run(&pipeline, &[]).unwrap();
    assert_eq!(report.built(), ["scaled[0]", "total"]);
    let fresh = Project::new();
    fresh.run(PIPELINE);
    assert_eq!(p.result("total"), fresh.result("total"));
}

#[test]
fn unknown_instance_names_the_pipeline() {
    let p = Project::new();
    let pipeline = p.pipeline(PIPELINE, &Overrides::default());
    let err = Runner::new(&p.registry, &p.env)
        .build_instance(&pipeline, "scaled[7]", false)
        .unwrap_err();
    assert!(matches!(err, EngineError::UnknownInstance { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        "no instance `scaled[7]` in pipeline toy.toml (instances are `stage` or `stage[seed]`)"
    );
}

#[test]
fn unlocked_builders_of_one_entry_agree_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path()).without_locks();
    let start = Arc::new(Barrier::new(2));
    let preimage = serde_json::json!({ "stage": "toy" });
    let key = "ab".repeat(32);
    let results: Vec<(gtap_engine::Manifest, bool)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (cache, start, preimage, key) = (&cache, start.clone(), &preimage, &key);
                scope.spawn(move || {
                    cache
                        .build("toy", key, "toy", preimage, false, |out| {
                            // Both builders are inside `produce` before either renames.
                            start.wait();
                            std::fs::write(out.join("value.txt"), "42").unwrap();
                            Ok(())
                        })
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let built: Vec<bool> = results.iter().map(|(_, built)| *built).collect();
    assert_eq!(built.iter().filter(|b| **b).count(), 1, "{built:?}");
    assert_eq!(results[0].0.content_hash, results[1].0.content_hash);
    let entries: Vec<String> = std::fs::read_dir(dir.path().join("entries/toy"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entries, [key.clone()], "temporary directories left behind");
    assert_eq!(
        std::fs::read_to_string(cache.entry_dir("toy", &key).join("value.txt")).unwrap(),
        "42"
    );
}

#[test]
fn slurm_resources_are_parsed_and_stay_out_of_the_keys() {
    let p = Project::new();
    let with = PIPELINE.replace(
        "factor = 2\n",
        "factor = 2\nslurm = { cpus = 4, memory = \"8G\", time = \"00:30:00\", gres = \"gpu:1\", partition = \"short\", args = [\"--account=lab\"] }\n",
    );
    let plain = p.pipeline(PIPELINE, &Overrides::default());
    let pipeline = p.pipeline(&with, &Overrides::default());
    let slurm = &pipeline.stage("scaled").unwrap().slurm;
    assert_eq!(
        slurm.sbatch_args(),
        [
            "--cpus-per-task=4",
            "--mem=8G",
            "--time=00:30:00",
            "--gres=gpu:1",
            "--partition=short",
            "--account=lab"
        ]
    );
    assert_eq!(
        plain.stage("scaled").unwrap().slurm,
        SlurmResources::default()
    );
    let runner = Runner::new(&p.registry, &p.env);
    let keys = |pl| -> Vec<Option<String>> {
        runner
            .status(pl)
            .unwrap()
            .into_iter()
            .map(|s| s.key)
            .collect()
    };
    assert_eq!(keys(&plain), keys(&pipeline));
    assert_ne!(plain.fingerprint(), pipeline.fingerprint());

    let typo = PIPELINE.replace("factor = 2\n", "factor = 2\nslurm = { cpu = 4 }\n");
    let err = gtap_engine::Pipeline::parse(
        "toy.toml".as_ref(),
        &typo,
        &Overrides::default(),
        &p.registry,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(
            "toy.toml: `stage.scaled.slurm.cpu`: unknown field `cpu`, expected one of `cpus`"
        ),
        "{err}"
    );
}

const SPLIT: &str = r#"
[pipeline]
name = "toy"
seeds = [0, 1]

[stage.src]
kind = "source"
value = 3

[stage.split]
kind = "split"
inputs = { x = "src" }
shards = SHARDS

[stage.scaled]
kind = "scale"
inputs = { x = "src" }

[stage.total]
kind = "sum"
inputs = { parts = "scaled" }
"#;

#[test]
fn a_split_stage_runs_its_parts_as_instances_and_merges_to_the_same_bytes() {
    let mut hashes = Vec::new();
    for shards in [1, 2, 7] {
        let p = Project::new();
        let text = SPLIT.replace("SHARDS", &shards.to_string());
        let report = p.run(&text);
        let built = report.built();
        let parts: Vec<&str> = built
            .iter()
            .copied()
            .filter(|id| id.contains(".part"))
            .collect();
        if shards == 1 {
            assert!(parts.is_empty(), "{built:?}");
        } else {
            assert_eq!(parts.len(), 2 * shards, "{built:?}");
            assert_eq!(
                parts[0],
                "split[0].part1of".to_owned() + &shards.to_string()
            );
        }
        // Only the merged instances' tables reach the results.
        let table = p.result("split");
        assert_eq!(table.height(), 2, "{table}");
        let totals: Vec<i64> = table
            .column("total")
            .unwrap()
            .i64()
            .unwrap()
            .into_no_null_iter()
            .collect();
        assert_eq!(totals, [4950 * 3, 4950 * 3]);
        let pipeline = p.pipeline(&text, &Overrides::default());
        let runner = Runner::new(&p.registry, &p.env);
        let merged = runner.output(&pipeline, "split[1]").unwrap().unwrap();
        hashes.push(merged.content_hash);
        // One part on its own, as a cluster job builds it.
        if shards > 1 {
            let again = runner
                .build_instance(&pipeline, "split[0].part2of", false)
                .map(|r| r.outcome);
            assert!(again.is_err(), "part ids carry their count");
            let id = format!("split[0].part2of{shards}");
            assert_eq!(
                runner
                    .build_instance(&pipeline, &id, false)
                    .unwrap()
                    .outcome,
                gtap_engine::Outcome::Cached
            );
        }
    }
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
}

const CHAIN: &str = r#"
[pipeline]
name = "toy"
seeds = [0, 1]

[stage.src]
kind = "source"
value = 3

[stage.scaled]
kind = "scale"
inputs = { x = "src" }

[stage.again]
kind = "scale"
inputs = { x = "scaled" }
factor = 2

[stage.third]
kind = "scale"
inputs = { x = "again" }
factor = 2
"#;

/// Cluster jobs build seed 0's chain while seed 1's is still queued: seed 1's blocked
/// instance must not block seed 0's downstream instance.
#[test]
fn one_seeds_missing_input_does_not_block_another_seed() {
    let p = Project::new();
    let pipeline = p.pipeline(CHAIN, &Overrides::default());
    let runner = Runner::new(&p.registry, &p.env);
    for id in ["src", "scaled[0]", "again[0]"] {
        runner.build_instance(&pipeline, id, false).unwrap();
    }
    let states: Vec<(String, gtap_engine::State)> = runner
        .status(&pipeline)
        .unwrap()
        .into_iter()
        .map(|s| (s.instance.id, s.state))
        .collect();
    use gtap_engine::State::{Blocked, Cached, Missing};
    let expected = [
        ("src", Cached),
        ("scaled[0]", Cached),
        ("scaled[1]", Missing),
        ("again[0]", Cached),
        ("again[1]", Blocked),
        ("third[0]", Missing),
        ("third[1]", Blocked),
    ];
    let expected: Vec<(String, gtap_engine::State)> = expected
        .into_iter()
        .map(|(i, s)| (i.to_owned(), s))
        .collect();
    assert_eq!(states, expected);
    let third = runner.build_instance(&pipeline, "third[0]", false).unwrap();
    assert!(matches!(third.outcome, gtap_engine::Outcome::Built { .. }));
}
