//! The renderers of the monthly report and of customers' statements: HTML (printable, A4), PDF
//! (A4, made in process), CSV and JSON of the `MonthlyReport` that `kilowatch_accounting::report`
//! and the `Statement` that `kilowatch_accounting::statement` assemble. Both are one document
//! model (`doc::Doc`, a list of blocks): HTML and PDF show the same blocks and the same
//! `plotters` charts.

mod charts;
mod doc;
mod filing;
mod html;
mod pdf;
pub mod render;
mod statement;
mod tokens;

pub use kilowatch_accounting::report::*;
pub use kilowatch_accounting::statement::Statement;
pub use render::Document;

/// The one font of the charts and the PDF, shipped so that rendering never depends on the
/// host's fonts (licence beside it).
pub(crate) static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

pub use pdf::Rendered as RenderedPdf;

/// The PDF with what the layout found: page count and characters the font lacks.
pub fn render_pdf<D: Document>(r: &D) -> Result<RenderedPdf, ReportError> {
    pdf::render(&r.doc(), &r.charts()?)
}
