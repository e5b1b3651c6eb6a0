//! From parsed arguments to an exit code: load configuration and environment, then run the job,
//! the migrations, or the dry run. `main` only sets up logging and signals around this.

mod check;

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::cli::{Cli, Command, FeaturesArgs, JobArgs, PnlArgs, RunArgs, ServeArgs, SimilarArgs};
use crate::config::env::{
    DatabaseSettings, EnvValue, SettingsError, TiingoSettings, api_key, collect_token,
    hub_endpoint, indexed_job_shard, model_cache, model_dir, yahoo_base_url, yahoo_user_agent,
};
use crate::config::{Config, ConfigError, EmbeddingSettings, FeatureSettings};
use std::collections::BTreeMap;

use crate::domain::{DateWindow, DomainError, Role};
use crate::domain::{Security, SecurityWindow, Source};
use crate::job::embed::{EmbedError, EmbedderSource, ModelSource, OpenAiSettings};
use crate::job::features::{Plan, PlanSettings};
use crate::job::fetch::tiingo::TiingoOptions;
use crate::job::fetch::{ClientOptions, RetryPolicy, ThrottleSettings};
use crate::job::index::{ChromaSettings, IndexError};
use crate::job::store::{RunOutcome, Store, StoreError};
use crate::job::{self, ContextSymbols, JobError, JobOptions, MemoryOptions};
use crate::read::features::{self, FeaturesError};
use crate::read::pnl::{self, PnlError};
use crate::read::similar::{self, Condition, Filter, SearchError, Target};
use crate::report;
use crate::serve::{self, ServeError, ServeOptions};
use crate::support;

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
    /// stage failed (Chroma unreachable, model missing); the next run catches up. For
    /// `similar`: Chroma or the embedding model failed.
    Index = 5,
    /// The process could not set itself up (the async runtime or the signal handlers would
    /// not start): nothing was done. 70 is `EX_SOFTWARE` of sysexits.h.
    Internal = 70,
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
    #[error(transparent)]
    Search(#[from] SearchError),
    #[error(transparent)]
    Pnl(#[from] PnlError),
    #[error(transparent)]
    Serve(#[from] ServeError),
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
            Self::Job(JobError::Fetch(_) | JobError::Source(_)) => Exit::Partial,
            Self::Job(JobError::Lost { .. }) => Exit::Database,
            Self::Search(SearchError::Index(
                IndexError::NoCollection { .. } | IndexError::ModelMismatch { .. },
            )) => Exit::Usage,
            Self::Search(
                SearchError::Index(_) | SearchError::Embed(_) | SearchError::EmptyEmbedding { .. },
            ) => Exit::Index,
            Self::Search(_) => Exit::Usage,
            Self::Pnl(PnlError::Store(e)) => store(e),
            Self::Pnl(_) => Exit::Usage,
            Self::Serve(ServeError::Bind { .. }) => Exit::Usage,
            Self::Serve(ServeError::Store(e)) => store(e),
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
        Some(Command::Similar(ref args)) => similar(&cli.run.config, args, env).await,
        Some(Command::Pnl(ref args)) => pnl(&cli.run.config, args, env).await,
        Some(Command::Serve(ref args)) => serve(&cli.run.config, args, env, cancel).await,
        Some(Command::Check(ref args)) => check::check(&cli.run.config, args, env).await,
        None => run_job(&cli.run, env, cancel, stopped_by).await,
    }
}

async fn migrate(env: &dyn Fn(&'static str) -> EnvValue) -> Result<Exit, AppError> {
    let database = DatabaseSettings::from_env(env)?;
    let store = Store::connect(&database, 1).await?;
    store.migrate().await?;
    let (versions, _) = store.migration_state().await?;
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
    let (date, rows) = features::read_stored(&store, args.date).await?;
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
    let JobPlan {
        config,
        options,
        database,
    } = job_plan(
        &args.config,
        &args.job,
        env,
        Utc::now().date_naive(),
        !args.dry_run,
    )?;

    if args.dry_run {
        let windows = dry_run_windows(&options, &database).await;
        print!("{}", report::plan(&config, &options, &database, &windows));
        require_tiingo_key(&options)?;
        if let Some(memory) = &options.memory {
            require_api_key(memory)?;
        }
        return Ok(Exit::Success);
    }

    info!(config = %config.path.display(), securities = options.securities.len(), shard = options.shard.map(|s| s.to_string()), window = %options.window, database = %database, "starting");
    let report = job::run(&options, &database, cancel).await?;
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

/// The windows a run would fetch, if the database answers within 3 s; else why not (the
/// password redacted). Read-only: no migration, no lock.
async fn dry_run_windows(
    options: &JobOptions,
    database: &DatabaseSettings,
) -> Result<BTreeMap<String, SecurityWindow>, String> {
    let store =
        Store::connect_lazy(database, 1, Duration::from_secs(3)).map_err(|e| e.to_string())?;
    let asked = tokio::time::timeout(Duration::from_secs(5), job::windows(&store, options)).await;
    match asked {
        Ok(Ok(windows)) => Ok(windows),
        Ok(Err(e)) => Err(format!(
            "database unreachable: {}",
            support::text::one_line(&e.to_string())
        )),
        Err(_) => Err(format!("database {database} did not answer within 5 s")),
    }
}

/// What a run needs, from its flags, the securities file and the environment.
struct JobPlan {
    config: Config,
    options: JobOptions,
    database: DatabaseSettings,
}

/// Builds a run: the one-shot run (the CronJob) and every run of `serve` come from here, so
/// they select the same securities with the same client, stages and database. `today` sets the
/// window's default end. `check_api_key`: an embedding provider whose key variable is unset is
/// an error now (a dry run shows it in its plan first).
fn job_plan(
    config: &Path,
    args: &JobArgs,
    env: &dyn Fn(&'static str) -> EnvValue,
    today: NaiveDate,
    check_api_key: bool,
) -> Result<JobPlan, AppError> {
    let config = Config::load(config)?;
    let selected: Vec<Security> = config
        .select(&args.categories, &args.symbols)?
        .into_iter()
        .cloned()
        .collect();
    let shard = match args.shard {
        Some(shard) => Some(shard),
        None => indexed_job_shard(env)?,
    };
    let securities = match shard {
        Some(shard) => shard.select(selected, |s: &Security| s.db_symbol.as_str()),
        None => selected,
    };
    let window = window(args, config.encoding.days_back, today)?;
    let database = DatabaseSettings::from_env(env)?;
    let client = yahoo_client_options(&config, env, securities.len())?;
    let tiingo = tiingo_options(env, &securities, &client)?;
    let memory = match (args.no_embeddings, check_api_key) {
        (true, _) => None,
        (false, true) => Some(memory_options(env, &config)?),
        (false, false) => Some(memory_plan(env, &config)?),
    };
    let options = JobOptions {
        window,
        securities,
        batch_size: config.encoding.batch_size.get(),
        embedding_days: config.encoding.embedding_days,
        history_days: config.encoding.history_days,
        max_catch_up_days: config.encoding.max_catch_up_days,
        backfill: args.from.is_some(),
        apply_migrations: !args.no_migrate,
        client,
        tiingo,
        memory,
        features: config
            .features
            .enabled
            .then(|| feature_plan(&config.features)),
        shard,
        context: ContextSymbols {
            vix: config.features.symbol(Role::Vix).cloned(),
            dollar: config.features.symbol(Role::Dxy).cloned(),
        },
    };
    if check_api_key {
        require_tiingo_key(&options)?;
    }
    Ok(JobPlan {
        config,
        options,
        database,
    })
}

/// The Yahoo client's settings for a run over `securities` securities.
fn yahoo_client_options(
    config: &Config,
    env: &dyn Fn(&'static str) -> EnvValue,
    securities: usize,
) -> Result<ClientOptions, AppError> {
    let encoding = &config.encoding;
    Ok(ClientOptions {
        base_url: yahoo_base_url(env)?,
        user_agent: yahoo_user_agent(env)?,
        timeout: encoding.request_timeout,
        requests_per_second: encoding.requests_per_second,
        retry: RetryPolicy {
            max_retries: encoding.max_retries,
            base: encoding.retry_base,
            max: encoding.retry_max.max(Duration::from_millis(1)),
        },
        throttle: ThrottleSettings {
            after: encoding.throttle_after,
            pause: encoding.throttle_pause,
            max_pauses: encoding.throttle_max_pauses,
            max_requests: encoding.request_budget(securities),
        },
    })
}

/// Tiingo's client settings when some of `securities` is on Tiingo (`TIINGO_*`, with the
/// encoding section's timeout and retries), else `None`: a run that needs no Tiingo neither
/// reads nor needs `TIINGO_API_KEY`.
fn tiingo_options(
    env: &dyn Fn(&'static str) -> EnvValue,
    securities: &[Security],
    yahoo: &ClientOptions,
) -> Result<Option<TiingoOptions>, AppError> {
    if !securities.iter().any(|s| s.source == Source::Tiingo) {
        return Ok(None);
    }
    let settings = TiingoSettings::from_env(env)?;
    Ok(Some(TiingoOptions {
        base_url: settings.base_url,
        token: settings.token,
        timeout: yahoo.timeout,
        requests_per_hour: settings.requests_per_hour,
        retry: yahoo.retry,
    }))
}

/// A selected security on Tiingo without `TIINGO_API_KEY` is a configuration error (exit 2)
/// naming the variable and the securities.
fn require_tiingo_key(options: &JobOptions) -> Result<(), AppError> {
    match &options.tiingo {
        Some(tiingo) if tiingo.token.is_none() => {
            let on: Vec<&str> = options
                .securities
                .iter()
                .filter(|s| s.source == Source::Tiingo)
                .map(|s| s.db_symbol.as_str())
                .collect();
            let shown = if on.len() > 5 {
                format!("{} and {} more", on[..5].join(", "), on.len() - 5)
            } else {
                on.join(", ")
            };
            Err(SettingsError::MissingTiingoKey {
                securities: format!("{} selected securities ({shown})", on.len()),
            }
            .into())
        }
        _ => Ok(()),
    }
}

/// The features stage's plan from the config's `features:` section.
fn feature_plan(settings: &FeatureSettings) -> Plan {
    Plan::new(&PlanSettings {
        roles: &settings.roles,
        correlation_days: settings.correlation_days,
        momentum_days: settings.momentum_days,
        spread_days: settings.spread_days,
        correlations: &settings.correlations,
    })
}

/// `market-encoder serve`: the job as an HTTP service until SIGTERM/SIGINT (then exit 0).
/// Everything a run needs is checked now, so a bad config or environment exits 2 at start
/// rather than failing every run; the database may be down (`/ready` says so).
async fn serve(
    config: &Path,
    args: &ServeArgs,
    env: &dyn Fn(&'static str) -> EnvValue,
    cancel: &CancellationToken,
) -> Result<Exit, AppError> {
    let plan = job_plan(config, &args.job, env, Utc::now().date_naive(), true)?;
    let options = ServeOptions {
        bind: args.bind,
        every: args.every,
        collect_token: collect_token(env)?,
        days_back: plan.config.encoding.days_back,
        job_args: args.job.clone(),
        job: plan.options,
        database: plan.database,
    };
    info!(config = %plan.config.path.display(), securities = options.job.securities.len(), database = %options.database, "serving");
    serve::run(options, cancel).await?;
    Ok(Exit::Success)
}

/// Chroma and the embedder: `CHROMA_*` from the environment, the provider from the config's
/// `embedding:` section. `local`: `EMBEDDING_MODEL_DIR`, or else the hub (`HF_ENDPOINT`) with a
/// cache under `MARKET_ENCODER_MODEL_CACHE` (default `~/.cache/market-encoder/models`).
/// `openai`: the endpoint, with the key read from the variable `api_key_env` names; that variable
/// being unset is an error (exit 2) naming it.
pub(crate) fn memory_options(
    env: &dyn Fn(&'static str) -> EnvValue,
    config: &Config,
) -> Result<MemoryOptions, AppError> {
    let memory = memory_plan(env, config)?;
    require_api_key(&memory)?;
    Ok(memory)
}

/// [`memory_options`] without the check that the API key is set.
fn memory_plan(
    env: &dyn Fn(&'static str) -> EnvValue,
    config: &Config,
) -> Result<MemoryOptions, AppError> {
    let chroma = ChromaSettings::from_env(env)?;
    let embedder = match &config.embedding {
        EmbeddingSettings::Local => EmbedderSource::Local(local_model(env)?),
        EmbeddingSettings::OpenAi(endpoint) => {
            let mut settings =
                OpenAiSettings::new(endpoint.base_url.clone(), endpoint.model.clone())
                    .with_batch_size(endpoint.batch_size)
                    .with_dimensions(endpoint.dimensions)
                    .with_timeout(endpoint.timeout);
            if let Some(var) = &endpoint.api_key_env {
                settings = settings.with_api_key(var.clone(), api_key(env, var)?);
            }
            EmbedderSource::OpenAi(settings)
        }
    };
    Ok(MemoryOptions {
        chroma,
        embedder,
        batch_size: 256,
    })
}

fn require_api_key(memory: &MemoryOptions) -> Result<(), AppError> {
    match &memory.embedder {
        EmbedderSource::OpenAi(settings) => Ok(settings.require_api_key()?),
        EmbedderSource::Local(_) => Ok(()),
    }
}

/// The local model: `EMBEDDING_MODEL_DIR`, or else the hub.
fn local_model(env: &dyn Fn(&'static str) -> EnvValue) -> Result<ModelSource, AppError> {
    Ok(match model_dir(env) {
        Some(dir) => ModelSource::Dir(dir),
        None => ModelSource::Hub {
            endpoint: hub_endpoint(env)?,
            cache: model_cache(env),
        },
    })
}

/// `similar`: the nearest market days to a stored day or a text, printed as a table or JSON.
/// Reads the config for the symbol and category names and the embedding model; needs Chroma
/// but not the database.
async fn similar(
    config: &Path,
    args: &SimilarArgs,
    env: &dyn Fn(&'static str) -> EnvValue,
) -> Result<Exit, AppError> {
    let config = Config::load(config)?;
    let memory = memory_options(env, &config)?;
    let symbol = args
        .symbol
        .as_deref()
        .map(|s| similar::resolve_symbol(&config, s))
        .transpose()?;
    let category = args
        .category
        .as_deref()
        .map(|c| similar::resolve_category(&config, c))
        .transpose()?;
    let target = match (&symbol, args.date, &args.text) {
        (Some(symbol), Some(date), _) => Target::Day {
            symbol: symbol.clone(),
            date,
        },
        (_, _, Some(text)) => Target::Text(text.clone()),
        // clap requires --date (with --symbol) or --text
        _ => return Ok(Exit::Usage),
    };
    let mut conditions = args
        .conditions
        .iter()
        .map(|c| Condition::parse(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(SearchError::from)?;
    conditions.extend(Condition::dates(args.from, args.to).map_err(SearchError::from)?);
    let filter = Filter {
        symbol: match target {
            Target::Day { .. } if !args.same_symbol => None,
            _ => symbol.clone(),
        },
        category,
        conditions,
    };
    let answer = similar::ask(&memory.chroma, &memory.embedder, target, args.k(), &filter).await?;
    if args.json {
        println!("{}", similar::json_answer(&answer));
    } else {
        print!("{}", similar::table(&answer, &filter));
    }
    Ok(Exit::Success)
}

/// `pnl`: the hypothetical P&L of a position from the stored closes, as text or JSON. Reads
/// the config only to resolve the symbol; reads the database, writes nothing.
async fn pnl(
    config: &Path,
    args: &PnlArgs,
    env: &dyn Fn(&'static str) -> EnvValue,
) -> Result<Exit, AppError> {
    let config = Config::load(config)?;
    let symbol = similar::resolve_symbol(&config, &args.symbol)?;
    if args.exit < args.entry {
        return Err(PnlError::ExitBeforeEntry {
            entry: args.entry,
            exit: args.exit,
        }
        .into());
    }
    let database = DatabaseSettings::from_env(env)?;
    let store = Store::connect(&database, 1).await?;
    let answer = pnl::calculate_hypothetical_pnl(
        &store,
        &symbol,
        args.entry,
        args.exit,
        args.quantity,
        args.position,
    )
    .await?;
    if args.json {
        println!("{}", pnl::json(&answer));
    } else {
        print!("{}", pnl::text(&answer));
    }
    Ok(Exit::Success)
}

/// The date window from `--from/--to`, `--days-back`, or the config's `days_back`.
pub fn window(
    args: &JobArgs,
    default_days_back: u32,
    today: NaiveDate,
) -> Result<DateWindow, AppError> {
    args.window(default_days_back, today)
        .map_err(AppError::Window)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn args(flags: &[&str]) -> JobArgs {
        let mut argv = vec!["market-encoder"];
        argv.extend_from_slice(flags);
        Cli::try_parse_from(argv).unwrap().run.job
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

    const OPENAI_CONFIG: &str = "securities:\n  etfs:\n    - {symbol: SPY, name: SPDR}\nembedding:\n  provider: openai\n  base_url: http://127.0.0.1:11434/v1\n  model: nomic-embed-text\n  api_key_env: MY_EMBEDDINGS_KEY\n  dimensions: 768\n";

    #[test]
    fn the_openai_provider_comes_from_the_config_and_its_key_from_the_named_variable() {
        let config = Config::from_yaml(OPENAI_CONFIG, std::path::Path::new("c.yaml")).unwrap();
        let memory = memory_options(
            &EnvValue::from_pairs(&[("MY_EMBEDDINGS_KEY", " sk-secret \n")]),
            &config,
        )
        .unwrap();
        let EmbedderSource::OpenAi(settings) = &memory.embedder else {
            panic!("{:?}", memory.embedder);
        };
        assert!(settings.has_api_key());
        assert_eq!(settings.api_key_env(), Some("MY_EMBEDDINGS_KEY"));
        assert_eq!(settings.dimensions(), Some(768));
        assert_eq!(memory.embedder.model_id(), "openai:nomic-embed-text");
        assert!(!format!("{memory:?}").contains("sk-secret"));

        for unset in [
            EnvValue::from_pairs(&[]),
            EnvValue::from_pairs(&[("MY_EMBEDDINGS_KEY", "  ")]),
        ] {
            let err = memory_options(&unset, &config).unwrap_err();
            assert_eq!(err.exit(), Exit::Usage);
            assert!(
                err.to_string().starts_with(
                    "environment variable MY_EMBEDDINGS_KEY (embedding.api_key_env) is not set"
                ),
                "{err}"
            );
            // Without the check (the dry run's plan), the source says the key is missing.
            let plan = memory_plan(&unset, &config).unwrap();
            assert!(
                plan.embedder
                    .to_string()
                    .ends_with("key from $MY_EMBEDDINGS_KEY (not set)"),
                "{}",
                plan.embedder
            );
        }
        let not_unicode = |name: &'static str| match name {
            "MY_EMBEDDINGS_KEY" => EnvValue::NotUnicode,
            _ => EnvValue::Absent,
        };
        let err = memory_options(&not_unicode, &config).unwrap_err();
        assert_eq!(err.exit(), Exit::Usage);
        assert!(err.to_string().contains("MY_EMBEDDINGS_KEY"), "{err}");
    }

    #[test]
    fn without_an_embedding_section_the_local_model_is_used() {
        let config = Config::from_yaml(
            "securities:\n  etfs:\n    - {symbol: SPY, name: SPDR}\n",
            std::path::Path::new("c.yaml"),
        )
        .unwrap();
        let memory = memory_options(&EnvValue::from_pairs(&[]), &config).unwrap();
        assert!(matches!(memory.embedder, EmbedderSource::Local(_)));
        assert_eq!(
            memory.embedder.model_id(),
            "sentence-transformers/all-MiniLM-L6-v2"
        );
    }

    #[test]
    fn errors_map_to_exit_codes() {
        let locked = AppError::Store(StoreError::Locked { target: "t".into() });
        assert_eq!(locked.exit(), Exit::Locked);
        let down = AppError::Store(StoreError::Connect {
            target: "t".into(),
            cause: "connection refused".into(),
            source: sqlx::Error::PoolTimedOut,
        });
        assert_eq!(down.exit(), Exit::Database);
        assert_eq!(ExitCode::from(Exit::Terminated), ExitCode::from(143));
        let no_features = AppError::Features(FeaturesError::NoData { target: "t".into() });
        assert_eq!(no_features.exit(), Exit::Usage);
        let features_down = AppError::Features(FeaturesError::Store(StoreError::Connect {
            target: "t".into(),
            cause: "connection refused".into(),
            source: sqlx::Error::PoolTimedOut,
        }));
        assert_eq!(features_down.exit(), Exit::Database);
    }
}
