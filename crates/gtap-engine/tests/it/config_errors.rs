use std::path::Path;

use gtap_engine::{Overrides, Pipeline};

use crate::fixtures::{registry, PIPELINE};

/// Parses `text` with `sets` and returns the full error message.
fn error(text: &str, scale: Option<&str>, sets: &[&str]) -> String {
    let overrides = Overrides {
        scale: scale.map(str::to_owned),
        sets: sets.iter().map(|s| s.to_string()).collect(),
    };
    let err = Pipeline::parse(
        Path::new("pipelines/toy.toml"),
        text,
        &overrides,
        &registry(),
    )
    .unwrap_err();
    format!("{:#}", anyhow::Error::from(err))
}

fn check(text: &str, expected: &str) {
    let message = error(text, None, &[]);
    assert!(
        message.contains(expected),
        "message {message:?} lacks {expected:?}"
    );
    assert!(
        message.starts_with("pipelines/toy.toml"),
        "message {message:?} names no file"
    );
}

#[test]
fn unknown_parameter_key() {
    check(
        &PIPELINE.replace("factor = 2", "factr = 2"),
        "`stage.scaled.factr`: unknown field `factr`, expected one of `factor`, `fail`, `panic_seed`, `sleep_ms`",
    );
}

#[test]
fn wrong_type() {
    check(
        &PIPELINE.replace("factor = 2", "factor = \"two\""),
        "`stage.scaled.factor`: invalid type: string \"two\", expected i64",
    );
}

#[test]
fn out_of_range_value() {
    check(
        &PIPELINE.replace("factor = 2", "factor = 11"),
        "`stage.scaled.factor`: must be between 1 and 10 (got 11)",
    );
}

#[test]
fn unknown_stage_kind() {
    check(
        &PIPELINE.replace("kind = \"sum\"", "kind = \"summ\""),
        "`stage.total.kind`: unknown stage kind `summ` (known: scale, source, split, sum)",
    );
}

#[test]
fn input_to_undeclared_stage() {
    check(
        &PIPELINE.replace("x = \"src\"", "x = \"source\""),
        "`stage.scaled.inputs.x`: no stage `source` declared before `scaled`",
    );
}

#[test]
fn missing_input() {
    check(
        &PIPELINE.replace("inputs = { x = \"src\" }", ""),
        "`stage.scaled.inputs`: missing input `x` (stage kind `scale` needs: x)",
    );
}

#[test]
fn unknown_top_level_key() {
    check(
        &format!("{PIPELINE}\n[stages.extra]\nkind = \"sum\"\n"),
        "`stages`: unknown top-level key",
    );
}

#[test]
fn invalid_toml_names_line() {
    check("[pipeline\nname = 1", "invalid TOML");
}

#[test]
fn bad_header_type() {
    check(
        &PIPELINE.replace("seeds = [0, 1]", "seeds = \"all\""),
        "`pipeline.seeds`: invalid type",
    );
}

#[test]
fn unknown_scale() {
    let message = error(PIPELINE, Some("huge"), &[]);
    assert!(
        message.contains("no scale `huge` (available: full, ci)"),
        "{message}"
    );
}

#[test]
fn preset_overriding_a_missing_stage() {
    let message = error(
        &PIPELINE.replace("stage.scaled.factor = 5", "stage.scaledd.factor = 5"),
        Some("ci"),
        &[],
    );
    assert!(message.contains("`scale.ci.stage.scaledd`"), "{message}");
}

#[test]
fn set_override_with_bad_value_and_path() {
    let message = error(PIPELINE, None, &["stage.scaled.factor=0"]);
    assert!(
        message.contains("`stage.scaled.factor`: must be between 1 and 10 (got 0)"),
        "{message}"
    );
    let message = error(PIPELINE, None, &["stage.nope.factor=3"]);
    assert!(
        message.contains("--set stage.nope.factor=3: no such table"),
        "{message}"
    );
    let message = error(PIPELINE, None, &["factor"]);
    assert!(message.contains("expected KEY=VALUE"), "{message}");
}
