//! Phase D (`--rebase`): what a split costs. One security with `--years` of history is
//! backfilled before a 10:1 split, then the release binary runs the window that holds the
//! split (the daily run that meets it: a whole-history refetch and rewrite, indicators and
//! documents included), then the same window again with no new event (the daily run as it
//! always is). Each is timed, with the rows and documents it wrote.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use chrono::{Days, NaiveDate};
use fake_yahoo::{CorporateAction, FakeYahoo, Options, Scenario};

use crate::{ScratchDb, path_str, run_measured, succeeded, summary_of};

/// One timed run of the binary: wall time, and the security's summary row.
async fn timed(
    binary: &str,
    config: &Path,
    db: &ScratchDb,
    yahoo: &FakeYahoo,
    from: NaiveDate,
    to: NaiveDate,
) -> anyhow::Result<(Duration, serde_json::Value)> {
    let (output, wall, _) = run_measured(
        tokio::process::Command::new(binary)
            .args(["--config", path_str(config)?, "--no-embeddings"])
            .args(["--from", &from.to_string(), "--to", &to.to_string()])
            .env("DATABASE_URL", &db.url)
            .env("YAHOO_BASE_URL", yahoo.base_url())
            .env("LOG_LEVEL", "warn"),
    )
    .await?;
    succeeded(&output)?;
    let summary = summary_of(&output.stdout)?;
    Ok((wall, summary["summary"]["securities"][0].clone()))
}

/// Runs phase D and appends its lines to `report`.
pub async fn phase(
    report: &mut String,
    binary: &str,
    admin_url: &str,
    dir: &Path,
    from: NaiveDate,
    to: NaiveDate,
    latency: Duration,
) -> anyhow::Result<()> {
    let config = dir.join("rebase.yaml");
    // The rate limit as in phases A and E (`config_yaml`): with the default of 1 request a
    // second the refetch, the run's second request, waits ~0.9 s for the limiter, and the
    // phase would time the limit instead of the rebase.
    std::fs::write(
        &config,
        "securities:\n  stocks:\n    - {symbol: NVDA, name: NVIDIA}\nencoding:\n  requests_per_second: 1000\n",
    )?;
    let split = to - Days::new(20);
    let yahoo = FakeYahoo::start(Options {
        latency,
        ..Options::default()
    })
    .await?;
    yahoo.set_scenario(
        "NVDA",
        Scenario::Actions(vec![CorporateAction::Split {
            date: split,
            numerator: 10.0,
            denominator: 1.0,
        }]),
    );
    let db = ScratchDb::create(admin_url, "rebase").await?;
    let daily_from = to - Days::new(60);
    let before_split = split - Days::new(3);
    let (backfill, _) = timed(binary, &config, &db, &yahoo, from, before_split).await?;
    let (rebase, split_run) = timed(binary, &config, &db, &yahoo, daily_from, to).await?;
    let (daily, daily_run) = timed(binary, &config, &db, &yahoo, daily_from, to).await?;
    db.drop_db().await?;
    if split_run["rebased"].is_null() {
        bail!("the run over the split did not rebase: {split_run}");
    }
    writeln!(
        report,
        "D. a 10:1 split on {split}, one security, {from}..{to} (release binary):"
    )?;
    writeln!(
        report,
        "   backfill before it  {:>10.2} s",
        backfill.as_secs_f64()
    )?;
    writeln!(
        report,
        "   run over the split  {:>10.2} s  ({}; {} rows, {} indicator rows, {} documents rewritten)",
        rebase.as_secs_f64(),
        split_run["rebased"].as_str().unwrap_or(""),
        split_run["rows_written"],
        split_run["indicators_written"],
        split_run["documents_written"]
    )?;
    writeln!(
        report,
        "   next daily run      {:>10.2} s  ({} rows, {} documents written)",
        daily.as_secs_f64(),
        daily_run["rows_written"],
        daily_run["documents_written"]
    )?;
    Ok(())
}
