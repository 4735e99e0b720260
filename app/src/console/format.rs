//! How event data is shown in a table cell: JSON on one line with a space after `:` and `,`
//! (pretty but compact); anything else as the text it is.

use serde_json::Value;

/// The text shown for `data`.
pub fn display_data(data: &str) -> String {
    match serde_json::from_str::<Value>(data) {
        Ok(value @ (Value::Object(_) | Value::Array(_))) => {
            let mut out = String::with_capacity(data.len() + 16);
            write_compact(&value, &mut out);
            out
        }
        _ => data.to_owned(),
    }
}

fn write_compact(value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_compact(item, out);
            }
            out.push(']');
        }
        Value::Object(fields) => {
            out.push('{');
            for (i, (key, item)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                write_compact(item, out);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::display_data;

    /// JSON objects get spaces; plain text and scalars are shown as sent.
    #[test]
    fn json_is_spaced_and_text_is_kept() {
        assert_eq!(display_data(r#"{"time":"1","n":[1,2]}"#), r#"{"time": "1", "n": [1, 2]}"#);
        assert_eq!(display_data("<b>hi</b>"), "<b>hi</b>");
        assert_eq!(display_data("42"), "42");
    }
}
