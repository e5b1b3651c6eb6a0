//! Defaults every HTTP client of the program shares (Yahoo, Chroma, the embeddings endpoint,
//! the model download): rustls, a whole-request timeout, a shorter connect timeout, idle
//! connections closed before a server or proxy drops them.

use std::time::Duration;

/// A client builder with the shared defaults: `timeout` for a whole request, at most `connect`
/// (and never more than `timeout`) for a connection attempt. The caller adds its User-Agent
/// and headers.
pub fn client_builder(timeout: Duration, connect: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(connect))
        .pool_idle_timeout(Duration::from_secs(30))
}
