//! The monthly report's renderers: HTML (printable, A4), PDF (A4, made in process), CSV and
//! JSON of the `MonthlyReport` that `kilowatch_accounting::report` assembles. HTML and PDF show
//! the same blocks (`doc`) and the same `plotters` charts.

mod charts;
mod doc;
mod html;
mod pdf;
pub mod render;

pub use kilowatch_accounting::report::*;

/// The one font of the charts and the PDF, shipped so that rendering never depends on the
/// host's fonts (licence beside it).
pub(crate) static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

pub use pdf::Rendered as RenderedPdf;

/// The PDF with what the layout found: page count and characters the font lacks.
pub fn render_pdf(r: &MonthlyReport) -> Result<RenderedPdf, ReportError> {
    pdf::render(r, &charts::all(r)?)
}

