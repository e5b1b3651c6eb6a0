//! Domain newtypes: each value can only be constructed valid ("parse, don't validate").
//!
//! * [`YahooSymbol`]: the ticker as Yahoo Finance spells it (`^GSPC`, `EURUSD=X`, `BTC-USD`).
//! * [`DbSymbol`]: the symbol stored in PostgreSQL (`VARCHAR(32)`).
//! * [`Category`]: a group of securities in the config file (`indices`, `etfs`, ...).
//! * [`Sector`]: the sector of a stock or ETF (`technology`, `financials`, ...).
//! * [`DateWindow`]: an inclusive range of calendar dates.
//! * [`Shard`]: one of `n` disjoint parts of a run's selected securities (`--shard i/n`).
//!
//! Error messages say what is wrong and what is allowed, and always fit on one line (values are
//! shown escaped and shortened), so callers can prefix them with a file and line.

mod action;
mod history;
mod position;
mod role;
mod security;
mod source;

pub use action::{ActionKind, CorporateAction};
pub use history::{HistoryDays, MAX_HISTORY_FROM, SecurityWindow, WindowReason};
pub use position::{Position, Quantity, QuantityError};
pub use role::{DEFAULT_CORRELATIONS, ROLE_KEYS, Role};
pub use security::Security;
pub use source::{NotOnTiingo, SOURCE_NAMES, Source, TiingoTicker, TiingoToken};

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, Days, NaiveDate};

/// Longest symbol or category name accepted (the DB column is `VARCHAR(32)`).
pub const MAX_SYMBOL_LEN: usize = 32;

/// Characters allowed in [`YahooSymbol`] and [`DbSymbol`], as shown in error messages.
const SYMBOL_CHARSET: &str = "A-Z a-z 0-9 ^ = . - _";
/// Characters allowed in [`Category`], as shown in error messages.
const CATEGORY_CHARSET: &str = "a-z 0-9 _";

/// Why a domain value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The input was empty (or only whitespace).
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    /// The input had leading or trailing whitespace.
    #[error("{kind} {value:?} has leading or trailing whitespace")]
    Whitespace { kind: &'static str, value: String },
    /// The input was longer than allowed.
    #[error("{kind} {value:?} is {len} characters long; at most {max} are allowed")]
    TooLong {
        kind: &'static str,
        value: String,
        len: usize,
        max: usize,
    },
    /// The input had a character outside the allowed set.
    #[error(
        "{kind} {value:?} has a character outside {allowed} (found {found:?} at position {position})"
    )]
    BadChar {
        kind: &'static str,
        value: String,
        allowed: &'static str,
        found: char,
        /// 1-based character position of `found`.
        position: usize,
    },
    /// A date window whose start is after its end.
    #[error("date window {from}..{to} is reversed: the first date must not be after the last")]
    ReversedWindow { from: NaiveDate, to: NaiveDate },
    /// A shard that is not `i/n` with `0 <= i < n` and `1 <= n <= MAX_SHARDS`.
    #[error(
        "shard {value:?} {reason} (write i/n with 0 <= i < n and 1 <= n <= {MAX_SHARDS}, e.g. 0/4)"
    )]
    BadShard { value: String, reason: String },
}

/// Shortens `value` for an error message so one bad value cannot flood the line: at most 40
/// characters, then `…`.
#[must_use]
pub fn preview(value: &str) -> String {
    const MAX: usize = 40;
    if value.chars().count() <= MAX {
        value.to_owned()
    } else {
        let mut short: String = value.chars().take(MAX).collect();
        short.push('…');
        short
    }
}

/// Shared check: non-empty, no surrounding whitespace, 1..=32 chars, every char allowed.
fn check_token(
    kind: &'static str,
    value: &str,
    allowed: &'static str,
    is_allowed: fn(char) -> bool,
) -> Result<(), DomainError> {
    if value.trim().is_empty() {
        return Err(DomainError::Empty { kind });
    }
    if value.trim() != value {
        return Err(DomainError::Whitespace {
            kind,
            value: preview(value),
        });
    }
    let len = value.chars().count();
    if len > MAX_SYMBOL_LEN {
        return Err(DomainError::TooLong {
            kind,
            value: preview(value),
            len,
            max: MAX_SYMBOL_LEN,
        });
    }
    if let Some((index, found)) = value.chars().enumerate().find(|&(_, c)| !is_allowed(c)) {
        return Err(DomainError::BadChar {
            kind,
            value: preview(value),
            allowed,
            found,
            position: index + 1,
        });
    }
    Ok(())
}

fn is_symbol_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '^' | '=' | '.' | '-' | '_')
}

fn is_category_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
}

/// Implements the string-newtype boilerplate shared by the symbol and category types.
macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            /// The validated text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The validated text, by value.
            #[must_use]
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = DomainError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = DomainError;

            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::parse(s)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
    };
}

/// A ticker as Yahoo Finance spells it: 1..=32 characters of `A-Z a-z 0-9 ^ = . - _`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct YahooSymbol(String);

impl YahooSymbol {
    /// Parses a Yahoo ticker such as `^GSPC`, `EURUSD=X`, `BTC-USD` or `DX-Y.NYB`.
    ///
    /// # Errors
    /// [`DomainError`] if the input is empty, has surrounding whitespace, is longer than 32
    /// characters, or has a character outside `A-Z a-z 0-9 ^ = . - _`.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        check_token("symbol", s, SYMBOL_CHARSET, is_symbol_char)?;
        Ok(Self(s.to_owned()))
    }
}
string_newtype!(YahooSymbol);

/// The symbol stored in the database: 1..=32 characters of `A-Z a-z 0-9 ^ = . - _`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DbSymbol(String);

impl DbSymbol {
    /// Parses a database symbol such as `SPX` or `BTCUSD`.
    ///
    /// # Errors
    /// [`DomainError`] if the input is empty, has surrounding whitespace, is longer than 32
    /// characters (the column is `VARCHAR(32)`), or has a character outside
    /// `A-Z a-z 0-9 ^ = . - _`.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        check_token("symbol", s, SYMBOL_CHARSET, is_symbol_char)?;
        Ok(Self(s.to_owned()))
    }
}
string_newtype!(DbSymbol);

/// A category of securities in the config file: 1..=32 characters of `a-z 0-9 _`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Category(String);

impl Category {
    /// Parses a category name such as `indices` or `etfs`.
    ///
    /// # Errors
    /// [`DomainError`] if the input is empty, has surrounding whitespace, is longer than 32
    /// characters, or has a character outside `a-z 0-9 _`.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        check_token("category", s, CATEGORY_CHARSET, is_category_char)?;
        Ok(Self(s.to_owned()))
    }
}
string_newtype!(Category);

/// The sector (or industry, or theme) of a stock or ETF, as the config names it (`sector:
/// technology`): 1..=32 characters of `a-z 0-9 _`, like a [`Category`]. The narrative says it
/// in words (underscores as spaces: "a consumer discretionary stock"), the metadata keeps it as
/// written (`sector`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sector(String);

impl Sector {
    /// Parses a sector name such as `technology` or `consumer_discretionary`.
    ///
    /// # Errors
    /// [`DomainError`] if the input is empty, has surrounding whitespace, is longer than 32
    /// characters, or has a character outside `a-z 0-9 _`.
    pub fn parse(s: &str) -> Result<Self, DomainError> {
        check_token("sector", s, CATEGORY_CHARSET, is_category_char)?;
        Ok(Self(s.to_owned()))
    }

    /// The sector in words: `consumer_discretionary` -> "consumer discretionary".
    #[must_use]
    pub fn words(&self) -> String {
        self.0.replace('_', " ")
    }
}
string_newtype!(Sector);

/// An inclusive range of calendar dates, `from <= to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DateWindow {
    from: NaiveDate,
    to: NaiveDate,
}

impl DateWindow {
    /// The window `from..=to`.
    ///
    /// Whether `to` lies in the future is not checked here.
    ///
    /// # Errors
    /// [`DomainError::ReversedWindow`] if `from > to`.
    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<Self, DomainError> {
        if from > to {
            return Err(DomainError::ReversedWindow { from, to });
        }
        Ok(Self { from, to })
    }

    /// The window `today - days ..= today` (so `days + 1` calendar days).
    ///
    /// Saturates at the earliest date chrono can represent.
    #[must_use]
    pub fn days_back(today: NaiveDate, days: u32) -> Self {
        let from = today
            .checked_sub_days(Days::new(u64::from(days)))
            .unwrap_or(NaiveDate::MIN);
        Self { from, to: today }
    }

    /// First day of the window (inclusive).
    #[must_use]
    pub fn from(&self) -> NaiveDate {
        self.from
    }

    /// Last day of the window (inclusive).
    #[must_use]
    pub fn to(&self) -> NaiveDate {
        self.to
    }

    /// Whether `date` lies in the window (both ends inclusive).
    #[must_use]
    pub fn contains(&self, date: NaiveDate) -> bool {
        self.from <= date && date <= self.to
    }

    /// Number of calendar days in the window, counting both ends (always at least 1).
    #[must_use]
    pub fn days(&self) -> u32 {
        let span = (self.to - self.from).num_days().saturating_add(1);
        u32::try_from(span).unwrap_or(u32::MAX)
    }

    /// Number of Mondays to Fridays in the window, counting both ends.
    #[must_use]
    pub fn weekdays(&self) -> u32 {
        let days = self.days();
        let (weeks, rest) = (days / 7, days % 7);
        let start = self.from.weekday().num_days_from_monday();
        let extra = (0..rest).filter(|d| (start + d) % 7 < 5).count();
        weeks * 5 + u32::try_from(extra).unwrap_or(0)
    }
}

impl fmt::Display for DateWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.from, self.to)
    }
}

/// Most shards a run can be split into.
pub const MAX_SHARDS: u32 = 1024;

/// One of `count` disjoint parts of a run's selected securities: `index` in `0..count`.
///
/// Assignment is by position, not by hash: the selected securities are sorted by `db_symbol`
/// and the one at sorted position `p` belongs to shard `p % count`. The shards are therefore
/// disjoint, cover the selection, and differ in size by at most one. The price: the
/// assignment depends on the whole selection, so every shard of one job must run with the same
/// securities file and the same `--categories`/`--symbols` (an Indexed Job's pods do: one
/// ConfigMap, one pod template).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// Shard `index` of `count`.
    ///
    /// # Errors
    /// [`DomainError::BadShard`] unless `index < count` and `1 <= count <= MAX_SHARDS`.
    pub fn new(index: u32, count: u32) -> Result<Self, DomainError> {
        let bad = |reason: String| DomainError::BadShard {
            value: format!("{index}/{count}"),
            reason,
        };
        if count == 0 {
            return Err(bad("has no shards (n must be at least 1)".into()));
        }
        if count > MAX_SHARDS {
            return Err(bad(format!("has more than {MAX_SHARDS} shards")));
        }
        if index >= count {
            return Err(bad(format!(
                "is out of range (i must be below n: 0..={})",
                count - 1
            )));
        }
        Ok(Self { index, count })
    }

    /// This shard's number, `0..count`.
    #[must_use]
    pub fn index(self) -> u32 {
        self.index
    }

    /// How many shards there are.
    #[must_use]
    pub fn count(self) -> u32 {
        self.count
    }

    /// The items of `items` (in their order) that belong to this shard, where `key` is the
    /// sort key (the `db_symbol`). Ties (equal keys) are ordered by their position in `items`.
    #[must_use]
    pub fn select<T>(self, items: Vec<T>, key: impl Fn(&T) -> &str) -> Vec<T> {
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by(|&a, &b| key(&items[a]).cmp(key(&items[b])).then(a.cmp(&b)));
        let count = self.count as usize;
        let index = self.index as usize;
        let mut mine = vec![false; items.len()];
        for (position, &item) in order.iter().enumerate() {
            mine[item] = position % count == index;
        }
        items
            .into_iter()
            .zip(mine)
            .filter_map(|(item, keep)| keep.then_some(item))
            .collect()
    }

    /// The PostgreSQL advisory-lock key of a run of this shard: distinct per `i/n` and from
    /// the unsharded run's key (its top byte is `S`), so the shards of one job run in parallel
    /// while two runs of the same shard still exclude each other.
    #[must_use]
    pub fn lock_key(self) -> i64 {
        (0x53_i64 << 56) | (i64::from(self.count) << 24) | i64::from(self.index)
    }
}

impl FromStr for Shard {
    type Err = DomainError;

    /// Parses `i/n`, e.g. `0/4` (surrounding whitespace allowed).
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| DomainError::BadShard {
            value: preview(value),
            reason: reason.to_owned(),
        };
        let (index, count) = value
            .trim()
            .split_once('/')
            .ok_or_else(|| bad("is not of the form i/n"))?;
        let number = |part: &str, what: &str| {
            part.trim()
                .parse::<u32>()
                .map_err(|_| bad(&format!("has a {what} that is not a whole number >= 0")))
        };
        Self::new(
            number(index, "shard index i")?,
            number(count, "shard count n")?,
        )
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn yahoo_symbols_from_the_shipped_config_parse() {
        for s in [
            "^GSPC", "^IXIC", "EURUSD=X", "BTC-USD", "DX-Y.NYB", "GC=F", "BRK.B", "SPY",
        ] {
            let sym = YahooSymbol::parse(s).unwrap();
            assert_eq!(sym.as_str(), s);
            assert_eq!(sym.to_string(), s);
            assert_eq!(sym, s);
        }
    }

    #[test]
    fn symbol_errors_say_what_is_wrong_and_what_is_allowed() {
        assert_eq!(
            YahooSymbol::parse("").unwrap_err().to_string(),
            "symbol is empty"
        );
        assert_eq!(
            YahooSymbol::parse("   ").unwrap_err().to_string(),
            "symbol is empty"
        );
        assert_eq!(
            YahooSymbol::parse("S P Y").unwrap_err().to_string(),
            r#"symbol "S P Y" has a character outside A-Z a-z 0-9 ^ = . - _ (found ' ' at position 2)"#
        );
        assert_eq!(
            YahooSymbol::parse(" SPY").unwrap_err().to_string(),
            r#"symbol " SPY" has leading or trailing whitespace"#
        );
        let long = "A".repeat(33);
        assert_eq!(
            DbSymbol::parse(&long).unwrap_err().to_string(),
            format!(r#"symbol "{long}" is 33 characters long; at most 32 are allowed"#)
        );
        assert_eq!(
            DbSymbol::parse("BTC–USD").unwrap_err().to_string(),
            r#"symbol "BTC–USD" has a character outside A-Z a-z 0-9 ^ = . - _ (found '–' at position 4)"#
        );
    }

    #[test]
    fn error_messages_stay_on_one_line_and_short() {
        let err = YahooSymbol::parse("A\nB").unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.contains(r#""A\nB""#), "{err}");
        let huge = "x".repeat(10_000);
        let err = YahooSymbol::parse(&huge).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
    }

    #[test]
    fn category_rules() {
        assert_eq!(Category::parse("etfs").unwrap().as_str(), "etfs");
        assert_eq!(Category::parse("fx_2").unwrap().to_string(), "fx_2");
        assert_eq!(
            Category::parse("Stocks").unwrap_err().to_string(),
            r#"category "Stocks" has a character outside a-z 0-9 _ (found 'S' at position 1)"#
        );
        assert_eq!(
            Category::parse("").unwrap_err().to_string(),
            "category is empty"
        );
        assert!(Category::parse("my-etfs").is_err());
    }

    #[test]
    fn newtypes_borrow_as_str_for_map_lookups() {
        let mut map = std::collections::HashMap::new();
        map.insert(YahooSymbol::parse("SPY").unwrap(), 1);
        assert_eq!(map.get("SPY"), Some(&1));
        let parsed: DbSymbol = "SPX".parse().unwrap();
        assert_eq!(parsed, DbSymbol::try_from("SPX").unwrap());
    }

    #[test]
    fn date_window_basics() {
        let w = DateWindow::new(date("2024-01-02"), date("2024-03-29")).unwrap();
        assert_eq!(w.to_string(), "2024-01-02..2024-03-29");
        assert_eq!(w.from(), date("2024-01-02"));
        assert_eq!(w.to(), date("2024-03-29"));
        assert_eq!(w.days(), 88);
        assert!(w.contains(date("2024-01-02")));
        assert!(w.contains(date("2024-03-29")));
        assert!(!w.contains(date("2024-01-01")));
        assert!(!w.contains(date("2024-03-30")));

        let one = DateWindow::new(date("2024-05-05"), date("2024-05-05")).unwrap();
        assert_eq!(one.days(), 1);

        let err = DateWindow::new(date("2024-03-29"), date("2024-01-02")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "date window 2024-03-29..2024-01-02 is reversed: the first date must not be after the last"
        );
    }

    #[test]
    fn weekdays_count_mondays_to_fridays() {
        let w = |a, b| DateWindow::new(date(a), date(b)).unwrap().weekdays();
        assert_eq!(w("2024-12-28", "2024-12-29"), 0); // Saturday, Sunday
        assert_eq!(w("2024-12-25", "2024-12-25"), 1); // a Wednesday holiday
        assert_eq!(w("2024-12-27", "2024-12-30"), 2); // Friday..Monday
        assert_eq!(w("2024-01-01", "2024-01-31"), 23);
        let brute = |a: &str, b: &str| {
            date(a)
                .iter_days()
                .take_while(|d| *d <= date(b))
                .filter(|d| d.weekday().num_days_from_monday() < 5)
                .count()
        };
        for (a, b) in [("2024-02-03", "2024-03-17"), ("2023-06-07", "2024-06-06")] {
            assert_eq!(w(a, b) as usize, brute(a, b), "{a}..{b}");
        }
    }

    #[test]
    fn days_back_counts_back_from_today() {
        let w = DateWindow::days_back(date("2024-03-01"), 60);
        assert_eq!(w.from(), date("2024-01-01"));
        assert_eq!(w.to(), date("2024-03-01"));
        assert_eq!(w.days(), 61);
        assert_eq!(DateWindow::days_back(date("2024-03-01"), 0).days(), 1);
        let far = DateWindow::days_back(NaiveDate::MIN, 5);
        assert_eq!(far.from(), NaiveDate::MIN);
    }

    fn symbol_char() -> impl Strategy<Value = char> {
        prop::sample::select(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789^=.-_"
                .chars()
                .collect::<Vec<_>>(),
        )
    }

    fn any_date() -> impl Strategy<Value = NaiveDate> {
        // 1900-01-01 .. ~2200
        (0u32..110_000).prop_map(|d| {
            NaiveDate::from_ymd_opt(1900, 1, 1)
                .unwrap()
                .checked_add_days(Days::new(u64::from(d)))
                .unwrap()
        })
    }

    proptest! {
        #[test]
        fn valid_symbols_round_trip(chars in prop::collection::vec(symbol_char(), 1..=32)) {
            let s: String = chars.into_iter().collect();
            let y = YahooSymbol::parse(&s).unwrap();
            let d = DbSymbol::parse(&s).unwrap();
            prop_assert_eq!(y.as_str(), s.as_str());
            prop_assert_eq!(d.to_string(), s.clone());
            prop_assert_eq!(YahooSymbol::parse(y.as_str()).unwrap(), y);
        }

        #[test]
        fn parse_accepts_exactly_the_documented_language(s in "\\PC{0,40}|[A-Za-z0-9^=._ -]{0,40}") {
            let expected = (1..=32).contains(&s.chars().count()) && s.chars().all(is_symbol_char);
            prop_assert_eq!(YahooSymbol::parse(&s).is_ok(), expected);
            prop_assert_eq!(DbSymbol::parse(&s).is_ok(), expected);
            let expected_cat = (1..=32).contains(&s.chars().count()) && s.chars().all(is_category_char);
            prop_assert_eq!(Category::parse(&s).is_ok(), expected_cat);
            if let Err(e) = YahooSymbol::parse(&s) {
                let msg = e.to_string();
                prop_assert!(!msg.contains('\n'));
                prop_assert!(msg.starts_with("symbol"));
            }
        }

        #[test]
        fn window_new_is_ok_iff_ordered(a in any_date(), b in any_date()) {
            match DateWindow::new(a, b) {
                Ok(w) => {
                    prop_assert!(a <= b);
                    prop_assert!(w.contains(a) && w.contains(b));
                    prop_assert_eq!(i64::from(w.days()), (b - a).num_days() + 1);
                    prop_assert_eq!(w.to_string(), format!("{a}..{b}"));
                }
                Err(_) => prop_assert!(a > b),
            }
        }

        #[test]
        fn days_back_window_has_days_plus_one_days(today in any_date(), days in 0u32..40_000, probe in any_date()) {
            let w = DateWindow::days_back(today, days);
            prop_assert_eq!(w.to(), today);
            prop_assert_eq!(w.days(), days + 1);
            prop_assert_eq!(w.contains(probe), w.from() <= probe && probe <= today);
        }
    }

    #[test]
    fn shards_parse_i_of_n() {
        let s: Shard = "1/4".parse().unwrap();
        assert_eq!((s.index(), s.count()), (1, 4));
        assert_eq!(s.to_string(), "1/4");
        assert_eq!(
            " 0 / 1 ".parse::<Shard>().unwrap(),
            Shard::new(0, 1).unwrap()
        );
        assert_eq!(
            "1023/1024".parse::<Shard>().unwrap(),
            Shard::new(1023, 1024).unwrap()
        );
        for (bad, says) in [
            ("4/4", "out of range"),
            ("5/4", "out of range"),
            ("0/0", "no shards"),
            ("0/1025", "more than 1024"),
            ("-1/4", "shard index i"),
            ("1/x", "shard count n"),
            ("1", "not of the form i/n"),
            ("", "not of the form i/n"),
            ("1/2/3", "shard count n"),
        ] {
            let e = bad.parse::<Shard>().unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(e.contains("write i/n"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_shard_takes_every_nth_security_in_db_symbol_order() {
        let symbols = vec!["SPY", "AAPL", "QQQ", "BTCUSD", "MSFT"];
        // sorted: AAPL BTCUSD MSFT QQQ SPY -> 0 1 0 1 0 for n = 2; config order is kept.
        let zero = Shard::new(0, 2).unwrap().select(symbols.clone(), |s| s);
        let one = Shard::new(1, 2).unwrap().select(symbols.clone(), |s| s);
        assert_eq!(zero, ["SPY", "AAPL", "MSFT"]);
        assert_eq!(one, ["QQQ", "BTCUSD"]);
        assert_eq!(
            Shard::new(0, 1).unwrap().select(symbols.clone(), |s| s),
            symbols
        );
        assert!(Shard::new(6, 8).unwrap().select(symbols, |s| s).is_empty());
    }

    #[test]
    fn shard_lock_keys_differ_from_each_other_and_from_the_run_lock() {
        let mut keys = std::collections::HashSet::new();
        for n in [1, 2, 3, 4, 1024] {
            for i in 0..n {
                assert!(keys.insert(Shard::new(i, n).unwrap().lock_key()));
            }
        }
        assert!(!keys.contains(&0x006d_6b74_2d65_6e63));
    }

    proptest! {
        #[test]
        fn shards_partition_the_selection(
            symbols in proptest::collection::vec("[A-Z]{1,4}", 0..40),
            count in 1u32..12,
        ) {
            let items: Vec<(usize, String)> = symbols.into_iter().enumerate().collect();
            let mut seen = vec![0u32; items.len()];
            let mut sizes = Vec::new();
            for index in 0..count {
                let shard = Shard::new(index, count).unwrap();
                let mine = shard.select(items.clone(), |(_, s)| s.as_str());
                // Config order is kept within a shard.
                prop_assert!(mine.windows(2).all(|w| w[0].0 < w[1].0));
                for (i, _) in &mine {
                    seen[*i] += 1;
                }
                sizes.push(mine.len());
            }
            prop_assert!(seen.iter().all(|&n| n == 1), "not a partition: {seen:?}");
            let (min, max) = (sizes.iter().min().copied(), sizes.iter().max().copied());
            prop_assert!(max.unwrap_or(0) - min.unwrap_or(0) <= 1, "unbalanced: {sizes:?}");
        }

        #[test]
        fn any_valid_shard_round_trips(count in 1u32..=MAX_SHARDS, index in 0u32..MAX_SHARDS) {
            let index = index % count;
            let shard = Shard::new(index, count).unwrap();
            prop_assert_eq!(shard.to_string().parse::<Shard>().unwrap(), shard);
        }
    }
}
