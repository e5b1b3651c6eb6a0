//! From parsed arguments to an exit code: load configuration and environment, then run the job,
//! the migrations, or the dry run. `main` only sets up logging and signals around this.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::cli::{Cli, Command, FeaturesArgs, RunArgs};
use crate::config::{Config, ConfigError};
use crate::domain::{DateWindow, DomainError};
use crate::embed::{self, EmbedError};
use crate::features::{FeaturesError, Plan, display_rank};
use crate::fetch::{ClientOptions, RetryPolicy};
use crate::index::{ChromaSettings, IndexError};
use crate::pipeline::{self, JobError, JobOptions, MemoryOptions, ModelSource};
use crate::report;
use crate::settings::{DatabaseSettings, EnvValue, SettingsError, yahoo_base_url};
use crate::store::{RunOutcome, Store, StoreError};

/// The process's exit status, chosen deliberately: a CronJob is judged by it alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every selected security succeeded.
    Success = 0,
    /// Some securities failed; the summary and the `runs` row say which and why.
    Partial = 1,
    /// Configuration, environment or usage error: nothing was done.
    Usage = 2,
    /// The database is unreachable or failing.
    Database = 3,
    /// Another run holds the run lock: nothing was done.
    Locked = 4,
    /// Every security's prices, indicators and documents were stored, but the embed or index
    /// stage failed (Chroma unreachable, model missing); the next run catches up.
    Index = 5,
    /// Stopped by SIGINT.
    Interrupted = 130,
    /// Stopped by SIGTERM (what Kubernetes sends).
    Terminated = 143,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit as u8)
    }
}

/// Why the program could not do what it was asked. Display is the one line the operator sees.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("{0} (check --from/--to)")]
    Window(DomainError),
    #[error(transparent)]
    Job(#[from] JobError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Chroma(#[from] IndexError),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error(transparent)]
    Features(#[from] FeaturesError),
}

impl AppError {
    #[must_use]
    pub fn exit(&self) -> Exit {
        let store = |e: &StoreError| match e {
            StoreError::Locked { .. } => Exit::Locked,
            _ => Exit::Database,
        };
        match self {
            Self::Config(_)
            | Self::Settings(_)
            | Self::Window(_)
            | Self::Chroma(_)
            | Self::Embed(_) => Exit::Usage,
            Self::Store(e)
            | Self::Job(JobError::Store(e))
            | Self::Features(FeaturesError::Store(e)) => store(e),
            Self::Features(FeaturesError::NoData { .. } | FeaturesError::NoDate { .. }) => {
                Exit::Usage
            }
            Self::Job(JobError::Fetch(_)) => Exit::Partial,
        }
    }
}

/// Which signal stopped us, if any, to pick the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
    Interrupt,
    Terminate,
}

/// Runs what `cli` asks. `env` reads environment variables (the process's in production).
pub async fn run(
    cli: &Cli,
    env: &dyn Fn(&'static str) -> EnvValue,
    cancel: &CancellationToken,
    stopped_by: impl Fn() -> Option<StopSignal>,
) -> Result<Exit, AppError> {
    match cli.command {
        Some(Command::Migrate) => migrate(env).await,
        Some(Command::Features(ref args)) => features(args, env).await,
        None => run_job(&cli.run, env, cancel, stopped_by).await,
    }
}

async fn migrate(env: &dyn Fn(&'static str) -> EnvValue) -> Result<Exit, AppError> {
    let database = DatabaseSettings::from_env(env)?;
    let store = Store::connect(&database, 1).await?;
    store.migrate().await?;
    let versions: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(store.pool())
            .await
            .map_err(|e| StoreError::Query {
                doing: "listing applied migrations",
                reason: e.to_string(),
            })?;
    println!(
        "migrations up to date on {database}: {} applied ({})",
        versions.len(),
        versions
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(Exit::Success)
}

/// `market-encoder features`: the stored features of one date as a table or one JSON object.
async fn features(
    args: &FeaturesArgs,
    env: &dyn Fn(&'static str) -> EnvValue,
) -> Result<Exit, AppError> {
    let database = DatabaseSettings::from_env(env)?;
    let store = Store::connect(&database, 1).await?;
    let target = store.target().to_owned();
    let Some(latest) = store
        .latest_feature_date()
        .await
        .map_err(FeaturesError::from)?
    else {
        return Err(FeaturesError::NoData { target }.into());
    };
    let date = args.date.unwrap_or(latest);
    let mut rows = store.features_on(date).await.map_err(FeaturesError::from)?;
    if rows.is_empty() {
        return Err(FeaturesError::NoDate {
            target,
            date,
            latest,
        }
        .into());
    }
    rows.sort_by(|a, b| display_rank(&a.feature).cmp(&display_rank(&b.feature)));
    if args.json {
        println!("{}", report::features_json(date, &rows));
    } else {
        print!("{}", report::features_table(date, &rows));
    }
    Ok(Exit::Success)
}

async fn run_job(
    args: &RunArgs,
    env: &dyn Fn(&'static str) -> EnvValue,
    cancel: &CancellationToken,
    stopped_by: impl Fn() -> Option<StopSignal>,
) -> Result<Exit, AppError> {
    let config = Config::load(&args.config)?;
    let selected = config.select(&args.categories, &args.symbols)?;
    let window = window(args, config.encoding.days_back, Utc::now().date_naive())?;
    let database = DatabaseSettings::from_env(env)?;
    let client = ClientOptions {
        base_url: yahoo_base_url(env)?,
        timeout: config.encoding.request_timeout,
        requests_per_second: config.encoding.requests_per_second,
        retry: RetryPolicy {
            max_retries: config.encoding.max_retries,
            base: config.encoding.retry_base,
            max: config.encoding.retry_max.max(Duration::from_millis(1)),
        },
    };
    let apply_migrations = !args.no_migrate;
    let memory = if args.no_embeddings {
        None
    } else {
        Some(memory_options(env)?)
    };

    if args.dry_run {
        print!(
            "{}",
            report::plan(
                &config,
                &selected,
                &window,
                &client,
                &database,
                apply_migrations,
                memory.as_ref(),
            )
        );
        return Ok(Exit::Success);
    }

    info!(config = %config.path.display(), securities = selected.len(), %window, database = %database, "starting");
    let options = JobOptions {
        window,
        securities: selected.into_iter().cloned().collect(),
        batch_size: config.encoding.batch_size.get(),
        embedding_days: config.encoding.embedding_days,
        apply_migrations,
        client,
        memory,
        features: config
            .features
            .enabled
            .then(|| Plan::from_settings(&config.features)),
    };
    let report = pipeline::run(&options, &database, cancel).await?;
    if std::io::stdout().is_terminal() {
        print!("{}", report::table(&report));
    } else {
        println!("{}", report::json_line(&report));
    }
    if let Some(line) = report::failure_line(&report) {
        eprintln!("{line}");
    }
    let index_failed = report.index.as_ref().is_some_and(|i| i.error.is_some());
    let features_failed = report.features.as_ref().is_some_and(|f| f.error.is_some());
    Ok(match report.outcome {
        RunOutcome::Succeeded => Exit::Success,
        RunOutcome::Partial
            if report.securities_failed == 0 && index_failed && !features_failed =>
        {
            Exit::Index
        }
        RunOutcome::Partial | RunOutcome::Failed => Exit::Partial,
        RunOutcome::Interrupted => match stopped_by() {
            Some(StopSignal::Interrupt) => Exit::Interrupted,
            _ => Exit::Terminated,
        },
    })
}

/// Chroma and the embedding model, from the environment: `CHROMA_*`, and `EMBEDDING_MODEL_DIR`
/// or else the hub (`HF_ENDPOINT`) with a cache under `MARKET_ENCODER_MODEL_CACHE` (default
/// `~/.cache/market-encoder/models`).
fn memory_options(env: &dyn Fn(&'static str) -> EnvValue) -> Result<MemoryOptions, AppError> {
    let chroma = ChromaSettings::from_env(env)?;
    let model = match embed::model_dir_from_env() {
        Ok(dir) => ModelSource::Dir(dir),
        Err(EmbedError::ModelDirUnset) => {
            let cache = match env("MARKET_ENCODER_MODEL_CACHE") {
                EnvValue::Present(dir) if !dir.is_empty() => PathBuf::from(dir),
                _ => match env("HOME") {
                    EnvValue::Present(home) => {
                        PathBuf::from(home).join(".cache/market-encoder/models")
                    }
                    _ => PathBuf::from(".cache/market-encoder/models"),
                },
            };
            ModelSource::Hub {
                endpoint: embed::hub_endpoint_from_env()?,
                cache,
            }
        }
        Err(e) => return Err(e.into()),
    };
    Ok(MemoryOptions {
        chroma,
        model,
        batch_size: 256,
    })
}

/// The date window from `--from/--to`, `--days-back`, or the config's `days_back`.
pub fn window(
    args: &RunArgs,
    default_days_back: u32,
    today: NaiveDate,
) -> Result<DateWindow, AppError> {
    let to = args.to.unwrap_or(today);
    match args.from {
        Some(from) => DateWindow::new(from, to).map_err(AppError::Window),
        None => Ok(DateWindow::days_back(
            to,
            args.days_back.unwrap_or(default_days_back),
        )),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn args(flags: &[&str]) -> RunArgs {
        let mut argv = vec!["market-encoder"];
        argv.extend_from_slice(flags);
        Cli::try_parse_from(argv).unwrap().run
    }

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn window_defaults_to_the_configured_days_back() {
        let w = window(&args(&[]), 60, d("2026-11-21")).unwrap();
        assert_eq!((w.from(), w.to()), (d("2026-09-22"), d("2026-11-21")));
        let w = window(&args(&["--days-back", "5"]), 60, d("2026-11-21")).unwrap();
        assert_eq!(w.from(), d("2026-11-16"));
    }

    #[test]
    fn backfill_window_is_inclusive_and_ordered() {
        let w = window(
            &args(&["--from", "2024-01-02", "--to", "2024-03-29"]),
            60,
            d("2026-11-21"),
        )
        .unwrap();
        assert_eq!(w.to_string(), "2024-01-02..2024-03-29");
        let w = window(&args(&["--from", "2026-11-01"]), 60, d("2026-11-21")).unwrap();
        assert_eq!(w.to(), d("2026-11-21"));
        let err = window(
            &args(&["--from", "2024-03-01", "--to", "2024-01-01"]),
            60,
            d("2026-11-21"),
        )
        .unwrap_err();
        assert_eq!(err.exit(), Exit::Usage);
    }

    #[test]
    fn errors_map_to_exit_codes() {
        let locked = AppError::Store(StoreError::Locked { target: "t".into() });
        assert_eq!(locked.exit(), Exit::Locked);
        let down = AppError::Store(StoreError::Connect {
            target: "t".into(),
            reason: "refused".into(),
        });
        assert_eq!(down.exit(), Exit::Database);
        assert_eq!(ExitCode::from(Exit::Terminated), ExitCode::from(143));
        let no_features = AppError::Features(FeaturesError::NoData { target: "t".into() });
        assert_eq!(no_features.exit(), Exit::Usage);
        let features_down = AppError::Features(FeaturesError::Store(StoreError::Connect {
            target: "t".into(),
            reason: "refused".into(),
        }));
        assert_eq!(features_down.exit(), Exit::Database);
    }
}
