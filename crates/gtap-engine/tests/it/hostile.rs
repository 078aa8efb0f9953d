//! Hostile conditions: panicking stages, rotten cache entries, malformed pipeline files.

use std::path::Path;
use std::time::{Duration, Instant};

use gtap_engine::{EngineError, Overrides, Pipeline, RunReport, Runner, State};
use proptest::prelude::*;

use crate::fixtures::{registry, Project, PIPELINE};

/// Runs `text` with `jobs` builders on another thread; fails the test (instead of hanging it)
/// when the run has not ended within 20 seconds.
fn run_bounded(p: &Project, text: &str, jobs: usize) -> Result<RunReport, EngineError> {
    let pipeline = p.pipeline(text, &Overrides::default());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let result = Runner::new(&p.registry, &p.env)
                .jobs(jobs)
                .run(&pipeline, &[]);
            let _ = tx.send(result);
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("the run hung instead of ending")
    })
}

fn entry_names(p: &Project, kind: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(p.env.cache_dir.join("entries").join(kind))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_panicking_stage_ends_the_run_with_its_instance_and_caches_nothing_for_it() {
    for jobs in [1, 2] {
        let p = Project::new();
        let text = PIPELINE.replace("factor = 2", "factor = 2\npanic_seed = 0\nsleep_ms = 200");
        let started = Instant::now();
        let err = run_bounded(&p, &text, jobs).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10), "jobs {jobs}");
        let message = format!("{:#}", anyhow::Error::from(err));
        assert!(
            message.starts_with("stage `scaled[0]` panicked: index out of bounds"),
            "jobs {jobs}: {message}"
        );
        assert!(message.contains("fixtures.rs"), "no location: {message}");
        let pipeline = p.pipeline(&text, &Overrides::default());
        let states: Vec<State> = Runner::new(&p.registry, &p.env)
            .status(&pipeline)
            .unwrap()
            .into_iter()
            .map(|s| s.state)
            .collect();
        // With two builders the other seed's instance ran beside it and finished.
        let other = if jobs == 2 {
            State::Cached
        } else {
            State::Missing
        };
        assert_eq!(
            states,
            [State::Cached, State::Missing, other, State::Blocked],
            "jobs {jobs}"
        );
        // Only the finished instance's entry: no temporary directory of the panicked one.
        assert_eq!(
            entry_names(&p, "scale").len(),
            usize::from(jobs == 2),
            "jobs {jobs}"
        );
    }
}

#[test]
fn a_panicking_stage_does_not_poison_the_next_run() {
    let p = Project::new();
    let text = PIPELINE.replace("factor = 2", "factor = 2\npanic_seed = 1");
    assert!(matches!(
        run_bounded(&p, &text, 2),
        Err(EngineError::StagePanicked { ref instance, .. }) if instance == "scaled[1]"
    ));
    let report = run_bounded(&p, PIPELINE, 2).unwrap();
    assert!(
        report.built().contains(&"scaled[1]"),
        "{:?}",
        report.built()
    );
}

/// Corrupts one file of the `scaled[0]` entry with `damage`, then checks that `gtap verify`
/// names the entry and the file, and that the next run rebuilds exactly that entry, with the
/// same bytes as before (so nothing downstream re-runs).
fn check_rot(what: &str, file: &str, damage: impl Fn(&Path), reason: &str) {
    let p = Project::new();
    let first = p.run(PIPELINE);
    let pipeline = p.pipeline(PIPELINE, &Overrides::default());
    let runner = Runner::new(&p.registry, &p.env);
    let entry = runner.cache().entry_dir("scale", &first.instances[1].key);
    let before = std::fs::read(entry.join("value.txt")).unwrap();
    damage(&entry.join(file));

    let verified = runner.verify(&pipeline).unwrap();
    let corrupt: Vec<_> = verified.iter().filter(|v| v.problem.is_some()).collect();
    assert_eq!(corrupt.len(), 1, "{what}: {verified:?}");
    assert_eq!(corrupt[0].instance.id, "scaled[0]", "{what}");
    let problem = corrupt[0].problem.as_ref().unwrap().to_string();
    assert!(
        problem.contains(reason),
        "{what}: {problem:?} lacks {reason:?}"
    );
    assert!(
        problem.contains(&first.instances[1].key),
        "{what}: {problem}"
    );

    let second = p.run(PIPELINE);
    assert_eq!(second.built(), ["scaled[0]"], "{what}");
    assert_eq!(
        std::fs::read(entry.join("value.txt")).unwrap(),
        before,
        "{what}"
    );
    let after = runner.verify(&pipeline).unwrap();
    assert!(
        after.iter().all(|v| v.problem.is_none()),
        "{what}: {after:?}"
    );
    assert_eq!(after.len(), 4, "{what}");
}

fn flip_last_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

fn truncate(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
}

#[test]
fn a_changed_byte_in_any_cached_file_is_detected_and_repaired() {
    let table = "tables/scaled.parquet";
    check_rot(
        "flipped output",
        "value.txt",
        flip_last_byte,
        "file value.txt does not match",
    );
    check_rot(
        "flipped table",
        table,
        flip_last_byte,
        "file tables/scaled.parquet does not match",
    );
    check_rot(
        "truncated table",
        table,
        truncate,
        "file tables/scaled.parquet has",
    );
    check_rot(
        "flipped pre-image",
        "preimage.json",
        flip_last_byte,
        "file preimage.json",
    );
    check_rot(
        "removed output",
        "value.txt",
        |f| std::fs::remove_file(f).unwrap(),
        "file value.txt is missing",
    );
    check_rot(
        "added file",
        "extra.bin",
        |f| std::fs::write(f, "x").unwrap(),
        "file extra.bin is not in its manifest",
    );
    check_rot(
        "manifest edited",
        "manifest.json",
        |f| {
            let text = std::fs::read_to_string(f).unwrap();
            std::fs::write(
                f,
                text.replace("\"built_by\": \"scaled[0]\"", "\"built_by\": \"x\""),
            )
            .unwrap()
        },
        "manifest.json does not match its own check hash",
    );
    check_rot(
        "manifest truncated",
        "manifest.json",
        truncate,
        "manifest.json does not parse",
    );
}

#[test]
fn entries_without_per_file_records_are_checked_against_their_content_hash() {
    let p = Project::new();
    let first = p.run(PIPELINE);
    let runner = Runner::new(&p.registry, &p.env);
    let entry = runner.cache().entry_dir("scale", &first.instances[1].key);
    // The manifest as entries written before verification have it.
    let path = entry.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let object = manifest.as_object_mut().unwrap();
    object.remove("files");
    object.remove("check");
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    assert!(
        p.run(PIPELINE).built().is_empty(),
        "a sound old entry was rebuilt"
    );
    flip_last_byte(&entry.join("value.txt"));
    assert_eq!(p.run(PIPELINE).built(), ["scaled[0]"]);
}

fn parse_error(text: &str) -> String {
    let err = Pipeline::parse(
        Path::new("toy.toml"),
        text,
        &Overrides::default(),
        &registry(),
    )
    .unwrap_err();
    format!("{:#}", anyhow::Error::from(err))
}

#[test]
fn a_huge_malformed_pipeline_gives_a_short_message_with_line_and_column() {
    let mut text = PIPELINE.to_owned();
    text.push_str("[stage.big]\nkind = \"source\"\nvalue = ");
    let line = text.lines().count();
    text.push_str(&"9".repeat(10 << 20));
    text.push_str(" oops\n");
    let message = parse_error(&text);
    assert!(message.len() < 1000, "{} bytes", message.len());
    assert!(
        message.contains(&format!("line {line}, column")),
        "{message}"
    );
    assert!(message.starts_with("toy.toml: invalid TOML"), "{message}");

    // A well-formed file whose value is a huge string: quoted by serde, bounded by us.
    let huge = PIPELINE.replace(
        "factor = 2",
        &format!("factor = \"{}\"", "x".repeat(1 << 20)),
    );
    let message = parse_error(&huge);
    assert!(message.len() < 1000, "{} bytes", message.len());
    assert!(
        message.contains("`stage.scaled.factor`: invalid type"),
        "{message}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Any edit of a valid pipeline file parses or fails with a bounded message naming the
    /// file; it never panics.
    #[test]
    fn mutated_pipeline_files_never_panic(
        at in 0usize..PIPELINE.len(),
        cut in 0usize..40,
        insert in "[ -~\n]{0,12}",
    ) {
        let mut text = PIPELINE.as_bytes().to_vec();
        let end = (at + cut).min(text.len());
        text.splice(at..end, insert.bytes());
        let text = String::from_utf8_lossy(&text);
        let result = Pipeline::parse(Path::new("toy.toml"), &text, &Overrides::default(), &registry());
        if let Err(err) = result {
            let message = format!("{:#}", anyhow::Error::from(err));
            prop_assert!(message.starts_with("toy.toml"), "{}", message);
            prop_assert!(message.len() < 2000, "{} bytes", message.len());
        }
    }

    /// `--set` with any key and value: a value or an error, never a panic.
    #[test]
    fn arbitrary_overrides_never_panic(key in "[a-z.\\[\\]]{0,24}", value in "[ -~]{0,16}") {
        let overrides = Overrides { scale: None, sets: vec![format!("{key}={value}")] };
        let _ = Pipeline::parse(Path::new("toy.toml"), PIPELINE, &overrides, &registry());
    }
}
