//! The outputs of a document (the monthly report, a customer's statement). JSON is the
//! document's data itself; CSV lists every number of the JSON, one `path,value` line each, so
//! nothing shown in a table or chart is missing from it; HTML is a printable A4 document with
//! the charts inline; PDF is the same document laid out on A4 pages.

use kilowatch_accounting::report::csv_field;
use std::fmt::Write as _;

use serde_json::Value;

use super::charts::Chart;
use super::doc::Doc;
use super::{MonthlyReport, ReportError, Statement};
use kilowatch_accounting::eu::filing::Filing;

/// What the renderers need of a document: its data (JSON, CSV), its blocks (HTML, PDF) and the
/// charts its blocks refer to.
pub trait Document: serde::Serialize {
    fn doc(&self) -> Doc;
    fn charts(&self) -> Result<Vec<Chart>, ReportError>;
    /// The CSV: every number of the JSON, one `path,value` line each, unless the document
    /// has a table of its own (the EU filing's items keyed by code).
    fn csv_text(&self) -> Result<String, ReportError> {
        csv(self)
    }
}

impl Document for MonthlyReport {
    fn doc(&self) -> Doc {
        super::doc::report(self)
    }
    fn charts(&self) -> Result<Vec<Chart>, ReportError> {
        super::charts::all(self)
    }
}

impl Document for Filing {
    fn doc(&self) -> Doc {
        super::filing::doc(self)
    }
    fn charts(&self) -> Result<Vec<Chart>, ReportError> {
        Ok(Vec::new())
    }
    fn csv_text(&self) -> Result<String, ReportError> {
        Ok(kilowatch_accounting::eu::filing::csv(self))
    }
}

impl Document for Statement {
    fn doc(&self) -> Doc {
        super::statement::doc(self)
    }
    fn charts(&self) -> Result<Vec<Chart>, ReportError> {
        super::statement::chart(self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Pdf,
    Csv,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, ReportError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "html" => Ok(Format::Html),
            "pdf" => Ok(Format::Pdf),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            other => Err(ReportError::Format(other.to_owned())),
        }
    }

    pub fn ext(self) -> &'static str {
        match self {
            Format::Html => "html",
            Format::Pdf => "pdf",
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Html => "text/html; charset=utf-8",
            Format::Pdf => "application/pdf",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
        }
    }
}

/// Renders one format. Several formats of one document: [`Renderer`] draws the charts once.
pub fn render<D: Document>(r: &D, f: Format) -> Result<Vec<u8>, ReportError> {
    Renderer::new(r).render(f)
}

/// One document in several formats, the charts drawn at most once (HTML and PDF share them).
pub struct Renderer<'a, D: Document> {
    r: &'a D,
    charts: Option<Vec<Chart>>,
}

impl<'a, D: Document> Renderer<'a, D> {
    pub fn new(r: &'a D) -> Self {
        Renderer { r, charts: None }
    }

    fn charts(&mut self) -> Result<&[Chart], ReportError> {
        if self.charts.is_none() {
            self.charts = Some(self.r.charts()?);
        }
        Ok(self.charts.as_deref().unwrap_or_default())
    }

    pub fn render(&mut self, f: Format) -> Result<Vec<u8>, ReportError> {
        let r = self.r;
        Ok(match f {
            Format::Json => {
                let mut v = serde_json::to_vec_pretty(r)?;
                v.push(b'\n');
                v
            }
            Format::Csv => r.csv_text()?.into_bytes(),
            Format::Html => super::html::html(&r.doc(), self.charts()?).into_bytes(),
            Format::Pdf => super::pdf::render(&r.doc(), self.charts()?)?.bytes,
        })
    }
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                flatten(&if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") }, x, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), x, out);
            }
        }
        Value::Null => out.push((prefix.to_owned(), String::new())),
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        // serde_json prints the shortest text that reads back as the same f64: exact.
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

/// `path,value`, one line per figure in the JSON's order; `generated_at` comes last, alone,
/// so two runs over the same data differ in that line only.
pub fn csv(r: &(impl serde::Serialize + ?Sized)) -> Result<String, ReportError> {
    let mut v = serde_json::to_value(r)?;
    let generated = v.as_object_mut().and_then(|o| o.remove("generated_at"));
    let mut rows = Vec::new();
    flatten("", &v, &mut rows);
    let mut s = String::from("path,value\n");
    for (k, x) in rows {
        let _ = writeln!(s, "{},{}", csv_field(&k), csv_field(&x));
    }
    if let Some(Value::String(g)) = generated {
        let _ = writeln!(s, "generated_at,{}", csv_field(&g));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"x\""), "\"say \"\"x\"\"\"");
        let mut out = Vec::new();
        flatten("", &serde_json::json!({"a": [1.5, null], "b": {"c": "x"}}), &mut out);
        assert_eq!(out, vec![("a[0]".into(), "1.5".into()), ("a[1]".into(), String::new()), ("b.c".into(), "x".into())]);
    }
}
