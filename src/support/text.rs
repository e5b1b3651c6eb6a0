//! Error text: every message the operator sees is one line, names its cause, and never grows
//! without bound. One function each, shared by every layer.

use std::error::Error;

/// Longest server message kept in an error (a 500 page can be megabytes).
const MAX_MESSAGE: usize = 300;

/// `error` and its sources, joined by `": "`, leaving out a source whose text the message
/// already holds (reqwest and hyper repeat their causes).
#[must_use]
pub fn error_chain(error: &dyn Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// `text` on one line (runs of white space, newlines included, become one space), at most
/// 300 characters and then `...`.
#[must_use]
pub fn one_line(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > MAX_MESSAGE {
        let cut: String = flat.chars().take(MAX_MESSAGE).collect();
        format!("{cut}...")
    } else {
        flat
    }
}

/// What a server said when it failed: its own `message` when the body had one (`parsed`),
/// else the start of the body, else the status text; one line.
#[must_use]
pub fn server_message(status: reqwest::StatusCode, body: &[u8], parsed: Option<String>) -> String {
    if let Some(message) = parsed.filter(|m| !m.trim().is_empty()) {
        return one_line(&message);
    }
    let text = String::from_utf8_lossy(body);
    if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        one_line(&text)
    }
}

/// How many bytes of a body that is not what was expected an error shows.
pub const BODY_START: usize = 200;

/// The first [`BODY_START`] bytes of a body, as text on one line (invalid UTF-8 and control
/// characters replaced), for an error that must show what a server sent instead of JSON.
#[must_use]
pub fn body_start(body: &[u8]) -> String {
    let head = &body[..body.len().min(BODY_START)];
    let text: String = String::from_utf8_lossy(head)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if body.len() > BODY_START {
        format!("{flat}...")
    } else {
        flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_start_is_one_line_of_the_first_200_bytes() {
        assert_eq!(
            body_start(b"<html>\r\n <b>Will be right back</b>"),
            "<html> <b>Will be right back</b>"
        );
        let long = [b'a'; 500];
        assert_eq!(body_start(&long), format!("{}...", "a".repeat(200)));
        assert_eq!(body_start(&[0xff, b'x', 0x07, b'y']), "\u{fffd}x y");
    }

    #[test]
    fn one_line_flattens_and_shortens() {
        assert_eq!(one_line("<html>\n oops </html>"), "<html> oops </html>");
        let long = "x".repeat(1000);
        assert_eq!(one_line(&long).chars().count(), 303);
    }

    #[test]
    fn error_chain_skips_repeated_causes() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer: inner")]
        struct Outer(#[source] Inner);
        #[derive(Debug, thiserror::Error)]
        #[error("inner")]
        struct Inner(#[source] std::io::Error);
        let e = Outer(Inner(std::io::Error::other("io")));
        assert_eq!(error_chain(&e), "outer: inner: io");
    }

    #[test]
    fn server_message_prefers_the_parsed_message() {
        let s = reqwest::StatusCode::BAD_GATEWAY;
        assert_eq!(server_message(s, b"x", Some("  boom\n".into())), "boom");
        assert_eq!(
            server_message(s, b"<p>\nbad</p>", Some(" ".into())),
            "<p> bad</p>"
        );
        assert_eq!(server_message(s, b"  ", None), "Bad Gateway");
    }
}
