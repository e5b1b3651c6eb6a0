//! market-encoder: the daily market-data job as a library; `main.rs` is a thin shell around it.
//!
//! Stages, in the order data flows (one module each): [`config`] -> [`fetch`] -> [`validate`]
//! -> [`store`] -> [`report`]; [`features`] computes the cross-asset features of all of them;
//! [`pipeline`] runs them per security, [`app`] maps a command line
//! to a run and an exit code, [`serve`] runs the same job behind an HTTP service. See
//! ARCHITECTURE.md.
pub mod analyze;
pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
pub mod embed;
pub mod features;
pub mod fetch;
pub mod index;
pub mod logging;
pub mod narrate;
pub mod pipeline;
pub mod pnl;
pub mod report;
pub mod retry;
pub mod search;
pub mod serve;
pub mod settings;
pub mod store;
pub mod validate;
