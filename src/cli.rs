//! Command-line arguments. Every flag a CronJob would set also reads an environment variable.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveDate;
use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::domain::{DateWindow, DomainError, Shard};

#[derive(Debug, Parser)]
#[command(
    name = "market-encoder",
    version,
    about = "Fetch daily bars from Yahoo Finance for the securities in securities.yaml and store them in PostgreSQL.",
    after_help = "Exit codes: 0 all selected securities succeeded; 1 some failed or the cross-asset features did (see the summary and the runs table); \
2 configuration or usage error; 3 database unreachable or failing; 4 another run holds the lock; \
5 prices stored but embedding/indexing failed (Chroma unreachable, model missing), or for `similar` Chroma or the model failed; \
130/143 interrupted by SIGINT/SIGTERM (`serve`: 0).\n\
Environment: DATABASE_URL or DB_HOST, DB_PORT (5432), DB_NAME, DB_USER, DB_PASSWORD; \
YAHOO_BASE_URL; CHROMA_URL, CHROMA_TENANT, CHROMA_DATABASE, CHROMA_TOKEN, CHROMA_COLLECTION; \
EMBEDDING_MODEL_DIR or HF_ENDPOINT; YAHOO_USER_AGENT (optional); COLLECT_TOKEN (`serve`); JOB_COMPLETION_INDEX + MARKET_ENCODER_SHARDS (Indexed Job shard); LOG_LEVEL (INFO) or RUST_LOG."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,

    /// Debug-level logs for market-encoder.
    #[arg(short, long, global = true, env = "MARKET_ENCODER_VERBOSE")]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending database migrations (from migrations/) and exit.
    Migrate,
    /// Print the stored cross-asset features of one trade date (default: the latest) and how
    /// many are present; needs the database only.
    Features(FeaturesArgs),
    /// Find the market days nearest to a stored day (`--symbol S --date D`) or to a description
    /// (`--text "..."`) in the Chroma collection the job fills.
    Similar(SimilarArgs),
    /// Hypothetical P&L of a long or short position between two stored closes.
    Pnl(PnlArgs),
    /// Run as an HTTP service: /health, /ready, /status, /metrics, /ml-features, and runs
    /// started by `POST /collect` (with `Authorization: Bearer $COLLECT_TOKEN`) or `--every`.
    /// Takes the job's flags for its runs; exits 0 on SIGTERM/SIGINT.
    Serve(ServeArgs),
    /// Pre-flight: the config, PostgreSQL (and its migrations), one real chart request to
    /// Yahoo, Chroma (its collection and model) and the embedding model, one line each; exit 0
    /// only if all pass, else the exit code the job would have for the first failure.
    Check(CheckArgs),
}

#[derive(Debug, Args, Clone)]
pub struct CheckArgs {
    /// One JSON object `{"ok", "checks": [{"name", "ok", "detail"}]}` instead of the lines.
    #[arg(long)]
    pub json: bool,

    /// Skip the Chroma and model checks (for a job run with --no-embeddings).
    #[arg(long)]
    pub no_embeddings: bool,
}

#[derive(Debug, Args, Clone)]
pub struct FeaturesArgs {
    /// The trade date (YYYY-MM-DD; default: the latest date with features).
    #[arg(long)]
    pub date: Option<NaiveDate>,

    /// One JSON object `{"date", "features": {name: value or null}, "present", "expected"}`
    /// instead of the table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct PnlArgs {
    /// The security (symbol, yahoo_symbol or db_symbol).
    #[arg(long)]
    pub symbol: String,

    /// Entry date (YYYY-MM-DD); a day with no bar rolls forward to the next trading day.
    #[arg(long)]
    pub entry: NaiveDate,

    /// Exit date (YYYY-MM-DD); a day with no bar rolls back to the previous trading day.
    #[arg(long)]
    pub exit: NaiveDate,

    /// Units held (> 0; fractions allowed).
    #[arg(long)]
    pub quantity: crate::domain::Quantity,

    /// long or short.
    #[arg(long, value_enum, default_value_t = crate::domain::Position::Long)]
    pub position: crate::domain::Position,

    /// One JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
#[command(group = ArgGroup::new("query").required(true).args(["date", "text"]))]
pub struct SimilarArgs {
    /// The security (symbol, yahoo_symbol or db_symbol); with --text, only its days are searched.
    #[arg(long)]
    pub symbol: Option<String>,

    /// The trade date (YYYY-MM-DD) whose stored vector is the query; needs --symbol.
    #[arg(long, requires = "symbol")]
    pub date: Option<NaiveDate>,

    /// A description to embed and search for, e.g. "tech sell-off while volatility rose".
    #[arg(long)]
    pub text: Option<String>,

    /// How many neighbours to return (at most 1000).
    #[arg(short, default_value = "10", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub k: u32,

    /// Only days of the same security as --symbol.
    #[arg(long, requires = "date")]
    pub same_symbol: bool,

    /// Only days of securities in this category (a key under `securities`, e.g. etfs).
    #[arg(long)]
    pub category: Option<String>,

    /// Only days whose metadata meets this condition, `KEY OP VALUE` with OP one of
    /// < <= > >= = != (e.g. "daily_return < -0.02", "regime = bear, volatile", "rsi_14 < 30");
    /// repeatable, all must hold.
    #[arg(long = "where", value_name = "KEY OP VALUE")]
    pub conditions: Vec<String>,

    /// Only trade dates on or after this one (YYYY-MM-DD).
    #[arg(long)]
    pub from: Option<NaiveDate>,

    /// Only trade dates on or before this one (YYYY-MM-DD).
    #[arg(long)]
    pub to: Option<NaiveDate>,

    /// One JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl SimilarArgs {
    /// `k` as the search takes it (clap has checked `1..=1000`).
    #[must_use]
    pub fn k(&self) -> NonZeroU32 {
        NonZeroU32::new(self.k).unwrap_or(NonZeroU32::MIN)
    }
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// The securities file.
    #[arg(
        long,
        global = true,
        env = "MARKET_ENCODER_CONFIG",
        default_value = "config/securities.yaml"
    )]
    pub config: PathBuf,

    /// Print the plan (securities, window, database target) and exit; touches no network or database.
    #[arg(long, env = "MARKET_ENCODER_DRY_RUN")]
    pub dry_run: bool,

    #[command(flatten)]
    pub job: JobArgs,
}

/// What a run fetches and which stages it runs: the flags of the one-shot run, shared with
/// `serve`, whose every run they shape the same way.
#[derive(Debug, Args, Clone, Default)]
pub struct JobArgs {
    /// Only these categories (keys under `securities`), e.g. `--categories indices etfs`.
    #[arg(long, num_args = 1.., value_delimiter = ',', env = "MARKET_ENCODER_CATEGORIES")]
    pub categories: Vec<String>,

    /// Only these securities (symbol, yahoo_symbol or db_symbol), e.g. `--symbols SPY ^VIX`.
    #[arg(long, num_args = 1.., value_delimiter = ',', env = "MARKET_ENCODER_SYMBOLS")]
    pub symbols: Vec<String>,

    /// Fetch this many days back from today (default: encoding.days_back).
    #[arg(long, env = "MARKET_ENCODER_DAYS_BACK", conflicts_with = "from")]
    pub days_back: Option<u32>,

    /// Backfill from this date (YYYY-MM-DD, inclusive).
    #[arg(long, env = "MARKET_ENCODER_FROM")]
    pub from: Option<NaiveDate>,

    /// Backfill up to this date (YYYY-MM-DD, inclusive; default today, UTC).
    #[arg(long, env = "MARKET_ENCODER_TO")]
    pub to: Option<NaiveDate>,

    /// Do not apply pending migrations on start.
    #[arg(long, env = "MARKET_ENCODER_NO_MIGRATE")]
    pub no_migrate: bool,

    /// Skip the embed and index stages (prices, indicators and documents are still stored;
    /// documents stay pending for a later run).
    #[arg(long, env = "MARKET_ENCODER_NO_EMBEDDINGS")]
    pub no_embeddings: bool,

    /// Only shard i of n of the selected securities (`0 <= i < n`), e.g. `--shard 0/4`: sorted
    /// by db_symbol, the one at position p belongs to shard p % n. Default: from a Kubernetes
    /// Indexed Job, `JOB_COMPLETION_INDEX` of `MARKET_ENCODER_SHARDS` (both or neither).
    #[arg(long, env = "MARKET_ENCODER_SHARD", value_name = "I/N")]
    pub shard: Option<Shard>,
}

impl JobArgs {
    /// The date window of a run that starts on `today` (UTC): `--from/--to`, or the last
    /// `--days-back` (else `default_days_back`) days up to `--to` (else today).
    pub fn window(
        &self,
        default_days_back: u32,
        today: NaiveDate,
    ) -> Result<DateWindow, DomainError> {
        let to = self.to.unwrap_or(today);
        match self.from {
            Some(from) => DateWindow::new(from, to),
            None => Ok(DateWindow::days_back(
                to,
                self.days_back.unwrap_or(default_days_back),
            )),
        }
    }
}

/// The shortest `--every`: a shorter schedule would mostly find the previous run still going,
/// and would ask Yahoo for the same bars again and again.
pub const MIN_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on, `IP:PORT` (port 0 picks a free one; the first line on stdout is
    /// `listening on http://ADDR`).
    #[arg(long, env = "MARKET_ENCODER_BIND", default_value = "0.0.0.0:8000")]
    pub bind: SocketAddr,

    /// Also start a run on this schedule, e.g. `30m`, `1h`, `1d` (at least 1m): the first one
    /// at start, then one per period; a tick that finds a run going is skipped.
    #[arg(long, env = "MARKET_ENCODER_EVERY", value_parser = parse_every)]
    pub every: Option<Duration>,

    #[command(flatten)]
    pub job: JobArgs,
}

/// `--every`: a humantime duration (`90s`, `30m`, `1h 30m`, `1d`) of at least [`MIN_EVERY`].
fn parse_every(value: &str) -> Result<Duration, String> {
    let every = humantime::parse_duration(value.trim())
        .map_err(|e| format!("{e} (write e.g. 30m, 1h, 1d)"))?;
    if every < MIN_EVERY {
        return Err(format!(
            "{} is shorter than the minimum of {}",
            humantime::format_duration(every),
            humantime::format_duration(MIN_EVERY)
        ));
    }
    Ok(every)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn categories_take_several_values() {
        let cli = Cli::try_parse_from([
            "market-encoder",
            "--categories",
            "indices",
            "etfs",
            "--symbols",
            "SPY,^VIX",
        ])
        .unwrap();
        assert_eq!(cli.run.job.categories, ["indices", "etfs"]);
        assert_eq!(cli.run.job.symbols, ["SPY", "^VIX"]);
    }

    #[test]
    fn days_back_conflicts_with_from() {
        assert!(
            Cli::try_parse_from(["market-encoder", "--days-back", "5", "--from", "2024-01-02"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["market-encoder", "--from", "2024-13-02"]).is_err());
    }

    #[test]
    fn features_is_a_subcommand() {
        let cli = Cli::try_parse_from(["market-encoder", "features"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Features(FeaturesArgs {
                date: None,
                json: false
            }))
        ));
        let cli = Cli::try_parse_from([
            "market-encoder",
            "features",
            "--date",
            "2024-07-31",
            "--json",
        ])
        .unwrap();
        let Some(Command::Features(args)) = cli.command else {
            panic!("not the features command");
        };
        assert_eq!(args.date, "2024-07-31".parse().ok());
        assert!(args.json);
        assert!(Cli::try_parse_from(["market-encoder", "features", "--date", "July"]).is_err());
    }

    /// `market-encoder <name> <flags>` parsed, and its subcommand.
    fn subcommand(name: &str, flags: &[&str]) -> Result<Option<Command>, clap::Error> {
        let mut argv = vec!["market-encoder", name];
        argv.extend_from_slice(flags);
        Cli::try_parse_from(argv).map(|cli| cli.command)
    }

    fn serve(flags: &[&str]) -> Result<ServeArgs, clap::Error> {
        subcommand("serve", flags).map(|command| match command {
            Some(Command::Serve(args)) => args,
            other => panic!("not serve: {other:?}"),
        })
    }

    #[test]
    fn serve_takes_the_job_flags_a_bind_address_and_a_schedule() {
        let args = serve(&[]).unwrap();
        assert_eq!(args.bind, "0.0.0.0:8000".parse().unwrap());
        assert_eq!(args.every, None);
        let args = serve(&[
            "--bind",
            "127.0.0.1:0",
            "--every",
            "30m",
            "--symbols",
            "SPY,QQQ",
            "--days-back",
            "5",
            "--no-embeddings",
            "--config",
            "other.yaml",
        ])
        .unwrap();
        assert_eq!(args.bind.port(), 0);
        assert_eq!(args.every, Some(Duration::from_secs(1800)));
        assert_eq!(args.job.symbols, ["SPY", "QQQ"]);
        assert_eq!(args.job.days_back, Some(5));
        assert!(args.job.no_embeddings);
        assert_eq!(
            serve(&["--every", "1h 30m"]).unwrap().every,
            Some(Duration::from_secs(5400))
        );
        assert_eq!(serve(&["--every", "1m"]).unwrap().every, Some(MIN_EVERY));
        for bad in ["59s", "0", "soon", "-5m"] {
            assert!(serve(&["--every", bad]).is_err(), "{bad}");
        }
        assert!(serve(&["--bind", "localhost"]).is_err());
        assert!(serve(&["--dry-run"]).is_err(), "a service has no dry run");
    }

    #[test]
    fn the_window_is_computed_for_the_day_a_run_starts() {
        let today: NaiveDate = "2026-11-21".parse().unwrap();
        let args = serve(&[]).unwrap().job;
        let w = args.window(60, today).unwrap();
        assert_eq!(w.to(), today);
        let tomorrow = today.succ_opt().unwrap();
        assert_eq!(args.window(60, tomorrow).unwrap().to(), tomorrow);
        let fixed = serve(&["--from", "2024-01-02", "--to", "2024-03-29"])
            .unwrap()
            .job;
        assert_eq!(
            fixed.window(60, today).unwrap().to_string(),
            "2024-01-02..2024-03-29"
        );
        let backwards = serve(&["--from", "2027-01-01"]).unwrap().job;
        assert!(backwards.window(60, today).is_err());
    }

    #[test]
    fn shard_is_i_of_n() {
        let cli = Cli::try_parse_from(["market-encoder", "--shard", "2/4"]).unwrap();
        assert_eq!(cli.run.job.shard, Some(Shard::new(2, 4).unwrap()));
        assert_eq!(
            Cli::try_parse_from(["market-encoder"])
                .unwrap()
                .run
                .job
                .shard,
            None
        );
        for bad in ["4/4", "0/0", "x", "1/-2"] {
            let e = Cli::try_parse_from(["market-encoder", "--shard", bad]).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(e.to_string().contains("write i/n"), "{bad}: {e}");
        }
    }

    #[test]
    fn migrate_is_a_subcommand() {
        let cli = Cli::try_parse_from(["market-encoder", "migrate", "--verbose"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Migrate)));
        assert!(cli.verbose);
    }

    fn similar(flags: &[&str]) -> Result<SimilarArgs, clap::Error> {
        subcommand("similar", flags).map(|command| match command {
            Some(Command::Similar(args)) => args,
            other => panic!("not similar: {other:?}"),
        })
    }

    #[test]
    fn similar_takes_a_day_or_a_text() {
        let day = similar(&[
            "--symbol",
            "SPX",
            "--date",
            "2024-03-01",
            "-k",
            "5",
            "--same-symbol",
        ])
        .unwrap();
        assert_eq!(day.symbol.as_deref(), Some("SPX"));
        assert_eq!(day.k().get(), 5);
        assert!(day.same_symbol);
        let text = similar(&["--text", "tech sell-off", "--category", "etfs", "--json"]).unwrap();
        assert_eq!(text.k, 10);
        assert_eq!(text.category.as_deref(), Some("etfs"));
        let config = Cli::try_parse_from([
            "market-encoder",
            "similar",
            "--text",
            "x",
            "--config",
            "other.yaml",
        ])
        .unwrap();
        assert_eq!(config.run.config, PathBuf::from("other.yaml"));
    }

    #[test]
    fn pnl_parses_its_quantity_and_position() {
        let cli = Cli::try_parse_from([
            "market-encoder",
            "pnl",
            "--symbol",
            "SPX",
            "--entry",
            "2024-01-01",
            "--exit",
            "2024-01-31",
            "--quantity",
            "0.5",
            "--position",
            "short",
            "--json",
        ])
        .unwrap();
        let Some(Command::Pnl(args)) = cli.command else {
            panic!("not pnl")
        };
        assert_eq!(args.quantity.get().to_string(), "0.5");
        assert_eq!(args.position, crate::domain::Position::Short);
        for bad in ["0", "-1", "ten"] {
            assert!(
                Cli::try_parse_from([
                    "market-encoder",
                    "pnl",
                    "--symbol",
                    "SPX",
                    "--entry",
                    "2024-01-01",
                    "--exit",
                    "2024-01-31",
                    "--quantity",
                    bad,
                ])
                .is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn similar_refuses_incomplete_or_mixed_queries() {
        for flags in [
            &[][..],
            &["--symbol", "SPX"],
            &["--date", "2024-03-01"],
            &["--text", "x", "--date", "2024-03-01", "--symbol", "SPX"],
            &["--text", "x", "--same-symbol"],
            &["--symbol", "SPX", "--date", "2024-03-01", "-k", "0"],
            &["--symbol", "SPX", "--date", "2024-03-01", "-k", "1001"],
        ] {
            assert!(similar(flags).is_err(), "{flags:?} was accepted");
        }
    }
}
