//! Which dates a security's run fetches: the configured window, stretched back to fill a gap
//! since the last stored bar (catch-up, bounded), or a full first history for a security that
//! has none (first sight). Pure: the stored range is given.

use std::fmt;

use chrono::{Days, NaiveDate};
use serde::Serialize;

use super::DateWindow;

/// First Yahoo date asked for with `history_days: max` (before any listing Yahoo has).
pub const MAX_HISTORY_FROM: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 2) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

/// How much history a security without stored bars gets (`encoding.history_days`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryDays {
    /// This many calendar days up to the window's end.
    Days(u32),
    /// Everything Yahoo has.
    Max,
}

impl fmt::Display for HistoryDays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Days(n) => write!(f, "{n} days"),
            Self::Max => f.write_str("max"),
        }
    }
}

/// Why a security's window is what it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowReason {
    /// The configured window: the stored bars reach into it (or past its start).
    Daily,
    /// Stretched back to the day after the last stored bar (an outage of the job).
    CatchUp,
    /// No stored bar: `history_days` of history.
    FirstSight,
    /// A backfill: `--from` asked for exactly this window, taken as given.
    Backfill,
    /// The database could not be asked (the dry run without a database): the configured one.
    Unknown,
}

impl WindowReason {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::CatchUp => "catch-up",
            Self::FirstSight => "first sight",
            Self::Backfill => "backfill (--from)",
            Self::Unknown => "configured (stored range unknown)",
        }
    }
}

/// The window one security's run fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityWindow {
    pub window: DateWindow,
    pub reason: WindowReason,
    /// The catch-up was cut by `max_catch_up_days`: the first date it would have needed.
    pub cut_from: Option<NaiveDate>,
}

impl SecurityWindow {
    /// The window of a security whose last stored bar is `last_stored` (`None`: no bar).
    /// It starts at the earlier of the configured start and the day after `last_stored`, but
    /// never more than `max_catch_up_days` before the window's end; with nothing stored, it
    /// starts `history_days` before the end (or at the configured start, if earlier).
    #[must_use]
    pub fn plan(
        configured: DateWindow,
        last_stored: Option<NaiveDate>,
        history_days: HistoryDays,
        max_catch_up_days: u32,
    ) -> Self {
        let to = configured.to();
        let back = |days: u32| {
            to.checked_sub_days(Days::new(u64::from(days)))
                .unwrap_or(to)
        };
        let (from, reason, cut_from) = match last_stored {
            None => {
                let first = match history_days {
                    HistoryDays::Days(days) => back(days),
                    HistoryDays::Max => MAX_HISTORY_FROM,
                };
                (first.min(configured.from()), WindowReason::FirstSight, None)
            }
            Some(last) => {
                let next = last.succ_opt().unwrap_or(last);
                if next >= configured.from() {
                    (configured.from(), WindowReason::Daily, None)
                } else {
                    let floor = back(max_catch_up_days).min(configured.from());
                    if next < floor {
                        (floor, WindowReason::CatchUp, Some(next))
                    } else {
                        (next, WindowReason::CatchUp, None)
                    }
                }
            }
        };
        let window = DateWindow::new(from.min(to), to).unwrap_or(configured);
        Self {
            window,
            reason,
            cut_from,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn configured() -> DateWindow {
        DateWindow::new(d("2026-09-22"), d("2026-11-21")).unwrap()
    }

    #[test]
    fn a_daily_run_keeps_the_configured_window() {
        for last in ["2026-11-20", "2026-10-01", "2026-09-21", "2026-11-25"] {
            let w = SecurityWindow::plan(configured(), Some(d(last)), HistoryDays::Days(400), 1000);
            assert_eq!(
                (w.window, w.reason, w.cut_from),
                (configured(), WindowReason::Daily, None),
                "{last}"
            );
        }
    }

    #[test]
    fn an_outage_stretches_the_window_back_to_the_day_after_the_last_bar() {
        let w = SecurityWindow::plan(
            configured(),
            Some(d("2026-06-30")),
            HistoryDays::Days(400),
            1000,
        );
        assert_eq!(w.window.from(), d("2026-07-01"));
        assert_eq!(w.window.to(), d("2026-11-21"));
        assert_eq!(w.reason, WindowReason::CatchUp);
        assert_eq!(w.cut_from, None);
        // Bounded by max_catch_up_days, and says where it would have started.
        let w = SecurityWindow::plan(
            configured(),
            Some(d("2026-06-30")),
            HistoryDays::Days(400),
            100,
        );
        assert_eq!(w.window.from(), d("2026-08-13"));
        assert_eq!(w.cut_from, Some(d("2026-07-01")));
    }

    #[test]
    fn a_new_security_gets_its_history() {
        let w = SecurityWindow::plan(configured(), None, HistoryDays::Days(400), 1000);
        assert_eq!(w.window.from(), d("2025-10-17"));
        assert_eq!(w.reason, WindowReason::FirstSight);
        let w = SecurityWindow::plan(configured(), None, HistoryDays::Max, 1000);
        assert_eq!(w.window.from(), MAX_HISTORY_FROM);
        // A backfill asked for further back keeps its start.
        let long = DateWindow::new(d("2010-01-04"), d("2026-11-21")).unwrap();
        let w = SecurityWindow::plan(long, None, HistoryDays::Days(400), 1000);
        assert_eq!(w.window, long);
    }
}
