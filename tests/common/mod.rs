//! Helpers shared by the binary's integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The real datasets in ../shared/datasets, or `None` when absent and `GTAP_SKIP_REAL_DATA` is
/// set; absent without it is a failure, so CI never silently skips the real-data tests.
pub fn real_data() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets");
    if dir.join("mnist").exists() {
        return Some(dir);
    }
    if std::env::var_os("GTAP_SKIP_REAL_DATA").is_some() {
        return None;
    }
    panic!(
        "real MNIST expected at {} (set GTAP_SKIP_REAL_DATA=1 to skip these tests)",
        dir.display()
    );
}

/// `gtap run PIPELINE --scale ci` with `data` as data directory and cache, results and figures
/// under `root`; offline, warnings only.
#[allow(dead_code)] // tests/cli.rs shares this module but builds its own commands
pub fn run_ci(root: &Path, data: &Path, pipeline: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gtap"))
        .arg("run")
        .arg(pipeline)
        .args(["--scale", "ci", "--data-dir"])
        .arg(data)
        .arg("--cache-dir")
        .arg(root.join("cache"))
        .arg("--results-dir")
        .arg(root.join("results"))
        .arg("--figures-dir")
        .arg(root.join("figures"))
        .env("GTAP_OFFLINE", "1")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}
