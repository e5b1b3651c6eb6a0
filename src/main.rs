//! The `market-encoder` binary: parse arguments, set up logging and signals, run, exit with a
//! code that tells a CronJob the truth. Everything else is in the library.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use clap::Parser;
use market_encoder::app::{self, Exit, StopSignal};
use market_encoder::cli::Cli;
use market_encoder::config::env::{self, EnvValue};
use market_encoder::support::logging;
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::warn;

fn main() -> ExitCode {
    let cli = Cli::parse(); // usage errors exit 2 here, with clap's message
    let env = |name: &'static str| EnvValue::from_process(name);
    let (rust_log, log_level) = env::log_filter(&env);
    let filter = match logging::filter(rust_log.as_deref(), log_level.as_deref(), cli.verbose) {
        Ok(filter) => filter,
        Err(e) => {
            eprintln!("market-encoder: {e}");
            return Exit::Usage.into();
        }
    };
    logging::init(filter);
    match start(&cli, &env) {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("market-encoder: {e:#}");
            Exit::Internal.into()
        }
    }
}

fn start(cli: &Cli, env: &dyn Fn(&'static str) -> EnvValue) -> anyhow::Result<Exit> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let cancel = CancellationToken::new();
        let stopped_by: Arc<Mutex<Option<StopSignal>>> = Arc::default();
        watch_signals(cancel.clone(), Arc::clone(&stopped_by))?;
        let result = app::run(cli, env, &cancel, || {
            stopped_by.lock().ok().and_then(|guard| *guard)
        })
        .await;
        Ok(match result {
            Ok(exit) => exit,
            Err(e) => {
                eprintln!("market-encoder: {e}");
                e.exit()
            }
        })
    })
}

/// On SIGTERM (Kubernetes) or SIGINT (Ctrl-C): start nothing new, let in-flight transactions
/// finish or roll back, record the run as interrupted. A second signal exits at once.
fn watch_signals(
    cancel: CancellationToken,
    stopped_by: Arc<Mutex<Option<StopSignal>>>,
) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?;
    tokio::spawn(async move {
        let which = tokio::select! {
            _ = term.recv() => StopSignal::Terminate,
            _ = int.recv() => StopSignal::Interrupt,
        };
        if let Ok(mut guard) = stopped_by.lock() {
            *guard = Some(which);
        }
        warn!(signal = ?which, "stopping: no new securities are started; in-flight work finishes or rolls back");
        cancel.cancel();
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        eprintln!("market-encoder: second signal, exiting now");
        std::process::exit(i32::from(Exit::Terminated as u8));
    });
    Ok(())
}
