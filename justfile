# gtap task runner. `just --list` shows every recipe.
set shell := ["bash", "-euo", "pipefail", "-c"]

root := justfile_directory()
venv := root / ".venv"
torch_version := "2.13.0"

# libtorch comes from the PyPI torch wheel in the project's virtualenv (tch 0.26 expects 2.13).
export VIRTUAL_ENV := venv
export PATH := venv / "bin" + ":" + env_var("PATH")
export LIBTORCH_USE_PYTORCH := "1"
# Real datasets: $GTAP_DATA_DIR, else ../shared/datasets when present, else ./data.
export GTAP_DATA_DIR := env_var_or_default("GTAP_DATA_DIR", if path_exists(root / "../shared/datasets") == "true" { root / "../shared/datasets" } else { root / "data" })

default:
    @just --list

# Create .venv with the torch wheel that provides libtorch (skipped when it is already there)
setup:
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -x "{{venv}}/bin/python" ] && [ "$("{{venv}}/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null)" = "{{torch_version}}" ]; then
        exit 0
    fi
    echo "setting up libtorch: torch=={{torch_version}} into {{venv}} (first time only; a few GB)"
    python3 -m venv "{{venv}}"
    "{{venv}}/bin/pip" install --quiet --disable-pip-version-check "torch=={{torch_version}}"

# Same profile and target set as `just test`: cargo's feature unification is identical and
# nothing compiles twice.
#
# Build the gtap binary (and the tests)
build: setup
    cargo build --workspace --all-targets

# Run every test (unit, integration, end-to-end on real MNIST at reduced scale, and the Slurm
# executor on a single-node cluster this recipe brings up and tears down)
test: setup
    #!/usr/bin/env bash
    set -euo pipefail
    export GTAP_SLURM_DIR="${GTAP_SLURM_DIR:-/tmp/gtap-slurm-test}"
    export SLURM_CONF="$GTAP_SLURM_DIR/slurm.conf" GTAP_SLURM_CTLD_PORT=16827 GTAP_SLURM_D_PORT=16828
    trap 'scripts/slurm-cluster down' EXIT
    scripts/slurm-cluster up
    cargo test --workspace --all-targets

# A single-node Slurm cluster on this machine (Debian packages; root): `just slurm-up`, then
# `export SLURM_CONF=/tmp/gtap-slurm/slurm.conf` and `gtap run ... --executor slurm`
slurm-up:
    scripts/slurm-cluster up

# Stop the cluster `just slurm-up` started
slurm-down:
    scripts/slurm-cluster down

# Clippy is `just lint`, not part of ci: its check-mode build of every dependency would double
# CI's compile time.
#
# The tests already run every shipped pipeline at ci scale (tests/pipelines.rs,
# tests/text_pipeline.rs), each in a fresh cache; CI runs one through `just` as a user would,
# rather than all of them a second time.
#
# What CI runs: formatting, tests (with the reduced-scale pipelines on real data), one recipe
ci: setup
    cargo fmt --all -- --check
    just test
    just run pipelines/lenets.toml --scale ci

# Run a pipeline: just run pipelines/lenets.toml [--scale ci] [--set k=v] [--force STAGE]
run PIPELINE *ARGS: build
    target/debug/gtap run {{PIPELINE}} {{ARGS}}

# Figure 2 (MCUE heatmaps): just reproduce-figure-2 [ci]
reproduce-figure-2 SCALE="full": build
    target/debug/gtap run pipelines/figure-2.toml --scale {{SCALE}}

# Figures 3 and 4 (LeNet5 compression curves, 5 seeds): just reproduce-figure-3 [ci]
reproduce-figure-3 SCALE="full": build
    target/debug/gtap run pipelines/figure-3.toml --scale {{SCALE}}

# Figure 4 comes from the same pipeline as Figure 3 (cached stages are shared)
reproduce-figure-4 SCALE="full": build
    target/debug/gtap run pipelines/figure-3.toml --scale {{SCALE}}

# Figures 3 and 4 with LeNet5's FC layers as the only players (204): just reproduce-figure-3-fc [ci]
reproduce-figure-3-fc SCALE="full": build
    target/debug/gtap run pipelines/figure-3-fc.toml --scale {{SCALE}}

# MCUE's readings (statistic x dilution x players), diagonal maxima vs the paper's: just mcue-readings [ci]
mcue-readings SCALE="full": build
    target/debug/gtap run pipelines/mcue-readings.toml --scale {{SCALE}}

# Iterated Building at the paper's d: what its budget, step, estimator and probe size change: just iterated-building [ci]
iterated-building SCALE="full": build
    target/debug/gtap run pipelines/iterated-building.toml --scale {{SCALE}}

# Figures 3 and 4 for LeNet-300-100: just reproduce-figure-3-lenet300 [ci]
reproduce-figure-3-lenet300 SCALE="full": build
    target/debug/gtap run pipelines/figure-3-lenet300.toml --scale {{SCALE}}

# Figure 3 with retraining (fine-tuned and rewound sub-networks, 3 seeds): just reproduce-figure-3-retrained [ci]
reproduce-figure-3-retrained SCALE="full": build
    target/debug/gtap run pipelines/figure-3-retrained.toml --scale {{SCALE}}

# Figure 5 (text MLPs on tweet topics and CARER emotions, 5 seeds): just reproduce-figure-5 [ci]
reproduce-figure-5 SCALE="full": build
    target/debug/gtap run pipelines/figure-5.toml --scale {{SCALE}}

# Figure 6 (AlexNet MCUE: whole network, conv layers, FC layers): just reproduce-figure-6 [ci|full]
# (default: the 2-core scale on the shared Tiny ImageNet subset, under an hour; full: for a GPU)
reproduce-figure-6 SCALE="default": build
    target/debug/gtap run pipelines/alexnet.toml --scale {{SCALE}}

# Figure 7 (AlexNet: layer-wise GTAP with WMP budgets vs WMP, W·GMP, random; 5 seeds), same pipeline
reproduce-figure-7 SCALE="default": build
    target/debug/gtap run pipelines/alexnet.toml --scale {{SCALE}}

# Figure 8 (AlexNet: power index vs weight magnitude per layer), same pipeline
reproduce-figure-8 SCALE="default": build
    target/debug/gtap run pipelines/alexnet.toml --scale {{SCALE}}

# "Pruning as a Game": equilibrium sparsification of the 784-512-256-10 MLP, 4 configurations x 5 seeds
reproduce-equilibrium SCALE="full": build
    target/debug/gtap run pipelines/equilibrium.toml --scale {{SCALE}}

# A vision transformer's heads and FFN neurons as players, against the head-pruning literature
# (exact Shapley of the 8 heads, Michel et al., leave-one-out, Held & Yang): just reproduce-transformer [ci|full]
reproduce-transformer SCALE="default": build
    target/debug/gtap run pipelines/transformer.toml --scale {{SCALE}}

# Coalition-evaluation throughput next to dense matmul (figures for BENCHMARKS.md)
bench *ARGS: build
    target/debug/gtap bench coalitions {{ARGS}}

# gtap beside the PyTorch peers (the paper's Algorithm 2, an expert's batched loop) on the same work,
# gtap under portable numerics and then under libtorch's defaults (as the peers run)
bench-peers: build
    python bench/peers/compare.py --gtap target/debug/gtap
    python bench/peers/compare.py --gtap target/debug/gtap --fast-math

# Local vs Slurm overhead per job and the split estimate's cost (needs `just slurm-up` and
# SLURM_CONF): just bench-slurm [ci]
bench-slurm SCALE="ci": build
    bench/slurm-overhead {{SCALE}}

# AlexNet layer-wise games: coalition evaluations per second per layer next to the same-shape
# convolution / matmul (BENCHMARKS.md): just bench-alexnet [--width W --examples E --batch K]
bench-alexnet *ARGS: build
    target/debug/gtap bench alexnet {{ARGS}}

# gtap's training and evaluation against a plain PyTorch loop, in one run (BENCHMARKS.md)
bench-training: build
    python bench/peers/training.py --gtap target/debug/gtap

# Price of portable numerics: training, evaluation and coalition throughput, portable then --fast-math
bench-numerics: build
    target/debug/gtap bench training
    target/debug/gtap --fast-math bench training
    target/debug/gtap bench coalitions --examples 1000 --batches 8,64,256
    target/debug/gtap --fast-math bench coalitions --examples 1000 --batches 8,64,256

# Any gtap command: just gtap status pipelines/lenets.toml
gtap *ARGS: build
    target/debug/gtap {{ARGS}}

fmt:
    cargo fmt --all

lint: setup
    cargo clippy --workspace --all-targets -- -D warnings

# Do two gtap binaries compute the same bytes on every shipped pipeline? (scripts/same-bytes)
same-bytes OLD NEW SCALE="ci":
    scripts/same-bytes {{OLD}} {{NEW}} {{SCALE}}
