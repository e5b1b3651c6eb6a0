//! `fake-yahoo`: serve the fake Yahoo chart endpoint until SIGTERM/SIGINT.
//!
//! The first line on stdout is `listening on http://IP:PORT`, for scripts to find the port.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use chrono::NaiveDate;
use clap::Parser;
use fake_yahoo::{CorporateAction, FakeYahoo, Options, Scenario, Throttling};

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
    /// synthetic), flaky-429 (one 429 with Retry-After: 1, then synthetic),
    /// split:YYYY-MM-DD:N:D (an N:D split), dividend:YYYY-MM-DD:AMOUNT; splits and dividends
    /// given for one symbol add up (Scenario::Actions).
    #[arg(long = "scenario", value_name = "SYMBOL=KIND", value_parser = parse_scenario)]
    scenarios: Vec<(String, Scenario)>,
    /// N:KIND: every chart request after the first N is throttled as Yahoo throttles a run.
    /// KIND: plain (429 "Too Many Requests"), edge (429 "Edge: Too Many Requests"), html (429
    /// with an HTML page), outage (200 with a "Will be right back" page), empty (200, no body).
    #[arg(long, value_name = "N:KIND", value_parser = parse_throttle)]
    throttle_after: Option<(usize, Throttling)>,
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
        other => match parse_action(other) {
            Some(Ok(action)) => Scenario::Actions(vec![action]),
            Some(Err(e)) => return Err(format!("{e} in {arg:?}")),
            None => return Err(format!("unknown scenario kind {other:?}")),
        },
    };
    Ok((symbol.to_string(), scenario))
}

/// `40:plain`.
fn parse_throttle(arg: &str) -> Result<(usize, Throttling), String> {
    let (n, kind) = arg
        .split_once(':')
        .ok_or_else(|| format!("expected N:KIND, got {arg:?}"))?;
    let n = n
        .parse()
        .map_err(|e| format!("bad request count {n:?} ({e})"))?;
    Ok((n, kind.parse()?))
}

/// `split:2024-06-10:10:1` or `dividend:2024-06-20:0.5`; `None` for other kinds.
fn parse_action(kind: &str) -> Option<Result<CorporateAction, String>> {
    let (name, rest) = kind.split_once(':')?;
    let is_split = match name {
        "split" => true,
        "dividend" => false,
        _ => return None,
    };
    Some(action_from(is_split, rest))
}

fn action_from(is_split: bool, rest: &str) -> Result<CorporateAction, String> {
    let number = |s: &str| {
        s.parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x > 0.0)
            .ok_or_else(|| format!("expected a positive number, got {s:?}"))
    };
    let (date, value) = rest.split_once(':').unwrap_or((rest, ""));
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d")
        .map_err(|e| format!("bad date {date:?} ({e})"))?;
    if is_split {
        let (n, d) = value
            .split_once(':')
            .ok_or_else(|| format!("expected a ratio N:D, got {value:?}"))?;
        Ok(CorporateAction::Split {
            date,
            numerator: number(n)?,
            denominator: number(d)?,
        })
    } else {
        Ok(CorporateAction::Dividend {
            date,
            amount: number(value)?,
        })
    }
}

/// Later --scenario flags for a symbol replace earlier ones, except that actions add up.
fn merge(scenarios: Vec<(String, Scenario)>) -> Vec<(String, Scenario)> {
    let mut merged: Vec<(String, Scenario)> = Vec::new();
    for (symbol, scenario) in scenarios {
        let previous = merged.iter_mut().find(|(s, _)| *s == symbol);
        match (previous, scenario) {
            (Some((_, Scenario::Actions(all))), Scenario::Actions(more)) => all.extend(more),
            (Some((_, slot)), scenario) => *slot = scenario,
            (None, scenario) => merged.push((symbol, scenario)),
        }
    }
    merged
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
    if let Some((n, kind)) = cli.throttle_after {
        server.throttle_after(n, kind);
    }
    for (symbol, scenario) in merge(cli.scenarios) {
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
