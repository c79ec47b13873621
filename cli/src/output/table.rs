//! Aligned tables for people: a header row, columns separated by two spaces.

use crate::style::{paint, Paint};

/// One table cell: its text (already safe to print) and its colour.
pub type Cell = (String, Option<Paint>);

/// A table with a header row; columns are left-aligned and separated by two spaces. Widths
/// count characters before colour is added, so coloured cells stay aligned.
pub fn table(columns: &[&str], rows: &[Vec<Cell>], colour: bool) -> String {
    let header: Vec<Cell> = columns.iter().map(|c| (c.to_string(), None)).collect();
    let all: Vec<&Vec<Cell>> = std::iter::once(&header).chain(rows.iter()).collect();
    let widths: Vec<usize> = (0..columns.len())
        .map(|i| {
            all.iter()
                .map(|row| row.get(i).map_or(0, |cell| cell.0.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in all {
        let mut line = String::new();
        for (i, (text, colour_of)) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(&paint(text, *colour_of, colour));
            let pad = widths[i].saturating_sub(text.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
