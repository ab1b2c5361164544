//! The `product-service` binary: `serve` (the default), `migrate` or `dedupe`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use product_service::config::{CommonArgs, Config, WaitArgs};
use product_service::dedupe::{self, DedupeArgs, Outcome};
use product_service::startup::Application;
use product_service::telemetry;

/// mimalloc instead of glibc's malloc: cheaper small allocations, freed from any thread
/// (BENCHMARKS.md, "Service CPU per request"). The library and its tests keep the default.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// With no command, the service serves (`serve`'s settings are the top level's); each command's
/// `--help` lists only the settings it reads.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Race-free upserts of products by (brand, serial, manufacturer)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Box<Config>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve(Box<Config>),
    /// Apply pending database migrations and exit.
    Migrate {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Report keys with more than one row (exit 1 if any); `--apply` merges them.
    Dedupe {
        #[command(flatten)]
        common: CommonArgs,
        #[command(flatten)]
        waits: WaitArgs,
        #[command(flatten)]
        args: DedupeArgs,
    },
}

/// What to run, with the settings it reads (the others at their defaults).
enum Run {
    Serve,
    Migrate,
    Dedupe(DedupeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (run, config) = match cli.command {
        None => (Run::Serve, *cli.serve),
        Some(Command::Serve(config)) => (Run::Serve, *config),
        Some(Command::Migrate { common }) => (
            Run::Migrate,
            Config {
                common,
                ..Config::default()
            },
        ),
        Some(Command::Dedupe {
            common,
            waits,
            args,
        }) => (
            Run::Dedupe(args),
            Config {
                common,
                waits,
                ..Config::default()
            },
        ),
    };
    telemetry::init_logging(&config.common.rust_log);
    let runtime = actix_web::rt::System::new();
    runtime.block_on(async move {
        match run {
            Run::Serve => exit_code(serve(config).await),
            Run::Migrate => exit_code(migrate(config).await),
            // 0: clean, 1: duplicates remain, 2: the command itself failed.
            Run::Dedupe(args) => match dedupe::run(&config, args).await {
                Ok(Outcome::Clean) => ExitCode::SUCCESS,
                Ok(Outcome::Duplicates) => ExitCode::from(1),
                Err(e) => {
                    report_failure(&e.to_string());
                    ExitCode::from(2)
                }
            },
        }
    })
}

fn exit_code(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            report_failure(&message);
            ExitCode::FAILURE
        }
    }
}

fn report_failure(message: &str) {
    log::error!("{message}");
    eprintln!("product-service: {message}");
}

async fn serve(config: Config) -> Result<(), String> {
    let app = Application::build(config)
        .await
        .map_err(|e| e.to_string())?;
    app.run_until_stopped().await.map_err(|e| e.to_string())
}

async fn migrate(config: Config) -> Result<(), String> {
    let applied = product_service::startup::migrate_only(&config)
        .await
        .map_err(|e| e.to_string())?;
    if applied.is_empty() {
        log::info!("no pending migrations");
    }
    for version in applied {
        log::info!("applied migration {version}");
    }
    Ok(())
}
