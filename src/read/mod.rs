//! The read-only questions, answered from what the job stored: the nearest market days
//! ([`similar`], Chroma), a position's P&L ([`pnl`], PostgreSQL) and the stored cross-asset
//! features ([`features`]). Nothing here writes.
pub mod conditions;
pub mod features;
pub mod pnl;
pub mod similar;
