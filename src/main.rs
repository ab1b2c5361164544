//! The `product-service` binary: `serve` (the default), `migrate` or `dedupe`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use product_service::config::Config;
use product_service::dedupe::{self, DedupeArgs, Outcome};
use product_service::startup::Application;
use product_service::telemetry;

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Race-free upserts of products by (brand, serial, manufacturer)"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Report keys with more than one row (exit 1 if any); `--apply` merges them.
    Dedupe(DedupeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init_logging(&cli.config.rust_log);
    let runtime = actix_web::rt::System::new();
    runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve) {
            Command::Serve => exit_code(serve(cli.config).await),
            Command::Migrate => exit_code(migrate(cli.config).await),
            // 0: clean, 1: duplicates remain, 2: the command itself failed.
            Command::Dedupe(args) => match dedupe::run(&cli.config, args).await {
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
