//! A local stand-in for Yahoo Finance's chart endpoint, `GET /v8/finance/chart/{symbol}`.
//!
//! It answers with responses of the real shape (see `shared/reference/` for recorded ones):
//! deterministic synthetic daily bars by default, or a scripted [`Scenario`] per symbol
//! (errors, rate limiting, hangs, broken connections, malformed or empty bodies, and
//! [`Scenario::Actions`]: splits and dividends answered as Yahoo would at the window's end).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use fake_yahoo::{FakeYahoo, Options, Scenario};
//! let server = FakeYahoo::start(Options::default()).await?;
//! server.set_scenario("^GSPC", Scenario::RateLimited { retry_after_secs: Some(1) });
//! let url = format!("{}/v8/finance/chart/%5EGSPC?period1=0&period2=1700000000&interval=1d",
//!     server.base_url());
//! # let _ = url;
//! server.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod actions;
mod server;
mod serving;
mod synthetic;

pub use actions::CorporateAction;
pub use server::{FakeYahoo, Options, RequestRecord, Scenario, Throttling};
pub use serving::Serving;
pub use synthetic::{
    EPOCH, InstrumentType, Profile, actions_chart, actions_chart_as_of, instrument_profile,
    synthetic_chart,
};
