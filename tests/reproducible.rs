//! Portable numerics end to end: the same tensor stages give the same cache entries whatever
//! instruction sets the math libraries are allowed and whatever the environment asks of them
//! (thread counts, MKL branch, ATen's vector width), so a result does not depend on the machine.
//!
//! On one machine a different CPU is emulated by capping what MKL and oneDNN may use
//! (`MKL_ENABLE_INSTRUCTIONS`, `ONEDNN_MAX_CPU_ISA`; AVX-512 variants where the CPU has it), and
//! the pins are attacked through the variables they set: a run with `ATEN_CPU_CAPABILITY=default`,
//! `MKL_CBWR=AUTO` and 3 threads must still give the portable bytes. Measured before the pins
//! existed, each of these changed a LeNet checkpoint (BENCHMARKS.md, "Portable numerics").

mod common;

use std::collections::BTreeMap;
use std::path::Path;

/// Every tensor stage kind on a small budget: training with dropout (libtorch's RNG), both
/// LeNets (LeNet5's convolutions), micro-batches side by side (as many parts as the 3-thread
/// run has workers, and one after another with one), evaluation, an MCUE grid, power indices, W·GMP (gradients).
const PIPELINE: &str = r#"
[pipeline]
name = "portable"
seeds = [0]

[stage.mnist]
kind = "mnist"
probe_size = 1000

[stage.train_lenet5]
kind = "train"
inputs = { data = "mnist" }
model = "lenet5"
epochs = 1
train_examples = 3000
dropout = 0.2

[stage.train_lenet5_parts]
kind = "train"
inputs = { data = "mnist" }
model = "lenet5"
epochs = 1
train_examples = 1500
micro_batches = 3

[stage.train_lenet300]
kind = "train"
inputs = { data = "mnist" }
model = "lenet-300-100"
epochs = 1
train_examples = 3000

[stage.eval_lenet5]
kind = "evaluate"
inputs = { model = "train_lenet5", data = "mnist" }

[stage.eval_lenet300]
kind = "evaluate"
inputs = { model = "train_lenet300", data = "mnist" }

[stage.mcue]
kind = "mcue"
inputs = { model = "train_lenet5", data = "mnist" }
step = 0.25
trials = 40

[stage.indices]
kind = "power-indices"
inputs = { model = "train_lenet5", data = "mnist" }
index = "banzhaf"
estimator = "shared-regression"
samples = 700
probe_examples = 300

[stage.wgmp]
kind = "wgmp"
inputs = { model = "train_lenet300", data = "mnist" }
"#;

/// Content hash of every cache entry, by stage kind and key.
fn entries(cache: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for kind in std::fs::read_dir(cache.join("entries")).unwrap() {
        let kind = kind.unwrap().path();
        for entry in std::fs::read_dir(&kind).unwrap() {
            let entry = entry.unwrap().path();
            if !entry.join("manifest.json").exists() {
                continue; // a lock file
            }
            let manifest: serde_json::Value =
                serde_json::from_slice(&std::fs::read(entry.join("manifest.json")).unwrap())
                    .unwrap();
            out.insert(
                format!(
                    "{}/{}",
                    kind.file_name().unwrap().to_string_lossy(),
                    entry.file_name().unwrap().to_string_lossy()
                ),
                manifest["content_hash"].as_str().unwrap().to_owned(),
            );
        }
    }
    out
}

fn run(data: &Path, pipeline: &Path, env: &[(&str, &str)]) -> BTreeMap<String, String> {
    let root = tempfile::tempdir().unwrap();
    let mut cmd = common::gtap_command(root.path(), data, &["run", pipeline.to_str().unwrap()]);
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{env:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    entries(&root.path().join("cache"))
}

fn cpu_has(flag: &str) -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|info| info.split_whitespace().any(|word| word == flag))
        .unwrap_or(false)
}

#[test]
fn instruction_set_caps_and_thread_counts_do_not_change_any_cache_entry() {
    let Some(data) = common::real_data() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("portable.toml");
    std::fs::write(&pipeline, PIPELINE).unwrap();

    let reference = run(&data, &pipeline, &[]);
    assert_eq!(reference.len(), 9, "{reference:?}");
    let mut variants: Vec<Vec<(&str, &str)>> = vec![
        // A CPU without AVX2 kernels in MKL and oneDNN (below what portable numerics need).
        vec![
            ("MKL_ENABLE_INSTRUCTIONS", "AVX"),
            ("ONEDNN_MAX_CPU_ISA", "SSE41"),
        ],
        // An AVX2-only CPU.
        vec![
            ("MKL_ENABLE_INSTRUCTIONS", "AVX2"),
            ("ONEDNN_MAX_CPU_ISA", "AVX2"),
        ],
        // The variables the pins own, set the other way; more threads than cores.
        vec![
            ("ATEN_CPU_CAPABILITY", "default"),
            ("MKL_CBWR", "AUTO"),
            ("MKL_NUM_THREADS", "3"),
            ("OMP_NUM_THREADS", "3"),
            ("RAYON_NUM_THREADS", "3"),
            ("GTAP_THREADS", "3"),
        ],
        // One worker: the chunks that ran side by side now run one after another.
        vec![("GTAP_THREADS", "1"), ("RAYON_NUM_THREADS", "1")],
    ];
    if cpu_has("avx512f") {
        variants.push(vec![
            ("MKL_ENABLE_INSTRUCTIONS", "AVX512"),
            ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE"),
            ("ATEN_CPU_CAPABILITY", "avx512"),
        ]);
    }
    for env in &variants {
        assert_eq!(run(&data, &pipeline, env), reference, "under {env:?}");
    }
}

#[test]
fn fast_math_keys_tensor_stages_apart_and_leaves_data_stages_alone() {
    let Some(data) = common::real_data() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    // Build the data stage alone (the same stage, so the same entry), so that `status` can key
    // the stages downstream of it without training anything.
    let data_only = root.path().join("data-only.toml");
    std::fs::write(
        &data_only,
        PIPELINE.split("[stage.train_lenet5]").next().unwrap(),
    )
    .unwrap();
    let out = common::gtap_command(root.path(), &data, &["run", data_only.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pipeline = root.path().join("portable.toml");
    std::fs::write(&pipeline, PIPELINE).unwrap();
    let pipeline = pipeline.to_str().unwrap();
    let keys = |extra: &[&str]| -> BTreeMap<String, String> {
        let mut args = vec!["status", pipeline];
        args.extend_from_slice(extra);
        let out = common::gtap_command(root.path(), &data, &args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .map(|line| {
                let cols: Vec<&str> = line.split_whitespace().collect();
                (cols[0].to_owned(), cols[2].to_owned())
            })
            .collect()
    };
    let portable = keys(&[]);
    let fast = keys(&["--fast-math"]);
    assert_eq!(portable["mnist"], fast["mnist"]);
    assert!(
        !portable["train_lenet5[0]"].starts_with('?'),
        "{portable:?}"
    );
    assert_ne!(portable["train_lenet5[0]"], fast["train_lenet5[0]"]);
    assert_ne!(portable["train_lenet300[0]"], fast["train_lenet300[0]"]);
}
