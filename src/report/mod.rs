//! Stage last: report. The dry-run plan and the end-of-run summary, as text for a terminal or
//! one JSON object for log pipelines. Nothing here touches the network or the database.

use std::fmt::Write as _;

use chrono::NaiveDate;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};

use crate::config::Config;
use crate::config::env::DatabaseSettings;
use std::collections::BTreeMap;

use crate::domain::{Security, SecurityWindow, Source, WindowReason};
use crate::job::JobOptions;
use crate::job::features::Inputs;
use crate::job::store::StoredFeature;
use crate::job::validate::DropCounts;
use crate::job::{RunReport, SecurityOutcome};

/// What a run would do, for `--dry-run`. Shows the database target with its password redacted.
#[must_use]
#[allow(clippy::too_many_arguments)] // one line of the plan each
pub fn plan(
    config: &Config,
    options: &JobOptions,
    database: &DatabaseSettings,
    windows: &Result<BTreeMap<String, SecurityWindow>, String>,
) -> String {
    let JobOptions {
        window,
        client,
        apply_migrations,
        shard,
        ..
    } = options;
    let (apply_migrations, shard) = (*apply_migrations, *shard);
    let memory = options.memory.as_ref();
    let selected: Vec<&Security> = options.securities.iter().collect();
    let mut out = String::new();
    let enabled = config.securities.iter().filter(|s| s.enabled).count();
    let _ = writeln!(out, "market-encoder dry run: nothing is fetched or written");
    let _ = writeln!(
        out,
        "config:     {} ({} securities, {enabled} enabled)",
        config.path.display(),
        config.securities.len()
    );
    let _ = writeln!(out, "window:     {window} ({} days)", window.days());
    let _ = writeln!(
        out,
        "yahoo:      {} (batch {}, {} req/s, {} retries, timeout {}s)",
        client.base_url,
        config.encoding.batch_size,
        client.requests_per_second,
        client.retry.max_retries,
        client.timeout.as_secs()
    );
    if let Some(tiingo) = &options.tiingo {
        let on = selected
            .iter()
            .filter(|s| s.source == Source::Tiingo)
            .count();
        let _ = writeln!(
            out,
            "tiingo:     {} ({on} securities, {} req/hour, key from $TIINGO_API_KEY{})",
            tiingo.base_url,
            tiingo.requests_per_hour,
            if tiingo.token.is_some() {
                ""
            } else {
                " (not set)"
            }
        );
    }
    let _ = writeln!(out, "fetch:      {}", fetch_estimate(options));
    let _ = writeln!(
        out,
        "database:   {database} (migrations {})",
        if apply_migrations {
            "applied on start"
        } else {
            "not applied: --no-migrate"
        }
    );
    match memory {
        Some(m) => {
            let _ = writeln!(
                out,
                "chroma:     {} (documents: last {} days per security)",
                m.chroma, config.encoding.embedding_days
            );
            let _ = writeln!(out, "embedding:  {}", m.embedder);
        }
        None => {
            let _ = writeln!(out, "chroma:     skipped (--no-embeddings)");
        }
    }
    if let Some(plan) = &options.features {
        let _ = writeln!(
            out,
            "features:   {} per trade date from {} (correlations {} returns, momentum {}, credit spread {})",
            plan.features.len(),
            plan.symbols().join(" "),
            config.features.correlation_days,
            config.features.momentum_days,
            config.features.spread_days
        );
    } else {
        let _ = writeln!(out, "features:   skipped (features.enabled: false)");
    }
    match shard {
        Some(shard) => {
            let _ = writeln!(
                out,
                "shard:      {shard} (sorted by db_symbol, positions p with p % {} == {})",
                shard.count(),
                shard.index()
            );
        }
        None => {
            let _ = writeln!(out, "shard:      none (all selected securities)");
        }
    }
    match windows {
        Ok(_) => {
            let _ = writeln!(
                out,
                "windows:    per security, from its stored bars: daily, catch-up (max {} days back) or first sight (history_days {})",
                config.encoding.max_catch_up_days, config.encoding.history_days
            );
        }
        Err(reason) => {
            let _ = writeln!(
                out,
                "windows:    cannot know them ({reason}): each security shows the configured window; a security without stored bars gets history_days {}, a gap since its last bar is filled (max {} days back)",
                config.encoding.history_days, config.encoding.max_catch_up_days
            );
        }
    }
    let _ = writeln!(out, "selected:   {} securities", selected.len());
    for category in config.categories() {
        let in_category: Vec<&&Security> = selected
            .iter()
            .filter(|s| &s.category == category)
            .collect();
        if in_category.is_empty() {
            continue;
        }
        let _ = writeln!(out, "  {category} ({}):", in_category.len());
        for s in in_category {
            let (shown, reason) = match windows
                .as_ref()
                .ok()
                .and_then(|w| w.get(s.db_symbol.as_str()))
            {
                Some(w) => (w.window, w.reason),
                None => (*window, WindowReason::Unknown),
            };
            let _ = writeln!(
                out,
                "    {:<10} -> {:<8} {:<6} {}  [{shown}, {}]",
                s.yahoo_symbol.as_str(),
                s.db_symbol.as_str(),
                s.source.as_str(),
                s.name,
                reason.as_str()
            );
        }
    }
    out
}

/// What fetching the selection takes: one request per security, at the polite rate (or
/// `batch_size` requests per typical answer time, if that is slower), and what bounds it.
#[must_use]
pub fn fetch_estimate(options: &JobOptions) -> String {
    /// What one chart answer takes from a cloud node, typically.
    const TYPICAL_ANSWER_SECS: f64 = 0.3;
    let client = &options.client;
    let requests = options.securities.len();
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let (n, rate, width) = (
        requests as f64,
        f64::from(client.requests_per_second.get()),
        options.batch_size.max(1) as f64,
    );
    let secs = (n / rate).max(n * TYPICAL_ANSWER_SECS / width).ceil();
    let throttle = &client.throttle;
    format!(
        "~{secs:.0} s for {requests} requests ({} request(s)/s, {} in flight); at most {} requests (encoding.max_requests); {} throttled answers in a row pause every fetch for {} s, up to {} time(s), then the rest is skipped",
        client.requests_per_second,
        options.batch_size,
        throttle.max_requests,
        throttle.after,
        throttle.pause.as_secs(),
        throttle.max_pauses
    )
}

/// One line of `market-encoder check`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckLine {
    pub name: &'static str,
    pub ok: bool,
    /// What was seen, and when it failed, what to do.
    pub detail: String,
}

/// `ok    database  ...` / `FAIL  yahoo     ...`, one line per check.
#[must_use]
pub fn check_lines(lines: &[CheckLine]) -> String {
    lines
        .iter()
        .map(|l| {
            format!(
                "{:<5} {:<9} {}\n",
                if l.ok { "ok" } else { "FAIL" },
                l.name,
                l.detail
            )
        })
        .collect()
}

/// `{"ok": bool, "checks": [...]}` on one line.
#[must_use]
pub fn check_json(lines: &[CheckLine]) -> String {
    serde_json::json!({ "ok": lines.iter().all(|l| l.ok), "checks": lines }).to_string()
}

/// The summary as a table, one row per security.
#[must_use]
pub fn table(report: &RunReport) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header([
        "symbol", "category", "fetched", "written", "first", "last", "outcome", "error",
    ]);
    for s in &report.securities {
        let date =
            |d: Option<chrono::NaiveDate>| d.map_or_else(|| "-".to_owned(), |d| d.to_string());
        table.add_row([
            s.db_symbol.clone(),
            s.category.clone(),
            s.rows_fetched.to_string(),
            s.rows_written.to_string(),
            date(s.first_date),
            date(s.last_date),
            outcome_word(s.outcome).to_owned(),
            s.error.clone().unwrap_or_default(),
        ]);
    }
    let index = match &report.index {
        None => String::new(),
        Some(i) => match &i.error {
            None => format!("; {} documents indexed", i.documents_indexed),
            Some(e) => format!(
                "; indexing FAILED after {} documents: {e}",
                i.documents_indexed
            ),
        },
    };
    let features = match &report.features {
        None => String::new(),
        Some(f) => match &f.error {
            None => format!(
                "; {} feature rows written ({} features x {} dates, {} NULL)",
                f.rows_written, f.features, f.dates, f.null_values
            ),
            Some(e) => format!("; features FAILED: {e}"),
        },
    };
    // What changed the stored history, one line per security: rebases and new actions.
    let mut history = String::new();
    for r in &report.securities {
        if let Some(rebased) = &r.rebased {
            history.push_str(&format!("{}: {rebased}\n", r.db_symbol));
        } else if !r.new_actions.is_empty() {
            history.push_str(&format!(
                "{}: {} stored\n",
                r.db_symbol,
                r.new_actions.join(", ")
            ));
        }
    }
    let skipped = match (report.securities_skipped, &report.requests.retry_at) {
        (0, _) => String::new(),
        (n, Some(at)) => format!(
            ", {n} skipped (rate-limited: rerun after {})",
            at.format("%H:%M UTC")
        ),
        (n, None) => format!(", {n} skipped (request budget spent)"),
    };
    let requests = &report.requests;
    let pauses = match requests.pauses {
        0 => String::new(),
        n => format!(", {n} throttle pause(s)"),
    };
    let dropped = if report.dropped.total() == 0 {
        String::new()
    } else {
        format!("; bars dropped: {}", dropped_line(&report.dropped))
    };
    format!(
        "{table}\n{history}run {} {}: {} of {} securities succeeded, {} failed{skipped}, {} rows written{features}{index}{dropped}, {} of {} requests{pauses}, window {}, {:.1}s\n",
        report.run_id,
        report.outcome.as_str(),
        report.securities_ok,
        report.securities_total,
        report.securities_failed,
        report.rows_written,
        requests.requests_sent,
        requests.max_requests,
        report.window,
        report.elapsed_ms as f64 / 1000.0
    )
}

/// `3 null, 1 out of range` (only the reasons that occurred).
fn dropped_line(d: &DropCounts) -> String {
    d.reasons()
        .into_iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|(n, reason, _)| format!("{n} {reason}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The summary as one JSON line (`{"summary": {...}}`).
#[must_use]
pub fn json_line(report: &RunReport) -> String {
    serde_json::json!({ "summary": report }).to_string()
}

/// One line for the operator when the run did not fully succeed.
#[must_use]
pub fn failure_line(report: &RunReport) -> Option<String> {
    let failed: Vec<String> = report
        .securities
        .iter()
        .filter(|s| s.outcome == SecurityOutcome::Failed)
        .map(|s| s.db_symbol.clone())
        .collect();
    let not_done = report
        .securities
        .iter()
        .filter(|s| s.outcome == SecurityOutcome::Interrupted)
        .count();
    if let Some(stopped) = &report.requests.stopped
        && report.securities_skipped > 0
    {
        let failed = match failed.len() {
            0 => String::new(),
            n => format!("; {n} failed ({})", failed.join(", ")),
        };
        return Some(format!(
            "market-encoder: {} of {} securities {stopped}{failed}; prices fetched before that are stored (run {})",
            report.securities_skipped, report.securities_total, report.run_id
        ));
    }
    if failed.is_empty()
        && not_done == 0
        && let Some(error) = report.features.as_ref().and_then(|f| f.error.as_ref())
    {
        return Some(format!(
            "market-encoder: prices, indicators and documents stored, but the cross-asset features failed: {error}; the next run recomputes them (run {})",
            report.run_id
        ));
    }
    if failed.is_empty()
        && not_done == 0
        && let Some(error) = report.index.as_ref().and_then(|i| i.error.as_ref())
    {
        return Some(format!(
            "market-encoder: prices, indicators and documents stored, but indexing failed: {error}; the next run catches up (run {})",
            report.run_id
        ));
    }
    match (failed.is_empty(), not_done) {
        (true, 0) => None,
        (false, _) => Some(format!(
            "market-encoder: {} of {} securities failed ({}); run {} has the details",
            failed.len(),
            report.securities_total,
            failed.join(", "),
            report.run_id
        )),
        (true, n) => Some(format!(
            "market-encoder: interrupted; {n} of {} securities were not processed (rerun to catch up); run {}",
            report.securities_total, report.run_id
        )),
    }
}

/// The `features` command's table: feature, value, inputs, then "N of M features present".
#[must_use]
pub fn features_table(date: NaiveDate, features: &[StoredFeature]) -> String {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(["feature", "value", "inputs"]);
    for f in features {
        let inputs = serde_json::from_value::<Inputs>(f.inputs.clone())
            .map_or_else(|_| f.inputs.to_string(), |i| i.to_string());
        table.add_row([
            f.feature.clone(),
            f.value
                .map_or_else(|| "NULL".to_owned(), |v| format!("{v:.6}")),
            inputs,
        ]);
    }
    let present = features.iter().filter(|f| f.value.is_some()).count();
    format!(
        "cross-asset features for {date}\n{table}\n{present} of {} features present\n",
        features.len()
    )
}

/// The `features` command's JSON: `{"date", "features": {name: value or null}, "present",
/// "expected"}`.
#[must_use]
pub fn features_json(date: NaiveDate, features: &[StoredFeature]) -> String {
    features_value(date, features).to_string()
}

/// [`features_json`] as a JSON value (the body of `GET /ml-features`).
#[must_use]
pub fn features_value(date: NaiveDate, features: &[StoredFeature]) -> serde_json::Value {
    let values: serde_json::Map<String, serde_json::Value> = features
        .iter()
        .map(|f| (f.feature.clone(), serde_json::json!(f.value)))
        .collect();
    serde_json::json!({
        "date": date,
        "features": values,
        "present": features.iter().filter(|f| f.value.is_some()).count(),
        "expected": features.len(),
    })
}

fn outcome_word(outcome: SecurityOutcome) -> &'static str {
    match outcome {
        SecurityOutcome::Succeeded => "ok",
        SecurityOutcome::Failed => "FAILED",
        SecurityOutcome::Interrupted => "not done",
        SecurityOutcome::Skipped => "skipped",
    }
}
