//! Printing results: human-readable text by default, JSON with `--output json`; a spinner on
//! standard error while waiting (only when it is a terminal and the output is for people).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// The output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Text for people.
    Human,
    /// JSON for scripts (one document per command; errors as `{"error": …}` on stderr).
    Json,
}

/// How results are printed.
#[derive(Clone, Copy, Debug)]
pub struct Output {
    /// The format.
    pub format: Format,
    spinner: bool,
}

/// Stops its spinner when dropped.
pub struct Spinner(Option<ProgressBar>);

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}

impl Output {
    /// Output in `format`; spinners only when stderr is a terminal and the format is human.
    pub fn new(format: Format) -> Self {
        Output {
            format,
            spinner: format == Format::Human && std::io::stderr().is_terminal(),
        }
    }

    /// Whether the output is JSON.
    pub fn json(&self) -> bool {
        self.format == Format::Json
    }

    /// A spinner with `message` until the guard is dropped.
    pub fn spinner(&self, message: &str) -> Spinner {
        if !self.spinner {
            return Spinner(None);
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
            bar.set_style(style);
        }
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(100));
        Spinner(Some(bar))
    }

    /// Prints `value` as JSON, or `human(value)` as text.
    pub fn print<T: Serialize>(&self, value: &T, human: impl FnOnce(&T) -> String) {
        if self.json() {
            match serde_json::to_string_pretty(value) {
                Ok(text) => println!("{text}"),
                Err(e) => eprintln!("error: cli.local: encoding the result: {e}"),
            }
        } else {
            let text = human(value);
            if !text.is_empty() {
                println!("{}", text.trim_end());
            }
        }
    }

    /// Prints a one-line confirmation for people, or `{"ok": true, …}` for scripts.
    pub fn done(&self, message: &str, extra: serde_json::Value) {
        let mut value = serde_json::json!({"ok": true});
        if let (Some(obj), serde_json::Value::Object(more)) = (value.as_object_mut(), extra) {
            obj.extend(more);
        }
        self.print(&value, |_| message.to_owned());
    }
}

/// A table: a header row and rows, columns padded to their widest cell.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths.get(i).copied().unwrap_or(0)))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(header.iter().map(|h| (*h).to_owned()).collect())];
    out.extend(rows.into_iter().map(line));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns_to_the_widest_cell() {
        let text = table(
            &["ID", "NAME"],
            vec![
                vec!["1".into(), "general".into()],
                vec!["22".into(), "x".into()],
            ],
        );
        assert_eq!(text, "ID  NAME\n1   general\n22  x");
    }
}
