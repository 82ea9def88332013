//! The `viewcounter` binary: parse the configuration (bad configuration -> exit 2 with
//! one line on stderr), start logging, build the app, run until SIGINT/SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use viewcounter::config::{parse_worker_threads, Command};
use viewcounter::{logging, shutdown, App, Config};

fn bad_config(message: &str) -> ExitCode {
    eprintln!("viewcounter: configuration error: {message}");
    ExitCode::from(2)
}

/// tokio reads `TOKIO_WORKER_THREADS` when `--worker-threads` is not given, and panics
/// on a value that is not a positive integer: it is held to the flag's rule instead.
fn check_tokio_worker_threads(config: &Config) -> Result<(), String> {
    if config.worker_threads.is_some() {
        return Ok(());
    }
    match std::env::var("TOKIO_WORKER_THREADS") {
        Err(std::env::VarError::NotPresent) => Ok(()),
        Ok(v) => parse_worker_threads(&v)
            .map(|_| ())
            .map_err(|e| format!("TOKIO_WORKER_THREADS {e} (or set --worker-threads)")),
        Err(e) => Err(format!("TOKIO_WORKER_THREADS: {e}")),
    }
}

fn main() -> ExitCode {
    let config = match Config::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            let line = text.lines().next().unwrap_or("invalid arguments");
            return bad_config(line.trim_start_matches("error: "));
        }
    };
    if let Some(Command::Sign(args)) = &config.command {
        println!("{}", args.attributes(viewcounter::clock::unix_secs()));
        return ExitCode::SUCCESS;
    }
    if let Err(message) = config.validate().and_then(|()| check_tokio_worker_threads(&config)) {
        return bad_config(&message);
    }
    logging::init(config.log_format);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.worker_threads {
        runtime.worker_threads(n);
    }
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("viewcounter: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("viewcounter: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let app = App::build(config).await?;
    tracing::info!(addr = %app.public_addr(), metrics = ?app.metrics_addr(), "listening");
    app.run_until(shutdown::on_signal()).await
}
