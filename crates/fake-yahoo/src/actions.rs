//! Corporate actions (splits and cash dividends) and how they shape an answer.
//!
//! The synthetic series is the *current* basis: fully split-adjusted, with `close` never
//! dividend-adjusted. An answer is given as Yahoo would have given it at the request's window end
//! (`as_of`, the clamped `period2`, never later than now). An action takes effect at the session
//! start of its date (the timestamp Yahoo puts in the event's inner `date`): it has happened for
//! a request when that instant is at or before `as_of`.
//!
//! - A split that has not happened yet leaves every bar of the answer on the old basis: all the
//!   answer's bars are then before the split (a bar on or after its date would lie after
//!   `as_of`), so the whole answer is scaled by one factor, the product of the ratios of the
//!   splits still to come: prices times it, volumes divided by it.
//! - A dividend that has happened multiplies the `adjclose` of every bar dated before its ex-date
//!   by `1 - amount / close`, `close` being that of the last trading day before the ex-date.
//! - `events` lists the actions that have happened and whose date falls in the window (by the
//!   same rule that selects bars).

use std::collections::BTreeMap;

use chrono::{Days, NaiveDate};
use serde::{Serialize, Serializer};

use crate::synthetic::{Bar, Profile, generate, local_date, local_ts, round_to};

/// A corporate action of a [`crate::Scenario::Actions`] symbol.
#[derive(Clone, Debug, PartialEq)]
pub enum CorporateAction {
    /// `numerator` new shares for every `denominator` old ones, from the session of `date` (the
    /// ex-date, a trade date in the exchange's time zone) on: a 10:1 split is numerator 10,
    /// denominator 1, a 3:2 one numerator 3, denominator 2. Before `date` the traded prices were
    /// `numerator / denominator` times those of the synthetic series. A ratio that is not a
    /// positive finite number makes the split ignored.
    Split {
        date: NaiveDate,
        numerator: f64,
        denominator: f64,
    },
    /// A cash dividend of `amount` per share with ex-date `date`. The amount is in the synthetic
    /// series' (current, fully split-adjusted) basis; an answer on an older basis reports it on
    /// that basis, as Yahoo reports split-adjusted amounts. A dividend whose amount is not
    /// positive, or not below the close of the day before its ex-date, is ignored.
    Dividend { date: NaiveDate, amount: f64 },
}

impl CorporateAction {
    fn date(&self) -> NaiveDate {
        match self {
            CorporateAction::Split { date, .. } | CorporateAction::Dividend { date, .. } => *date,
        }
    }
}

/// `chart.result[0].events`, keyed by the event's session-start timestamp.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub(crate) struct Events {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub dividends: BTreeMap<i64, DividendEvent>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub splits: BTreeMap<i64, SplitEvent>,
}

impl Events {
    fn is_empty(&self) -> bool {
        self.dividends.is_empty() && self.splits.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct DividendEvent {
    pub amount: f64,
    pub date: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SplitEvent {
    pub date: i64,
    #[serde(serialize_with = "whole_as_integer")]
    pub numerator: f64,
    #[serde(serialize_with = "whole_as_integer")]
    pub denominator: f64,
    pub split_ratio: String,
}

/// Yahoo writes whole ratios as integers (`"numerator":4`).
fn whole_as_integer<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        s.serialize_i64(*x as i64)
    } else {
        s.serialize_f64(*x)
    }
}

/// The basis of one answer: how its bars differ from the synthetic series.
#[derive(Clone, Debug)]
pub(crate) struct Basis {
    /// Price multiplier of the whole answer (1 when no split is still to come).
    scale: f64,
    decimals: u32,
    /// Ex-date and adjclose factor of each dividend that has happened.
    dividends: Vec<(NaiveDate, f64)>,
    /// The events to report, if any.
    pub events: Option<Events>,
}

/// The request a [`Basis`] is built for (periods already clamped).
pub(crate) struct Request<'a> {
    pub profile: &'a Profile,
    pub seed: u64,
    pub period1: i64,
    pub period2: i64,
    pub as_of: i64,
    pub now: i64,
}

impl Basis {
    /// The basis of the answer to `req` given `actions`.
    pub(crate) fn new(req: &Request<'_>, actions: &[CorporateAction]) -> Basis {
        let profile = req.profile;
        let tz = profile.timezone;
        let session = |date: NaiveDate| local_ts(tz, date, profile.bar_time);
        let happened = |date: NaiveDate| session(date) <= req.as_of;
        let (first_date, end_date) = (local_date(tz, req.period1), local_date(tz, req.period2));
        let in_window = |date: NaiveDate| {
            let ts = session(date);
            (date >= first_date && date < end_date) || (ts >= req.period1 && ts < req.period2)
        };

        let scale: f64 = actions
            .iter()
            .filter_map(|a| match a {
                CorporateAction::Split {
                    date,
                    numerator,
                    denominator,
                } if !happened(*date) => split_ratio(*numerator, *denominator),
                _ => None,
            })
            .product();
        let mut basis = Basis {
            scale,
            decimals: profile.decimals,
            dividends: Vec::new(),
            events: None,
        };

        let mut events = Events::default();
        for action in actions {
            let date = action.date();
            if !happened(date) {
                continue;
            }
            let report = in_window(date);
            let ts = session(date);
            match *action {
                CorporateAction::Split {
                    numerator,
                    denominator,
                    ..
                } => {
                    if report && split_ratio(numerator, denominator).is_some() {
                        events.splits.insert(
                            ts,
                            SplitEvent {
                                date: ts,
                                numerator,
                                denominator,
                                split_ratio: format!("{numerator}:{denominator}"),
                            },
                        );
                    }
                }
                CorporateAction::Dividend { amount, .. } => {
                    if !(amount.is_finite() && amount > 0.0) {
                        continue;
                    }
                    let Some(close) = basis.close_before(req, date) else {
                        continue;
                    };
                    let amount = basis.amount(amount);
                    let factor = 1.0 - amount / close;
                    if !(factor > 0.0 && factor < 1.0) {
                        continue;
                    }
                    basis.dividends.push((date, factor));
                    if report {
                        events
                            .dividends
                            .insert(ts, DividendEvent { amount, date: ts });
                    }
                }
            }
        }
        if !events.is_empty() {
            basis.events = Some(events);
        }
        basis
    }

    /// A price of the synthetic series (rounded to the instrument's decimals) on this basis.
    pub(crate) fn price(&self, x: f64) -> f64 {
        if self.scale == 1.0 {
            x
        } else {
            round_to(x * self.scale, self.decimals)
        }
    }

    /// A dividend amount of the synthetic series' basis on this basis.
    fn amount(&self, amount: f64) -> f64 {
        if self.scale == 1.0 {
            amount
        } else {
            (amount * self.scale * 1e6).round() / 1e6
        }
    }

    /// A bar of the synthetic series on this basis.
    pub(crate) fn bar(&self, bar: &Bar) -> Bar {
        if self.scale == 1.0 {
            return bar.clone();
        }
        Bar {
            open: self.price(bar.open),
            high: self.price(bar.high),
            low: self.price(bar.low),
            close: self.price(bar.close),
            volume: (bar.volume as f64 / self.scale).round() as u64,
            ..bar.clone()
        }
    }

    /// What `adjclose` is of a bar dated `date`, as a multiple of its close.
    pub(crate) fn dividend_factor(&self, date: NaiveDate) -> f64 {
        self.dividends
            .iter()
            .filter(|(ex_date, _)| date < *ex_date)
            .map(|(_, factor)| factor)
            .product()
    }

    /// The close, on this basis, of the last trading day before `date` (independent of the
    /// request's window, so that every window agrees on a dividend's factor).
    fn close_before(&self, req: &Request<'_>, date: NaiveDate) -> Option<f64> {
        let profile = req.profile;
        let from = date.checked_sub_days(Days::new(10)).unwrap_or(date);
        let start = local_ts(profile.timezone, from, profile.bar_time);
        let end = local_ts(profile.timezone, date, profile.bar_time);
        generate(profile, req.seed, start, end, req.now)
            .bars
            .iter()
            .rev()
            .find(|b| b.date < date)
            .map(|b| self.price(b.close))
    }
}

/// `numerator / denominator` when it is a positive finite number.
fn split_ratio(numerator: f64, denominator: f64) -> Option<f64> {
    let r = numerator / denominator;
    (r.is_finite() && r > 0.0).then_some(r)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::synthetic::instrument_profile;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn basis(actions: &[CorporateAction], period1: i64, period2: i64) -> Basis {
        let profile = instrument_profile("NVDA");
        let req = Request {
            profile: &profile,
            seed: 42,
            period1,
            period2,
            as_of: period2,
            now: 1_900_000_000,
        };
        Basis::new(&req, actions)
    }

    #[test]
    fn fractional_ratios_keep_their_shortest_form() {
        let split = |numerator, denominator| CorporateAction::Split {
            date: date(2024, 6, 10),
            numerator,
            denominator,
        };
        let (p1, p2) = (1_717_200_000, 1_719_800_000); // 2024-06-01 .. 2024-07-01
        let b = basis(&[split(1.5, 1.0)], p1, p2);
        let json = serde_json::to_string(&b.events).unwrap();
        assert_eq!(
            json,
            r#"{"splits":{"1718026200":{"date":1718026200,"numerator":1.5,"denominator":1,"splitRatio":"1.5:1"}}}"#
        );
        let b = basis(&[split(3.0, 2.0)], p1, p2);
        assert!(
            serde_json::to_string(&b.events)
                .unwrap()
                .contains(r#""numerator":3,"denominator":2,"splitRatio":"3:2""#)
        );
        // Still to come: the whole answer is on the old basis.
        let b = basis(&[split(3.0, 2.0), split(2.0, 1.0)], p1, 1_717_900_000);
        assert_eq!(b.scale, 3.0);
        assert!(b.events.is_none());
        assert_eq!(b.price(100.01), 300.03);
    }

    #[test]
    fn invalid_actions_are_ignored() {
        let d = date(2024, 6, 10);
        let actions = [
            CorporateAction::Split {
                date: d,
                numerator: 0.0,
                denominator: 1.0,
            },
            CorporateAction::Split {
                date: d,
                numerator: 1.0,
                denominator: 0.0,
            },
            CorporateAction::Dividend {
                date: d,
                amount: -1.0,
            },
            CorporateAction::Dividend {
                date: d,
                amount: 1e9,
            },
        ];
        for (p2, what) in [(1_717_900_000, "before"), (1_719_800_000, "after")] {
            let b = basis(&actions, 1_717_200_000, p2);
            assert_eq!(b.scale, 1.0, "{what}");
            assert!(b.events.is_none(), "{what}");
            assert_eq!(b.dividend_factor(date(2024, 6, 3)), 1.0, "{what}");
        }
    }
}
