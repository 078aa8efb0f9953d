//! Helpers shared by the binary's integration tests.

use std::path::{Path, PathBuf};

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
