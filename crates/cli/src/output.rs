//! Human tables by default, JSON for scripts.

use std::io::{BufWriter, Write};

use anyhow::Context;
use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// Longest cell a table shows unless asked for all (`--no-trunc`), in characters.
pub const CELL_WIDTH: usize = 40;

/// Cuts a cell to `max` characters, the last one an ellipsis, as Docker cuts its command
/// column.
pub fn truncate(cell: &str, max: usize) -> String {
    match cell.char_indices().nth(max.saturating_sub(1)) {
        Some((end, _)) if cell.chars().count() > max => format!("{}…", &cell[..end]),
        _ => cell.to_string(),
    }
}

/// Prints rows as left-aligned columns under a header, two spaces apart. Padding is
/// counted here, not by `format!`'s width, which panics past 65,535. The table goes out
/// through one buffer: stdout is line-buffered, and a line per write costs a system
/// call per row (a thousand for `ls` on a full host).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut line = |cells: &[&str]| -> std::io::Result<()> {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            text.push_str(cell);
            if i + 1 < cells.len() {
                let width = widths.get(i).copied().unwrap_or(0);
                let pad = (width + 2).saturating_sub(cell.chars().count());
                text.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(header).context("write to stdout")?;
    for row in rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>()).context("write to stdout")?;
    }
    out.flush().context("write to stdout")
}

/// Pretty JSON, streamed through one buffer instead of built whole first.
pub fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out).context("write to stdout")?;
    out.flush().context("write to stdout")
}

pub fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{}h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_short_cells_and_cuts_long_ones_on_characters() {
        assert_eq!(truncate("sleep 1000", 40), "sleep 1000");
        assert_eq!(truncate("abcdef", 6), "abcdef");
        assert_eq!(truncate("abcdefg", 6), "abcde…");
        assert_eq!(truncate("ééééééé", 4), "ééé…");
    }
}
