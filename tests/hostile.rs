//! The binary against hostile input: values that must be refused before any work, a stage
//! that panics, and rot in the cache (the real MNIST files in ../shared/datasets).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

/// LeNet5 with one stage of each kind whose parameters depend on the model or the data.
const PIPELINE: &str = r#"
[pipeline]
name = "hostile"
seeds = [0]

[stage.mnist]
kind = "mnist"

[stage.train]
kind = "train"
inputs = { data = "mnist" }
model = "lenet5"
epochs = 1

[stage.mcue]
kind = "mcue"
inputs = { model = "train", data = "mnist" }
trials = 10

[stage.bias]
kind = "mcue-bias"
inputs = { grid = "mcue" }

[stage.heatmap]
kind = "figure-mcue"
inputs = { grids = "mcue" }
name = "heatmap"

[stage.indices]
kind = "power-indices"
inputs = { model = "train", data = "mnist" }
index = "banzhaf"
estimator = "paired"
samples = 2

[stage.prune]
kind = "gtap"
inputs = { model = "train", data = "mnist" }
strategy = "iterated-pruning"
step = 100
estimate = { index = "banzhaf", estimator = "paired", samples = 2 }

[stage.heads]
kind = "players"
inputs = { model = "train" }
layers = ["fc2"]

[stage.heads_indices]
kind = "power-indices"
inputs = { model = "heads", data = "mnist" }
index = "shapley"
estimator = "permutation"
samples = 3

[stage.michel]
kind = "michel"
inputs = { model = "heads", data = "mnist" }
step = 5
"#;

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(pipeline: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.toml"), pipeline).unwrap();
        Project { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn gtap(&self, data: &Path, args: &[&str]) -> Output {
        let pipeline = self.path("p.toml");
        let mut full = args.to_vec();
        full.insert(1, pipeline.to_str().unwrap());
        common::gtap_command(self.dir.path(), data, &full)
            .output()
            .unwrap()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `gtap status` on the pipeline with `from` replaced by `to` exits 2 with `expected` in its
/// message, before reading any data or creating a cache.
fn refused(from: &str, to: &str, expected: &str) {
    assert!(PIPELINE.contains(from), "{from:?} is not in the pipeline");
    let p = Project::new(&PIPELINE.replacen(from, to, 1));
    let out = p.gtap(Path::new("/nonexistent"), &["status"]);
    let message = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{to}: {message}");
    assert!(
        message.contains(expected),
        "{to}: {message:?} lacks {expected:?}"
    );
    assert!(message.contains("p.toml"), "{to}: names no file: {message}");
    assert!(
        !p.path("cache").exists(),
        "{to}: a refused pipeline touched the cache"
    );
}

#[test]
fn values_a_run_would_fail_on_are_refused_by_status() {
    let mcue = "trials = 10\n";
    refused(
        mcue,
        "trials = 10\nlayers = []\n",
        "`stage.mcue.layers`: must name at least one player layer",
    );
    refused(
        mcue,
        "trials = 10\nlayers = [\"fc9\"]\n",
        "`stage.mcue.layers[0]`: lenet5 has no player layer `fc9` (its player layers: conv2, fc1, fc2)",
    );
    refused(
        mcue,
        "trials = 10\nlayers = [\"fc1\", \"fc1\"]\n",
        "`stage.mcue.layers[1]`: layer `fc1` is named twice",
    );
    refused(
        "samples = 2\n",
        "samples = 2\nlayers = [\"conv1\"]\n",
        "`stage.indices.layers[0]`: lenet5 has no player layer `conv1`",
    );
    refused(
        "epochs = 1\n",
        "epochs = 1\naugment = { shift = 1000000 }\n",
        "`stage.train.augment.shift`: must be at most 13 pixels for lenet5's 28x28 images",
    );
    refused(
        "step = 100\n",
        "step = 100\nseparate = { budget = 0 }\n",
        "`stage.prune.separate.budget`: must cover the first round",
    );
    refused(
        "step = 100\n",
        "step = 604\n",
        "`stage.prune.step`: must be below the 604 players of lenet5",
    );
    refused(
        "name = \"heatmap\"",
        "name = \"..\"",
        "`stage.heatmap.name`: must be a plain file stem",
    );
    refused(
        "name = \"heatmap\"",
        "name = \"a/b\"",
        "`stage.heatmap.name`: must be a plain file stem",
    );
    refused(
        "model = \"lenet5\"",
        "model = \"alexnet\"",
        "`stage.train.inputs.data`: `mnist` (mnist)",
    );
    refused(
        "inputs = { model = \"train\", data = \"mnist\" }\ntrials",
        "inputs = { model = \"mnist\", data = \"mnist\" }\ntrials",
        "`stage.mcue.inputs.model`: `mnist` is a `mnist` stage; input `model` takes train, equilibrium, players",
    );
    refused(
        "inputs = { grid = \"mcue\" }",
        "inputs = { grid = \"train\" }",
        "`stage.bias.inputs.grid`: `train` is a `train` stage",
    );
    refused(
        "epochs = 1\n",
        "epochs = 1\nweight_decay = inf\n",
        "`stage.train.weight_decay`: must be finite",
    );
    refused(
        "epochs = 1\n",
        "epochs = 1\nmicro_batches = 0\n",
        "`stage.train.micro_batches`: must be between 1 and 64",
    );
    refused(
        "epochs = 1\n",
        "epochs = 1\nbatch_size = 8\nmicro_batches = 9\n",
        "`stage.train.micro_batches`: must be between 1 and 8 (at most the batch size and 64; got 9)",
    );
    refused(
        "trials = 10\n",
        "trials = 10\nstep = 0.0001\n",
        "`stage.mcue.step`",
    );
    refused(
        "layers = [\"fc2\"]",
        "layers = [\"attn\"]",
        "`stage.heads.layers[0]`: lenet5 has no player layer `attn` (its player layers: conv2, fc1, fc2)",
    );
    refused(
        "estimator = \"permutation\"\nsamples = 3\n",
        "estimator = \"exact\"\n",
        "`stage.heads_indices.estimator`: `exact` enumerates 2^players coalitions, at most 20 free players; this game on lenet5 has 84",
    );
    refused(
        "estimator = \"permutation\"\nsamples = 3\n",
        "estimator = \"exact\"\nsamples = 3\n",
        "`stage.heads_indices.samples`: `exact` evaluates every coalition: leave `samples` out",
    );
    refused(
        "step = 5\n",
        "step = 0\n",
        "`stage.michel.step`: must be at least 1",
    );
    refused(
        "epochs = 1\n",
        "epochs = 1\nschedule = { warmup_epochs = 2 }\n",
        "`stage.train.schedule.warmup_epochs`: must be between 0 and the 1 epochs (got 2)",
    );
    refused(
        "index = \"banzhaf\"\nestimator",
        "index = \"biased-banzhaf\"\nd = \"mcue\"\nestimator",
        "`stage.indices.inputs.bias`: d = \"mcue\" needs a `bias` input",
    );
}

/// An `equilibrium` stage's `layers` are checked against its architecture, and the stages
/// below it see only those layers as players.
#[test]
fn an_equilibrium_stage_s_player_layers_are_checked() {
    let pipeline = r#"
[pipeline]
name = "eq"
seeds = [0]

[stage.mnist]
kind = "mnist"

[stage.eq]
kind = "equilibrium"
inputs = { data = "mnist" }
model = "vit"
epochs = 1
beta = 0.01
layers = ["block1.attn", "block2.attn"]

[stage.indices]
kind = "power-indices"
inputs = { model = "eq", data = "mnist" }
index = "banzhaf"
estimator = "exact"
layers = ["block1.attn"]
"#;
    let status = |text: &str| {
        let p = Project::new(text);
        let out = p.gtap(Path::new("/nonexistent"), &["status"]);
        (out.status.code(), stderr(&out))
    };
    for (from, to, expected) in [
        (
            "\"block2.attn\"]",
            "\"block3.attn\"]",
            "`stage.eq.layers[1]`: vit has no player layer `block3.attn` (its player layers: block1.attn, block1.ffn, block2.attn, block2.ffn)",
        ),
        (
            "layers = [\"block1.attn\"]",
            "layers = [\"block1.ffn\"]",
            "`stage.indices.layers[0]`: vit has no player layer `block1.ffn` (its player layers: block1.attn, block2.attn)",
        ),
        (
            "layers = [\"block1.attn\", \"block2.attn\"]",
            "granularity = \"layers\"",
            "`stage.eq.granularity`: needs `layers`",
        ),
    ] {
        assert!(pipeline.contains(from), "{from}");
        let (code, message) = status(&pipeline.replacen(from, to, 1));
        assert_eq!(code, Some(2), "{to}: {message}");
        assert!(message.contains(expected), "{to}: {message:?} lacks {expected:?}");
    }
    // As written, the heads are players below the equilibrium stage: nothing is refused
    // (status then stops at the missing data).
    let (_, message) = status(pipeline);
    assert!(message.contains("MNIST files missing"), "{message}");
}

#[test]
fn a_malformed_pipeline_is_quoted_in_a_bounded_snippet() {
    let p = Project::new(&format!(
        "{PIPELINE}\n[stage.x]\nkind = {}!\n",
        "\"y".repeat(5 << 20)
    ));
    let out = p.gtap(Path::new("/nonexistent"), &["status"]);
    let message = stderr(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(message.len() < 2000, "{} bytes of stderr", message.len());
    assert!(message.contains("invalid TOML: line"), "{message}");
}

#[test]
fn zero_jobs_is_refused() {
    let p = Project::new(PIPELINE);
    let out = p.gtap(Path::new("/nonexistent"), &["run", "--jobs", "0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--jobs"), "{}", stderr(&out));
}

#[test]
fn a_thread_count_that_is_not_a_positive_integer_is_refused() {
    let p = Project::new(PIPELINE);
    for bad in ["0", "two", "-1", ""] {
        let out = common::gtap_command(p.dir.path(), Path::new("/nonexistent"), &["run", "p.toml"])
            .env("GTAP_THREADS", bad)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "GTAP_THREADS={bad:?}");
        let message = stderr(&out);
        assert!(
            message.contains("GTAP_THREADS must be a positive integer")
                && message.contains(&format!("`{bad}`")),
            "{message}"
        );
    }
}

#[test]
fn a_panicking_stage_exits_2_at_once_naming_its_instance() {
    let Some(data) = common::real_data() else {
        return;
    };
    let p = Project::new(common::SMALL_LENET300);
    let started = Instant::now();
    let pipeline = p.path("p.toml");
    let out = common::gtap_command(p.dir.path(), &data, &["run", pipeline.to_str().unwrap()])
        .env(gtap_engine::INJECT_PANIC, "train[0]")
        .output()
        .unwrap();
    let message = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{message}");
    assert!(started.elapsed() < Duration::from_secs(120));
    assert!(
        message.contains("stage `train[0]` panicked: injected by GTAP_INJECT_PANIC"),
        "{message}"
    );
    assert!(
        !message.contains("thread '"),
        "a raw panic reached the user: {message}"
    );
    let train = p.path("cache/entries/train");
    let entries: Vec<String> = std::fs::read_dir(&train)
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(
        entries.is_empty(),
        "cached for a panicked stage: {entries:?}"
    );
}

/// The issue's case: one flipped byte in a cached LeNet-300-100 checkpoint.
#[test]
fn a_flipped_byte_in_a_cached_checkpoint_is_found_and_rebuilt_to_the_same_bytes() {
    let Some(data) = common::real_data() else {
        return;
    };
    let p = Project::new(common::SMALL_LENET300);
    let first = p.gtap(&data, &["run"]);
    assert!(first.status.success(), "{}", stderr(&first));
    let evaluation = std::fs::read(p.path("results/small/evaluation.parquet")).unwrap();
    let train_dir = p.path("cache/entries/train");
    let entry = std::fs::read_dir(&train_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|e| e.is_dir())
        .unwrap();
    let checkpoint = entry.join("model.safetensors");
    let sound = std::fs::read(&checkpoint).unwrap();
    let mut rotten = sound.clone();
    let middle = rotten.len() / 2;
    rotten[middle] ^= 0x10;
    std::fs::write(&checkpoint, rotten).unwrap();

    let verify = p.gtap(&data, &["verify"]);
    let (stdout, message) = (String::from_utf8_lossy(&verify.stdout), stderr(&verify));
    assert_eq!(verify.status.code(), Some(2), "{stdout}{message}");
    assert!(
        stdout.contains("corrupt train[0]")
            && stdout.contains("file model.safetensors does not match"),
        "{stdout}"
    );
    assert!(
        message.contains("1 corrupt cache entry (train[0])"),
        "{message}"
    );

    let second = p.gtap(&data, &["run"]);
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{}", stderr(&second));
    let built: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("built"))
        .map(|l| l.split_whitespace().nth(1).unwrap())
        .collect();
    // Training is deterministic: the same checkpoint, so evaluation stays cached.
    assert_eq!(built, ["train[0]"], "{stdout}");
    assert_eq!(std::fs::read(&checkpoint).unwrap(), sound);
    assert_eq!(
        std::fs::read(p.path("results/small/evaluation.parquet")).unwrap(),
        evaluation
    );
    assert!(p.gtap(&data, &["verify"]).status.success());
}
