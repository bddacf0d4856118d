//! Human tables by default, JSON for scripts.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::net::IpAddr;

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
/// column. A cell that fits is given back as it came, so a full `ls` copies no cells.
pub fn truncate(cell: Cow<'_, str>, max: usize) -> Cow<'_, str> {
    match cell.char_indices().nth(max.saturating_sub(1)) {
        Some((end, _)) if cell[end..].chars().nth(1).is_some() => {
            Cow::Owned(format!("{}…", &cell[..end]))
        }
        _ => cell,
    }
}

/// Addresses joined by commas. IPv4 is written octet by octet: `Ipv4Addr`'s `Display`
/// goes through the formatter's padding path, about 1,400 instructions an address,
/// which was an eighth of an `ls` of 1,000 containers.
pub fn addresses(addrs: &[IpAddr]) -> String {
    let mut out = String::with_capacity(addrs.len() * 16);
    for (i, addr) in addrs.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match addr {
            IpAddr::V4(v4) => {
                for (j, octet) in v4.octets().into_iter().enumerate() {
                    if j > 0 {
                        out.push('.');
                    }
                    push_u8(&mut out, octet);
                }
            }
            IpAddr::V6(v6) => {
                let _ = write!(out, "{v6}");
            }
        }
    }
    out
}

fn push_u8(out: &mut String, n: u8) {
    if n >= 100 {
        out.push(char::from(b'0' + n / 100));
    }
    if n >= 10 {
        out.push(char::from(b'0' + n / 10 % 10));
    }
    out.push(char::from(b'0' + n % 10));
}

/// Prints rows as left-aligned columns under a header, two spaces apart. Padding is
/// counted here, not by `format!`'s width, which panics past 65,535. Cells go straight
/// into one buffer: stdout is line-buffered, so a line per write would cost a system
/// call per row (a thousand for `ls` on a full host), and a string per line an
/// allocation per row.
pub fn table<R, C>(header: &[&str], rows: &[R]) -> anyhow::Result<()>
where
    R: AsRef<[C]>,
    C: AsRef<str>,
{
    let mut out = BufWriter::new(std::io::stdout().lock());
    render(&mut out, header, rows).context("write to stdout")?;
    out.flush().context("write to stdout")
}

fn render<R, C>(out: &mut impl Write, header: &[&str], rows: &[R]) -> std::io::Result<()>
where
    R: AsRef<[C]>,
    C: AsRef<str>,
{
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row.as_ref()) {
            *width = (*width).max(cell.as_ref().chars().count());
        }
    }
    write_row(out, &widths, header.iter().copied())?;
    for row in rows {
        write_row(out, &widths, row.as_ref().iter().map(AsRef::as_ref))?;
    }
    Ok(())
}

/// One line: each cell padded to its column but the last, and no trailing blanks, as
/// empty cells at the end of a row would otherwise leave.
fn write_row<'a>(
    out: &mut impl Write,
    widths: &[usize],
    cells: impl Iterator<Item = &'a str>,
) -> std::io::Result<()> {
    const SPACES: &[u8] = &[b' '; 64];
    let mut owed = 0;
    for (i, cell) in cells.enumerate() {
        let cell = cell.trim_end();
        if !cell.is_empty() {
            while owed > 0 {
                let n = owed.min(SPACES.len());
                out.write_all(&SPACES[..n])?;
                owed -= n;
            }
            out.write_all(cell.as_bytes())?;
        }
        let width = widths.get(i).copied().unwrap_or(0);
        owed += (width + 2).saturating_sub(cell.chars().count());
    }
    out.write_all(b"\n")
}

/// One line per item, through one buffer (as [`table`]), for `--quiet`.
pub fn lines<'a>(items: impl IntoIterator<Item = &'a str>) -> anyhow::Result<()> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    for item in items {
        writeln!(out, "{item}").context("write to stdout")?;
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
        let cut = |s: &str, max| truncate(Cow::Borrowed(s), max).into_owned();
        assert_eq!(cut("sleep 1000", 40), "sleep 1000");
        assert_eq!(cut("abcdef", 6), "abcdef");
        assert_eq!(cut("abcdefg", 6), "abcde…");
        assert_eq!(cut("ééééééé", 4), "ééé…");
        assert_eq!(cut("éééé", 4), "éééé");
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        let addrs: Vec<IpAddr> = [
            "0.0.0.0",
            "10.98.1.170",
            "255.255.255.255",
            "1.20.100.9",
            "fd00::1",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let want: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
        assert_eq!(addresses(&addrs), want.join(","));
        assert_eq!(addresses(&[]), "");
    }

    fn rendered(header: &[&str], rows: &[&[&str]]) -> String {
        let mut out = Vec::new();
        render(&mut out, header, rows).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn columns_line_up_on_characters_and_lines_end_without_blanks() {
        let text = rendered(
            &["ID", "STATUS", "ADDRESSES"],
            &[
                &["é1", "running", "10.0.0.2"],
                &["abcdef", "stopped", ""],
                &["x", "", "y "],
            ],
        );
        assert_eq!(
            text,
            "ID      STATUS   ADDRESSES\n\
             é1      running  10.0.0.2\n\
             abcdef  stopped\n\
             x                y\n"
        );
    }
}
