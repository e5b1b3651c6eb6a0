//! The integration tests: one binary (it links once), one module per area. Every test runs
//! the real binary or the library against a real PostgreSQL (a fresh database per test), a real
//! Chroma server where it needs one, and the local fake Yahoo; `common` is the harness.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers may panic

mod analyze_reference;
mod architecture;
mod check;
mod chroma;
mod cli;
mod common;
mod db_loss;
mod deploy;
mod embed;
mod embed_openai;
mod features;
mod history;
mod job;
mod memory;
mod own_pg;
mod pg_socket;
mod pnl;
mod runs;
mod serve;
mod throttle;
mod tiingo;
