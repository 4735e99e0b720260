//! Logging: `tracing` to stderr, as text or JSON, filtered by `RUST_LOG` (default `info`).
//! Request lines carry the path with secrets redacted (see [`redact_query`]).

use crate::config::LogFormat;
use tracing_subscriber::{fmt, EnvFilter};

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A log line that cannot be written is dropped: by default the subscriber reports it with
    // `eprintln!`, which panics when stderr itself is gone (a closed pipe), in whatever request
    // was logging.
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).log_internal_errors(false);
    // `try_init` fails only when a subscriber is already set, as in tests: keep that one.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Query parameters whose values are credentials and never reach a log line.
const SECRET_PARAMS: [&str; 3] = ["token", "ticket", "authorization"];

/// The path and query of `uri` with the values of secret parameters replaced by `REDACTED`.
/// Names are compared as the query decoder reads them (percent-decoded, `+` as a space), so
/// `?%74oken=` is redacted like the `?token=` it authenticates as.
pub fn redact_query(uri: &axum::http::Uri) -> String {
    let Some(query) = uri.query() else { return uri.path().to_owned() };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            let decoded = crate::query::component(name).unwrap_or_default();
            if SECRET_PARAMS.iter().any(|secret| decoded.eq_ignore_ascii_case(secret)) {
                format!("{name}=REDACTED")
            } else {
                pair.to_owned()
            }
        })
        .collect();
    format!("{}?{}", uri.path(), redacted.join("&"))
}

#[cfg(test)]
mod tests {
    use super::redact_query;

    /// Token and ticket values are hidden; everything else stays readable.
    #[test]
    fn secrets_are_redacted() {
        let uri = "/stream-sse?user=a&token=abc.def&ticket=xyz&lastEventId=1-0".parse().unwrap();
        assert_eq!(redact_query(&uri), "/stream-sse?user=a&token=REDACTED&ticket=REDACTED&lastEventId=1-0");
        assert_eq!(redact_query(&"/healthz".parse().unwrap()), "/healthz");
    }

    /// A percent-encoded or differently cased name is redacted too: the query decoder reads
    /// `%74oken` and `tok%65n` as `token`.
    #[test]
    fn encoded_names_are_redacted() {
        for name in ["%74oken", "tok%65n", "%54%4F%4B%45%4E", "TOKEN", "tick%65t", "%74icket"] {
            let uri = format!("/stream-sse?user=a&{name}=secret-value").parse().unwrap();
            assert_eq!(redact_query(&uri), format!("/stream-sse?user=a&{name}=REDACTED"), "{name}");
        }
        let uri = "/stream-sse?to+ken=x&tokens=y".parse().unwrap();
        assert_eq!(redact_query(&uri), "/stream-sse?to+ken=x&tokens=y", "other names stay readable");
    }
}
