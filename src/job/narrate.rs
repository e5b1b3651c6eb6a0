//! Stage 6: narrate. A deterministic plain-English document per security and trade date, for
//! people and embedding models to search ("days like today"). It reads first as a commentator
//! would say it, in words on fixed bands ([`bands`]), then gives every number:
//!
//! > An up day in a bull market. The trend is bullish. SPX rallied strongly, up 0.5 to 1% on
//! > the day, closing higher. A new 52-week high, its highest close in a year; overbought, RSI
//! > above 70. On 2024-03-01 it closed higher at 5,137.08, up 0.80% on the day (1.6 times its
//! > usual move) and +2.1% over 5 days; RSI 71 (overbought), 4.2% above its 50-day and 11.7%
//! > above its 200-day average, MACD above its signal line, 20-day volatility 11.8% annualized;
//! > new 52-week high. In short: an up day, closing higher, in a bull market; a new 52-week
//! > high.
//!
//! The words come first because a sentence model barely tells "down 1.65%" from "up 1.65%":
//! the direction, the size of the move for this security, the regime and its changes and the
//! day's events are what make two days alike. The first sentence is the day's direction and
//! the regime, said again in other words and last ("In short: ..."), so that they outweigh the
//! numbers in the mean of ~130 word pieces the model's vector is; the security is named once,
//! after them (its name and category are in the metadata), and a calm regime, the usual state, is not
//! said at all (a volatile one is). Every number is formatted from the stored value:
//! the close exactly as stored (with thousands separators), percentages and ratios rounded for
//! reading. What is unknown (not enough history) is left out, never guessed. A document depends
//! only on the stored days up to its own (the previous day's regime, the 20 returns before it,
//! the 252 closes up to it) and the corporate actions of its date, so the same inputs always
//! give the same text, whatever window a run narrates.

pub mod bands;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{Datelike, NaiveDate};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Map, Value};

use crate::domain::{ActionKind, CorporateAction};
use crate::job::analyze::{FLOAT_COLUMNS, Indicators, Trend, VolatilityRegime, YEAR_BARS};
use bands::Move;

/// The version of the narrative's wording, in every document's metadata (`narrative_version`).
/// A run that finds a stored document of another version narrates every documented day of
/// that security again (like after a rebase), so a change of wording reaches the whole
/// collection through the normal pending-document path on the next run. Raise it with every
/// change of [`narrate`]'s output.
pub const NARRATIVE_VERSION: i64 = 4;

/// Stored days before the first narrated one that its document reads (the 252 closes of the
/// 52-week low; the 20 returns of the usual move and the 20-day move are within them).
pub const LOOKBACK_DAYS: u32 = 252;

/// One stored day with its indicators, as the store reads it for this stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Day {
    pub trade_date: NaiveDate,
    pub close: Decimal,
    pub daily_return: Option<Decimal>,
    pub indicators: Indicators,
}

/// The security a document is about.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub db_symbol: &'a str,
    pub yahoo_symbol: &'a str,
    pub name: &'a str,
    pub category: &'a str,
    /// The configured sector (`sector:`), as written (`consumer_discretionary`).
    pub sector: Option<&'a str>,
}

/// What a document is written from: one stored bar, its indicators, and what the days before
/// it say about it.
#[derive(Debug, Clone)]
pub struct DayFacts<'a> {
    pub db_symbol: &'a str,
    pub name: &'a str,
    pub category: &'a str,
    pub sector: Option<&'a str>,
    pub trade_date: NaiveDate,
    pub close: Decimal,
    pub daily_return: Option<Decimal>,
    pub indicators: &'a Indicators,
    pub context: Context<'a>,
}

impl DayFacts<'_> {
    /// The day's return as a float, for the bands and the words.
    fn daily(&self) -> Option<f64> {
        self.daily_return.and_then(|r| r.to_f64())
    }

    /// The sector in words ("consumer discretionary" for `consumer_discretionary`).
    fn sector_words(&self) -> Option<String> {
        self.sector.map(|sector| sector.replace('_', " "))
    }
}

/// What the stored days before a day (and its corporate actions) say about it. The default:
/// nothing known.
#[derive(Debug, Clone, Default)]
pub struct Context<'a> {
    /// The previous stored day's indicators and close.
    pub previous: Option<(&'a Indicators, f64)>,
    /// The usual daily move ([`bands::usual_daily_move`] of the 20 returns before the day).
    pub usual_move: Option<f64>,
    /// Close / the close 20 stored days earlier - 1.
    pub return_20d: Option<f64>,
    /// The close is the lowest of the last 252 stored closes (with 252 of them).
    pub new_52w_low: bool,
    /// The corporate actions with this ex-date.
    pub actions: Vec<&'a CorporateAction>,
    /// The day's cross-asset context: the context securities' moves of the same date.
    pub market: Market,
}

/// The day's cross-asset context: the stored bars of the context securities (the `vix` and
/// `dxy` roles of `features.roles`) on the document's own trade date. A security is not its
/// own context (VIX's document does not repeat VIX's move).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Market {
    pub vix: Option<ContextBar>,
    pub dollar: Option<ContextBar>,
}

/// One stored bar of a context security: its close and daily return.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContextBar {
    pub close: Decimal,
    pub daily_return: Decimal,
}

/// A context security's stored bars with a daily return, by trade date.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContextSeries {
    pub db_symbol: String,
    pub bars: BTreeMap<NaiveDate, ContextBar>,
}

/// The context securities' stored bars, as the store reads them (once per run, shared by every
/// security's documents).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Markets<'a> {
    /// The fear gauge (`features.roles.vix`).
    pub vix: Option<&'a ContextSeries>,
    /// The dollar index (`features.roles.dxy`).
    pub dollar: Option<&'a ContextSeries>,
}

impl Markets<'_> {
    /// The context of `date` for the security `db_symbol`.
    #[must_use]
    pub fn on(&self, date: NaiveDate, db_symbol: &str) -> Market {
        let bar = |series: Option<&ContextSeries>| {
            series
                .filter(|s| s.db_symbol != db_symbol)
                .and_then(|s| s.bars.get(&date).copied())
        };
        Market {
            vix: bar(self.vix),
            dollar: bar(self.dollar),
        }
    }
}

/// One security's document of one day, as the store writes it into `documents`.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub trade_date: NaiveDate,
    /// The narrative ([`narrate`]).
    pub text: String,
    /// The flat scalar metadata ([`metadata`]), a JSON object.
    pub metadata: Value,
}

/// The documents of the last `days` of `history` (one security's stored days, oldest first,
/// with up to [`LOOKBACK_DAYS`] more before them), given its corporate `actions` and the
/// context securities' bars (`markets`).
#[must_use]
pub fn documents(
    subject: &Subject<'_>,
    history: &[Day],
    days: usize,
    actions: &[CorporateAction],
    markets: &Markets<'_>,
) -> Vec<Document> {
    let first = history.len().saturating_sub(days);
    (first..history.len())
        .map(|i| {
            let day = &history[i];
            let facts = DayFacts {
                db_symbol: subject.db_symbol,
                name: subject.name,
                category: subject.category,
                sector: subject.sector,
                trade_date: day.trade_date,
                close: day.close,
                daily_return: day.daily_return,
                indicators: &day.indicators,
                context: Context {
                    market: markets.on(day.trade_date, subject.db_symbol),
                    ..context(history, i, actions)
                },
            };
            document(&facts, subject.yahoo_symbol)
        })
        .collect()
}

/// The [`Context`] of `history[i]` from the days before it.
fn context<'a>(history: &'a [Day], i: usize, actions: &'a [CorporateAction]) -> Context<'a> {
    let close = |d: &Day| d.close.to_f64().unwrap_or(f64::NAN);
    let today = close(&history[i]);
    let previous = i
        .checked_sub(1)
        .map(|j| (&history[j].indicators, close(&history[j])));
    let returns: Option<Vec<f64>> = history[i.saturating_sub(bands::SIGMA_RETURNS)..i]
        .iter()
        .map(|d| d.daily_return.and_then(|r| r.to_f64()))
        .collect();
    let usual_move = returns.and_then(|r| bands::usual_daily_move(&r));
    let return_20d = i
        .checked_sub(20)
        .map(|j| today / close(&history[j]) - 1.0)
        .filter(|r| r.is_finite());
    let new_52w_low = i + 1 >= YEAR_BARS
        && history[i + 1 - YEAR_BARS..=i]
            .iter()
            .all(|d| today <= close(d));
    Context {
        previous,
        usual_move,
        return_20d,
        new_52w_low,
        actions: actions
            .iter()
            .filter(|a| a.ex_date == history[i].trade_date)
            .collect(),
        market: Market::default(),
    }
}

/// The document of `facts`: its narrative and its metadata.
#[must_use]
pub fn document(facts: &DayFacts<'_>, yahoo_symbol: &str) -> Document {
    Document {
        trade_date: facts.trade_date,
        text: narrate(facts),
        metadata: Value::Object(metadata(facts, yahoo_symbol)),
    }
}

/// RSI at or above this reads "overbought", at or below [`RSI_OVERSOLD`] "oversold".
pub const RSI_OVERBOUGHT: f64 = 70.0;
pub const RSI_OVERSOLD: f64 = 30.0;
/// A volume z-score at least this far from 0 is mentioned.
pub const UNUSUAL_VOLUME_Z: f64 = 2.0;
/// A drawdown deeper than this is mentioned (as a fraction).
pub const NOTABLE_DRAWDOWN: f64 = -0.10;

/// The day's move for the security (`None` without a daily return).
fn day_move(facts: &DayFacts<'_>) -> Option<Move> {
    let r = facts.daily()?;
    Some(Move::new(r, 1, facts.context.usual_move))
}

/// The regime in words: "a volatile bear market", "a bull market", "a volatile market";
/// `None` when neither is known. The calm regime is not said: it is the usual state (nine
/// documents in ten), and "calm" and "volatile" read almost alike to a sentence model, so
/// "a calm bear market" was as near "a volatile bear market" as a volatile one. What is news,
/// the volatile regime, is said in words of its own; the absence of them is the calm.
fn regime_words(trend: Option<Trend>, vol: Option<VolatilityRegime>) -> Option<String> {
    let trend = trend.map(|t| match t {
        Trend::Bull => "bull market",
        Trend::Bear => "bear market",
        Trend::Sideways => "sideways market",
    });
    match (vol, trend) {
        (Some(VolatilityRegime::Volatile), Some(t)) => Some(format!("a volatile {t}")),
        (Some(VolatilityRegime::Volatile), None) => Some("a volatile market".to_owned()),
        (_, Some(t)) => Some(format!("a {t}")),
        (_, None) => None,
    }
}

/// The regime again in other words, for the trend and the volatility to weigh as much as the
/// day's move: "The trend is bullish.", and for a volatile regime its name once more, "The trend
/// is bearish and trading is volatile: a volatile bear market.", "Trading is volatile: a
/// volatile market."; `None` when neither is known or the regime is calm without a trend. The
/// volatile regime's name three times in a document (first sentence, here, the gist) is what
/// made "a volatile bear market" find volatile rather than calm bear days (README, Search
/// quality).
fn regime_sentence(trend: Option<Trend>, vol: Option<VolatilityRegime>) -> Option<String> {
    let trend_words = trend.map(|t| match t {
        Trend::Bull => "the trend is bullish",
        Trend::Bear => "the trend is bearish",
        Trend::Sideways => "the trend is sideways",
    });
    let volatile = vol == Some(VolatilityRegime::Volatile);
    let sentence = match (trend_words, volatile) {
        (Some(t), true) => format!("{t} and trading is volatile"),
        (Some(t), false) => t.to_owned(),
        (None, true) => "trading is volatile".to_owned(),
        (None, false) => return None,
    };
    let name = volatile
        .then(|| regime_words(trend, vol))
        .flatten()
        .map(|name| format!(": {name}"))
        .unwrap_or_default();
    Some(format!("{}{name}.", capitalized(&sentence)))
}

/// `text` with its first letter in upper case.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// The security in words after its symbol: ", a technology stock", ", an energy ETF", " (the
/// financials sector)" for a security with a sector in another category; empty without one.
fn who(facts: &DayFacts<'_>) -> String {
    let Some(sector) = facts.sector_words() else {
        return String::new();
    };
    match noun(facts.category) {
        Some(noun) => format!(", {} {sector} {noun}", article(&sector)),
        None => format!(" (the {sector} sector)"),
    }
}

/// "stock" for a stocks category, "ETF" for an ETFs one, `None` for others.
fn noun(category: &str) -> Option<&'static str> {
    if category.ends_with("stocks") {
        Some("stock")
    } else if category.ends_with("etfs") {
        Some("ETF")
    } else {
        None
    }
}

/// "a" or "an" before `word`, by its first letter.
fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// Where the day closed, in words: "closing higher", "closing lower", "closing unchanged".
fn closing(fraction: f64) -> &'static str {
    if fraction > 0.0 {
        "closing higher"
    } else if fraction < 0.0 {
        "closing lower"
    } else {
        "closing unchanged"
    }
}

/// A big day (a rally or a sell-off and beyond, 2% or more) on which VIX rose at least
/// [`bands::VIX_RISING`]: the fear that goes with the move, said in the first sentence ("while
/// volatility rose") and with its numbers among the day's cross-asset context.
fn volatility_rose(facts: &DayFacts<'_>, daily: f64) -> bool {
    daily.abs() >= bands::BIG_DAY
        && facts
            .context
            .market
            .vix
            .and_then(|bar| bar.daily_return.to_f64())
            .is_some_and(|v| v >= bands::VIX_RISING)
}

/// The first sentence: the kind of day and the regime ("A down day in a volatile bear
/// market."); a big day of a stock or ETF with a sector says the sector with the move ("A
/// technology stock sell-off in a bear market, while volatility rose."). The security is named
/// in the next sentence ([`headline`]). Without a daily return: "AMD, a technology stock: in a
/// bear market." (empty when the regime is unknown too). `vix_rose`: [`volatility_rose`].
fn lead(facts: &DayFacts<'_>, vix_rose: bool) -> String {
    let ind = facts.indicators;
    let regime = regime_words(ind.trend, ind.volatility_regime);
    let Some(r) = facts.daily() else {
        return regime.map_or_else(String::new, |regime| {
            format!("{}{}: in {regime}.", facts.db_symbol, who(facts))
        });
    };
    let kind = bands::day_kind(r);
    let sector_move = facts
        .sector_words()
        .zip(noun(facts.category))
        .filter(|_| r.abs() >= bands::BIG_DAY);
    let mut text = match sector_move {
        Some((sector, noun)) => {
            // "a sell-off" -> "a technology stock sell-off"
            let bare = kind.split_once(' ').map_or(kind, |(_, k)| k);
            format!("{} {sector} {noun} {bare}", article(&sector))
        }
        None => kind.to_owned(),
    };
    if let Some(regime) = &regime {
        let _ = write!(text, " in {regime}");
    }
    if vix_rose {
        text.push_str(", while volatility rose");
    }
    format!("{}.", capitalized(&text))
}

/// The gist again, last: the day's kind and direction, the regime, a new high, a winning or
/// losing week and a deep drawdown ("a sell-off, closing lower, in a volatile bear market; a
/// losing week; a deep drawdown"), so that they weigh in the document's vector as much as its
/// numbers do. A new low is not repeated: "52-week low" twice makes the day a match for "a new
/// 52-week high" too.
fn keywords(facts: &DayFacts<'_>) -> Option<String> {
    let ind = facts.indicators;
    let regime = regime_words(ind.trend, ind.volatility_regime);
    let day = facts
        .daily()
        .map(|r| format!("{}, {}", bands::day_kind(r), closing(r)));
    let mut gist = match (day, regime) {
        (Some(d), Some(r)) => format!("{d}, in {r}"),
        (Some(d), None) => d,
        (None, Some(r)) => r,
        (None, None) => return None,
    };
    if ind.new_52w_high {
        gist.push_str("; a new 52-week high");
    }
    if let Some(kind) = ind
        .return_5d
        .and_then(|w| bands::period_kind(w, bands::WEEK_EDGES, "week"))
    {
        let _ = write!(gist, "; {kind}");
    }
    if !ind.new_52w_high
        && ind
            .drawdown_252d
            .is_some_and(|dd| -dd >= bands::DEEP_DRAWDOWN)
    {
        gist.push_str("; a deep drawdown");
    }
    Some(gist)
}

/// The words of the document: the first sentence ([`lead`]), the regime again, the day's move,
/// the regime's changes and the day's events, the 5- and 20-day moves, the day's cross-asset
/// context.
fn headline(facts: &DayFacts<'_>) -> String {
    let ind = facts.indicators;
    let ctx = &facts.context;
    // Said in the first sentence and, with its numbers, among the cross-asset context.
    let vix_rose = facts.daily().is_some_and(|r| volatility_rose(facts, r));
    let mut text = lead(facts, vix_rose);
    if let Some(sentence) = regime_sentence(ind.trend, ind.volatility_regime)
        && !text.is_empty()
    {
        let _ = write!(text, " {sentence}");
    }
    if let (Some(m), Some(r)) = (day_move(facts), facts.daily()) {
        // The security is named here, not in the first sentence: there its symbol and sector
        // made its own days one another's neighbours whatever their direction.
        let subject = match who(facts) {
            who if who.is_empty()
                || r.abs() >= bands::BIG_DAY && noun(facts.category).is_some() =>
            {
                facts.db_symbol.to_owned()
            }
            who if who.starts_with(',') => format!("{}{who},", facts.db_symbol),
            who => format!("{}{who}", facts.db_symbol),
        };
        let _ = write!(
            text,
            " {subject} {}, {} on the day, {}.",
            m.verb(),
            bands::day_band(r),
            closing(r)
        );
    }

    let mut events: Vec<String> = Vec::new();
    if let Some((prev, prev_close)) = ctx.previous {
        if let (Some(before), Some(now)) = (prev.volatility_regime, ind.volatility_regime)
            && before != now
        {
            events.push(
                match now {
                    VolatilityRegime::Volatile => "it turned volatile",
                    VolatilityRegime::Calm => "it calmed down",
                }
                .to_owned(),
            );
        }
        if let (Some(before), Some(now)) = (prev.trend, ind.trend)
            && before != now
        {
            events.push(
                match now {
                    Trend::Bull => "it entered a bull trend",
                    Trend::Bear => "it entered a bear trend",
                    Trend::Sideways => "it turned sideways",
                }
                .to_owned(),
            );
        }
        if let (Some(sma_then), Some(sma_now), Some(close)) =
            (prev.sma_200, ind.sma_200, facts.close.to_f64())
        {
            if prev_close <= sma_then && close > sma_now {
                events.push("it broke above its 200-day average".to_owned());
            } else if prev_close >= sma_then && close < sma_now {
                events.push("it broke below its 200-day average".to_owned());
            }
        }
    }
    if ind.new_52w_high {
        events.push("a new 52-week high, its highest close in a year".to_owned());
    }
    if ctx.new_52w_low {
        events.push("a new 52-week low, its lowest close in a year".to_owned());
    }
    if let Some(b) = ind.bb_percent_b {
        let was = ctx.previous.and_then(|(p, _)| p.bb_percent_b);
        if b > 1.0 {
            events.push(if was.is_some_and(|w| w > 1.0) {
                "still above its upper Bollinger band".to_owned()
            } else {
                "it broke above its upper Bollinger band".to_owned()
            });
        } else if b < 0.0 {
            events.push(if was.is_some_and(|w| w < 0.0) {
                "still below its lower Bollinger band".to_owned()
            } else {
                "it broke below its lower Bollinger band".to_owned()
            });
        }
    }
    if let Some(rsi) = ind.rsi_14 {
        if rsi >= RSI_OVERBOUGHT {
            events.push("overbought, RSI above 70".to_owned());
        } else if rsi <= RSI_OVERSOLD {
            events.push("oversold, RSI below 30".to_owned());
        }
    }
    if !ind.new_52w_high
        && let Some(words) = ind.drawdown_252d.and_then(bands::drawdown_words)
    {
        events.push(words.to_owned());
    }
    for action in &ctx.actions {
        events.push(match action.kind {
            ActionKind::Split {
                numerator,
                denominator,
            } => format!(
                "a {}:{} stock split took effect",
                numerator.normalize(),
                denominator.normalize()
            ),
            ActionKind::Dividend { amount } => {
                format!("it went ex-dividend ({} a share)", amount.normalize())
            }
        });
    }
    if !events.is_empty() {
        let mut sentence = events.join("; ");
        if let Some(first) = sentence.get(..1) {
            sentence.replace_range(..1, &first.to_uppercase());
        }
        let _ = write!(text, " {sentence}.");
    }

    let mut periods: Vec<String> = Vec::new();
    for (days, fraction, edges, period) in [
        (5, ind.return_5d, bands::WEEK_EDGES, "week"),
        (20, ctx.return_20d, bands::MONTH_EDGES, "month"),
    ] {
        // Said in words from the third edge (5% over 5 days, 10% over 20: "a losing week"):
        // smaller moves are in the numbers, and their direction words would outweigh the day's.
        let Some(w) = fraction.filter(|w| w.abs() >= edges[2]) else {
            continue;
        };
        let mut words = format!("over {days} days {}", bands::period_band(w, edges));
        if let Some(kind) = bands::period_kind(w, edges, period) {
            let _ = write!(words, ", {kind}");
        }
        periods.push(words);
    }
    if !periods.is_empty() {
        let mut sentence = periods.join("; ");
        sentence.replace_range(..1, "O");
        let _ = write!(text, " {sentence}.");
    }
    if let Some(markets) = market_words(&ctx.market, vix_rose) {
        let _ = write!(text, " {markets}.");
    }
    text.trim_start().to_owned()
}

/// The day's cross-asset context in words, with the stored numbers, when it is news (VIX moved
/// at least [`bands::VIX_NOTABLE`], or `vix_rose`: the first sentence said volatility rose; the
/// dollar at least [`bands::DOLLAR_NOTABLE`]): "Across markets, VIX jumped 12.3% to 24.51 and
/// the dollar strengthened sharply 0.82%"; `None` otherwise. Said every day, the same sentence
/// in every document of a date would make days of unrelated securities alike; the metadata
/// keeps the context of every day.
fn market_words(market: &Market, vix_rose: bool) -> Option<String> {
    let vix = market.vix.and_then(|bar| {
        let r = bar.daily_return.to_f64()?;
        (vix_rose || r.abs() >= bands::VIX_NOTABLE).then(|| {
            format!(
                "VIX {} {}% to {}",
                bands::vix_verb(r),
                percent(r.abs(), 1),
                thousands(bar.close)
            )
        })
    });
    let dollar = market.dollar.and_then(|bar| {
        let r = bar.daily_return.to_f64()?;
        (r.abs() >= bands::DOLLAR_NOTABLE).then(|| {
            format!(
                "the dollar {} {}%",
                bands::dollar_verb(r),
                percent(r.abs(), 2)
            )
        })
    });
    match (vix, dollar) {
        (Some(v), Some(d)) => Some(format!("Across markets, {v} and {d}")),
        (Some(one), None) | (None, Some(one)) => Some(format!("Across markets, {one}")),
        (None, None) => None,
    }
}

/// The document for one security and day: the words ([`headline`]), then every number.
#[must_use]
pub fn narrate(facts: &DayFacts<'_>) -> String {
    let ind = facts.indicators;
    let mut text = headline(facts);
    // The words name the security; its name and category are in the metadata: said in every
    // document of the security, they made its days one another's neighbours whatever the day.
    let subject = if text.is_empty() {
        facts.db_symbol
    } else {
        text.push(' ');
        "it"
    };
    let day = facts.daily();
    // "closed lower at": the day's direction once more, where the numbers begin.
    let closed = match day {
        Some(r) if r > 0.0 => "closed higher",
        Some(r) if r < 0.0 => "closed lower",
        Some(_) => "closed unchanged",
        None => "closed",
    };
    let _ = write!(
        text,
        "On {} {subject} {closed} at {}",
        facts.trade_date,
        thousands(facts.close)
    );
    let mut moves: Vec<String> = Vec::new();
    if let Some(d) = day {
        let mut shown = format!("{} on the day", movement(d, 2));
        if let Some(m) = day_move(facts).filter(|_| facts.context.usual_move.is_some()) {
            let _ = write!(shown, " ({:.1} times its usual move)", m.z.abs());
        }
        moves.push(shown);
    }
    if let Some(w) = ind.return_5d {
        moves.push(format!("{} over 5 days", signed(w, 1)));
    }
    if let Some(w) = facts.context.return_20d {
        moves.push(format!("{} over 20 days", signed(w, 1)));
    }
    match moves.len() {
        0 => {}
        1 => {
            let _ = write!(text, ", {}", moves[0]);
        }
        n => {
            let _ = write!(text, ", {} and {}", moves[..n - 1].join(", "), moves[n - 1]);
        }
    }

    let mut signals: Vec<String> = Vec::new();
    // A neutral RSI, a calm volatility and the regime are not labelled among the numbers: the
    // same words in every document only make them alike (the regime is in the words above).
    if let Some(rsi) = ind.rsi_14 {
        if rsi >= RSI_OVERBOUGHT {
            signals.push(format!("RSI {rsi:.0} (overbought)"));
        } else if rsi <= RSI_OVERSOLD {
            signals.push(format!("RSI {rsi:.0} (oversold)"));
        } else {
            signals.push(format!("RSI {rsi:.0}"));
        }
    }
    if let Some(close) = facts.close.to_f64() {
        let averages: Vec<String> = [(ind.sma_50, "50-day"), (ind.sma_200, "200-day")]
            .into_iter()
            .filter_map(|(sma, days)| sma.map(|sma| relative_to(close / sma - 1.0, days)))
            .collect();
        if !averages.is_empty() {
            signals.push(format!("{} average", averages.join(" and ")));
        }
    }
    if let (Some(macd), Some(signal)) = (ind.macd, ind.macd_signal) {
        signals.push(
            if macd >= signal {
                "MACD above its signal line"
            } else {
                "MACD below its signal line"
            }
            .to_owned(),
        );
    }
    if let Some(b) = ind.bb_percent_b {
        if b > 1.0 {
            signals.push("above the upper Bollinger band".to_owned());
        } else if b < 0.0 {
            signals.push("below the lower Bollinger band".to_owned());
        }
    }
    if let Some(vol) = ind.volatility_20d {
        let volatile = if ind.volatility_regime == Some(VolatilityRegime::Volatile) {
            " (volatile)"
        } else {
            ""
        };
        signals.push(format!(
            "20-day volatility {}% annualized{volatile}",
            percent(vol, 1)
        ));
    }
    if let Some(z) = ind
        .volume_zscore_20d
        .filter(|z| z.abs() >= UNUSUAL_VOLUME_Z)
    {
        let side = if z > 0.0 { "above" } else { "below" };
        signals.push(format!(
            "volume {:.1} standard deviations {side} its 20-day average",
            z.abs()
        ));
    }
    if !signals.is_empty() {
        let _ = write!(text, "; {}", signals.join(", "));
    }
    if ind.new_52w_high {
        text.push_str("; new 52-week high");
    } else if let Some(dd) = ind.drawdown_252d.filter(|dd| *dd <= NOTABLE_DRAWDOWN) {
        let _ = write!(text, "; {}% below its one-year peak", percent(-dd, 1));
    }
    text.push('.');
    if let Some(keywords) = keywords(facts) {
        let _ = write!(text, " In short: {keywords}.");
    }
    text
}

/// The scalar metadata stored beside the document (in PostgreSQL and in Chroma): what a search
/// filters on. Only strings, integers, floats and booleans, as Chroma accepts; unknown values
/// are left out (a key sent as null would delete it in Chroma).
#[must_use]
pub fn metadata(facts: &DayFacts<'_>, yahoo_symbol: &str) -> Map<String, Value> {
    let ind = facts.indicators;
    let mut m = Map::new();
    m.insert("symbol".into(), facts.db_symbol.into());
    m.insert("yahoo_symbol".into(), yahoo_symbol.into());
    m.insert("name".into(), facts.name.into());
    m.insert("category".into(), facts.category.into());
    if let Some(sector) = facts.sector {
        m.insert("sector".into(), sector.into());
    }
    m.insert("trade_date".into(), facts.trade_date.to_string().into());
    let yyyymmdd = facts.trade_date.year() * 10_000
        + i32::try_from(facts.trade_date.month() * 100 + facts.trade_date.day()).unwrap_or(0);
    m.insert("trade_date_int".into(), yyyymmdd.into());
    let mut float = |key: &str, value: Option<f64>| {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            m.insert(key.to_owned(), v.into());
        }
    };
    float("close", facts.close.to_f64());
    float("daily_return", facts.daily());
    for column in FLOAT_COLUMNS {
        float(column.name, (column.get)(ind));
    }
    let day = day_move(facts);
    float("move_sigma", day.map(|d| d.z));
    float("return_20d", facts.context.return_20d);
    let market = &facts.context.market;
    float(
        "vix_return",
        market.vix.and_then(|b| b.daily_return.to_f64()),
    );
    float("vix_close", market.vix.and_then(|b| b.close.to_f64()));
    float(
        "dollar_return",
        market.dollar.and_then(|b| b.daily_return.to_f64()),
    );
    if let Some(day) = day {
        m.insert("move_band".into(), day.band().into());
    }
    m.insert("new_52w_high".into(), ind.new_52w_high.into());
    m.insert("new_52w_low".into(), facts.context.new_52w_low.into());
    m.insert("narrative_version".into(), NARRATIVE_VERSION.into());
    if let Some(trend) = ind.trend {
        m.insert("trend".into(), trend.as_str().into());
    }
    if let Some(vol) = ind.volatility_regime {
        m.insert("volatility_regime".into(), vol.as_str().into());
    }
    if let (Some(trend), Some(vol)) = (ind.trend, ind.volatility_regime) {
        m.insert("regime".into(), format!("{trend}, {vol}").into());
    }
    m
}

/// "up 0.80%", "down 1.2%", "unchanged" (when it rounds to zero at `decimals`).
fn movement(fraction: f64, decimals: usize) -> String {
    let shown = percent(fraction.abs(), decimals);
    if shown.trim_start_matches(['0', '.']).is_empty() {
        "unchanged".to_owned()
    } else if fraction > 0.0 {
        format!("up {shown}%")
    } else {
        format!("down {shown}%")
    }
}

/// "+2.1%", "-0.4%", "0.0%" (when it rounds to zero at `decimals`): the 5- and 20-day moves
/// among the numbers, signed rather than "up"/"down", so that the day's own direction words
/// outweigh theirs in the document's vector.
fn signed(fraction: f64, decimals: usize) -> String {
    let shown = percent(fraction.abs(), decimals);
    if shown.trim_start_matches(['0', '.']).is_empty() {
        format!("{shown}%")
    } else if fraction > 0.0 {
        format!("+{shown}%")
    } else {
        format!("-{shown}%")
    }
}

/// "4.2% above its 50-day", "0.3% below its 200-day", "at its 50-day" (when it rounds to zero).
fn relative_to(fraction: f64, what: &str) -> String {
    let shown = percent(fraction.abs(), 1);
    if shown.trim_start_matches(['0', '.']).is_empty() {
        format!("at its {what}")
    } else if fraction > 0.0 {
        format!("{shown}% above its {what}")
    } else {
        format!("{shown}% below its {what}")
    }
}

/// A fraction as a percentage with `decimals` places: 0.0080 -> "0.80".
fn percent(fraction: f64, decimals: usize) -> String {
    format!("{:.*}", decimals, fraction * 100.0)
}

/// A stored decimal with thousands separators and exactly its stored digits: 5137.08 ->
/// "5,137.08", 1.0823 -> "1.0823", 107000.5 -> "107,000.5".
#[must_use]
pub fn thousands(value: Decimal) -> String {
    let text = value.normalize().to_string();
    let (sign, unsigned) = text
        .strip_prefix('-')
        .map_or(("", text.as_str()), |rest| ("-", rest));
    let (int, frac) = unsigned
        .split_once('.')
        .map_or((unsigned, None), |(i, f)| (i, Some(f)));
    let mut grouped = String::with_capacity(int.len() + int.len() / 3);
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

#[cfg(test)]
mod tests {
    use rust_decimal_macros::dec;

    use super::*;
    use crate::job::analyze::{self, PricePoint};

    fn full() -> Indicators {
        Indicators {
            sma_50: Some(4_929.98),
            sma_200: Some(4_600.0),
            macd: Some(50.0),
            macd_signal: Some(40.0),
            rsi_14: Some(71.2),
            volatility_20d: Some(0.118),
            return_5d: Some(0.021),
            bb_percent_b: Some(0.9),
            drawdown_252d: Some(0.0),
            new_52w_high: true,
            trend: Some(Trend::Bull),
            volatility_regime: Some(VolatilityRegime::Calm),
            ..Indicators::default()
        }
    }

    fn facts(ind: &Indicators) -> DayFacts<'_> {
        DayFacts {
            db_symbol: "SPX",
            name: "S&P 500 Index",
            category: "indices",
            sector: None,
            trade_date: NaiveDate::from_ymd_opt(2024, 3, 1).unwrap(),
            close: dec!(5137.08),
            daily_return: Some(dec!(0.008012)),
            indicators: ind,
            context: Context::default(),
        }
    }

    /// The numbers part of the document: every number exactly as before the words were added
    /// (the 5- and 20-day moves signed since version 3; since version 4 without the name, the
    /// category, the regime and the labels "neutral" and "calm", which the words say or leave
    /// to the metadata).
    const NUMBERS_BEFORE: &str = "it closed higher at 5,137.08, up 0.80% on the day and +2.1% over 5 days; \
         RSI 71 (overbought), 4.2% above its 50-day and 11.7% above its 200-day average, \
         MACD above its signal line, 20-day volatility 11.8% annualized; new 52-week high.";

    #[test]
    fn the_issue_example() {
        let ind = full();
        let text = narrate(&facts(&ind));
        assert_eq!(
            text,
            format!(
                "An up day in a bull market. The trend is bullish. SPX rose, up 0.5 to 1% on the day, closing higher. \
                 A new 52-week high, its highest close in a year; overbought, RSI above 70. \
                 On 2024-03-01 {NUMBERS_BEFORE} In short: an up day, closing higher, in a bull market; a new 52-week high."
            )
        );
    }

    #[test]
    fn the_usual_move_and_the_20_day_move_are_shown_when_known() {
        let ind = full();
        let mut f = facts(&ind);
        f.context.usual_move = Some(0.005);
        f.context.return_20d = Some(-0.124);
        let text = narrate(&f);
        // 0.8012% on a 0.5% usual move: 1.6 sigma, a large move for an index.
        assert!(
            text.starts_with(
                "An up day in a bull market. The trend is bullish. SPX rallied strongly, up 0.5 to 1% on the day, closing higher."
            ),
            "{text}"
        );
        assert!(
            text.contains("RSI above 70. Over 20 days down more than 10%, a losing month."),
            "{text}"
        );
        assert!(
            text.contains(
                "it closed higher at 5,137.08, up 0.80% on the day (1.6 times its usual move), +2.1% over 5 days and -12.4% over 20 days;"
            ),
            "{text}"
        );
        let m = metadata(&f, "^GSPC");
        assert_eq!(m["move_band"], "strong rally");
        assert!((m["move_sigma"].as_f64().unwrap() - 1.6024).abs() < 1e-9);
        assert_eq!(m["return_20d"], -0.124);
    }

    #[test]
    fn unknowns_are_left_out() {
        let ind = Indicators::default();
        let mut f = facts(&ind);
        f.daily_return = None;
        assert_eq!(narrate(&f), "On 2024-03-01 SPX closed at 5,137.08.");
    }

    #[test]
    fn falls_drawdowns_and_volume_spikes() {
        let ind = Indicators {
            rsi_14: Some(24.6),
            drawdown_252d: Some(-0.153),
            volume_zscore_20d: Some(-2.44),
            bb_percent_b: Some(-0.1),
            return_5d: Some(-0.0004),
            ..Indicators::default()
        };
        let mut f = facts(&ind);
        f.daily_return = Some(dec!(-0.0234));
        assert_eq!(
            narrate(&f),
            "A sell-off. SPX fell sharply, down more than 2% on the day, closing lower. \
             It broke below its lower Bollinger band; oversold, RSI below 30; in a correction. \
             On 2024-03-01 it closed lower at 5,137.08, down 2.34% on the day and 0.0% over 5 days; \
             RSI 25 (oversold), below the lower Bollinger band, volume 2.4 standard deviations below its 20-day average; \
             15.3% below its one-year peak. In short: a sell-off, closing lower."
        );
    }

    #[test]
    fn closes_are_shown_exactly_as_stored() {
        assert_eq!(thousands(dec!(5137.08)), "5,137.08");
        assert_eq!(thousands(dec!(1.08230000)), "1.0823");
        assert_eq!(thousands(dec!(107000.50)), "107,000.5");
        assert_eq!(thousands(dec!(999)), "999");
        assert_eq!(thousands(dec!(1000)), "1,000");
        assert_eq!(thousands(dec!(1234567.891)), "1,234,567.891");
    }

    #[test]
    fn metadata_is_flat_scalars_without_unknowns() {
        let ind = full();
        let m = metadata(&facts(&ind), "^GSPC");
        assert_eq!(m["symbol"], "SPX");
        assert_eq!(m["trade_date"], "2024-03-01");
        assert_eq!(m["trade_date_int"], 20_240_301);
        assert_eq!(m["regime"], "bull, calm");
        assert_eq!(m["rsi_14"], 71.2);
        assert_eq!(m["move_band"], "rise");
        assert_eq!(m["new_52w_low"], false);
        assert_eq!(m["narrative_version"], NARRATIVE_VERSION);
        assert!(!m.contains_key("atr_14"), "unknown values are left out");
        assert!(!m.contains_key("return_20d"), "unknown values are left out");
        assert!(
            m.values()
                .all(|v| v.is_string() || v.is_number() || v.is_boolean())
        );
    }

    #[test]
    fn the_same_facts_give_the_same_text() {
        let ind = full();
        assert_eq!(narrate(&facts(&ind)), narrate(&facts(&ind)));
    }

    /// A stored history as the store hands it over: closes, their daily returns (rounded to 12
    /// places as stored) and the indicators `analyze` computes from them.
    fn history(closes: &[f64]) -> Vec<Day> {
        let start = NaiveDate::from_ymd_opt(2023, 1, 2).unwrap();
        let points: Vec<PricePoint> = closes
            .iter()
            .enumerate()
            .map(|(i, &c)| PricePoint {
                trade_date: start + chrono::Duration::days(i64::try_from(i).unwrap()),
                open: c,
                high: c * 1.01,
                low: c * 0.99,
                close: c,
                volume: 1000.0,
            })
            .collect();
        let computed = analyze::compute(&points, 252.0);
        points
            .iter()
            .zip(computed)
            .enumerate()
            .map(|(i, (p, indicators))| {
                let close = Decimal::try_from(p.close).unwrap().round_dp(2);
                let daily_return = (i > 0).then(|| {
                    let prev = Decimal::try_from(closes[i - 1]).unwrap().round_dp(2);
                    (close / prev - Decimal::ONE).round_dp(12)
                });
                Day {
                    trade_date: p.trade_date,
                    close,
                    daily_return,
                    indicators,
                }
            })
            .collect()
    }

    fn subject() -> Subject<'static> {
        Subject {
            db_symbol: "SPY",
            yahoo_symbol: "SPY",
            name: "SPDR S&P 500 ETF Trust",
            category: "etfs",
            sector: None,
        }
    }

    /// 300 days of a steady rise with a little noise, then a crash on the last day.
    fn rise_then_crash() -> Vec<f64> {
        let mut closes: Vec<f64> = (0..300)
            .map(|i| 100.0 + 0.1 * f64::from(i) + if i % 2 == 0 { 0.3 } else { -0.3 })
            .collect();
        closes.push(90.0);
        closes
    }

    #[test]
    fn a_crash_reads_as_one_with_its_regime_change_and_events() {
        let days = history(&rise_then_crash());
        let docs = documents(&subject(), &days, 2, &[], &Markets::default());
        assert_eq!(docs.len(), 2);
        let (calm, crash) = (&docs[0], &docs[1]);
        // -0.38% on a usual move of 0.48%: 0.8 sigma.
        assert!(
            calm.text.starts_with(
                "A down day in a bull market. The trend is bullish. SPY fell, down less than 0.5% on the day, closing lower."
            ),
            "{}",
            calm.text
        );
        let text = &crash.text;
        assert!(
            text.starts_with(
                "A crash in a volatile sideways market. \
                 The trend is sideways and trading is volatile: a volatile sideways market. \
                 SPY plunged, down more than 5% on the day, closing lower. It turned volatile; it turned sideways; \
                 it broke below its 200-day average; a new 52-week low, its lowest close in a year; \
                 it broke below its lower Bollinger band; oversold, RSI below 30; in a deep drawdown, \
                 more than 20% below its peak. Over 5 days down more than 10%, a losing week; \
                 over 20 days down more than 20%, a losing month."
            ),
            "{text}"
        );
        for words in [
            "On 2023-10-29 it closed lower at 90, down 30.56% on the day (",
            "times its usual move), ",
            "20-day volatility ",
            "% annualized (volatile);",
        ] {
            assert!(text.contains(words), "{words:?} missing from {text}");
        }
        let m = crash.metadata.as_object().unwrap();
        assert_eq!(m["move_band"], "plunge");
        assert_eq!(m["new_52w_low"], true);
        assert_eq!(m["trend"], "sideways");
        assert!(m["move_sigma"].as_f64().unwrap() < -2.5);
        assert_eq!(calm.metadata["new_52w_low"], false);
    }

    #[test]
    fn a_document_depends_only_on_the_days_up_to_it() {
        let days = history(&rise_then_crash());
        let all = documents(&subject(), &days, 30, &[], &Markets::default());
        // Narrating fewer days, or from only the lookback the store reads, changes nothing.
        let few = documents(&subject(), &days, 5, &[], &Markets::default());
        assert_eq!(few[..], all[25..]);
        let lookback = days.len() - 5 - LOOKBACK_DAYS as usize;
        let read = documents(&subject(), &days[lookback..], 5, &[], &Markets::default());
        assert_eq!(read, few);
        // ...and a later day does not change an earlier document.
        let before_crash = documents(
            &subject(),
            &days[..days.len() - 1],
            4,
            &[],
            &Markets::default(),
        );
        assert_eq!(before_crash[..], all[25..29]);
    }

    #[test]
    fn corporate_actions_of_the_day_are_named() {
        let days = history(&rise_then_crash());
        let last = days.last().unwrap().trade_date;
        let actions = [
            CorporateAction {
                ex_date: last,
                kind: ActionKind::Dividend {
                    amount: dec!(0.2400),
                },
            },
            CorporateAction {
                ex_date: last,
                kind: ActionKind::Split {
                    numerator: dec!(4),
                    denominator: dec!(1),
                },
            },
            CorporateAction {
                ex_date: last.pred_opt().unwrap().pred_opt().unwrap(),
                kind: ActionKind::Dividend { amount: dec!(9) },
            },
        ];
        let docs = documents(&subject(), &days, 2, &actions, &Markets::default());
        assert!(
            docs[1]
                .text
                .contains("it went ex-dividend (0.24 a share); a 4:1 stock split took effect."),
            "{}",
            docs[1].text
        );
        assert!(!docs[0].text.contains("dividend"), "{}", docs[0].text);
        assert!(!docs[0].text.contains("split"), "{}", docs[0].text);
    }

    #[test]
    fn a_sector_is_said_and_kept_in_the_metadata() {
        let ind = full();
        let mut f = facts(&ind);
        f.db_symbol = "AAPL";
        f.category = "stocks";
        f.sector = Some("technology");
        f.daily_return = Some(dec!(-0.0234));
        let text = narrate(&f);
        assert!(
            text.starts_with(
                "A technology stock sell-off in a bull market. The trend is bullish. AAPL fell sharply,"
            ),
            "{text}"
        );
        assert!(
            text.ends_with(
                "In short: a sell-off, closing lower, in a bull market; a new 52-week high."
            ),
            "{text}"
        );
        let m = metadata(&f, "AAPL");
        assert_eq!(m["sector"], "technology");
        // A smaller day names the sector after the symbol.
        f.daily_return = Some(dec!(-0.0199));
        assert!(
            narrate(&f).starts_with(
                "A down day in a bull market. The trend is bullish. AAPL, a technology stock, fell sharply,"
            ),
            "{}",
            narrate(&f)
        );
        // An ETF is an ETF, "an" before a vowel, underscores are spaces; another category
        // names the sector after the symbol, even on a big day.
        f.daily_return = Some(dec!(0.02));
        f.category = "etfs";
        f.sector = Some("energy");
        assert!(
            narrate(&f).starts_with(
                "An energy ETF rally in a bull market. The trend is bullish. AAPL rallied strongly,"
            ),
            "{}",
            narrate(&f)
        );
        f.category = "indices";
        f.sector = Some("consumer_discretionary");
        assert!(
            narrate(&f).starts_with(
                "A rally in a bull market. The trend is bullish. AAPL (the consumer discretionary sector) rallied"
            ),
            "{}",
            narrate(&f)
        );
        f.sector = None;
        assert!(
            narrate(&f).starts_with("A rally in a bull market. The trend is bullish. AAPL rallied"),
            "{}",
            narrate(&f)
        );
        assert!(!metadata(&f, "AAPL").contains_key("sector"));
    }

    #[test]
    fn the_days_direction_is_said_in_words_even_when_flat() {
        let ind = Indicators::default();
        let mut f = facts(&ind);
        for (r, words) in [
            (
                dec!(0.0004),
                "A quiet up day. SPX was flat, almost unchanged on the day, closing higher.",
            ),
            (
                dec!(-0.0004),
                "A quiet down day. SPX was flat, almost unchanged on the day, closing lower.",
            ),
            (
                dec!(0),
                "A quiet day. SPX was flat, almost unchanged on the day, closing unchanged.",
            ),
        ] {
            f.daily_return = Some(r);
            let text = narrate(&f);
            assert!(text.starts_with(words), "{text}");
        }
        // ...and once more where the numbers begin.
        f.daily_return = Some(dec!(-0.0004));
        assert!(
            narrate(&f)
                .contains("On 2024-03-01 it closed lower at 5,137.08, down 0.04% on the day."),
            "{}",
            narrate(&f)
        );
        f.daily_return = Some(dec!(0));
        assert!(
            narrate(&f)
                .contains("On 2024-03-01 it closed unchanged at 5,137.08, unchanged on the day."),
            "{}",
            narrate(&f)
        );
    }

    #[test]
    fn a_losing_week_and_a_deep_drawdown_are_said_smaller_ones_only_in_numbers() {
        let ind = Indicators {
            return_5d: Some(-0.061),
            drawdown_252d: Some(-0.213),
            trend: Some(Trend::Bear),
            volatility_regime: Some(VolatilityRegime::Volatile),
            ..Indicators::default()
        };
        let mut f = facts(&ind);
        f.daily_return = Some(dec!(-0.012));
        let text = narrate(&f);
        assert!(
            text.starts_with(
                "A down day in a volatile bear market. \
                 The trend is bearish and trading is volatile: a volatile bear market. \
                 SPX fell, down 1 to 2% on the day, closing lower. \
                 In a deep drawdown, more than 20% below its peak. Over 5 days down more than 5%, a losing week."
            ),
            "{text}"
        );
        assert!(
            text.ends_with(
                "In short: a down day, closing lower, in a volatile bear market; a losing week; a deep drawdown."
            ),
            "{text}"
        );
        // A correction is not a deep drawdown, a 4.9% loss not a losing week.
        let ind = Indicators {
            return_5d: Some(-0.049),
            drawdown_252d: Some(-0.199),
            ..ind
        };
        let text = narrate(&facts(&ind));
        assert!(
            text.contains("In a correction. On 2024-03-01 it closed higher at 5,137.08"),
            "{text}"
        );
        assert!(text.contains(" and -4.9% over 5 days;"), "{text}");
        assert!(
            text.ends_with("In short: an up day, closing higher, in a volatile bear market."),
            "{text}"
        );
    }

    fn bar(close: Decimal, daily_return: Decimal) -> ContextBar {
        ContextBar {
            close,
            daily_return,
        }
    }

    #[test]
    fn the_days_cross_asset_context_is_told_with_its_numbers() {
        let ind = Indicators::default();
        let mut f = facts(&ind);
        f.context.market = Market {
            vix: Some(bar(dec!(24.51), dec!(0.1234))),
            dollar: Some(bar(dec!(104.2), dec!(0.0082))),
        };
        let text = narrate(&f);
        assert!(
            text.contains(
                "closing higher. Across markets, VIX jumped 12.3% to 24.51 and the dollar strengthened sharply 0.82%. On 2024-03-01"
            ),
            "{text}"
        );
        let m = metadata(&f, "^GSPC");
        assert_eq!(m["vix_return"], 0.1234);
        assert_eq!(m["vix_close"], 24.51);
        assert_eq!(m["dollar_return"], 0.0082);
        // Moves that are not news are in the metadata only.
        f.context.market = Market {
            vix: Some(bar(dec!(15.02), dec!(-0.0999))),
            dollar: Some(bar(dec!(101), dec!(-0.0069))),
        };
        assert!(!narrate(&f).contains("Across markets"), "{}", narrate(&f));
        assert_eq!(metadata(&f, "^GSPC")["vix_return"], -0.0999);
        f.context.market = Market {
            vix: None,
            dollar: Some(bar(dec!(101), dec!(-0.0081))),
        };
        assert!(
            narrate(&f).contains("Across markets, the dollar weakened sharply 0.81%."),
            "{}",
            narrate(&f)
        );
        f.context.market = Market::default();
        assert!(!narrate(&f).contains("Across markets"), "{}", narrate(&f));
        let m = metadata(&f, "^GSPC");
        assert!(!m.contains_key("vix_return") && !m.contains_key("dollar_return"));
    }

    #[test]
    fn the_regime_is_said_again_and_a_volatile_one_by_name() {
        use {Trend::*, VolatilityRegime::*};
        let said = |t, v| regime_sentence(t, v);
        assert_eq!(
            said(Some(Bull), Some(Calm)).as_deref(),
            Some("The trend is bullish.")
        );
        assert_eq!(
            said(Some(Sideways), None).as_deref(),
            Some("The trend is sideways.")
        );
        assert_eq!(
            said(Some(Bear), Some(Volatile)).as_deref(),
            Some("The trend is bearish and trading is volatile: a volatile bear market.")
        );
        assert_eq!(
            said(None, Some(Volatile)).as_deref(),
            Some("Trading is volatile: a volatile market.")
        );
        assert_eq!(said(None, Some(Calm)), None);
        assert_eq!(said(None, None), None);
        // A calm regime has no word of its own anywhere: it is the usual state.
        assert_eq!(
            regime_words(Some(Bull), Some(Calm)).as_deref(),
            Some("a bull market")
        );
        assert_eq!(regime_words(None, Some(Calm)), None);
    }

    #[test]
    fn a_big_day_says_when_volatility_rose_with_it() {
        let ind = Indicators {
            trend: Some(Trend::Bear),
            volatility_regime: Some(VolatilityRegime::Volatile),
            ..Indicators::default()
        };
        let mut f = facts(&ind);
        f.db_symbol = "AMD";
        f.category = "stocks";
        f.sector = Some("technology");
        f.daily_return = Some(dec!(-0.025));
        f.context.market.vix = Some(bar(dec!(18.2), dec!(0.031)));
        let text = narrate(&f);
        assert!(
            text.starts_with(
                "A technology stock sell-off in a volatile bear market, while volatility rose. \
                 The trend is bearish and trading is volatile: a volatile bear market. AMD plunged,"
            ),
            "{text}"
        );
        // Said with its numbers, though VIX's move is below the 10% that is news on any day.
        assert!(
            text.contains(
                "closing lower. Across markets, VIX edged up 3.1% to 18.2. On 2024-03-01"
            ),
            "{text}"
        );
        // Not on a smaller day, not for VIX up less than 2% or down, only in the metadata.
        for (r, vix) in [
            (dec!(-0.0199), dec!(0.031)),
            (dec!(-0.025), dec!(0.0199)),
            (dec!(-0.025), dec!(-0.05)),
        ] {
            f.daily_return = Some(r);
            f.context.market.vix = Some(bar(dec!(18.2), vix));
            let text = narrate(&f);
            assert!(!text.contains("volatility rose"), "{text}");
            assert!(!text.contains("Across markets"), "{text}");
            assert_eq!(metadata(&f, "AMD")["vix_return"], vix.to_f64().unwrap());
        }
        // A rally with VIX up says it too.
        f.daily_return = Some(dec!(0.06));
        f.context.market.vix = Some(bar(dec!(18.2), dec!(0.02)));
        assert!(
            narrate(&f).starts_with(
                "A technology stock surge in a volatile bear market, while volatility rose. "
            ),
            "{}",
            narrate(&f)
        );
    }

    #[test]
    fn the_context_is_that_of_the_same_date_and_never_the_security_itself() {
        let days = history(&rise_then_crash());
        let last = days.last().unwrap().trade_date;
        let series = |symbol: &str| ContextSeries {
            db_symbol: symbol.to_owned(),
            bars: [(last, bar(dec!(30.5), dec!(0.25)))].into_iter().collect(),
        };
        let vix_series = series("VIX");
        let markets = Markets {
            vix: Some(&vix_series),
            dollar: None,
        };
        let docs = documents(&subject(), &days, 2, &[], &markets);
        assert!(!docs[0].text.contains("VIX"), "{}", docs[0].text);
        assert!(
            docs[1]
                .text
                .contains("Across markets, VIX spiked 25.0% to 30.5."),
            "{}",
            docs[1].text
        );
        assert!(
            docs[1]
                .text
                .starts_with("A crash in a volatile sideways market, while volatility rose. "),
            "{}",
            docs[1].text
        );
        // VIX's own documents do not tell VIX's move twice.
        let vix = Subject {
            db_symbol: "VIX",
            ..subject()
        };
        let own = documents(&vix, &days, 1, &[], &markets);
        assert!(!own[0].text.contains("Across markets"), "{}", own[0].text);
        // Without the context bar the document differs: it is narrated again when it arrives.
        let without = documents(&subject(), &days, 1, &[], &Markets::default());
        assert_ne!(without[0], docs[1]);
    }
}
