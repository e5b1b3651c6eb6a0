//! market-encoder: the daily market-data job as a library; `main.rs` is a thin shell around it.
pub mod config;
pub mod domain;
