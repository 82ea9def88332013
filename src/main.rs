//! The `viewcounter` binary: parse the configuration (bad configuration -> exit 2 with
//! one line on stderr), start logging, build the app, run until SIGINT/SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use viewcounter::config::Command;
use viewcounter::{logging, shutdown, App, Config};

fn bad_config(message: &str) -> ExitCode {
    eprintln!("viewcounter: configuration error: {message}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let config = match Config::try_parse() {
        Ok(c) => c,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => return bad_config(&clap_line(&e.to_string())),
    };
    if let Some(Command::Sign(args)) = &config.command {
        println!("{}", args.attributes(viewcounter::clock::unix_secs()));
        return ExitCode::SUCCESS;
    }
    if let Err(message) = config.validate() {
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
    // What stops the start (an address in use, a data directory it cannot write, a
    // Redis URL it cannot use) is configuration the operator must fix: status 2, one line.
    let app = match runtime.block_on(App::build(config)) {
        Ok(app) => app,
        Err(e) => return bad_config(&one_line(&e)),
    };
    match runtime.block_on(run(app)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("viewcounter: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// clap's error on one line: its first line often needs the next ones (the missing
/// argument's name, the possible values), not the usage and help hints after them.
fn clap_line(text: &str) -> String {
    let said: Vec<&str> = text
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
        .filter(|l| !l.is_empty() && !l.starts_with("tip:"))
        .collect();
    match said.join(" ") {
        line if line.is_empty() => "invalid arguments".into(),
        line => line.trim_start_matches("error: ").to_string(),
    }
}

/// An error and its causes on one line, each cause left out when the text before it
/// already says it (typed errors often print their source too).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

async fn run(app: App) -> anyhow::Result<()> {
    tracing::info!(addr = %app.public_addr(), metrics = ?app.metrics_addr(), "listening");
    app.run_until(shutdown::on_signal()).await
}
