//! `-o table|wide|json|yaml` for every list and get: one printer, so every resource prints
//! the same way.
//!
//! - `table`: the resource's main columns, tab-separated, one line per item (a header line
//!   only when standard output is a terminal, so scripts reading a pipe get rows alone);
//! - `wide`: every column;
//! - `json`: one JSON object per line (JSON Lines), printed as pages arrive;
//! - `yaml`: one YAML document per item, separated by `---`.
//!
//! Values are words, never enum numbers, and times RFC 3339. A cell never carries a control
//! character: text from a repository or a provider (a name, a message) cannot move the
//! cursor, recolour or retitle the operator's terminal, nor break a row in two.

use clap::ValueEnum;
use serde_json::{Map, Value};
use std::io::{IsTerminal, Write};

/// How to print.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// The main columns, tab-separated.
    #[default]
    Table,
    /// Every column, tab-separated.
    Wide,
    /// One JSON object per line.
    Json,
    /// YAML documents separated by `---`.
    Yaml,
}

/// One item: its fields in column order.
pub type Row = Vec<(&'static str, Value)>;

/// Prints rows as they come, in one format.
pub struct Printer {
    output: Output,
    /// The columns `table` shows.
    narrow: &'static [&'static str],
    header: bool,
    first: bool,
}

impl Printer {
    /// `narrow` names the columns `table` shows (every column of a row is shown by `wide`).
    pub fn new(output: Output, narrow: &'static [&'static str]) -> Printer {
        Printer {
            output,
            narrow,
            header: std::io::stdout().is_terminal(),
            first: true,
        }
    }

    pub fn row(&mut self, row: Row) -> anyhow::Result<()> {
        let text = self.render(row)?;
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        Ok(())
    }

    /// What [`Printer::row`] prints for `row`.
    pub fn render(&mut self, row: Row) -> anyhow::Result<String> {
        let first = std::mem::replace(&mut self.first, false);
        Ok(match self.output {
            Output::Table | Output::Wide => {
                let shown: Vec<&(&str, Value)> = row
                    .iter()
                    .filter(|(k, _)| self.output == Output::Wide || self.narrow.contains(k))
                    .collect();
                let mut text = String::new();
                if first && self.header {
                    let names: Vec<String> =
                        shown.iter().map(|(k, _)| k.to_ascii_uppercase()).collect();
                    text.push_str(&names.join("\t"));
                    text.push('\n');
                }
                let cells: Vec<String> = shown.iter().map(|(_, v)| cell(v)).collect();
                text.push_str(&cells.join("\t"));
                text.push('\n');
                text
            }
            Output::Json => serde_json::to_string(&object(row))? + "\n",
            Output::Yaml => {
                let doc = serde_yaml_ng::to_string(&object(row))?;
                if first {
                    doc
                } else {
                    format!("---\n{doc}")
                }
            }
        })
    }
}

fn object(row: Row) -> Value {
    Value::Object(
        row.into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Map<_, _>>(),
    )
}

/// A value as one table cell: text as it is (without control characters), `-` for nothing,
/// lists comma-separated.
fn cell(v: &Value) -> String {
    let text = match v {
        Value::Null => return "-".to_string(),
        Value::String(s) if s.is_empty() => return "-".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => return "-".to_string(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    };
    printable(&text)
}

/// `text` with every control character (an escape sequence's ESC, a newline) made a space:
/// what the server sends is shown, never interpreted by the terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A timestamp from the API as a time, `None` when absent or out of range.
pub fn datetime(t: Option<&plumbline_proto::Timestamp>) -> Option<chrono::DateTime<chrono::Utc>> {
    let t = t?;
    chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0))
}

/// A timestamp in RFC 3339 (UTC, seconds), null when absent.
pub fn time(t: &Option<plumbline_proto::Timestamp>) -> Value {
    datetime(t.as_ref())
        .map(|t| Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row() -> Row {
        vec![
            ("name", json!("acme/api")),
            ("status", json!("fail")),
            ("message", json!("bad\u{1b}]0;owned\u{7}\nnext")),
            ("labels", json!(["a", "b"])),
            ("expires", Value::Null),
        ]
    }

    #[test]
    fn each_format_prints_the_same_item() {
        let mut table = Printer::new(Output::Table, &["name", "status"]);
        table.header = true;
        assert_eq!(
            table.render(row()).expect("table"),
            "NAME\tSTATUS\nacme/api\tfail\n"
        );
        assert_eq!(table.render(row()).expect("table"), "acme/api\tfail\n");
        let mut wide = Printer::new(Output::Wide, &["name"]);
        wide.header = false;
        assert_eq!(
            wide.render(row()).expect("wide"),
            "acme/api\tfail\tbad ]0;owned  next\ta,b\t-\n",
            "no control character reaches the terminal, and a row stays one line"
        );
        let mut json = Printer::new(Output::Json, &[]);
        let line = json.render(row()).expect("json");
        let back: Value = serde_json::from_str(&line).expect("one JSON object");
        assert_eq!(back["message"], "bad\u{1b}]0;owned\u{7}\nnext");
        assert!(line.ends_with("}\n") && line.lines().count() == 1);
        let mut yaml = Printer::new(Output::Yaml, &[]);
        let one = yaml.render(row()).expect("yaml");
        let two = yaml.render(row()).expect("yaml");
        assert!(!one.starts_with("---") && two.starts_with("---\n"), "{two}");
        let back: Value = serde_yaml_ng::from_str(&one).expect("yaml");
        assert_eq!(back["labels"], json!(["a", "b"]));
    }
}
