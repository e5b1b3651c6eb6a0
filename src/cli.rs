//! Command-line arguments. Every flag a CronJob would set also reads an environment variable.

use std::num::NonZeroU32;
use std::path::PathBuf;

use chrono::NaiveDate;
use clap::{ArgGroup, Args, Parser, Subcommand};

use crate::domain::{DateWindow, DomainError};

#[derive(Debug, Parser)]
#[command(
    name = "market-encoder",
    version,
    about = "Fetch daily bars from Yahoo Finance for the securities in securities.yaml and store them in PostgreSQL.",
    after_help = "Exit codes: 0 all selected securities succeeded; 1 some failed or the cross-asset features did (see the summary and the runs table); \
2 configuration or usage error; 3 database unreachable or failing; 4 another run holds the lock; \
5 prices stored but embedding/indexing failed (Chroma unreachable, model missing), or for `similar` Chroma or the model failed; \
130/143 interrupted by SIGINT/SIGTERM.\n\
Environment: DATABASE_URL or DB_HOST, DB_PORT (5432), DB_NAME, DB_USER, DB_PASSWORD; \
YAHOO_BASE_URL; CHROMA_URL, CHROMA_TENANT, CHROMA_DATABASE, CHROMA_TOKEN, CHROMA_COLLECTION; \
EMBEDDING_MODEL_DIR or HF_ENDPOINT; LOG_LEVEL (INFO) or RUST_LOG."
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
    pub quantity: crate::pnl::Quantity,

    /// long or short.
    #[arg(long, value_enum, default_value_t = crate::pnl::Position::Long)]
    pub position: crate::pnl::Position,

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

/// What a run fetches and which stages it runs (the flags of a run other than `--config` and
/// `--dry-run`).
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

    #[test]
    fn migrate_is_a_subcommand() {
        let cli = Cli::try_parse_from(["market-encoder", "migrate", "--verbose"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Migrate)));
        assert!(cli.verbose);
    }

    fn similar(flags: &[&str]) -> Result<SimilarArgs, clap::Error> {
        let mut argv = vec!["market-encoder", "similar"];
        argv.extend_from_slice(flags);
        Cli::try_parse_from(argv).map(|cli| match cli.command {
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
        assert_eq!(args.position, crate::pnl::Position::Short);
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
