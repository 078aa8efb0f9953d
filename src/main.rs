//! `gtap`: game-theoretic pruning of neural networks as a cached, reproducible pipeline.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use gtap_engine::{Env, Outcome, Overrides, Pipeline, Runner, State};

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
    },
    /// List every stage instance with its cache key and state: cached, missing, or blocked
    /// (its key depends on upstream outputs that are missing).
    Status {
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
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
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
    };
    let runner = Runner::new(&registry, &env);
    match cli.command {
        Command::Run { pipeline, force } => {
            let pipeline = load(&pipeline, &registry)?;
            let report = runner
                .run(&pipeline, &force)
                .with_context(|| format!("running {}", pipeline.path.display()))?;
            for r in &report.instances {
                match r.outcome {
                    Outcome::Cached => println!("cached  {:<28} {}", r.instance.id, &r.key[..16]),
                    Outcome::Built { seconds } => println!(
                        "built   {:<28} {} in {seconds:.1}s",
                        r.instance.id,
                        &r.key[..16]
                    ),
                }
            }
            for table in &report.tables {
                println!("wrote   {}", table.display());
            }
        }
        Command::Status { pipeline } => {
            let pipeline = load(&pipeline, &registry)?;
            println!(
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
                println!(
                    "{:<28} {:<10} {key:<16} {state}",
                    s.instance.id, s.instance.kind
                );
            }
        }
        Command::Why { pipeline, stage } => {
            let pipeline = load(&pipeline, &registry)?;
            for why in runner.why(&pipeline, &stage)? {
                match &why.changes {
                    None => println!(
                        "{}: never run in pipeline `{}`",
                        why.instance.id, pipeline.name
                    ),
                    Some(changes) if changes.is_empty() => {
                        println!("{}: unchanged since the last run", why.instance.id)
                    }
                    Some(changes) => {
                        println!("{}: changed since the last run:", why.instance.id);
                        for change in changes {
                            println!("  {change}");
                        }
                    }
                }
            }
        }
        Command::Bench(Bench::Coalitions {
            examples,
            batches,
            seconds,
        }) => {
            let report = gtap_stages::bench::coalitions(examples, &batches, seconds)?;
            println!(
                "LeNet5 head, {} examples, {} libtorch threads, {:.1} MFLOP per coalition",
                report.examples,
                report.threads,
                report.flops_per_evaluation / 1e6
            );
            println!(
                "dense matmul [E,400]x[400,7680]: {:.1} GFLOP/s",
                report.matmul_same_shape_gflops
            );
            println!(
                "dense matmul 2048^3:             {:.1} GFLOP/s",
                report.matmul_square_gflops
            );
            println!(
                "{:>6} {:>14} {:>10} {:>12}",
                "batch", "coalitions/s", "GFLOP/s", "of matmul"
            );
            for r in &report.rates {
                println!(
                    "{:>6} {:>14.1} {:>10.1} {:>11.0}%",
                    r.batch,
                    r.evaluations_per_second,
                    r.gflops,
                    100.0 * r.gflops / report.matmul_same_shape_gflops
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
            println!("{df}");
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
                println!("{kind:<12} {about}");
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
    println!("A: {}", file_a.display());
    println!("B: {}", file_b.display());
    if !comparison.roles.ignored.is_empty() {
        println!("ignored: {}", comparison.roles.ignored.join(", "));
    }
    // polars reads its printing limits from the environment: every row, no wrapping.
    std::env::set_var("POLARS_FMT_MAX_ROWS", joined.height().to_string());
    std::env::set_var("POLARS_FMT_MAX_COLS", "256");
    std::env::set_var("POLARS_FMT_STR_LEN", "48");
    std::env::set_var("POLARS_TABLE_WIDTH", "-1");
    println!("{joined}");
    println!("{}", comparison.summary);
    gtap_engine::table::write_parquet(out, &mut joined)?;
    println!("wrote   {}", out.display());
    Ok(())
}
