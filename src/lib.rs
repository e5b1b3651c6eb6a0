//! market-encoder: the daily market-data job as a library; `main.rs` is a thin shell around it.
//!
//! The code map (ARCHITECTURE.md has a paragraph per folder, with its invariants). Data flows
//! one way, down this list; each module imports only those below it (and `support`):
//!
//! - [`app`]: the composition root. Turns a command line, `securities.yaml` and the
//!   environment into a run plan or a read-only command, and an exit code.
//! - [`serve`]: the same job behind an HTTP service (axum): endpoints, auth, metrics.
//! - [`report`]: what the operator sees: the dry-run plan, the summary table and JSON line.
//! - [`read`]: the read-only questions: `similar`, `pnl`, `features`.
//! - [`job`]: the run. `job/mod.rs` calls the stages in order:
//!   [`job::fetch`] -> [`job::validate`] -> [`job::store`] -> [`job::analyze`] ->
//!   [`job::narrate`]; [`job::features`]; [`job::embed`] -> [`job::index`].
//! - [`config`]: `securities.yaml` (with line numbers) and [`config::env`], every environment
//!   variable the program reads.
//! - [`cli`]: the command line (clap only).
//! - [`domain`]: the ground floor: symbols, windows, shards, securities, feature roles,
//!   positions. Imports nothing of the crate.
//! - [`support`]: retry loop, HTTP client defaults, error text, logging. Imports nothing of
//!   the crate but `domain`.
pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod job;
pub mod read;
pub mod report;
pub mod serve;
pub mod support;
