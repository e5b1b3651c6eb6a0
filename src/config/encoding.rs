//! The `encoding:` section: how much to fetch and how politely.

use std::num::{NonZeroU32, NonZeroUsize};
use std::time::Duration;

use crate::config::ConfigError;
use crate::config::IntSetting;
use crate::config::Section;
use crate::config::nonzero_u32;
use crate::config::nonzero_usize;
use crate::config::yaml::Doc;
use crate::config::yaml::{Fields, Node};
use crate::domain::HistoryDays;

/// The `encoding:` section: how much to fetch and how politely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodingSettings {
    /// Days of history to fetch (`1..=36500`).
    pub days_back: u32,
    /// Days processed for embeddings by a later stage (`1..=36500`).
    pub embedding_days: u32,
    /// Securities fetched concurrently (`1..=64`).
    pub batch_size: NonZeroUsize,
    /// Retry attempts per request (`0..=10`).
    pub max_retries: u32,
    /// Timeout of one HTTP request (`request_timeout_secs`, `1..=600`).
    pub request_timeout: Duration,
    /// Global rate limit towards Yahoo (`1..=1000`).
    pub requests_per_second: NonZeroU32,
    /// First backoff delay (`retry_base_ms`, `1..=60000`).
    pub retry_base: Duration,
    /// Cap on any backoff or `Retry-After` wait (`retry_max_ms`, `retry_base_ms..=600000`).
    pub retry_max: Duration,
    /// History a security with no stored bar gets on its first run (`history_days`,
    /// `1..=36500` calendar days or `max`; default 400, enough for every indicator: SMA 200,
    /// the 252-bar drawdown and 52-week high).
    pub history_days: HistoryDays,
    /// How far back a run reaches to fill the gap since a security's last stored bar
    /// (`max_catch_up_days`, `1..=36500`, default 1000); a longer outage is cut, with a warning.
    pub max_catch_up_days: u32,
    /// Throttled answers in a row, across securities, that pause the whole fetch stage
    /// (`throttle_after`, `1..=100`, default 3).
    pub throttle_after: u32,
    /// How long such a pause lasts (`throttle_pause_secs`, `1..=3600`, default 300).
    pub throttle_pause: Duration,
    /// Pauses a run takes before it stops fetching and skips the rest
    /// (`throttle_max_pauses`, `0..=10`, default 2).
    pub throttle_max_pauses: u32,
    /// Requests a run may send in all (`max_requests`, `1..=1000000`, or `auto`, the default:
    /// see [`EncodingSettings::request_budget`]).
    pub max_requests: Option<u32>,
}

impl EncodingSettings {
    /// The request budget of a run over `securities` securities: `max_requests`, or with
    /// `auto` every attempt a security may take, twice (a rebase refetches the history), plus
    /// one probe per pause.
    #[must_use]
    pub fn request_budget(&self, securities: usize) -> u32 {
        self.max_requests.unwrap_or_else(|| {
            let per_security = 2 * (self.max_retries + 1);
            u32::try_from(securities)
                .unwrap_or(u32::MAX)
                .saturating_mul(per_security)
                .saturating_add(self.throttle_max_pauses)
                .max(1)
        })
    }
}

pub(super) const DAYS_BACK: IntSetting = IntSetting::new("days_back", 1, 36_500, 60);
pub(super) const EMBEDDING_DAYS: IntSetting = IntSetting::new("embedding_days", 1, 36_500, 30);
pub(super) const BATCH_SIZE: IntSetting = IntSetting::new("batch_size", 1, 64, 5);
pub(super) const MAX_RETRIES: IntSetting = IntSetting::new("max_retries", 0, 10, 3);
pub(super) const REQUEST_TIMEOUT_SECS: IntSetting =
    IntSetting::new("request_timeout_secs", 1, 600, 30);
pub(super) const REQUESTS_PER_SECOND: IntSetting =
    IntSetting::new("requests_per_second", 1, 1_000, 1);
pub(super) const RETRY_BASE_MS: IntSetting = IntSetting::new("retry_base_ms", 1, 60_000, 500);
pub(super) const RETRY_MAX_MS: IntSetting = IntSetting::new("retry_max_ms", 1, 600_000, 30_000);
pub(super) const HISTORY_DAYS: IntSetting = IntSetting::new("history_days", 1, 36_500, 400);
pub(super) const MAX_CATCH_UP_DAYS: IntSetting =
    IntSetting::new("max_catch_up_days", 1, 36_500, 1000);
pub(super) const THROTTLE_AFTER: IntSetting = IntSetting::new("throttle_after", 1, 100, 3);
pub(super) const THROTTLE_PAUSE_SECS: IntSetting =
    IntSetting::new("throttle_pause_secs", 1, 3_600, 300);
pub(super) const THROTTLE_MAX_PAUSES: IntSetting = IntSetting::new("throttle_max_pauses", 0, 10, 2);
pub(super) const MAX_REQUESTS: IntSetting = IntSetting::new("max_requests", 1, 1_000_000, 1);

/// Keys allowed in `encoding:`.
pub const ENCODING_KEYS: &[&str] = &[
    DAYS_BACK.key,
    EMBEDDING_DAYS.key,
    BATCH_SIZE.key,
    MAX_RETRIES.key,
    REQUEST_TIMEOUT_SECS.key,
    REQUESTS_PER_SECOND.key,
    RETRY_BASE_MS.key,
    RETRY_MAX_MS.key,
    HISTORY_DAYS.key,
    MAX_CATCH_UP_DAYS.key,
    THROTTLE_AFTER.key,
    THROTTLE_PAUSE_SECS.key,
    THROTTLE_MAX_PAUSES.key,
    MAX_REQUESTS.key,
];

impl Default for EncodingSettings {
    fn default() -> Self {
        EncodingSettings {
            days_back: DAYS_BACK.default,
            embedding_days: EMBEDDING_DAYS.default,
            batch_size: nonzero_usize(BATCH_SIZE.default),
            max_retries: MAX_RETRIES.default,
            request_timeout: Duration::from_secs(u64::from(REQUEST_TIMEOUT_SECS.default)),
            requests_per_second: nonzero_u32(REQUESTS_PER_SECOND.default),
            retry_base: Duration::from_millis(u64::from(RETRY_BASE_MS.default)),
            retry_max: Duration::from_millis(u64::from(RETRY_MAX_MS.default)),
            history_days: HistoryDays::Days(HISTORY_DAYS.default),
            max_catch_up_days: MAX_CATCH_UP_DAYS.default,
            throttle_after: THROTTLE_AFTER.default,
            throttle_pause: Duration::from_secs(u64::from(THROTTLE_PAUSE_SECS.default)),
            throttle_max_pauses: THROTTLE_MAX_PAUSES.default,
            max_requests: None,
        }
    }
}

impl Section for EncodingSettings {
    const KEY: &'static str = "encoding";
    const KEYS: &'static [&'static str] = ENCODING_KEYS;

    fn read(doc: &Doc<'_>, fields: &Fields<'_>) -> Result<Self, ConfigError> {
        let (days_back, _) = DAYS_BACK.read(doc, fields)?;
        let (embedding_days, _) = EMBEDDING_DAYS.read(doc, fields)?;
        let (batch_size, _) = BATCH_SIZE.read(doc, fields)?;
        let (max_retries, _) = MAX_RETRIES.read(doc, fields)?;
        let (timeout_secs, _) = REQUEST_TIMEOUT_SECS.read(doc, fields)?;
        let (rps, _) = REQUESTS_PER_SECOND.read(doc, fields)?;
        let (base_ms, base_line) = RETRY_BASE_MS.read(doc, fields)?;
        let (max_ms, max_line) = RETRY_MAX_MS.read(doc, fields)?;
        let history_days = match fields.get(HISTORY_DAYS.key) {
            Some(node) if matches!(&node.value, Node::Str(s) if s == "max") => HistoryDays::Max,
            _ => HistoryDays::Days(HISTORY_DAYS.read(doc, fields)?.0),
        };
        let (max_catch_up_days, _) = MAX_CATCH_UP_DAYS.read(doc, fields)?;
        let (throttle_after, _) = THROTTLE_AFTER.read(doc, fields)?;
        let (pause_secs, _) = THROTTLE_PAUSE_SECS.read(doc, fields)?;
        let (throttle_max_pauses, _) = THROTTLE_MAX_PAUSES.read(doc, fields)?;
        let max_requests = match fields.get(MAX_REQUESTS.key) {
            None => None,
            Some(node) if matches!(&node.value, Node::Str(s) if s == "auto") => None,
            Some(_) => Some(MAX_REQUESTS.read(doc, fields)?.0),
        };
        if max_ms < base_ms {
            let (line, field, message) = match (max_line, base_line) {
                (Some(line), _) => (
                    line,
                    fields.field(RETRY_MAX_MS.key),
                    format!(
                        "{max_ms} is smaller than retry_base_ms ({base_ms}); the cap on backoff must be at least the first delay"
                    ),
                ),
                (None, base_line) => (
                    base_line.unwrap_or(fields.line),
                    fields.field(RETRY_BASE_MS.key),
                    format!(
                        "{base_ms} is larger than retry_max_ms ({max_ms}, the default); lower it or set retry_max_ms to at least {base_ms}"
                    ),
                ),
            };
            return Err(ConfigError::Invalid {
                path: doc.path.to_path_buf(),
                line,
                field,
                message,
            });
        }
        Ok(EncodingSettings {
            days_back,
            embedding_days,
            batch_size: nonzero_usize(batch_size),
            max_retries,
            request_timeout: Duration::from_secs(u64::from(timeout_secs)),
            requests_per_second: nonzero_u32(rps),
            retry_base: Duration::from_millis(u64::from(base_ms)),
            retry_max: Duration::from_millis(u64::from(max_ms)),
            history_days,
            max_catch_up_days,
            throttle_after,
            throttle_pause: Duration::from_secs(u64::from(pause_secs)),
            throttle_max_pauses,
            max_requests,
        })
    }
}
