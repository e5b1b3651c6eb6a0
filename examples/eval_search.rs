//! The search-quality evaluation (`scripts/eval-search.sh` runs it on a collection the job just
//! filled from a backfill against the fake Yahoo; README, Search quality).
//!
//! 1. Text queries: every line of the queries file (`eval/search-queries.txt`) is a class, a
//!    description and the metadata conditions it describes. The description is embedded with
//!    the library's embedder and searched with `read::similar::near_vector`, as `similar --text`
//!    does; precision@k is the share of the k neighbours whose metadata meets every condition
//!    (`read::conditions::Condition::holds`, Chroma's reading of `where`), the base rate the
//!    share of all records that do.
//! 2. Day queries: `--days` stored days drawn with a fixed seed (days with a regime and a daily
//!    return), each searched with `read::similar::near_day` as `similar --symbol S --date D`
//!    does. Two neighbourhoods are scored, each the first k neighbours that remain:
//!    - *other days*: the day itself and the same security's days within
//!      [`ADJACENT_DAYS`] calendar days of it left out (they share most of their numbers);
//!    - *other securities*: every day of the same security left out (`symbol != S` in Chroma).
//!
//!    Reported: the share of neighbours with the same regime (`regime` metadata), the same sign
//!    of the daily return, the same absolute size band of the daily move ([`ABSOLUTE_BANDS`]),
//!    and the same `move_band` (the narrative's own band, relative to the security's volatility;
//!    "-" when the collection's metadata has none).
//!
//! Output: a Markdown report on stdout (and `--out FILE`).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use chrono::NaiveDate;
use clap::Parser;
use market_encoder::config::env::EnvValue;
use market_encoder::domain::DbSymbol;
use market_encoder::job::embed::{Embedder, EmbedderSource, ModelSource};
use market_encoder::job::index::{ChromaClient, ChromaSettings, Include, Metadata, MetadataValue};
use market_encoder::read::similar::{Condition, Filter, near_day, near_vector};
use sqlx::{Connection, PgConnection};

/// Same-security days this close (calendar days) to a query day are not its neighbours in the
/// "other days" neighbourhood.
const ADJACENT_DAYS: i64 = 15;
/// Edges of the absolute size bands of |daily return|: <0.5%, 0.5-1%, 1-2%, 2-5%, >=5%.
const ABSOLUTE_BANDS: [f64; 4] = [0.005, 0.01, 0.02, 0.05];
/// Neighbours asked for per day query before the "other days" filter takes its k.
const DAY_CANDIDATES: u32 = 100;

#[derive(Parser)]
#[command(
    about = "Search quality of the Chroma collection the job filled (README, Search quality)"
)]
struct Args {
    /// The queries file: `class | description | KEY OP VALUE && KEY OP VALUE ...` per line.
    #[arg(long, default_value = "eval/search-queries.txt")]
    queries: PathBuf,
    /// Neighbours per query.
    #[arg(long, default_value_t = 10)]
    k: u32,
    /// Random stored days whose neighbours are scored.
    #[arg(long, default_value_t = 100)]
    days: usize,
    /// Seed of the draw of days.
    #[arg(long, default_value_t = 16)]
    seed: u64,
    /// A title line for the report (e.g. "before", "after").
    #[arg(long, default_value = "search quality")]
    title: String,
    /// Also write the report here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// For every query below this precision, print its neighbours (id, whether they meet the
    /// condition, the document's start) on stderr: what to look at when a class is weak.
    #[arg(long)]
    explain_below: Option<f64>,
}

struct Query {
    class: String,
    text: String,
    conditions: Vec<Condition>,
    shown: String,
}

fn read_queries(path: &Path) -> anyhow::Result<Vec<Query>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut queries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split('|').map(str::trim).collect();
        let [class, description, conditions] = parts.as_slice() else {
            bail!(
                "{}:{}: write CLASS | DESCRIPTION | CONDITIONS",
                path.display(),
                n + 1
            );
        };
        let parsed = conditions
            .split("&&")
            .map(|c| Condition::parse(c.trim()))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("{}:{}", path.display(), n + 1))?;
        queries.push(Query {
            class: (*class).to_owned(),
            text: (*description).to_owned(),
            shown: parsed
                .iter()
                .map(Condition::describe)
                .collect::<Vec<_>>()
                .join(" and "),
            conditions: parsed,
        });
    }
    if queries.is_empty() {
        bail!("{}: no queries", path.display());
    }
    Ok(queries)
}

fn float(m: &Metadata, key: &str) -> Option<f64> {
    match m.get(key)? {
        MetadataValue::Float(v) => Some(*v),
        #[allow(clippy::cast_precision_loss)]
        MetadataValue::Int(v) => Some(*v as f64),
        _ => None,
    }
}

fn text<'m>(m: &'m Metadata, key: &str) -> Option<&'m str> {
    match m.get(key)? {
        MetadataValue::Str(s) => Some(s.as_str()),
        _ => None,
    }
}

fn sign(r: f64) -> i8 {
    if r > 0.0 {
        1
    } else if r < 0.0 {
        -1
    } else {
        0
    }
}

fn absolute_band(r: f64) -> usize {
    ABSOLUTE_BANDS
        .iter()
        .take_while(|edge| r.abs() >= **edge)
        .count()
}

/// splitmix64: the draw of days, the same for every run with the same seed and records.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[derive(Default)]
struct Shares {
    neighbours: usize,
    regime: usize,
    sign: usize,
    absolute: usize,
    relative: usize,
    relative_known: usize,
}

impl Shares {
    fn add(&mut self, day: &Metadata, other: &Metadata) {
        self.neighbours += 1;
        if text(day, "regime").is_some() && text(day, "regime") == text(other, "regime") {
            self.regime += 1;
        }
        if let (Some(a), Some(b)) = (float(day, "daily_return"), float(other, "daily_return")) {
            if sign(a) == sign(b) {
                self.sign += 1;
            }
            if absolute_band(a) == absolute_band(b) {
                self.absolute += 1;
            }
        }
        if let (Some(a), Some(b)) = (text(day, "move_band"), text(other, "move_band")) {
            self.relative_known += 1;
            if a == b {
                self.relative += 1;
            }
        }
    }

    fn row(&self, name: &str, days: usize) -> String {
        #[allow(clippy::cast_precision_loss)]
        let share = |n: usize, of: usize| {
            if of == 0 {
                "-".to_owned()
            } else {
                format!("{:.2}", n as f64 / of as f64)
            }
        };
        format!(
            "| {name} | {days} | {} | {} | {} | {} | {} |",
            self.neighbours,
            share(self.regime, self.neighbours),
            share(self.sign, self.neighbours),
            share(self.absolute, self.neighbours),
            share(self.relative, self.relative_known),
        )
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let k = NonZeroU32::new(args.k).context("--k must be at least 1")?;
    let queries = read_queries(&args.queries)?;
    let started = Instant::now();

    let database_url = std::env::var("DATABASE_URL").context("DATABASE_URL: the job's database")?;
    let model_dir =
        std::env::var("EMBEDDING_MODEL_DIR").context("EMBEDDING_MODEL_DIR: the model directory")?;
    let chroma = ChromaSettings::from_env(&EnvValue::from_process)?;
    let client = ChromaClient::connect(&chroma).await?;
    let collection = client.open_collection(chroma.collection()).await?;

    // Every record of the collection, by the ids of the stored documents.
    let mut db = PgConnection::connect(&database_url).await?;
    let ids: Vec<String> = sqlx::query_as::<_, (String, NaiveDate)>(
        "SELECT symbol, trade_date FROM documents ORDER BY symbol, trade_date",
    )
    .fetch_all(&mut db)
    .await?
    .into_iter()
    .map(|(symbol, date)| format!("{symbol}:{date}"))
    .collect();
    let mut records: HashMap<String, Metadata> = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(500) {
        for hit in client
            .get(&collection, chunk, &[Include::Metadatas])
            .await?
        {
            records.insert(hit.id, hit.metadata.unwrap_or_default());
        }
    }
    if records.len() != ids.len() {
        bail!(
            "{} of {} stored documents are in collection {}: run the job with its embed and index stages first",
            records.len(),
            ids.len(),
            collection.name
        );
    }
    let total = records.len();
    let symbols = {
        let mut s: Vec<&str> = records.values().filter_map(|m| text(m, "symbol")).collect();
        s.sort_unstable();
        s.dedup();
        s.len()
    };

    let mut out = String::new();
    let _ = writeln!(out, "## {}\n", args.title);
    let _ = writeln!(
        out,
        "Collection `{}`: {total} documents of {symbols} securities; k = {k}.\n",
        collection.name
    );

    // 1. Text queries.
    let embedder =
        Embedder::load(&EmbedderSource::Local(ModelSource::Dir(model_dir.into()))).await?;
    let _ = writeln!(
        out,
        "| class | query | condition | precision@{k} | base rate |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|");
    let mut worst = f64::INFINITY;
    for q in &queries {
        let vector = embedder
            .embed(vec![q.text.clone()])
            .await?
            .pop()
            .context("the model answered no vector")?;
        let answer = near_vector(
            &client,
            &collection,
            vector,
            k,
            &Filter::default(),
            None,
            serde_json::json!({ "text": q.text }),
        )
        .await?;
        let hits = answer
            .neighbours
            .iter()
            .filter(|n| q.conditions.iter().all(|c| c.holds(&n.metadata)))
            .count();
        let base = records
            .values()
            .filter(|m| q.conditions.iter().all(|c| c.holds(m)))
            .count();
        #[allow(clippy::cast_precision_loss)]
        let precision = hits as f64 / answer.neighbours.len().max(1) as f64;
        worst = worst.min(precision);
        if args.explain_below.is_some_and(|below| precision < below) {
            eprintln!("{} ({precision:.1}): \"{}\"", q.class, q.text);
            for n in &answer.neighbours {
                let meets = q.conditions.iter().all(|c| c.holds(&n.metadata));
                let doc = n.document.as_deref().unwrap_or("");
                eprintln!(
                    "  {} {:.3} {}: {}",
                    if meets { "+" } else { "-" },
                    n.distance,
                    n.id,
                    doc.chars().take(400).collect::<String>()
                );
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let base_rate = base as f64 / total as f64;
        let _ = writeln!(
            out,
            "| {} | \"{}\" | `{}` | {precision:.1} | {base_rate:.3} |",
            q.class, q.text, q.shown
        );
    }
    let _ = writeln!(out, "\nLowest precision@{k}: {worst:.1}.\n");

    // 2. Day queries: a seeded draw of days that have a regime and a daily return.
    let mut candidates: Vec<&String> = ids
        .iter()
        .filter(|id| {
            let m = &records[*id];
            text(m, "regime").is_some() && float(m, "daily_return").is_some()
        })
        .collect();
    let mut drawn = Vec::new();
    let mut state = args.seed;
    while drawn.len() < args.days && !candidates.is_empty() {
        state = mix(state);
        let i = usize::try_from(state % candidates.len() as u64).unwrap_or(0);
        drawn.push(candidates.swap_remove(i).clone());
    }
    let mut other_days = Shares::default();
    let mut other_securities = Shares::default();
    for id in &drawn {
        let day = &records[id];
        let (symbol, date) = id.split_once(':').context("an id without ':'")?;
        let symbol = DbSymbol::parse(symbol)?;
        let date: NaiveDate = date.parse()?;
        let near = near_day(
            &client,
            &collection,
            &symbol,
            date,
            NonZeroU32::new(DAY_CANDIDATES.max(k.get())).unwrap_or(k),
            &Filter::default(),
        )
        .await?;
        for n in near
            .neighbours
            .iter()
            .filter(|n| {
                let same = n.symbol.as_deref() == Some(symbol.as_str());
                let near_in_time = n
                    .trade_date
                    .as_deref()
                    .and_then(|d| d.parse::<NaiveDate>().ok())
                    .is_some_and(|d| (d - date).num_days().abs() <= ADJACENT_DAYS);
                !(same && near_in_time)
            })
            .take(k.get() as usize)
        {
            other_days.add(day, &n.metadata);
        }
        let others = Filter {
            conditions: vec![Condition::parse(&format!("symbol != {symbol}"))?],
            ..Filter::default()
        };
        let near = near_day(&client, &collection, &symbol, date, k, &others).await?;
        for n in &near.neighbours {
            other_securities.add(day, &n.metadata);
        }
    }
    let _ = writeln!(
        out,
        "Neighbours of {} days drawn with seed {} (the day itself never counts):\n",
        drawn.len(),
        args.seed
    );
    let _ = writeln!(
        out,
        "| neighbours | days | neighbours scored | same regime | same sign | same absolute size band | same move_band |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    let _ = writeln!(
        out,
        "{}",
        other_days.row(
            &format!("other days (same security within {ADJACENT_DAYS} days left out)"),
            drawn.len()
        )
    );
    let _ = writeln!(
        out,
        "{}",
        other_securities.row("other securities only", drawn.len())
    );
    let _ = writeln!(
        out,
        "\nAbsolute size bands of |daily return|: <0.5%, 0.5-1%, 1-2%, 2-5%, >=5%. Took {:.0} s.",
        started.elapsed().as_secs_f64()
    );
    print!("{out}");
    if let Some(path) = &args.out {
        std::fs::write(path, &out).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
