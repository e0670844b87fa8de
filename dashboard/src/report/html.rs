//! The printable HTML report (A4, print CSS): the blocks of `doc`, charts as inline SVG.

use std::fmt::Write as _;

use super::charts::Chart;
use super::doc::{self, Block, Doc};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const CSS: &str = r#"
@page { size: A4; margin: 18mm 14mm 18mm 14mm; }
body { font-family: "DejaVu Sans", sans-serif; font-size: 10pt; color: #111; max-width: 182mm; margin: auto; }
h1 { font-size: 16pt; margin: 0 0 2mm; } h2 { font-size: 12.5pt; border-bottom: 1px solid #888; margin-top: 7mm; }
table { border-collapse: collapse; width: 100%; margin: 2mm 0; } th, td { border-bottom: 1px solid #ddd; padding: 1mm 1.5mm; text-align: right; }
th:first-child, td:first-child, .l { text-align: left; } th { background: #f0f0f0; }
.meta { color: #444; font-size: 9pt; } .chart { width: 100%; height: auto; page-break-inside: avoid; }
table, tr { page-break-inside: avoid; } h2 { page-break-after: avoid; } .break { page-break-after: always; }
@media print { a { color: inherit; text-decoration: none; } }
"#;

pub fn html(d: &Doc, charts: &[Chart]) -> String {
    let title = esc(&d.title);
    let mut s = String::new();
    let _ = write!(s, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title><style>{CSS}</style></head><body>\n");
    let mut open = false;
    for b in d.blocks.iter().cloned() {
        match b {
            Block::Title(t) => {
                let _ = write!(s, "<h1>{}</h1>", esc(&t));
            }
            Block::Meta(t) => {
                let _ = write!(s, "<p class=\"meta\">{}</p>", esc(&t));
            }
            Block::Heading(t) => {
                if open {
                    s.push_str("</section>\n");
                }
                open = true;
                let _ = write!(s, "<section><h2>{}</h2>", esc(&t));
            }
            Block::Para(t) => {
                let _ = write!(s, "<p>{}</p>", esc(&t));
            }
            Block::Strong(t) => {
                let _ = write!(s, "<p><b>{}</b></p>", esc(&t));
            }
            Block::Table { head, rows } => {
                // Names left, figures right (the first column is left by the CSS).
                let class = |c: usize| if c > 0 && !doc::numeric_column(&rows, c) { " class=\"l\"" } else { "" };
                s.push_str("<table><tr>");
                for (i, h) in head.iter().enumerate() {
                    let _ = write!(s, "<th{}>{}</th>", class(i), esc(h));
                }
                s.push_str("</tr>");
                for row in &rows {
                    s.push_str("<tr>");
                    for (i, c) in row.iter().enumerate() {
                        let _ = write!(s, "<td{}>{}</td>", class(i), esc(c));
                    }
                    s.push_str("</tr>");
                }
                s.push_str("</table>\n");
            }
            Block::List(items) => {
                s.push_str("<ul>");
                for i in items {
                    let _ = write!(s, "<li>{}</li>", esc(&i));
                }
                s.push_str("</ul>");
            }
            Block::Chart(i) => {
                if let Some(c) = charts.get(i) {
                    s.push_str(&c.svg);
                }
            }
            Block::PageBreak => {
                if open {
                    s.push_str("</section>\n");
                    open = false;
                }
                s.push_str("<div class=\"break\"></div>\n");
            }
        }
    }
    if open {
        s.push_str("</section>\n");
    }
    s.push_str("</body></html>\n");
    s
}
