//! Human tables by default, JSON for scripts.

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
/// counted here, not by `format!`'s width, which panics past 65,535.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            out.push_str(cell);
            if i + 1 < cells.len() {
                let width = widths.get(i).copied().unwrap_or(0);
                let pad = (width + 2).saturating_sub(cell.chars().count());
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header);
    for row in rows {
        line(&row.iter().map(String::as_str).collect::<Vec<_>>());
    }
}

pub fn json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
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
