//! What every layer uses and no layer owns: the retry loop of the HTTP clients ([`retry`]),
//! their shared defaults ([`http`]), error text ([`text`]: one `error_chain`, one `one_line`),
//! and logging. Imports nothing of the crate.
pub mod http;
pub mod logging;
pub mod retry;
pub mod text;
