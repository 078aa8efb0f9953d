//! `gtap`: game-theoretic pruning of neural networks as a cached, reproducible pipeline.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use gtap_engine::{Env, Outcome, Overrides, Pipeline, Runner, State, Upstream};

/// `println!` / `print!` that end the process quietly when stdout is closed (`gtap show … |
/// head`), as Unix tools do, instead of panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            stdout_failed(e);
        }
    }};
}

macro_rules! out_inline {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout(), $($arg)*) {
            stdout_failed(e);
        }
    }};
}

/// A closed stdout ends the process with success (its reader wanted no more); any other
/// failure to write is an error.
fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: writing to stdout: {e}");
    std::process::exit(2);
}

#[derive(Parser)]
#[command(
    name = "gtap",
    version,
    about = "Game-theoretic pruning of neural networks, as a cached pipeline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    dirs: Dirs,
    /// Log only warnings and errors.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// libtorch's fastest CPU kernels and every core, at the price of bytes that depend on the
    /// machine (default: portable numerics, the same bytes on any x86-64 CPU with AVX2). Recorded
    /// in the keys of tensor stages, so the two never share cache entries.
    #[arg(long, global = true, env = "GTAP_FAST_MATH", value_parser = clap::builder::FalseyValueParser::new())]
    fast_math: bool,
    /// Where tensors live: cpu, cuda or auto (the first GPU libtorch sees, else the CPU). Every
    /// tensor stage honours it; a pipeline file never names a device. Results computed on a GPU
    /// are cached apart from CPU ones (their floats round differently).
    #[arg(long, global = true, env = "GTAP_DEVICE", default_value = "auto")]
    device: String,
}

#[derive(Args)]
struct Dirs {
    /// Where datasets are read from (then $GTAP_DATA_DIR, then ./data).
    #[arg(long, global = true, env = "GTAP_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// The stage cache.
    #[arg(
        long,
        global = true,
        env = "GTAP_CACHE_DIR",
        default_value = ".gtap/cache"
    )]
    cache_dir: PathBuf,
    /// Where tables are materialised, as <results-dir>/<pipeline>/<table>.parquet.
    #[arg(
        long,
        global = true,
        env = "GTAP_RESULTS_DIR",
        default_value = "results"
    )]
    results_dir: PathBuf,
    /// Where figures are copied, as <figures-dir>/<figure>.{png,svg}.
    #[arg(
        long,
        global = true,
        env = "GTAP_FIGURES_DIR",
        default_value = "figures"
    )]
    figures_dir: PathBuf,
}

#[derive(Args)]
struct PipelineArgs {
    /// A pipeline file, e.g. pipelines/lenets.toml.
    pipeline: PathBuf,
    /// Scale preset from the file's [scale.<name>] tables (default: the file's default, or "full").
    #[arg(long)]
    scale: Option<String>,
    /// Override one value: --set stage.train_lenet5.epochs=3 (repeatable; TOML syntax for values).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline: build the stages that are not cached, then write its tables.
    Run {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// Rebuild this stage (all its seeds) even if cached (repeatable).
        #[arg(long, value_name = "STAGE")]
        force: Vec<String>,
        /// Stage instances built at once [default: $GTAP_THREADS or the core count; 1 with
        /// --fast-math, where libtorch uses every core inside one instance]. Results do not
        /// depend on it. Local executor only (on Slurm, each job has its stage's `cpus`).
        #[arg(long, short, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
        jobs: Option<usize>,
        /// Where instances are built: `local` (this process) or `slurm` (one batch job per
        /// missing instance, `afterok` dependencies, cache shared by every node).
        #[arg(long, value_enum, default_value = "local")]
        executor: Executor,
        #[command(flatten)]
        slurm: SlurmArgs,
    },
    /// Build exactly one stage instance whose inputs are built (what each Slurm job runs).
    Build {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// `stage` or `stage[seed]`.
        #[arg(long)]
        instance: String,
        /// Refuse to build unless the pipeline still resolves to this fingerprint (the one the
        /// job was submitted for).
        #[arg(long)]
        fingerprint: Option<String>,
        /// Rebuild even if cached.
        #[arg(long)]
        force: bool,
    },
    /// List every stage instance with its cache key and state: cached, missing, or blocked
    /// (its key depends on upstream outputs that are missing).
    Status {
        #[command(flatten)]
        pipeline: PipelineArgs,
    },
    /// Check every cache entry the pipeline uses against its manifest (each file's size and
    /// sha256); exits non-zero naming each corrupt entry. `gtap run` rebuilds them.
    Verify {
        #[command(flatten)]
        pipeline: PipelineArgs,
    },
    /// Show which pre-image fields of a stage changed since the last run.
    Why {
        #[command(flatten)]
        pipeline: PipelineArgs,
        /// The stage id, as in [stage.<id>].
        stage: String,
    },
    /// List the stage kinds a pipeline may use.
    Stages,
    /// Print a result table (parquet), e.g. results/lenets/evaluation.parquet.
    Show {
        table: PathBuf,
        /// Rows to print (all by default).
        #[arg(long)]
        rows: Option<usize>,
    },
    /// Write the network pruned by a ranking stage at one size as a smaller model; print its
    /// parameters, test accuracy and CPU inference time next to the full network's.
    Export(ExportArgs),
    /// Measure performance (figures for BENCHMARKS.md).
    #[command(subcommand)]
    Bench(Bench),
    /// Compare two runs' tables: per key, each metric's mean and std over seeds in A and B,
    /// and B - A. Prints the table and a summary, writes it as parquet.
    Compare {
        /// Run A: a result directory (reads <A>/<table>.parquet) or a parquet file.
        a: PathBuf,
        /// Run B: a result directory or a parquet file.
        b: PathBuf,
        /// The table read from a result directory.
        #[arg(long, default_value = "curves")]
        table: String,
        /// Join on these columns (default: every column but `seed` and the floating-point
        /// metrics; `size_fraction` is a key).
        #[arg(long, value_delimiter = ',', value_name = "COLUMN,...")]
        on: Option<Vec<String>>,
        /// Where the joined table is written [default: <results-dir>/compare.parquet].
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Executor {
    Local,
    Slurm,
}

#[derive(Args)]
struct SlurmArgs {
    /// An extra `sbatch` argument for every job, e.g. --sbatch-arg=--account=lab (repeatable;
    /// also $GTAP_SBATCH_ARGS, split on whitespace).
    #[arg(long = "sbatch-arg", value_name = "ARG", allow_hyphen_values = true)]
    sbatch_args: Vec<String>,
    /// With --executor slurm: submit and exit; a later `gtap run` watches the queued jobs (or
    /// finds their entries cached) and writes the tables.
    #[arg(long)]
    no_wait: bool,
    /// Seconds between reads of the Slurm queue.
    #[arg(long, default_value_t = 5.0)]
    poll: f64,
}

#[derive(Args)]
struct ExportArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// The ranking stage (kind gtap, wmp, wgmp or random), as in [stage.<id>].
    #[arg(long, value_name = "STAGE")]
    ranking: String,
    /// The seed of the ranking instance [default: the pipeline's first seed].
    #[arg(long)]
    seed: Option<u64>,
    /// Fraction of the players kept, in (0, 1]: the first round(F·n) of the ranking, at least 1.
    #[arg(long, value_name = "F")]
    size: f64,
    /// Directory the pruned model goes to (model.safetensors, model.json, export.json).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Subcommand)]
enum Bench {
    /// Coalition evaluations per second on LeNet5's 604-player head, next to dense matmul GFLOP/s.
    Coalitions {
        /// Examples each coalition is evaluated on (the probe split has 5,000).
        #[arg(long, default_value_t = 5000)]
        examples: usize,
        /// Coalitions per forward pass to measure.
        #[arg(long, value_delimiter = ',', default_value = "1,8,32,64,128,256")]
        batches: Vec<usize>,
        /// Minimum seconds per measurement.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// Coalition evaluations per second of each AlexNet layer-wise game, next to the GFLOP/s of
    /// the same-shape convolution / matmul that starts its evaluation.
    Alexnet {
        /// Width multiplier of the network (the default pipeline's 1/8).
        #[arg(long, default_value_t = 0.125)]
        width: f64,
        /// Examples each coalition is evaluated on (the default pipeline's probe_examples).
        #[arg(long, default_value_t = 100)]
        examples: usize,
        /// Coalitions per evaluation call.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Minimum seconds per measurement.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// Training steps and evaluation throughput of both LeNets under this process's numerics
    /// (run it with and without --fast-math to price portable numerics).
    Training {
        /// Minimum seconds per measurement.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let level = if cli.quiet { "warn" } else { "info" };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .init();
    // A thread count that is not one is a typo, not a request for the default.
    if let Ok(threads) = std::env::var("GTAP_THREADS") {
        if !threads.trim().parse::<usize>().is_ok_and(|n| n > 0) {
            let shown: String = threads.chars().take(40).collect();
            eprintln!("error: GTAP_THREADS must be a positive integer (threads per process), got `{shown}`");
            return ExitCode::from(2);
        }
    }
    // Before any tensor exists: MKL and ATen read these settings once, at their first use.
    let numerics = if cli.fast_math {
        gtap_nn::Numerics::Fast
    } else {
        gtap_nn::Numerics::Portable
    };
    if let Err(err) = gtap_nn::numerics::init(numerics) {
        eprintln!("error: {err:#}");
        return ExitCode::from(2);
    }
    let device = cli
        .device
        .parse::<gtap_nn::DeviceChoice>()
        .and_then(gtap_nn::set_device);
    if let Err(err) = device {
        eprintln!("error: {err:#}");
        return ExitCode::from(2);
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn print_report(report: &gtap_engine::RunReport) {
    for r in &report.instances {
        match r.outcome {
            Outcome::Cached => out!("cached  {:<32} {}", r.instance.id, &r.key[..16]),
            Outcome::Built { seconds } => out!(
                "built   {:<32} {} in {seconds:.1}s",
                r.instance.id,
                &r.key[..16]
            ),
        }
    }
    for table in &report.tables {
        out!("wrote   {}", table.display());
    }
}

/// `gtap run --executor slurm`: each job runs this binary's `build` on the same pipeline,
/// scale, overrides, directories and numerics, pinned to the pipeline's fingerprint.
fn run_on_slurm(
    runner: &Runner<'_>,
    env: &Env,
    args: &PipelineArgs,
    pipeline: &Pipeline,
    force: &[String],
    slurm: SlurmArgs,
    fast_math: bool,
    device: &str,
) -> anyhow::Result<()> {
    let absolute = |p: &std::path::Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
    let exe = std::env::current_exe().context("locating the gtap binary for the jobs")?;
    let mut command: Vec<String> = vec![
        exe.display().to_string(),
        format!("--cache-dir={}", absolute(&env.cache_dir).display()),
        format!("--data-dir={}", absolute(&env.data_dir).display()),
    ];
    if fast_math {
        command.push("--fast-math".into());
    }
    // The job resolves the same setting on its own node (`auto` may find a GPU there).
    command.push(format!("--device={}", device));
    command.extend([
        "build".to_owned(),
        absolute(&args.pipeline).display().to_string(),
        format!("--scale={}", pipeline.scale),
        format!("--fingerprint={}", pipeline.fingerprint()),
    ]);
    command.extend(args.sets.iter().map(|set| format!("--set={set}")));
    let mut sbatch_args: Vec<String> = std::env::var("GTAP_SBATCH_ARGS")
        .map(|v| v.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    sbatch_args.extend(slurm.sbatch_args);
    let options = gtap_engine::SlurmOptions {
        build_command: command,
        sbatch_args,
        log_dir: absolute(&env.cache_dir).join("slurm"),
        wait: !slurm.no_wait,
        poll: std::time::Duration::from_secs_f64(slurm.poll.max(0.1)),
    };
    let run = runner
        .run_on_slurm(pipeline, force, &options)
        .with_context(|| format!("running {} on Slurm", pipeline.path.display()))?;
    for job in &run.jobs {
        let how = if job.adopted { "queued " } else { "submitted" };
        out!(
            "{how} {:<32} job {:<8} {}",
            job.instance.id,
            job.id,
            job.log.display()
        );
    }
    match &run.report {
        Some(report) => print_report(report),
        None if run.jobs.is_empty() => out!("nothing to submit: every instance is cached"),
        None => out!(
            "{} job(s) queued; `gtap run {} --executor slurm` watches them and writes the tables",
            run.jobs.len(),
            args.pipeline.display()
        ),
    }
    Ok(())
}

/// `gtap verify`: one line per cached instance, then a summary; an error when any is corrupt.
fn verify(runner: &Runner<'_>, pipeline: &Pipeline) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let verified = runner.verify(pipeline)?;
    let mut corrupt = Vec::new();
    for v in &verified {
        match &v.problem {
            None => out!(
                "ok      {:<32} {} {} bytes",
                v.instance.id,
                &v.key[..16],
                v.bytes
            ),
            Some(problem) => {
                out!("corrupt {:<32} {}", v.instance.id, problem);
                corrupt.push(v.instance.id.as_str());
            }
        }
    }
    let bytes: u64 = verified.iter().map(|v| v.bytes).sum();
    out!(
        "checked {} cached entries ({:.1} MB) in {:.2}s",
        verified.len(),
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        corrupt.is_empty(),
        "{} corrupt cache entr{} ({}); `gtap run {}` rebuilds them",
        corrupt.len(),
        if corrupt.len() == 1 { "y" } else { "ies" },
        corrupt.join(", "),
        pipeline.path.display()
    );
    Ok(())
}

fn load(args: &PipelineArgs, registry: &gtap_engine::Registry) -> anyhow::Result<Pipeline> {
    let overrides = Overrides {
        scale: args.scale.clone(),
        sets: args.sets.clone(),
    };
    Ok(Pipeline::load(&args.pipeline, &overrides, registry)?)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let registry = gtap_stages::registry();
    let env = Env {
        data_dir: cli.dirs.data_dir,
        cache_dir: cli.dirs.cache_dir,
        results_dir: cli.dirs.results_dir,
        figures_dir: cli.dirs.figures_dir,
        progress: std::io::stderr().is_terminal() && !cli.quiet,
        numerics: gtap_nn::numerics::current().cache_tag_here(),
    };
    let runner = Runner::new(&registry, &env);
    match cli.command {
        Command::Run {
            pipeline: args,
            force,
            jobs: _,
            executor: Executor::Slurm,
            slurm,
        } => {
            let pipeline = load(&args, &registry)?;
            run_on_slurm(
                &runner,
                &env,
                &args,
                &pipeline,
                &force,
                slurm,
                cli.fast_math,
                &cli.device,
            )?
        }
        Command::Build {
            pipeline: args,
            instance,
            fingerprint,
            force,
        } => {
            let pipeline = load(&args, &registry)?;
            if let Some(expected) = fingerprint {
                let found = pipeline.fingerprint();
                if found != expected {
                    return Err(gtap_engine::EngineError::PipelineChanged {
                        path: pipeline.path.clone(),
                        expected,
                        found,
                    }
                    .into());
                }
            }
            let report = runner
                .build_instance(&pipeline, &instance, force)
                .with_context(|| format!("building {instance} of {}", pipeline.path.display()))?;
            match report.outcome {
                Outcome::Cached => out!("cached  {:<32} {}", instance, &report.key[..16]),
                Outcome::Built { seconds } => out!(
                    "built   {:<32} {} in {seconds:.1}s",
                    instance,
                    &report.key[..16]
                ),
            }
        }
        Command::Run {
            pipeline,
            force,
            jobs,
            executor: Executor::Local,
            slurm: _,
        } => {
            let pipeline = load(&pipeline, &registry)?;
            let jobs = jobs.unwrap_or(match gtap_nn::numerics::current() {
                gtap_nn::Numerics::Portable => gtap_nn::numerics::workers(),
                gtap_nn::Numerics::Fast => 1,
            });
            let report = Runner::new(&registry, &env)
                .jobs(jobs)
                .run(&pipeline, &force)
                .with_context(|| format!("running {}", pipeline.path.display()))?;
            print_report(&report);
        }
        Command::Status { pipeline } => {
            let pipeline = load(&pipeline, &registry)?;
            out!(
                "{} (scale {}, seeds {:?})",
                pipeline.path.display(),
                pipeline.scale,
                pipeline.seeds
            );
            for s in runner.status(&pipeline)? {
                let state = match s.state {
                    State::Cached => "cached",
                    State::Missing => "missing",
                    State::Blocked => "blocked",
                };
                let key = s.key.as_deref().map(|k| &k[..16]).unwrap_or("?");
                out!(
                    "{:<32} {:<10} {key:<16} {state}",
                    s.instance.id,
                    s.instance.kind
                );
            }
        }
        Command::Verify { pipeline } => verify(&runner, &load(&pipeline, &registry)?)?,
        Command::Why { pipeline, stage } => {
            let pipeline = load(&pipeline, &registry)?;
            for why in runner.why(&pipeline, &stage)? {
                match &why.changes {
                    None => out!(
                        "{}: never run in pipeline `{}`",
                        why.instance.id,
                        pipeline.name
                    ),
                    Some(changes) if changes.is_empty() => {
                        out!("{}: unchanged since the last run", why.instance.id)
                    }
                    Some(changes) => {
                        out!("{}: changed since the last run:", why.instance.id);
                        for change in changes {
                            out!("  {change}");
                        }
                    }
                }
            }
        }
        Command::Export(args) => export(&runner, &registry, &args)?,
        Command::Bench(Bench::Coalitions {
            examples,
            batches,
            seconds,
        }) => {
            let report =
                gtap_stages::bench::coalitions(examples, &batches, seconds, &env.data_dir)?;
            out!(
                "numerics: {}, device: {:?}",
                gtap_nn::numerics::current(),
                gtap_nn::device()
            );
            out!(
                "LeNet5 head, {} examples, {} libtorch threads, {:.1} MFLOP per coalition",
                report.examples,
                report.threads,
                report.flops_per_evaluation / 1e6
            );
            out!("weights: {}", report.weights);
            out!(
                "dense matmul [E,400]x[400,7680]: {:.1} GFLOP/s",
                report.matmul_same_shape_gflops
            );
            out!(
                "dense matmul 2048^3:             {:.1} GFLOP/s",
                report.matmul_square_gflops
            );
            if let Some((same, square)) = report.portable_gemm_gflops {
                out!(
                    "portable GEMM (gtap_nn::gemm, 2 threads): {same:.1} GFLOP/s at [E,400]x[400,7680] (x{:.2} libtorch), {square:.1} at 2048^3 (x{:.2})",
                    same / report.matmul_same_shape_gflops,
                    square / report.matmul_square_gflops
                );
            }
            out!(
                "{:>6} {:>14} {:>10} {:>10} {:>16} {:>9}",
                "batch",
                "coalitions/s",
                "GFLOP/s",
                "of matmul",
                "walk values/s",
                "speed-up"
            );
            for r in &report.rates {
                out!(
                    "{:>6} {:>14.1} {:>10.1} {:>9.0}% {:>16.1} {:>8.1}x",
                    r.batch,
                    r.evaluations_per_second,
                    r.gflops,
                    100.0 * r.gflops / report.matmul_same_shape_gflops,
                    r.walk_evaluations_per_second,
                    r.walk_evaluations_per_second / r.evaluations_per_second
                );
            }
            out!(
                "walk values/s: `batch` walks of {} single toggles, evaluated incrementally",
                gtap_nn::walks::REFRESH - 1
            );
            out!(
                "coalitions/s: the default, certified where it applies (gtap_nn::certify: fast kernels and a bound, undecided pairs recomputed); against the reference path alone, the same values:"
            );
            out!(
                "{:>6} {:>14} {:>14} {:>9} {:>11} {:>17}",
                "batch",
                "reference/s",
                "default/s",
                "ratio",
                "recomputed",
                "walks recomputed"
            );
            for r in &report.rates {
                out!(
                    "{:>6} {:>14.1} {:>14.1} {:>8.2}x {:>10.2}% {:>16.2}%",
                    r.batch,
                    r.reference_per_second,
                    r.evaluations_per_second,
                    r.evaluations_per_second / r.reference_per_second,
                    100.0 * r.recomputed_share,
                    100.0 * r.walk_recomputed_share
                );
            }
            out!(
                "algorithm 2 (paired, 1 pair per player, incremental): {:.1} coalitions/s",
                report.algorithm2_evaluations_per_second
            );
            out!(
                "predicted marginals (control-variate; one backward pass through the gates per coalition): {:.1} coalitions/s, {:.1}x the time of a full evaluation (prediction_cost)",
                report.predictions_per_second, report.prediction_cost
            );
        }
        Command::Bench(Bench::Alexnet {
            width,
            examples,
            batch,
            seconds,
        }) => {
            let rates = gtap_stages::bench::alexnet_layers(width, examples, batch, seconds)?;
            out!(
                "numerics: {}, device: {:?}",
                gtap_nn::numerics::current(),
                gtap_nn::device()
            );
            out!(
                "AlexNet width {width}, {examples} examples, {batch} coalitions per call, {} threads",
                gtap_nn::numerics::workers()
            );
            out!(
                "{:<6} {:>6} {:>14} {:>14} {:>9} {:>16} {:>9} {:>12} {:>7} {:>11}",
                "layer",
                "units",
                "MFLOP / pair",
                "coalitions/s",
                "GFLOP/s",
                "same-shape op",
                "of op",
                "reference/s",
                "ratio",
                "recomputed"
            );
            for r in &rates {
                out!(
                    "{:<6} {:>6} {:>14.2} {:>14.1} {:>9.2} {:>12.2} GF/s {:>8.0}% {:>12.1} {:>6.2}x {:>10.1}%",
                    r.layer,
                    r.units,
                    r.flops_per_pair / 1e6,
                    r.evaluations_per_second,
                    r.gflops,
                    r.op_gflops,
                    100.0 * r.gflops / r.op_gflops,
                    r.reference_per_second,
                    r.evaluations_per_second / r.reference_per_second,
                    100.0 * r.recomputed
                );
            }
            out!(
                "coalitions/s: the default (certified where its bound decides; a game whose \
                 bound hands most pairs back runs the reference alone); reference/s: \
                 certification off, the same values"
            );
        }
        Command::Bench(Bench::Training { seconds }) => {
            out!(
                "numerics: {}, device: {:?}",
                gtap_nn::numerics::current(),
                gtap_nn::device()
            );
            out_inline!("{:<14}", "model");
            for parts in gtap_stages::bench::TRAINING_PARTS {
                let label = format!(
                    "train steps/s ({parts} part{})",
                    if parts == 1 { "" } else { "s" }
                );
                out_inline!(" {label:>22}");
            }
            out!(" {:>18} {:>18}", "eval examples/s", "accuracy ex./s");
            for r in gtap_stages::bench::training(seconds)? {
                out_inline!("{:<14}", r.arch.name());
                for (_, rate) in &r.steps_per_second {
                    out_inline!(" {rate:>22.1}");
                }
                out!(
                    " {:>18.0} {:>18.0}",
                    r.eval_examples_per_second,
                    r.accuracy_examples_per_second
                );
            }
        }
        Command::Show { table, rows } => {
            let df = gtap_engine::table::read_parquet(&table)?;
            let df = match rows {
                Some(n) => df.head(Some(n)),
                None => df,
            };
            // polars reads its printing limits from the environment.
            std::env::set_var("POLARS_FMT_MAX_ROWS", df.height().to_string());
            std::env::set_var("POLARS_FMT_MAX_COLS", "64");
            std::env::set_var("POLARS_FMT_STR_LEN", "48");
            out!("{df}");
        }
        Command::Compare {
            a,
            b,
            table,
            on,
            out,
        } => {
            let out = out.unwrap_or_else(|| env.results_dir.join("compare.parquet"));
            compare(&a, &b, &table, on.as_deref(), &out)?;
        }
        Command::Stages => {
            for (kind, about) in registry.kinds() {
                out!("{kind:<12} {about}");
            }
        }
    }
    Ok(())
}

/// `gtap compare`: prints the joined table and a one-line summary, writes the table to `out`.
fn compare(
    a: &std::path::Path,
    b: &std::path::Path,
    table: &str,
    on: Option<&[String]>,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let (file_a, a) = gtap_compare::read(a, table).context("reading A")?;
    let (file_b, b) = gtap_compare::read(b, table).context("reading B")?;
    let comparison = gtap_compare::compare(&a, &b, on)
        .with_context(|| format!("comparing {} with {}", file_a.display(), file_b.display()))?;
    let mut joined = comparison.table;
    out!("A: {}", file_a.display());
    out!("B: {}", file_b.display());
    if !comparison.roles.ignored.is_empty() {
        out!("ignored: {}", comparison.roles.ignored.join(", "));
    }
    // polars reads its printing limits from the environment: every row, no wrapping.
    std::env::set_var("POLARS_FMT_MAX_ROWS", joined.height().to_string());
    std::env::set_var("POLARS_FMT_MAX_COLS", "256");
    std::env::set_var("POLARS_FMT_STR_LEN", "48");
    std::env::set_var("POLARS_TABLE_WIDTH", "-1");
    out!("{joined}");
    out!("{}", comparison.summary);
    gtap_engine::table::write_parquet(out, &mut joined)?;
    out!("wrote   {}", out.display());
    Ok(())
}

/// `gtap export`: the network of a ranking instance's `model` input with the first
/// round(size · n) players of its ranking kept, written to `out` as a [`gtap_nn::PrunedNetwork`];
/// prints parameters, test accuracy (masked and pruned, which must agree) and CPU inference time.
fn export(
    runner: &Runner<'_>,
    registry: &gtap_engine::Registry,
    args: &ExportArgs,
) -> anyhow::Result<()> {
    use gtap_nn::{Network, PrunedNetwork};
    use tch::{Device, Kind, Tensor};

    let pipeline = &load(&args.pipeline, registry)?;
    let (ranking, size, out) = (args.ranking.as_str(), args.size, args.out.as_path());
    let mut rerun = format!("gtap run {}", args.pipeline.pipeline.display());
    if let Some(scale) = &args.pipeline.scale {
        rerun += &format!(" --scale {scale}");
    }
    for set in &args.pipeline.sets {
        rerun += &format!(" --set {set}");
    }
    let decl = pipeline.stage(ranking)?;
    let kinds = gtap_stages::RANKING_KINDS;
    anyhow::ensure!(
        kinds.contains(&decl.kind.as_str()),
        "stage `{ranking}` (kind `{}`) is not a ranking stage (ranking kinds: {})",
        decl.kind,
        kinds.join(", ")
    );
    anyhow::ensure!(
        size > 0.0 && size <= 1.0,
        "--size must be a fraction in (0, 1] (got {size})"
    );
    let seed = match args.seed {
        Some(s) if pipeline.seeds.contains(&s) => s,
        Some(s) => anyhow::bail!(
            "seed {s} is not one of the pipeline's seeds {:?}",
            pipeline.seeds
        ),
        None => *pipeline
            .seeds
            .first()
            .context("the pipeline has no seeds")?,
    };
    // The instance of stage `id` bound to this seed (the one instance of an unseeded stage).
    let built = |id: &str| -> anyhow::Result<Upstream> {
        let instance = runner
            .instances(pipeline)
            .into_iter()
            .find(|i| i.stage == id && i.seed.is_none_or(|s| s == seed))
            .with_context(|| format!("no instance of stage `{id}` for seed {seed}"))?;
        runner
            .output(pipeline, &instance.id)?
            .with_context(|| format!("stage {} is not built; run `{rerun}` first", instance.id))
    };
    let input = |name: &str| match decl.inputs.get(name).map(Vec::as_slice) {
        Some([one]) => built(one),
        _ => anyhow::bail!("stage `{ranking}` has no single `{name}` input"),
    };
    let ranked = built(ranking)?;
    let order = gtap_stages::ranking::Ranking::read(&ranked)?.order;
    let model = input("model")?;
    let data = input("data")?;
    let (mut net, _) = gtap_stages::load_model(&model)?;
    net.vs.set_device(Device::Cpu);
    let test = gtap_stages::load_split(&data.dir, "test")?;
    let (xs, labels) = (
        test.inputs.to_device(Device::Cpu),
        test.labels.to_device(Device::Cpu),
    );
    let n = net.num_players();
    anyhow::ensure!(
        order.len() == n,
        "ranking `{ranking}` orders {} players, the {} has {n}",
        order.len(),
        net.arch
    );
    let r = ((size * n as f64).round() as usize).clamp(1, n);
    let mut kept = vec![false; n];
    for &p in &order[..r] {
        kept[p] = true;
    }

    let _guard = tch::no_grad_guard();
    let pruned = PrunedNetwork::from_network(&net, &kept)?;
    pruned.save(out)?;
    let full_cost = net.cost(&vec![true; n]);
    let (full_params, full_flops) = (full_cost.params, full_cost.flops);
    let pruned_params = pruned.num_parameters();
    // What the exported network computes, and what `cost` (the curves' FLOPs) counts: fewer
    // where removed units are positions of a convolution that the export still computes.
    let pruned_flops = pruned.flops_per_example();
    let counted_flops = net.cost(&kept).flops;

    let row: Vec<f32> = kept.iter().map(|&k| f32::from(u8::from(k))).collect();
    let mask = Network::mask_tensor(&row, n, Device::Cpu);
    let masked_pred = net
        .masked_logits(&net.prefix(&xs), &mask)?
        .select(1, 0)
        .argmax(-1, false);
    let pruned_pred = pruned.forward(&xs).argmax(-1, false);
    let count = |t: Tensor| t.to_kind(Kind::Int64).sum(Kind::Int64).int64_value(&[]);
    let examples = labels.size()[0];
    let accuracy = |pred: &Tensor| count(pred.eq_tensor(&labels)) as f64 / examples as f64;
    let full_acc = accuracy(&net.forward(&xs).argmax(-1, false));
    let (masked_acc, pruned_acc) = (accuracy(&masked_pred), accuracy(&pruned_pred));
    let agree = count(masked_pred.eq_tensor(&pruned_pred));

    // Median of 5 passes over the test split in chunks side by side, as gtap evaluates.
    const INFERENCE_CHUNK: i64 = 256;
    let full_s = gtap_nn::inference_seconds(&net, &xs, INFERENCE_CHUNK, 5);
    let pruned_s = gtap_nn::inference_seconds(&pruned, &xs, INFERENCE_CHUNK, 5);
    let chunks = (examples + INFERENCE_CHUNK - 1) / INFERENCE_CHUNK;

    let provenance = serde_json::json!({
        "pipeline": pipeline.path.display().to_string(),
        "scale": pipeline.scale,
        "ranking": { "stage": ranking, "kind": decl.kind, "seed": seed,
                     "content_hash": ranked.content_hash },
        "model": { "stage": model.stage, "content_hash": model.content_hash },
        "size_fraction": size,
        "players_kept": r,
        "players": n,
        "parameters": pruned_params,
        "parameters_full": full_params,
        "flops_per_example": pruned_flops,
        "flops_per_example_counted": counted_flops,
        "flops_per_example_full": full_flops,
        "test_accuracy": pruned_acc,
    });
    std::fs::write(
        out.join("export.json"),
        serde_json::to_vec_pretty(&provenance)?,
    )
    .with_context(|| format!("writing {}", out.join("export.json").display()))?;

    out!(
        "{} pruned by {ranking}[{seed}] ({}) at size {size}",
        net.arch,
        decl.kind
    );
    out!("players kept   {r} of {n}");
    out!(
        "parameters     {full_params} -> {pruned_params} ({:.1}% kept, {:.2}x fewer)",
        100.0 * pruned_params as f64 / full_params as f64,
        full_params as f64 / pruned_params as f64
    );
    out!(
        "test accuracy  full {:.2}%, masked {:.2}%, pruned {:.2}% (predictions agree on {agree} of {examples})",
        100.0 * full_acc,
        100.0 * masked_acc,
        100.0 * pruned_acc
    );
    out!(
        "FLOPs / image  {full_flops} -> {pruned_flops} computed ({:.1}% kept, {:.2}x fewer)",
        100.0 * pruned_flops as f64 / full_flops as f64,
        full_flops as f64 / pruned_flops as f64
    );
    if counted_flops != pruned_flops {
        out!(
            "               {counted_flops} in the curves' count ({:.1}%): it skips the removed positions of a convolution, which the export computes",
            100.0 * counted_flops as f64 / full_flops as f64
        );
    }
    out!(
        "CPU inference  {examples} test images in chunks of {INFERENCE_CHUNK}, {} workers, median of 5: full {:.1} ms, pruned {:.1} ms ({:.2}x faster)",
        (gtap_nn::numerics::workers() as i64).min(chunks),
        1e3 * full_s,
        1e3 * pruned_s,
        full_s / pruned_s
    );
    out!("wrote          {}", out.display());
    Ok(())
}
