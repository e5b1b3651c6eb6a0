//! Logging: JSON lines when stdout is not a terminal (what Kubernetes log pipelines expect),
//! readable lines on a terminal; always on stderr, so stdout carries only the plan and summary.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("environment variable LOG_LEVEL: {0:?} is not one of ERROR, WARN, INFO, DEBUG, TRACE")]
    BadLevel(String),
    #[error("environment variable RUST_LOG: {0}")]
    BadFilter(String),
}

/// The filter: `RUST_LOG` if set (full `tracing` syntax), else `LOG_LEVEL` (default INFO) for
/// market-encoder with noisy dependencies held at WARN; `verbose` raises market-encoder to DEBUG.
pub fn filter(
    rust_log: Option<&str>,
    log_level: Option<&str>,
    verbose: bool,
) -> Result<EnvFilter, LoggingError> {
    if let Some(directives) = rust_log.filter(|s| !s.trim().is_empty()) {
        return EnvFilter::try_new(directives).map_err(|e| LoggingError::BadFilter(e.to_string()));
    }
    let level = log_level.unwrap_or("INFO").trim();
    let level = match level.to_ascii_lowercase().as_str() {
        "error" | "warn" | "info" | "debug" | "trace" => level.to_ascii_lowercase(),
        "warning" => "warn".to_owned(),
        _ => return Err(LoggingError::BadLevel(level.to_owned())),
    };
    let own = if verbose { "debug" } else { level.as_str() };
    let deps = if level == "trace" { "debug" } else { "warn" };
    EnvFilter::try_new(format!(
        "{level},market_encoder={own},sqlx={deps},hyper={deps},hyper_util={deps},reqwest={deps},rustls={deps},h2={deps}"
    ))
    .map_err(|e| LoggingError::BadFilter(e.to_string()))
}

/// Installs the global subscriber.
pub fn init(filter: EnvFilter) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::io::stdout().is_terminal() {
        builder.compact().with_target(false).init();
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_parse() {
        assert!(filter(None, None, false).is_ok());
        assert!(filter(None, Some("debug"), false).is_ok());
        assert!(filter(None, Some("WARNING"), true).is_ok());
        let err = filter(None, Some("loud"), false).unwrap_err().to_string();
        assert!(err.contains("LOG_LEVEL") && err.contains("loud"), "{err}");
        assert!(filter(Some("market_encoder=trace"), Some("loud"), false).is_ok());
    }
}
