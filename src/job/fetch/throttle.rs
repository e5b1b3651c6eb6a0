//! The run-wide throttle. Yahoo blocks *runs*, not requests: after a burst, or from a cloud IP
//! range, every answer becomes a 429, an HTML page or an empty body, for minutes. Retrying each
//! security on its own only digs deeper, so every request of a run goes through one
//! [`Throttle`]:
//!
//! - `after` throttled answers in a row, across securities, pause the whole fetch stage for
//!   `pause` (one shared backoff; requests already in flight finish);
//! - after a pause it resumes slowly: one request at a time, until `after` usable answers in a
//!   row; a single throttled answer then pauses again;
//! - the pause after `max_pauses` is not taken: the stage stops, nothing more is sent, and every
//!   security still waiting ends skipped (rate-limited);
//! - a run sends at most `max_requests` requests (retries and rebases included); the rest is
//!   skipped the same way.
//!
//! Pure bookkeeping plus sleeps: no I/O of its own. Time is tokio's, so tests can pause it.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tracing::{info, warn};

/// How the throttle reacts (`encoding.throttle_after`, `throttle_pause_secs`,
/// `throttle_max_pauses`, `max_requests`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Throttled answers in a row that pause the fetch stage.
    pub after: u32,
    /// How long one pause lasts.
    pub pause: Duration,
    /// Pauses a run takes before it stops fetching.
    pub max_pauses: u32,
    /// Requests a run may send in all.
    pub max_requests: u32,
}

/// Why the fetch stage stopped sending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Stopped {
    #[error(
        "skipped (rate-limited): Yahoo kept throttling the run after {pauses} pause(s) of {pause_secs} s; nothing more was sent, rerun after {retry_at} (encoding.throttle_pause_secs, throttle_max_pauses)",
        retry_at = retry_at.format("%H:%M UTC")
    )]
    RateLimited {
        pauses: u32,
        pause_secs: u64,
        retry_at: DateTime<Utc>,
    },
    #[error(
        "skipped: the run's request budget is spent ({max_requests} requests, encoding.max_requests); rerun to fetch the rest"
    )]
    Budget { max_requests: u32 },
}

/// What one answer says about throttling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 429, or a 2xx whose body is empty, HTML or says "Too Many Requests".
    Throttled,
    /// A body that is chart JSON (whatever it holds) or a definite refusal (404, 400).
    Usable,
    /// Neither (a 5xx, a timeout, a dropped connection): says nothing about throttling.
    Neutral,
}

#[derive(Debug)]
struct State {
    /// Throttled answers in a row.
    consecutive: u32,
    /// Usable answers in a row since the last pause (counts only while `slow`).
    recovered: u32,
    pauses: u32,
    paused_until: Option<Instant>,
    /// After a pause: one request at a time.
    slow: bool,
    stopped: Option<Stopped>,
    sent: u32,
}

/// One run's throttle, shared by every fetch of the run.
#[derive(Debug)]
pub struct Throttle {
    settings: ThrottleSettings,
    state: Mutex<State>,
    one_at_a_time: Semaphore,
}

/// Leave to send one request; while the throttle is slow it holds the one permit.
#[derive(Debug)]
pub struct Admission<'a> {
    _permit: Option<SemaphorePermit<'a>>,
}

/// What the throttle did in a run, for the summary and the `runs` row.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ThrottleReport {
    pub requests_sent: u32,
    pub max_requests: u32,
    pub pauses: u32,
    /// Why the stage stopped sending, if it did.
    pub stopped: Option<String>,
    /// When to rerun, if throttling stopped the run.
    pub retry_at: Option<DateTime<Utc>>,
}

impl Throttle {
    #[must_use]
    pub fn new(settings: ThrottleSettings) -> Self {
        Self {
            settings,
            state: Mutex::new(State {
                consecutive: 0,
                recovered: 0,
                pauses: 0,
                paused_until: None,
                slow: false,
                stopped: None,
                sent: 0,
            }),
            one_at_a_time: Semaphore::new(1),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Plain counters: a panicking holder cannot leave them harmful.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits out a pause, then admits one request and counts it; `Err` once the stage has
    /// stopped (throttled too often, or the request budget spent): send nothing then.
    pub async fn admit(&self) -> Result<Admission<'_>, Stopped> {
        loop {
            let (until, slow) = {
                let state = self.state();
                if let Some(stopped) = &state.stopped {
                    return Err(stopped.clone());
                }
                (state.paused_until, state.slow)
            };
            if let Some(until) = until.filter(|u| *u > Instant::now()) {
                tokio::time::sleep_until(until).await;
                continue;
            }
            let permit = if slow {
                // Closed never: the semaphore lives as long as `self`.
                self.one_at_a_time.acquire().await.ok()
            } else {
                None
            };
            let mut state = self.state();
            if let Some(stopped) = &state.stopped {
                return Err(stopped.clone());
            }
            if state.paused_until.is_some_and(|u| u > Instant::now()) || (state.slow && !slow) {
                continue; // a pause began while we waited for the permit
            }
            if state.sent >= self.settings.max_requests {
                let stopped = Stopped::Budget {
                    max_requests: self.settings.max_requests,
                };
                warn!(
                    max_requests = self.settings.max_requests,
                    "request budget spent: fetching stops, the remaining securities are skipped"
                );
                state.stopped = Some(stopped.clone());
                return Err(stopped);
            }
            state.sent += 1;
            return Ok(Admission { _permit: permit });
        }
    }

    /// Records what an answer said; may start a pause, end the slow phase, or stop the stage.
    pub fn record(&self, answer: Answer) {
        let mut state = self.state();
        match answer {
            Answer::Neutral => {}
            Answer::Usable => {
                state.consecutive = 0;
                if state.slow {
                    state.recovered += 1;
                    if state.recovered >= self.settings.after {
                        state.slow = false;
                        info!("Yahoo answers again: fetching at full speed");
                    }
                }
            }
            Answer::Throttled => {
                state.consecutive += 1;
                state.recovered = 0;
                let threshold = if state.slow { 1 } else { self.settings.after };
                let pausing = state.paused_until.is_some_and(|u| u > Instant::now());
                if state.consecutive < threshold || pausing || state.stopped.is_some() {
                    return;
                }
                if state.pauses >= self.settings.max_pauses {
                    let stopped = Stopped::RateLimited {
                        pauses: state.pauses,
                        pause_secs: self.settings.pause.as_secs(),
                        retry_at: Utc::now()
                            + chrono::Duration::from_std(self.settings.pause)
                                .unwrap_or(chrono::Duration::MAX),
                    };
                    warn!(
                        pauses = state.pauses,
                        "Yahoo is still throttling the run: fetching stops, the remaining securities are skipped"
                    );
                    state.stopped = Some(stopped);
                } else {
                    state.pauses += 1;
                    state.consecutive = 0;
                    state.slow = true;
                    state.paused_until = Some(Instant::now() + self.settings.pause);
                    warn!(
                        pause_secs = self.settings.pause.as_secs(),
                        pause = state.pauses,
                        max_pauses = self.settings.max_pauses,
                        "Yahoo is throttling the run: every fetch pauses, then resumes one request at a time"
                    );
                }
            }
        }
    }

    /// Whether run-wide throttling is in effect: paused, slow after a pause, or stopped.
    #[must_use]
    pub fn engaged(&self) -> bool {
        let state = self.state();
        state.slow
            || state.stopped.is_some()
            || state.paused_until.is_some_and(|u| u > Instant::now())
    }

    /// Whether the stage has stopped sending.
    #[must_use]
    pub fn stopped(&self) -> Option<Stopped> {
        self.state().stopped.clone()
    }

    /// Requests admitted so far.
    #[must_use]
    pub fn sent(&self) -> u32 {
        self.state().sent
    }

    #[must_use]
    pub fn report(&self) -> ThrottleReport {
        let state = self.state();
        ThrottleReport {
            requests_sent: state.sent,
            max_requests: self.settings.max_requests,
            pauses: state.pauses,
            stopped: state.stopped.as_ref().map(ToString::to_string),
            retry_at: match &state.stopped {
                Some(Stopped::RateLimited { retry_at, .. }) => Some(*retry_at),
                _ => None,
            },
        }
    }
}

/// Whether a 2xx body is a throttling or outage page rather than chart JSON: empty, HTML
/// ("Will be right back"), or the words "Too Many Requests".
#[must_use]
pub fn looks_throttled(body: &[u8]) -> bool {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map_or(&[][..], |i| &body[i..]);
    if start.is_empty() || start.first() == Some(&b'<') {
        return true;
    }
    let head = &start[..start.len().min(512)];
    String::from_utf8_lossy(head)
        .to_ascii_lowercase()
        .contains("too many requests")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(after: u32, max_pauses: u32) -> ThrottleSettings {
        ThrottleSettings {
            after,
            pause: Duration::from_secs(120),
            max_pauses,
            max_requests: 1_000,
        }
    }

    #[test]
    fn throttling_pages_are_recognised() {
        assert!(looks_throttled(b""));
        assert!(looks_throttled(b"  \n"));
        assert!(looks_throttled(
            b"<!DOCTYPE html><html><title>Yahoo</title>Will be right back"
        ));
        assert!(looks_throttled(b"Edge: Too Many Requests"));
        assert!(looks_throttled(b"Too Many Requests\r\n"));
        assert!(!looks_throttled(
            br#"{"chart":{"result":null,"error":null}}"#
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_throttled_answers_pause_every_fetch_then_it_resumes_slowly() {
        let t = Throttle::new(settings(3, 2));
        for _ in 0..2 {
            t.admit().await.unwrap();
            t.record(Answer::Throttled);
        }
        // A usable answer in between resets the count: no pause.
        t.record(Answer::Usable);
        for _ in 0..2 {
            t.record(Answer::Throttled);
        }
        let before = Instant::now();
        t.admit().await.unwrap();
        assert_eq!(Instant::now(), before, "no pause yet");
        t.record(Answer::Throttled);
        // Third in a row: the next admission waits the whole pause.
        let admitted = t.admit().await.unwrap();
        assert!(Instant::now() - before >= Duration::from_secs(120));
        // Slow: a second request waits for the first to finish.
        let second = tokio::time::timeout(Duration::from_secs(1), t.admit()).await;
        assert!(second.is_err(), "one request at a time after a pause");
        drop(admitted);
        for _ in 0..3 {
            let a = t.admit().await.unwrap();
            t.record(Answer::Usable);
            drop(a);
        }
        // Full speed again: two admissions at once.
        let _a = t.admit().await.unwrap();
        let _b = tokio::time::timeout(Duration::from_millis(1), t.admit())
            .await
            .expect("concurrent again")
            .unwrap();
        assert_eq!(t.report().pauses, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn after_max_pauses_it_stops_sending() {
        let t = Throttle::new(settings(2, 1));
        t.record(Answer::Throttled);
        t.record(Answer::Throttled); // pause 1
        t.admit().await.unwrap(); // after the pause, slow
        t.record(Answer::Throttled); // one throttled answer while slow: no pause left
        let stopped = t.admit().await.unwrap_err();
        assert!(matches!(stopped, Stopped::RateLimited { pauses: 1, .. }));
        let text = stopped.to_string();
        assert!(
            text.starts_with("skipped (rate-limited)") && text.contains("rerun after"),
            "{text}"
        );
        let report = t.report();
        assert_eq!((report.requests_sent, report.pauses), (1, 1));
        assert!(report.retry_at.is_some() && report.stopped.is_some());
    }

    #[tokio::test]
    async fn the_request_budget_is_a_hard_bound() {
        let t = Throttle::new(ThrottleSettings {
            max_requests: 3,
            ..settings(3, 2)
        });
        for _ in 0..3 {
            t.admit().await.unwrap();
            t.record(Answer::Neutral);
        }
        assert!(matches!(
            t.admit().await.unwrap_err(),
            Stopped::Budget { max_requests: 3 }
        ));
        assert!(t.admit().await.is_err());
        assert_eq!(t.sent(), 3);
    }
}
