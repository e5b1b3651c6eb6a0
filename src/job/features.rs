//! Cross-asset features: a handful of market-wide ML inputs per trade date, computed from the
//! stored closes of the securities that play each role (`features.roles` in securities.yaml).
//! Pure functions, no I/O: the store reads the closes into a [`Panel`] and writes the
//! [`FeatureRow`]s; the pipeline logs the [`Gap`]s. The same text is in ARCHITECTURE.md
//! ("Cross-asset features").
//!
//! # Dates
//! The **feature calendar** is the set of dates on which at least one input that is not crypto
//! has a stored close (crypto = the `btc` role and any input whose Yahoo instrument type is
//! `CRYPTOCURRENCY`). Crypto trades every day; it is aligned on the calendar by taking its
//! close of the same date and ignoring its other days. Each calendar date gets one row per
//! feature, `NULL` where the inputs are missing.
//!
//! # Formulas (C = close on date D, f64 from the stored decimals)
//! - `ml_risk_on_ratio` = (C(qqq) + C(hyg)) / (C(vix) + C(tlt))
//! - `ml_innovation_premium` = C(arkk) / C(qqq)
//! - `ml_tech_leadership` = C(qqq) / C(spy)
//! - `ml_market_breadth` = C(spy) / C(iwm)
//! - `ml_vix_fear_index` = C(vix)
//! - `ml_credit_spreads` = R(hyg, spread_days) - R(lqd, spread_days), where R(s, n) = C(s, D) /
//!   C(s, n dates earlier) - 1 on the window's dates (below)
//! - `ml_dollar_strength` = R(dxy, momentum_days)
//! - `ml_flight_to_quality` = correlation of the daily returns of gld and tlt over
//!   `correlation_days` returns
//! - `ml_{name}_correlation` = correlation of the daily returns of the configured symbol and the
//!   `btc` role over `correlation_days` returns
//!
//! Ratios and levels use closes of date D only. Returns are simple returns
//! (C(t) / C(t-1) - 1, like `market_data.daily_return`). Correlation is Pearson's (the same as
//! PostgreSQL's `corr`), and `NULL` when either series of returns is constant.
//!
//! # Windows
//! A feature over n returns uses the last n + 1 dates on which *all* its inputs have a close,
//! searched among the last 2n + 1 calendar dates up to D; D itself must be one of them (a value
//! dated D uses D's closes). So a US holiday on which one input did not trade is skipped, not
//! filled, and a value never reaches back further than 2n calendar dates. Fewer than n + 1 such
//! dates: `NULL`. Each value is computed from its own window only (no running sums), so it is
//! the same bits whichever run computes it, and an unchanged input rewrites nothing.
//!
//! # Missing data
//! A feature whose inputs are missing for a date is `NULL` with the reason in its `inputs`
//! ([`Inputs`]); never a carried-forward or interpolated number. The pipeline logs one warning
//! per feature and run ([`Gap`]) naming the missing symbols.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::domain::{DbSymbol, Role};

pub const RISK_ON_RATIO: &str = "ml_risk_on_ratio";
pub const INNOVATION_PREMIUM: &str = "ml_innovation_premium";
pub const TECH_LEADERSHIP: &str = "ml_tech_leadership";
pub const CREDIT_SPREADS: &str = "ml_credit_spreads";
pub const FLIGHT_TO_QUALITY: &str = "ml_flight_to_quality";
pub const VIX_FEAR_INDEX: &str = "ml_vix_fear_index";
pub const DOLLAR_STRENGTH: &str = "ml_dollar_strength";
pub const MARKET_BREADTH: &str = "ml_market_breadth";

/// The features every configuration has, in the order they are listed.
pub const FIXED_FEATURES: [&str; 8] = [
    RISK_ON_RATIO,
    INNOVATION_PREMIUM,
    TECH_LEADERSHIP,
    CREDIT_SPREADS,
    FLIGHT_TO_QUALITY,
    VIX_FEAR_INDEX,
    DOLLAR_STRENGTH,
    MARKET_BREADTH,
];

/// The feature name of a configured correlation.
#[must_use]
pub fn correlation_feature(name: &str) -> String {
    format!("ml_{name}_correlation")
}

/// What a [`Plan`] is made of: the values of the `features:` section (the composition root,
/// `app`, fills it from the config; this module never reads the config).
#[derive(Debug, Clone, Copy)]
pub struct PlanSettings<'a> {
    /// The db_symbol of every role the file names; the others take [`Role::default_symbol`].
    pub roles: &'a BTreeMap<Role, DbSymbol>,
    pub correlation_days: u32,
    pub momentum_days: u32,
    pub spread_days: u32,
    /// `ml_{name}_correlation`: name and the db_symbol correlated with the `btc` role.
    pub correlations: &'a [(String, DbSymbol)],
}

/// How one feature is computed from closes (symbols are db_symbols).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Formula {
    /// Sum of the numerator's closes / sum of the denominator's, same date.
    Ratio {
        numerator: Vec<String>,
        denominator: Vec<String>,
    },
    /// The close itself.
    Level { symbol: String },
    /// R(long, days) - R(short, days) on their common dates.
    ReturnSpread {
        long: String,
        short: String,
        days: usize,
    },
    /// R(symbol, days): close / close `days` dates earlier - 1.
    Momentum { symbol: String, days: usize },
    /// Pearson correlation of `days` daily simple returns on common dates.
    Correlation { a: String, b: String, days: usize },
}

impl Formula {
    /// The inputs, in formula order.
    #[must_use]
    pub fn symbols(&self) -> Vec<&str> {
        match self {
            Formula::Ratio {
                numerator,
                denominator,
            } => numerator
                .iter()
                .chain(denominator)
                .map(String::as_str)
                .collect(),
            Formula::Level { symbol } | Formula::Momentum { symbol, .. } => vec![symbol.as_str()],
            Formula::ReturnSpread { long, short, .. } => vec![long.as_str(), short.as_str()],
            Formula::Correlation { a, b, .. } => vec![a.as_str(), b.as_str()],
        }
    }

    /// Returns in the window, for windowed formulas.
    #[must_use]
    pub fn window(&self) -> Option<usize> {
        match self {
            Formula::Ratio { .. } | Formula::Level { .. } => None,
            Formula::ReturnSpread { days, .. }
            | Formula::Momentum { days, .. }
            | Formula::Correlation { days, .. } => Some(*days),
        }
    }
}

/// One feature: its name (`ml_...`, the column of `ml_market_features`) and formula.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureSpec {
    pub name: String,
    pub formula: Formula,
}

/// The features of a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub features: Vec<FeatureSpec>,
    /// Inputs whose dates do not make the calendar whatever their instrument type (the `btc`
    /// role).
    pub calendar_exclude: Vec<String>,
}

impl Plan {
    /// The features of `settings`: the eight fixed ones, then one per configured correlation.
    #[must_use]
    pub fn new(settings: &PlanSettings<'_>) -> Plan {
        let s = |role: Role| {
            settings
                .roles
                .get(&role)
                .map_or_else(|| role.default_symbol(), |s| s.as_str())
                .to_owned()
        };
        let corr = settings.correlation_days as usize;
        let momentum = settings.momentum_days as usize;
        let spread = settings.spread_days as usize;
        let mut features = vec![
            spec(
                RISK_ON_RATIO,
                Formula::Ratio {
                    numerator: vec![s(Role::Qqq), s(Role::Hyg)],
                    denominator: vec![s(Role::Vix), s(Role::Tlt)],
                },
            ),
            spec(
                INNOVATION_PREMIUM,
                Formula::Ratio {
                    numerator: vec![s(Role::Arkk)],
                    denominator: vec![s(Role::Qqq)],
                },
            ),
            spec(
                TECH_LEADERSHIP,
                Formula::Ratio {
                    numerator: vec![s(Role::Qqq)],
                    denominator: vec![s(Role::Spy)],
                },
            ),
            spec(
                CREDIT_SPREADS,
                Formula::ReturnSpread {
                    long: s(Role::Hyg),
                    short: s(Role::Lqd),
                    days: spread,
                },
            ),
            spec(
                FLIGHT_TO_QUALITY,
                Formula::Correlation {
                    a: s(Role::Gld),
                    b: s(Role::Tlt),
                    days: corr,
                },
            ),
            spec(
                VIX_FEAR_INDEX,
                Formula::Level {
                    symbol: s(Role::Vix),
                },
            ),
            spec(
                DOLLAR_STRENGTH,
                Formula::Momentum {
                    symbol: s(Role::Dxy),
                    days: momentum,
                },
            ),
            spec(
                MARKET_BREADTH,
                Formula::Ratio {
                    numerator: vec![s(Role::Spy)],
                    denominator: vec![s(Role::Iwm)],
                },
            ),
        ];
        for (name, symbol) in settings.correlations {
            features.push(FeatureSpec {
                name: correlation_feature(name),
                formula: Formula::Correlation {
                    a: symbol.as_str().to_owned(),
                    b: s(Role::Btc),
                    days: corr,
                },
            });
        }
        Plan {
            features,
            calendar_exclude: vec![s(Role::Btc)],
        }
    }

    /// Every input, each once, sorted.
    #[must_use]
    pub fn symbols(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self
            .features
            .iter()
            .flat_map(|f| f.formula.symbols())
            .collect();
        set.into_iter().map(str::to_owned).collect()
    }

    /// The feature names, in order.
    #[must_use]
    pub fn names(&self) -> Vec<&str> {
        self.features.iter().map(|f| f.name.as_str()).collect()
    }

    /// Calendar dates needed before the first date computed: 2n for the longest window.
    #[must_use]
    pub fn lookback(&self) -> usize {
        self.features
            .iter()
            .filter_map(|f| f.formula.window())
            .max()
            .unwrap_or(0)
            .saturating_mul(2)
    }
}

fn spec(name: &str, formula: Formula) -> FeatureSpec {
    FeatureSpec {
        name: name.to_owned(),
        formula,
    }
}

/// Closes on the feature calendar: one column per symbol, `None` where it has no close.
#[derive(Debug, Clone, Default)]
pub struct Panel {
    dates: Vec<NaiveDate>,
    closes: HashMap<String, Vec<Option<f64>>>,
}

impl Panel {
    /// A panel over these calendar dates (sorted and deduplicated here).
    #[must_use]
    pub fn new(mut dates: Vec<NaiveDate>) -> Self {
        dates.sort_unstable();
        dates.dedup();
        Self {
            dates,
            closes: HashMap::new(),
        }
    }

    /// Records a close; a date that is not on the calendar (a crypto weekend) is ignored.
    pub fn insert(&mut self, symbol: &str, date: NaiveDate, close: f64) {
        let Ok(i) = self.dates.binary_search(&date) else {
            return;
        };
        let n = self.dates.len();
        let column = self
            .closes
            .entry(symbol.to_owned())
            .or_insert_with(|| vec![None; n]);
        if let Some(slot) = column.get_mut(i) {
            *slot = Some(close).filter(|c| c.is_finite() && *c > 0.0);
        }
    }

    #[must_use]
    pub fn dates(&self) -> &[NaiveDate] {
        &self.dates
    }

    fn close(&self, symbol: &str, i: usize) -> Option<f64> {
        self.closes.get(symbol)?.get(i).copied().flatten()
    }
}

/// One input's close, for [`Inputs::Closes`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymbolClose {
    pub symbol: String,
    pub close: f64,
}

/// What a value was computed from, or why it is `NULL` (stored as `market_features.inputs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Inputs {
    /// Closes of the date, in formula order.
    Closes { closes: Vec<SymbolClose> },
    /// `returns` returns between `from` and `to` on the dates all `symbols` have a close.
    Returns {
        symbols: Vec<String>,
        from: NaiveDate,
        to: NaiveDate,
        returns: usize,
    },
    /// `NULL`: these inputs have no close on the date.
    Missing { missing: Vec<String> },
    /// `NULL`: only `closes` dates with a close of every input in the look-back, `needed` needed.
    ShortHistory {
        symbols: Vec<String>,
        closes: usize,
        needed: usize,
    },
    /// `NULL`: inputs present, but the value is undefined (`reason`).
    Undefined {
        symbols: Vec<String>,
        reason: String,
    },
}

impl fmt::Display for Inputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Inputs::Closes { closes } => {
                let parts: Vec<String> = closes
                    .iter()
                    .map(|c| format!("{} {}", c.symbol, c.close))
                    .collect();
                f.write_str(&parts.join(", "))
            }
            Inputs::Returns {
                symbols,
                from,
                to,
                returns,
            } => write!(f, "{}: {returns} returns {from}..{to}", symbols.join(", ")),
            Inputs::Missing { missing } => write!(f, "no close for {}", missing.join(", ")),
            Inputs::ShortHistory {
                symbols,
                closes,
                needed,
            } => write!(
                f,
                "{closes} of {needed} common closes of {}",
                symbols.join(", ")
            ),
            Inputs::Undefined { symbols, reason } => {
                write!(f, "{}: {reason}", symbols.join(", "))
            }
        }
    }
}

/// One feature on one date.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRow<'a> {
    pub trade_date: NaiveDate,
    pub feature: &'a str,
    pub value: Option<f64>,
    pub inputs: Inputs,
}

/// The `NULL`s of one feature in one computation, for one log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub feature: String,
    /// Dates computed.
    pub dates: usize,
    /// Dates whose value is `NULL`.
    pub null_dates: usize,
    pub first: NaiveDate,
    pub last: NaiveDate,
    /// Inputs without a close on some date, and on how many dates that was the reason.
    pub missing: BTreeSet<String>,
    pub missing_dates: usize,
    /// Dates with too few common closes in the look-back, and how many were needed.
    pub short_history_dates: usize,
    pub needed: usize,
    pub undefined_dates: usize,
}

impl fmt::Display for Gap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is NULL on {} of {} dates between {} and {}: ",
            self.feature, self.null_dates, self.dates, self.first, self.last
        )?;
        let mut reasons = Vec::new();
        if self.missing_dates > 0 {
            reasons.push(format!(
                "no close for {} ({} dates)",
                self.missing.iter().cloned().collect::<Vec<_>>().join(", "),
                self.missing_dates
            ));
        }
        if self.short_history_dates > 0 {
            reasons.push(format!(
                "fewer than {} common closes in the look-back ({} dates)",
                self.needed, self.short_history_dates
            ));
        }
        if self.undefined_dates > 0 {
            reasons.push(format!(
                "undefined, returns constant over the window ({} dates)",
                self.undefined_dates
            ));
        }
        f.write_str(&reasons.join("; "))
    }
}

/// Every feature of `plan` on every calendar date of `panel` from `from` on.
#[derive(Debug, Clone, PartialEq)]
pub struct Computed<'a> {
    /// Date by date, features in plan order.
    pub rows: Vec<FeatureRow<'a>>,
    /// One per feature that has a `NULL`, in plan order.
    pub gaps: Vec<Gap>,
}

/// Computes the features of `plan` for every calendar date of `panel` on or after `from`; the
/// panel's earlier dates are the look-back.
#[must_use]
pub fn compute<'a>(plan: &'a Plan, panel: &Panel, from: NaiveDate) -> Computed<'a> {
    let start = panel.dates.partition_point(|d| *d < from);
    let mut rows = Vec::with_capacity((panel.dates.len() - start) * plan.features.len());
    let mut gaps: Vec<Option<Gap>> = vec![None; plan.features.len()];
    for i in start..panel.dates.len() {
        let date = panel.dates[i];
        for (k, spec) in plan.features.iter().enumerate() {
            let (value, inputs) = evaluate(&spec.formula, panel, i);
            if value.is_none() {
                let gap = gaps[k].get_or_insert_with(|| Gap {
                    feature: spec.name.clone(),
                    dates: panel.dates.len() - start,
                    null_dates: 0,
                    first: date,
                    last: date,
                    missing: BTreeSet::new(),
                    missing_dates: 0,
                    short_history_dates: 0,
                    needed: 0,
                    undefined_dates: 0,
                });
                gap.null_dates += 1;
                gap.last = date;
                match &inputs {
                    Inputs::Missing { missing } => {
                        gap.missing_dates += 1;
                        gap.missing.extend(missing.iter().cloned());
                    }
                    Inputs::ShortHistory { needed, .. } => {
                        gap.short_history_dates += 1;
                        gap.needed = *needed;
                    }
                    _ => gap.undefined_dates += 1,
                }
            }
            rows.push(FeatureRow {
                trade_date: date,
                feature: &spec.name,
                value,
                inputs,
            });
        }
    }
    Computed {
        rows,
        gaps: gaps.into_iter().flatten().collect(),
    }
}

/// One feature on calendar date `i`.
fn evaluate(formula: &Formula, panel: &Panel, i: usize) -> (Option<f64>, Inputs) {
    let symbols = formula.symbols();
    let owned = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let missing: Vec<&str> = symbols
        .iter()
        .copied()
        .filter(|s| panel.close(s, i).is_none())
        .collect();
    if !missing.is_empty() {
        return (
            None,
            Inputs::Missing {
                missing: owned(&missing),
            },
        );
    }
    let close = |s: &str, j: usize| panel.close(s, j).unwrap_or(f64::NAN);
    let (value, inputs) = match formula {
        Formula::Ratio {
            numerator,
            denominator,
        } => {
            let sum = |list: &[String]| list.iter().map(|s| close(s, i)).sum::<f64>();
            (
                Some(sum(numerator) / sum(denominator)),
                Inputs::Closes {
                    closes: symbols
                        .iter()
                        .map(|s| SymbolClose {
                            symbol: (*s).to_owned(),
                            close: close(s, i),
                        })
                        .collect(),
                },
            )
        }
        Formula::Level { symbol } => (
            Some(close(symbol, i)),
            Inputs::Closes {
                closes: vec![SymbolClose {
                    symbol: symbol.clone(),
                    close: close(symbol, i),
                }],
            },
        ),
        Formula::ReturnSpread { days, .. }
        | Formula::Momentum { days, .. }
        | Formula::Correlation { days, .. } => {
            let window = match common_window(panel, &symbols, i, *days) {
                Ok(window) => window,
                Err(inputs) => return (None, inputs),
            };
            let (Some(&first), Some(&last)) = (window.first(), window.last()) else {
                return (
                    None,
                    Inputs::Missing {
                        missing: owned(&symbols),
                    },
                );
            };
            let growth = |s: &str| close(s, last) / close(s, first) - 1.0;
            let returns = |s: &str| -> Vec<f64> {
                window
                    .windows(2)
                    .map(|w| close(s, w[1]) / close(s, w[0]) - 1.0)
                    .collect()
            };
            let value = match formula {
                Formula::ReturnSpread { long, short, .. } => Some(growth(long) - growth(short)),
                Formula::Momentum { symbol, .. } => Some(growth(symbol)),
                Formula::Correlation { a, b, .. } => pearson(&returns(a), &returns(b)),
                Formula::Ratio { .. } | Formula::Level { .. } => None,
            };
            (
                value,
                Inputs::Returns {
                    symbols: owned(&symbols),
                    from: panel.dates[first],
                    to: panel.dates[last],
                    returns: *days,
                },
            )
        }
    };
    let undefined = |reason: &str| Inputs::Undefined {
        symbols: owned(&symbols),
        reason: reason.to_owned(),
    };
    match value {
        Some(v) if v.is_finite() => (Some(v), inputs),
        Some(_) => (None, undefined("not a finite number")),
        None => (None, undefined("returns constant over the window")),
    }
}

/// The last `days + 1` calendar indices up to `i` on which every symbol has a close, among the
/// last `2 x days + 1` calendar dates; `i` has closes of all (checked by the caller).
fn common_window(
    panel: &Panel,
    symbols: &[&str],
    i: usize,
    days: usize,
) -> Result<Vec<usize>, Inputs> {
    let needed = days + 1;
    let start = i.saturating_sub(days.saturating_mul(2));
    let common: Vec<usize> = (start..=i)
        .filter(|&j| symbols.iter().all(|s| panel.close(s, j).is_some()))
        .collect();
    if common.len() < needed {
        return Err(Inputs::ShortHistory {
            symbols: symbols.iter().map(|s| (*s).to_owned()).collect(),
            closes: common.len(),
            needed,
        });
    }
    Ok(common[common.len() - needed..].to_vec())
}

/// Pearson's correlation (two-pass), `None` when either series is constant or they differ in
/// length or are shorter than 2. Clamped to [-1, 1] against rounding.
#[must_use]
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 {
        return None;
    }
    #[allow(clippy::cast_precision_loss)] // windows are at most a few hundred values
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    Some((sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

/// Sort key that lists the fixed features first, in their order, then the rest by name.
#[must_use]
pub fn display_rank(feature: &str) -> (usize, &str) {
    let rank = FIXED_FEATURES
        .iter()
        .position(|f| *f == feature)
        .unwrap_or(FIXED_FEATURES.len());
    (rank, feature)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ROLE_KEYS;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    /// Consecutive days from 2024-01-01.
    fn days(n: usize) -> Vec<NaiveDate> {
        d("2024-01-01").iter_days().take(n).collect()
    }

    fn panel(columns: &[(&str, &[Option<f64>])]) -> Panel {
        let n = columns.iter().map(|(_, c)| c.len()).max().unwrap_or(0);
        let mut p = Panel::new(days(n));
        for (symbol, closes) in columns {
            for (i, c) in closes.iter().enumerate() {
                if let Some(c) = c {
                    p.insert(symbol, p.dates[i], *c);
                }
            }
        }
        p
    }

    fn plan(features: Vec<FeatureSpec>) -> Plan {
        Plan {
            features,
            calendar_exclude: vec![],
        }
    }

    fn close_to(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn pearson_matches_a_worked_example() {
        // x = 1..5, y = 2, 4, 5, 4, 5: means 3 and 4; sxy = 6, sxx = 10, syy = 6;
        // r = 6 / sqrt(60) = 0.7745966692414834.
        let r = pearson(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 4.0, 5.0, 4.0, 5.0]).unwrap();
        assert!(close_to(r, 6.0 / 60f64.sqrt()), "{r}");
        assert_eq!(pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
        assert_eq!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(pearson(&[1.0], &[1.0]), None);
        assert_eq!(pearson(&[1.0, 2.0], &[1.0]), None);
    }

    #[test]
    fn ratios_use_same_date_closes() {
        let p = panel(&[
            ("QQQ", &[Some(400.0), Some(410.0)]),
            ("HYG", &[Some(80.0), Some(78.0)]),
            ("VIX", &[Some(20.0), None]),
            ("TLT", &[Some(100.0), Some(95.0)]),
        ]);
        let plan = plan(vec![spec(
            RISK_ON_RATIO,
            Formula::Ratio {
                numerator: vec!["QQQ".into(), "HYG".into()],
                denominator: vec!["VIX".into(), "TLT".into()],
            },
        )]);
        let out = compute(&plan, &p, d("2024-01-01"));
        assert_eq!(out.rows.len(), 2);
        // (400 + 80) / (20 + 100) = 4
        assert_eq!(out.rows[0].value, Some(4.0));
        assert_eq!(
            out.rows[0].inputs,
            Inputs::Closes {
                closes: vec![
                    SymbolClose {
                        symbol: "QQQ".into(),
                        close: 400.0
                    },
                    SymbolClose {
                        symbol: "HYG".into(),
                        close: 80.0
                    },
                    SymbolClose {
                        symbol: "VIX".into(),
                        close: 20.0
                    },
                    SymbolClose {
                        symbol: "TLT".into(),
                        close: 100.0
                    },
                ]
            }
        );
        assert_eq!(
            out.rows[0].inputs.to_string(),
            "QQQ 400, HYG 80, VIX 20, TLT 100"
        );
        // VIX has no close on day 2: NULL, never yesterday's VIX.
        assert_eq!(out.rows[1].value, None);
        assert_eq!(
            out.rows[1].inputs,
            Inputs::Missing {
                missing: vec!["VIX".into()]
            }
        );
        assert_eq!(out.gaps.len(), 1);
        assert_eq!(
            out.gaps[0].to_string(),
            "ml_risk_on_ratio is NULL on 1 of 2 dates between 2024-01-02 and 2024-01-02: no close for VIX (1 dates)"
        );
    }

    #[test]
    fn momentum_and_spread_span_n_common_dates() {
        // DXY: 100, 101, -, 102, 103; n = 2. On day 5 the window is days 2, 4, 5 (day 3 has
        // no DXY, so it is skipped): 103 / 101 - 1.
        let p = panel(&[
            (
                "DXY",
                &[Some(100.0), Some(101.0), None, Some(102.0), Some(103.0)],
            ),
            ("SPY", &[Some(1.0); 5]),
        ]);
        let momentum = plan(vec![spec(
            DOLLAR_STRENGTH,
            Formula::Momentum {
                symbol: "DXY".into(),
                days: 2,
            },
        )]);
        let out = compute(&momentum, &p, d("2024-01-01"));
        let values: Vec<Option<f64>> = out.rows.iter().map(|r| r.value).collect();
        assert_eq!(values[0], None); // day 1: 1 close, 3 needed
        assert_eq!(values[1], None); // day 2: 2 closes
        assert_eq!(values[2], None); // day 3: no DXY on the date itself
        assert!(close_to(values[3].unwrap(), 102.0 / 100.0 - 1.0));
        assert!(close_to(values[4].unwrap(), 103.0 / 101.0 - 1.0));
        assert_eq!(
            out.rows[4].inputs,
            Inputs::Returns {
                symbols: vec!["DXY".into()],
                from: d("2024-01-02"),
                to: d("2024-01-05"),
                returns: 2
            }
        );
        assert_eq!(
            out.rows[0].inputs,
            Inputs::ShortHistory {
                symbols: vec!["DXY".into()],
                closes: 1,
                needed: 3
            }
        );
        let gap = &out.gaps[0];
        assert_eq!(
            (
                gap.null_dates,
                gap.short_history_dates,
                gap.missing_dates,
                gap.needed
            ),
            (3, 2, 1, 3)
        );

        // HYG 100 -> 110 (+10%), LQD 50 -> 52 (+4%) over 2 returns: 0.06.
        let p = panel(&[
            ("HYG", &[Some(100.0), Some(105.0), Some(110.0)]),
            ("LQD", &[Some(50.0), Some(49.0), Some(52.0)]),
        ]);
        let spread = plan(vec![spec(
            CREDIT_SPREADS,
            Formula::ReturnSpread {
                long: "HYG".into(),
                short: "LQD".into(),
                days: 2,
            },
        )]);
        let out = compute(&spread, &p, d("2024-01-03"));
        assert_eq!(out.rows.len(), 1);
        assert!(close_to(out.rows[0].value.unwrap(), 0.10 - 0.04));
        assert!(out.gaps.is_empty());
    }

    #[test]
    fn correlation_uses_returns_on_common_dates_within_twice_the_window() {
        // A: 100, 110, 99, 99, 108.9  -> returns +10%, -10%, 0%, +10%
        // B: 10, 12, 12, 9, 9          -> returns +20%, 0%, -25%, 0%
        // r of (0.1, -0.1, 0, 0.1) and (0.2, 0, -0.25, 0): means 0.025 and -0.0125;
        // deviations (0.075, -0.125, -0.025, 0.075) and (0.2125, 0.0125, -0.2375, 0.0125);
        // sxy = 0.02125, sxx = 0.0275, syy = 0.101875 -> r = 0.02125 / sqrt(0.0275 x 0.101875)
        // = 0.40147524943...
        let a = [
            Some(100.0),
            Some(110.0),
            Some(99.0),
            Some(99.0),
            Some(108.9),
        ];
        let b = [Some(10.0), Some(12.0), Some(12.0), Some(9.0), Some(9.0)];
        let p = panel(&[("A", &a), ("B", &b)]);
        let corr = plan(vec![spec(
            "ml_x_correlation",
            Formula::Correlation {
                a: "A".into(),
                b: "B".into(),
                days: 4,
            },
        )]);
        let out = compute(&corr, &p, d("2024-01-05"));
        let expected = 0.02125 / (0.0275f64 * 0.101875).sqrt();
        assert!((expected - 0.401_475_249_431_77).abs() < 1e-12);
        assert!(
            (out.rows[0].value.unwrap() - expected).abs() < 1e-12,
            "{:?} vs {expected}",
            out.rows[0].value
        );
        // With one B close missing in the middle there are only 4 common closes: NULL.
        let b_gap = [Some(10.0), Some(12.0), None, Some(9.0), Some(9.0)];
        let p = panel(&[("A", &a), ("B", &b_gap)]);
        let out = compute(&corr, &p, d("2024-01-05"));
        assert_eq!(out.rows[0].value, None);
        assert_eq!(
            out.rows[0].inputs.to_string(),
            "4 of 5 common closes of A, B"
        );
        // A constant series has no correlation.
        let p = panel(&[("A", &a), ("B", &[Some(5.0); 5])]);
        let out = compute(&corr, &p, d("2024-01-05"));
        assert_eq!(out.rows[0].value, None);
        assert!(matches!(out.rows[0].inputs, Inputs::Undefined { .. }));
        assert_eq!(out.gaps[0].undefined_dates, 1);
    }

    #[test]
    fn a_window_never_reaches_back_more_than_twice_its_length() {
        // n = 2: dates up to 4 calendar dates back are searched. A has closes on days 1, 2 and
        // 6 only; on day 6, days 4..6 hold one common close: NULL, not a return from day 2.
        let a = [Some(1.0), Some(2.0), None, None, None, Some(3.0)];
        let b = [Some(1.0); 6];
        let p = panel(&[("A", &a), ("B", &b)]);
        let m = plan(vec![spec(
            DOLLAR_STRENGTH,
            Formula::Momentum {
                symbol: "A".into(),
                days: 2,
            },
        )]);
        let out = compute(&m, &p, d("2024-01-06"));
        assert_eq!(out.rows[0].value, None);
    }

    #[test]
    fn crypto_is_aligned_on_the_calendar() {
        // The calendar is two weekdays around a weekend; BTC's weekend closes are ignored, so
        // its Monday return is Monday / Friday - 1.
        let mut p = Panel::new(vec![d("2024-01-05"), d("2024-01-08")]);
        p.insert("BTC", d("2024-01-05"), 100.0);
        p.insert("BTC", d("2024-01-06"), 150.0);
        p.insert("BTC", d("2024-01-07"), 50.0);
        p.insert("BTC", d("2024-01-08"), 110.0);
        let m = plan(vec![spec(
            "m",
            Formula::Momentum {
                symbol: "BTC".into(),
                days: 1,
            },
        )]);
        let out = compute(&m, &p, d("2024-01-08"));
        assert!(close_to(out.rows[0].value.unwrap(), 0.1));
    }

    #[test]
    fn the_default_plan_has_the_seed_columns_and_roles() {
        let correlations: Vec<(String, DbSymbol)> = crate::domain::DEFAULT_CORRELATIONS
            .iter()
            .map(|(name, symbol)| ((*name).to_owned(), DbSymbol::parse(symbol).unwrap()))
            .collect();
        let plan = Plan::new(&PlanSettings {
            roles: &BTreeMap::new(),
            correlation_days: 30,
            momentum_days: 20,
            spread_days: 20,
            correlations: &correlations,
        });
        let names = plan.names();
        assert_eq!(&names[..8], FIXED_FEATURES);
        assert_eq!(
            &names[8..],
            [
                "ml_nasdaq_correlation",
                "ml_arkk_correlation",
                "ml_gold_correlation",
                "ml_sp500_correlation",
                "ml_treasuries_correlation",
                "ml_dollar_correlation"
            ]
        );
        assert_eq!(
            plan.symbols(),
            [
                "ARKK", "BTCUSD", "DXY", "GLD", "HYG", "IWM", "LQD", "QQQ", "SPY", "TLT", "VIX"
            ]
        );
        assert_eq!(plan.lookback(), 60);
        assert_eq!(plan.calendar_exclude, ["BTCUSD"]);
        assert_eq!(
            plan.features[0].formula,
            Formula::Ratio {
                numerator: vec!["QQQ".into(), "HYG".into()],
                denominator: vec!["VIX".into(), "TLT".into()],
            }
        );
        assert_eq!(
            plan.features[8].formula,
            Formula::Correlation {
                a: "QQQ".into(),
                b: "BTCUSD".into(),
                days: 30
            }
        );
        for role in Role::ALL {
            assert_eq!(Role::parse(role.key()), Some(role));
            assert_eq!(ROLE_KEYS[role as usize], role.key());
        }
    }

    #[test]
    fn inputs_round_trip_through_json() {
        let inputs = [
            Inputs::Closes {
                closes: vec![SymbolClose {
                    symbol: "VIX".into(),
                    close: 13.25,
                }],
            },
            Inputs::Returns {
                symbols: vec!["HYG".into(), "LQD".into()],
                from: d("2024-05-01"),
                to: d("2024-05-29"),
                returns: 20,
            },
            Inputs::Missing {
                missing: vec!["VIX".into()],
            },
        ];
        for i in inputs {
            let json = serde_json::to_value(&i).unwrap();
            assert!(json.is_object());
            assert_eq!(serde_json::from_value::<Inputs>(json).unwrap(), i);
        }
        assert_eq!(
            serde_json::to_string(&Inputs::Missing {
                missing: vec!["VIX".into()]
            })
            .unwrap(),
            r#"{"kind":"missing","missing":["VIX"]}"#
        );
    }

    #[test]
    fn display_rank_lists_fixed_features_first() {
        let mut names = vec![
            "ml_nasdaq_correlation",
            "ml_market_breadth",
            "ml_arkk_correlation",
            "ml_risk_on_ratio",
        ];
        names.sort_by_key(|n| display_rank(n));
        assert_eq!(
            names,
            [
                "ml_risk_on_ratio",
                "ml_market_breadth",
                "ml_arkk_correlation",
                "ml_nasdaq_correlation"
            ]
        );
    }
}
