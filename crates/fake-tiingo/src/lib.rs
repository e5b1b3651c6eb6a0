//! A local stand-in for Tiingo's end-of-day endpoint, `GET /tiingo/daily/{ticker}/prices`.
//!
//! It serves the **same synthetic history as fake-yahoo** for a symbol (same seed, same
//! prices), on Tiingo's basis: raw prices as traded that day (fake-yahoo's split-adjusted ones
//! times the splits after the row's date), `adjClose` as fake-yahoo's `adjclose` (the very same
//! float, so that tests can compare what the two sources stored to the bit), the day's dividend
//! in `divCash` (on the raw basis) and the day's split in `splitFactor`. The answer is the one
//! Tiingo would give on "today": now, or the `as_of` date of [`Scenario::ActionsAsOf`] (no row
//! after it, adjustments as known then), which mirrors fake-yahoo's scenario of that name.
//!
//! Like Tiingo it wants `Authorization: Token <token>` (or `?token=`), answering 401
//! `{"detail":"Please supply a token"}` or `{"detail":"Invalid token."}` otherwise; every
//! request is logged ([`RequestRecord`]) with where its token came from, so that a test can
//! check that a client keeps it out of the URL.

mod prices;
mod server;

pub use fake_yahoo::CorporateAction;
pub use prices::{PriceRow, prices};
pub use server::{DEFAULT_TOKEN, FakeTiingo, Options, RequestRecord, Scenario};
