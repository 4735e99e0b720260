//! Query strings, read the way axum's query decoder reads them (`+` is a space, then percent
//! escapes), for the places that look at a query themselves: repeated `topic=` parameters,
//! the UTF-8 check, and log redaction.

/// One name or value of a query, decoded; `Err` when its bytes are not UTF-8.
pub fn component(part: &str) -> Result<String, std::str::Utf8Error> {
    percent_encoding::percent_decode_str(&part.replace('+', " ")).decode_utf8().map(|text| text.into_owned())
}

/// The `name=value` pairs of a query, as written (a pair without `=` has an empty value).
pub fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query.split('&').map(|pair| pair.split_once('=').unwrap_or((pair, "")))
}
