//! `fake-yahoo`: serve the fake Yahoo chart endpoint until SIGTERM/SIGINT.
//!
//! The first line on stdout is `listening on http://IP:PORT`, for scripts to find the port.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use fake_yahoo::{FakeYahoo, Options, Scenario};

#[derive(Debug, Parser)]
#[command(
    name = "fake-yahoo",
    version,
    about = "Local stand-in for Yahoo Finance's /v8/finance/chart endpoint"
)]
struct Cli {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: SocketAddr,
    /// Delay added before every response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Seed of the synthetic price series.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// SYMBOL=KIND, repeatable. KIND: delisted, bad-request, rate-limited, server-error,
    /// malformed, empty, error-in-200, drop-connection, synthetic, flaky (one 500, then
    /// synthetic), flaky-429 (one 429 with Retry-After: 1, then synthetic).
    #[arg(long = "scenario", value_name = "SYMBOL=KIND", value_parser = parse_scenario)]
    scenarios: Vec<(String, Scenario)>,
    /// Print one line per request to stderr.
    #[arg(long, short)]
    verbose: bool,
}

/// Splits at the last `=`, since symbols such as `EURUSD=X` contain one.
fn parse_scenario(arg: &str) -> Result<(String, Scenario), String> {
    let (symbol, kind) = arg
        .rsplit_once('=')
        .ok_or_else(|| format!("expected SYMBOL=KIND, got {arg:?}"))?;
    if symbol.is_empty() {
        return Err(format!("empty symbol in {arg:?}"));
    }
    let scenario = match kind {
        "synthetic" => Scenario::Synthetic,
        "delisted" => Scenario::Delisted,
        "bad-request" => Scenario::BadRequest,
        "rate-limited" => Scenario::RateLimited {
            retry_after_secs: None,
        },
        "server-error" => Scenario::ServerError,
        "malformed" => Scenario::Malformed,
        "empty" => Scenario::Empty,
        "error-in-200" => Scenario::ErrorIn200,
        "drop-connection" => Scenario::DropConnection,
        "flaky" => Scenario::Sequence(vec![Scenario::ServerError, Scenario::Synthetic]),
        "flaky-429" => Scenario::Sequence(vec![
            Scenario::RateLimited {
                retry_after_secs: Some(1),
            },
            Scenario::Synthetic,
        ]),
        other => return Err(format!("unknown scenario kind {other:?}")),
    };
    Ok((symbol.to_string(), scenario))
}

async fn stop_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let server = match FakeYahoo::start(Options {
        bind: cli.bind,
        latency: Duration::from_millis(cli.latency_ms),
        seed: cli.seed,
    })
    .await
    {
        Ok(server) => server,
        Err(e) => {
            eprintln!("fake-yahoo: cannot listen on {}: {e}", cli.bind);
            return ExitCode::FAILURE;
        }
    };
    server.set_verbose(cli.verbose);
    for (symbol, scenario) in cli.scenarios {
        server.set_scenario(&symbol, scenario);
    }

    let mut stdout = std::io::stdout().lock();
    if let Err(e) =
        writeln!(stdout, "listening on {}", server.base_url()).and_then(|()| stdout.flush())
    {
        eprintln!("fake-yahoo: cannot write to stdout: {e}");
        return ExitCode::FAILURE;
    }
    drop(stdout);

    let result = stop_signal().await;
    server.shutdown().await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fake-yahoo: cannot wait for signals: {e}");
            ExitCode::FAILURE
        }
    }
}
