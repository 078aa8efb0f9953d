use gtap_engine::{Overrides, Runner, State};

use crate::fixtures::{Project, PIPELINE};

#[test]
fn first_run_builds_everything_second_run_nothing() {
    let p = Project::new();
    let first = p.run(PIPELINE);
    assert_eq!(first.built(), ["src", "scaled[0]", "scaled[1]", "total"]);
    let second = p.run(PIPELINE);
    assert!(second.built().is_empty(), "rebuilt {:?}", second.built());
    let keys = |r: &gtap_engine::RunReport| {
        r.instances
            .iter()
            .map(|i| i.key.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&first), keys(&second));
}

#[test]
fn tables_are_concatenated_in_seed_order() {
    let p = Project::new();
    p.run(PIPELINE);
    let scaled = p.result("scaled");
    let seeds: Vec<u64> = scaled
        .column("seed")
        .unwrap()
        .u64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    let values: Vec<i64> = scaled
        .column("value")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(seeds, [0, 1]);
    assert_eq!(values, [6, 6]);
    let total: Vec<i64> = p
        .result("total")
        .column("total")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(total, [12]);
    assert!(p.env.results_dir.join("toy/provenance.json").exists());
}

#[test]
fn changing_a_parameter_rebuilds_that_stage_and_downstream_only() {
    let p = Project::new();
    p.run(PIPELINE);
    let changed = PIPELINE.replace("factor = 2", "factor = 3");
    let report = p.run(&changed);
    assert_eq!(report.built(), ["scaled[0]", "scaled[1]", "total"]);
    let total: Vec<i64> = p
        .result("total")
        .column("total")
        .unwrap()
        .i64()
        .unwrap()
        .into_no_null_iter()
        .collect();
    assert_eq!(total, [18]);
}

#[test]
fn upstream_change_with_identical_output_stops_at_that_stage() {
    let p = Project::new();
    p.run(PIPELINE);
    let noted = PIPELINE.replace("value = 3", "value = 3\nnote = \"same bytes\"");
    let report = p.run(&noted);
    assert_eq!(
        report.built(),
        ["src"],
        "early cutoff: downstream is keyed on output content"
    );
}

#[test]
fn adding_a_seed_builds_only_that_seed_and_the_aggregate() {
    let p = Project::new();
    p.run(PIPELINE);
    let report = p.run(&PIPELINE.replace("seeds = [0, 1]", "seeds = [0, 1, 2]"));
    assert_eq!(report.built(), ["scaled[2]", "total"]);
}

#[test]
fn entry_without_manifest_is_rebuilt() {
    let p = Project::new();
    let first = p.run(PIPELINE);
    let src = &first.instances[0];
    let dir = Runner::new(&p.registry, &p.env)
        .cache()
        .entry_dir("source", &src.key);
    std::fs::remove_file(dir.join("manifest.json")).unwrap();
    let report = p.run(PIPELINE);
    assert_eq!(report.built(), ["src"]);
    assert!(dir.join("manifest.json").exists());
}

#[test]
fn failed_stage_leaves_no_entry_and_a_later_run_builds_it() {
    let p = Project::new();
    let failing = PIPELINE.replace("factor = 2", "factor = 2\nfail = true");
    let pipeline = p.pipeline(&failing, &Overrides::default());
    let err = Runner::new(&p.registry, &p.env)
        .run(&pipeline, &[])
        .unwrap_err();
    assert_eq!(format!("{err}"), "stage `scaled[0]` failed");
    assert_eq!(
        format!("{:#}", anyhow::Error::from(err)),
        "stage `scaled[0]` failed: asked to fail"
    );
    let status = Runner::new(&p.registry, &p.env).status(&pipeline).unwrap();
    let states: Vec<State> = status.iter().map(|s| s.state.clone()).collect();
    assert_eq!(
        states,
        [
            State::Cached,
            State::Missing,
            State::Missing,
            State::Blocked
        ]
    );
    let scale_dir = p.env.cache_dir.join("entries/scale");
    let leftovers: Vec<_> = std::fs::read_dir(&scale_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "half-written entries left: {leftovers:?}"
    );
    assert_eq!(p.run(PIPELINE).built(), ["scaled[0]", "scaled[1]", "total"]);
}

#[test]
fn leftover_temporary_directory_of_a_killed_run_is_ignored_and_removed() {
    let p = Project::new();
    let first = p.run(PIPELINE);
    let key = first.instances[1].key.clone();
    let cache = Runner::new(&p.registry, &p.env).cache().clone();
    let entry = cache.entry_dir("scale", &key);
    std::fs::remove_dir_all(&entry).unwrap();
    // What `kill -9` mid-stage leaves: a temporary directory with partial output, no manifest.
    let tmp = entry.with_file_name(format!("{key}.tmp-99999"));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join("partial.txt"), "half").unwrap();
    let report = p.run(PIPELINE);
    assert_eq!(report.built(), ["scaled[0]"]);
    assert!(!tmp.exists());
}

#[test]
fn force_rebuilds_the_named_stage_and_keeps_downstream_when_bytes_are_equal() {
    let p = Project::new();
    p.run(PIPELINE);
    let report = p.run_with(PIPELINE, &Overrides::default(), &["scaled".into()]);
    assert_eq!(report.built(), ["scaled[0]", "scaled[1]"]);
}

#[test]
fn scale_preset_and_set_override_apply_in_order() {
    let p = Project::new();
    let ci = Overrides {
        scale: Some("ci".into()),
        sets: vec![],
    };
    let pipeline = p.pipeline(PIPELINE, &ci);
    assert_eq!(pipeline.seeds, [0]);
    assert_eq!(pipeline.stage("scaled").unwrap().params["factor"], 5);
    let set = Overrides {
        scale: Some("ci".into()),
        sets: vec!["stage.scaled.factor=7".into()],
    };
    assert_eq!(
        p.pipeline(PIPELINE, &set).stage("scaled").unwrap().params["factor"],
        7
    );
    let full = p.pipeline(PIPELINE, &Overrides::default());
    assert_eq!(full.scale, "full");
    assert_eq!(full.seeds, [0, 1]);
}

#[test]
fn why_names_the_changed_parameter() {
    let p = Project::new();
    p.run(PIPELINE);
    let changed = p.pipeline(
        &PIPELINE.replace("factor = 2", "factor = 4"),
        &Overrides::default(),
    );
    let why = Runner::new(&p.registry, &p.env)
        .why(&changed, "scaled")
        .unwrap();
    assert_eq!(why.len(), 2);
    assert_eq!(
        why[0].changes.as_deref(),
        Some(&["params.factor: 2 -> 4".to_string()][..])
    );
    let unchanged = Runner::new(&p.registry, &p.env)
        .why(&changed, "src")
        .unwrap();
    assert_eq!(unchanged[0].changes.as_deref(), Some(&[][..]));
}

#[test]
fn output_finds_built_instances_only() {
    let p = Project::new();
    let pipeline = p.pipeline(PIPELINE, &Overrides::default());
    let runner = Runner::new(&p.registry, &p.env);
    assert!(runner.output(&pipeline, "scaled[1]").unwrap().is_none());
    let report = p.run(PIPELINE);
    let out = runner.output(&pipeline, "scaled[1]").unwrap().unwrap();
    let built = &report.instances[2];
    assert_eq!(built.instance.id, "scaled[1]");
    assert_eq!(out.seed, Some(1));
    assert_eq!(
        out.dir,
        p.env.cache_dir.join("entries/scale").join(&built.key)
    );
    assert!(out.dir.join("manifest.json").exists());
    assert!(runner.output(&pipeline, "scaled[7]").unwrap().is_none());
}

#[test]
fn preimage_snapshot_of_the_source_stage() {
    // A key change must be deliberate: if this fails, bump the stage VERSION or update on purpose.
    let p = Project::new();
    let report = p.run(PIPELINE);
    let dir = Runner::new(&p.registry, &p.env)
        .cache()
        .entry_dir("source", &report.instances[0].key);
    let preimage: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("preimage.json")).unwrap()).unwrap();
    assert_eq!(
        gtap_engine::hash::canonical_json(&preimage),
        r#"{"files":{},"inputs":{},"params":{"note":"","value":3},"seed":null,"stage":"source","version":1}"#
    );
    assert_eq!(
        report.instances[0].key,
        gtap_engine::hash::sha256_hex(gtap_engine::hash::canonical_json(&preimage).as_bytes())
    );
}

#[test]
fn numerics_enter_the_keys_of_float_math_stages_only() {
    let mut p = Project::new();
    let keys = |p: &Project| -> Vec<(String, String)> {
        let pipeline = p.pipeline(PIPELINE, &Overrides::default());
        Runner::new(&p.registry, &p.env)
            .status(&pipeline)
            .unwrap()
            .into_iter()
            .map(|s| (s.instance.id, s.key.unwrap_or_default()))
            .collect()
    };
    p.run(PIPELINE);
    let portable = keys(&p);
    p.env.numerics = "fast".into();
    p.run(PIPELINE);
    let fast = keys(&p);
    for ((id, a), (_, b)) in portable.iter().zip(&fast) {
        match id.as_str() {
            // `scale` does float math; `source` does not; `sum` reads the (equal) outputs of
            // `scaled`, so early cutoff keeps its key.
            "scaled[0]" | "scaled[1]" => assert_ne!(a, b, "{id}"),
            _ => assert_eq!(a, b, "{id}"),
        }
    }
    let dir = Runner::new(&p.registry, &p.env)
        .cache()
        .entry_dir("scale", &fast[1].1);
    let preimage: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("preimage.json")).unwrap()).unwrap();
    assert_eq!(preimage["numerics"], "fast");
}

#[test]
fn results_are_byte_identical_across_runs_in_fresh_caches() {
    let a = Project::new();
    let b = Project::new();
    a.run(PIPELINE);
    b.run(PIPELINE);
    for table in ["scaled", "total"] {
        let read = |p: &Project| {
            std::fs::read(p.env.results_dir.join(format!("toy/{table}.parquet"))).unwrap()
        };
        assert_eq!(read(&a), read(&b), "table {table}");
    }
}

#[test]
fn parallel_builds_report_in_pipeline_order_and_write_the_same_tables() {
    let serial = Project::new();
    let parallel = Project::new();
    let a = serial.run(PIPELINE);
    let pipeline = parallel.pipeline(PIPELINE, &Overrides::default());
    let b = Runner::new(&parallel.registry, &parallel.env)
        .jobs(3)
        .run(&pipeline, &[])
        .unwrap();
    let ids = |r: &gtap_engine::RunReport| -> Vec<(String, String)> {
        r.instances
            .iter()
            .map(|i| (i.instance.id.clone(), i.key.clone()))
            .collect()
    };
    assert_eq!(ids(&a), ids(&b));
    assert_eq!(b.built(), ["src", "scaled[0]", "scaled[1]", "total"]);
    for table in ["scaled", "total"] {
        let read = |p: &Project| {
            std::fs::read(p.env.results_dir.join(format!("toy/{table}.parquet"))).unwrap()
        };
        assert_eq!(read(&serial), read(&parallel), "table {table}");
    }
}
