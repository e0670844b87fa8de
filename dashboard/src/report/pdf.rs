//! The PDF of a document (the monthly report, a statement), made in process: A4 pages laid
//! out here from the blocks of a `doc::Doc` (the HTML shows the same blocks), text drawn by `krilla` in the shipped DejaVu Sans (embedded, subset),
//! charts converted from their `plotters` SVG to vector PDF by `svg2pdf` and placed on the page
//! by `krilla`. Every page carries the document's running head and period label at the top
//! and "page i of n" at the bottom.
//!
//! Layout is done first (into a list of drawing operations per page) so the page count is
//! known when the footers are drawn. The bytes are reproducible: the creation date is the
//! document's `generated_at` and the document id derives from what it is (site, month, owner).

use std::sync::Arc;

use krilla::color::rgb;
use krilla::geom::{PathBuilder, Point, Rect, Size, Transform};
use krilla::metadata::{DateTime, Metadata};
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::pdf::{Pdf, PdfDocument};
use krilla::surface::Surface;
use krilla::text::{Font, TextDirection};
use krilla::{Data, Document};
use svg2pdf::usvg;

use super::charts::Chart;
use super::doc::{self, Block, Doc};
use super::{FONT, ReportError};

const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const MX: f32 = 48.0;
const TOP: f32 = 64.0;
const BOTTOM: f32 = PAGE_H - 56.0;
const TEXT_W: f32 = PAGE_W - 2.0 * MX;
const BODY: f32 = 9.5;
const SMALL: f32 = 8.0;
const TABLE: f32 = 8.5;
const MIN_TABLE: f32 = 6.5;
const CELL_PAD: f32 = 4.0;

type Rgb = (u8, u8, u8);
const INK: Rgb = (17, 17, 17);
const GREY: Rgb = (80, 80, 80);
const RULE: Rgb = (200, 200, 200);
const HEAD_BG: Rgb = (238, 238, 238);

/// The family name inside DejaVuSans.ttf: what the charts' `sans-serif` must resolve to.
const FAMILY: &str = "DejaVu Sans";

enum Op {
    /// `bold` fakes a bold face (only the regular one is shipped) by stroking the glyphs too.
    Text {
        x: f32,
        y: f32,
        size: f32,
        text: String,
        color: Rgb,
        bold: bool,
    },
    Line {
        x1: f32,
        y1: f32,
        x2: f32,
        y2: f32,
        width: f32,
        color: Rgb,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        color: Rgb,
    },
    Chart {
        idx: usize,
        x: f32,
        y: f32,
        w: f32,
        h: f32,
    },
}

/// Advance widths from the shipped font, for wrapping and aligning text.
struct Metrics<'a> {
    face: ttf_parser::Face<'a>,
    per_em: f32,
}

impl<'a> Metrics<'a> {
    fn new(data: &'a [u8]) -> Result<Self, ReportError> {
        let face = ttf_parser::Face::parse(data, 0).map_err(|e| ReportError::Pdf(format!("the shipped font does not parse: {e}")))?;
        let per_em = f32::from(face.units_per_em());
        Ok(Metrics { face, per_em })
    }

    fn width(&self, text: &str, size: f32) -> f32 {
        let units: u32 = text.chars().map(|c| self.face.glyph_index(c).and_then(|g| self.face.glyph_hor_advance(g)).map(u32::from).unwrap_or(0)).sum();
        units as f32 * size / self.per_em
    }

    /// Characters the font cannot draw (they would print as empty boxes).
    fn missing(&self, text: &str) -> Vec<char> {
        text.chars().filter(|c| !c.is_control() && self.face.glyph_index(*c).is_none()).collect()
    }

    /// Greedy word wrap to `width`; a single word wider than the line is left whole.
    fn wrap(&self, text: &str, size: f32, width: f32) -> Vec<String> {
        let mut lines = Vec::new();
        let mut cur = String::new();
        for word in text.split(' ') {
            let cand = if cur.is_empty() { word.to_owned() } else { format!("{cur} {word}") };
            if !cur.is_empty() && self.width(&cand, size) > width {
                lines.push(std::mem::replace(&mut cur, word.to_owned()));
            } else {
                cur = cand;
            }
        }
        lines.push(cur);
        lines
    }

    /// Cuts `text` with an ellipsis to fit `width`.
    fn fit(&self, text: &str, size: f32, width: f32) -> String {
        if self.width(text, size) <= width {
            return text.to_owned();
        }
        let mut s: String = text.to_owned();
        while !s.is_empty() && self.width(&format!("{s}…"), size) > width {
            s.pop();
        }
        format!("{s}…")
    }
}

struct Layout<'a> {
    m: &'a Metrics<'a>,
    pages: Vec<Vec<Op>>,
    y: f32,
    /// Glyphs the font lacks, found while laying out (the test asserts there are none).
    missing: Vec<char>,
}

impl Layout<'_> {
    fn ops(&mut self) -> &mut Vec<Op> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = TOP;
    }

    fn page_is_empty(&self) -> bool {
        self.pages.last().is_none_or(|p| p.is_empty())
    }

    /// Starts a new page unless `h` more points fit on this one.
    fn room(&mut self, h: f32) {
        if self.y + h > BOTTOM && !self.page_is_empty() {
            self.new_page();
        }
    }

    fn text(&mut self, x: f32, y: f32, size: f32, text: &str, color: Rgb, bold: bool) {
        let missing = self.m.missing(text);
        self.missing.extend(missing);
        self.ops().push(Op::Text { x, y, size, text: text.to_owned(), color, bold });
    }

    fn para(&mut self, text: &str, size: f32, color: Rgb, bold: bool, indent: f32) {
        let lh = size * 1.4;
        for line in self.m.wrap(text, size, TEXT_W - indent) {
            self.room(lh);
            let y = self.y + size;
            self.text(MX + indent, y, size, &line, color, bold);
            self.y += lh;
        }
        self.y += size * 0.5;
    }

    fn heading(&mut self, text: &str, size: f32, rule: bool) {
        let lines = self.m.wrap(text, size, TEXT_W);
        // Keep a heading with at least the start of what follows it.
        self.room(size * (1.0 + 1.45 * lines.len() as f32) + 90.0);
        self.y += size * 0.6;
        for line in &lines {
            let y = self.y + size;
            self.text(MX, y, size, line, INK, true);
            self.y += size * 1.45;
        }
        if rule {
            let y = self.y;
            self.ops().push(Op::Line { x1: MX, y1: y, x2: MX + TEXT_W, y2: y, width: 0.6, color: GREY });
            self.y += size * 0.6;
        }
    }

    fn table(&mut self, head: &[String], rows: &[Vec<String>]) {
        let cols = head.len();
        let natural = |size: f32| -> Vec<f32> {
            (0..cols).map(|c| std::iter::once(&head[c]).chain(rows.iter().filter_map(|r| r.get(c))).map(|s| self.m.width(s, size)).fold(0.0, f32::max) + 2.0 * CELL_PAD).collect()
        };
        let mut size = TABLE;
        let mut widths = natural(size);
        // Too wide: smaller type first, then cut the longest texts.
        while widths.iter().sum::<f32>() > TEXT_W && size > MIN_TABLE {
            size -= 0.25;
            widths = natural(size);
        }
        let total: f32 = widths.iter().sum();
        if total > TEXT_W {
            let scale = TEXT_W / total;
            widths.iter_mut().for_each(|w| *w *= scale);
        } else {
            // A full-width table, the spare width shared as a browser shares it.
            let scale = TEXT_W / total;
            widths.iter_mut().for_each(|w| *w *= scale);
        }
        let left: Vec<bool> = (0..cols).map(|c| c == 0 || !doc::numeric_column(rows, c)).collect();
        let rh = size * 1.75;
        let draw_row = |l: &mut Self, cells: &[String], header: bool| {
            let top = l.y;
            if header {
                l.ops().push(Op::Rect { x: MX, y: top, w: TEXT_W, h: rh, color: HEAD_BG });
            }
            let mut x = MX;
            for (c, w) in widths.iter().enumerate() {
                let cell = l.m.fit(cells.get(c).map(String::as_str).unwrap_or(""), size, w - 2.0 * CELL_PAD);
                let tx = if left[c] { x + CELL_PAD } else { x + w - CELL_PAD - l.m.width(&cell, size) };
                let y = top + rh * 0.5 + size * 0.36;
                l.text(tx, y, size, &cell, INK, header);
                x += w;
            }
            l.y += rh;
            l.ops().push(Op::Line { x1: MX, y1: top + rh, x2: MX + TEXT_W, y2: top + rh, width: 0.4, color: RULE });
        };
        self.room(rh * 2.0);
        draw_row(self, head, true);
        for row in rows {
            if self.y + rh > BOTTOM {
                // The header again at the top of the next page.
                self.new_page();
                draw_row(self, head, true);
            }
            draw_row(self, row, false);
        }
        self.y += size;
    }

    fn chart(&mut self, idx: usize) {
        let h = TEXT_W * super::charts::H as f32 / super::charts::W as f32;
        self.room(h + 6.0);
        let y = self.y;
        self.ops().push(Op::Chart { idx, x: MX, y, w: TEXT_W, h });
        self.y += h + 8.0;
    }
}

fn lay_out<'a>(m: &'a Metrics<'a>, blocks: &[Block]) -> Layout<'a> {
    let mut l = Layout { m, pages: vec![Vec::new()], y: TOP, missing: Vec::new() };
    for b in blocks {
        match b {
            Block::Title(t) => l.heading(t, 16.0, false),
            Block::Meta(t) => l.para(t, SMALL, GREY, false, 0.0),
            Block::Heading(t) => l.heading(t, 12.5, true),
            Block::Para(t) => l.para(t, BODY, INK, false, 0.0),
            Block::Strong(t) => l.para(t, BODY + 0.5, INK, true, 0.0),
            Block::Table { head, rows } => l.table(head, rows),
            Block::List(items) => {
                for i in items {
                    l.room(BODY * 1.4);
                    let y = l.y + BODY;
                    l.text(MX + 4.0, y, BODY, "•", INK, false);
                    l.para(i, BODY, INK, false, 14.0);
                    l.y -= BODY * 0.3;
                }
                l.y += BODY * 0.5;
            }
            Block::Chart(i) => l.chart(*i),
            Block::PageBreak => {
                if !l.page_is_empty() {
                    l.new_page();
                }
            }
        }
    }
    if l.page_is_empty() && l.pages.len() > 1 {
        l.pages.pop();
    }
    l
}

fn fill(c: Rgb) -> Fill {
    Fill { paint: rgb::Color::new(c.0, c.1, c.2).into(), ..Fill::default() }
}

fn stroke(c: Rgb, width: f32) -> Stroke {
    Stroke { paint: rgb::Color::new(c.0, c.1, c.2).into(), width, ..Stroke::default() }
}

fn draw(s: &mut Surface, op: &Op, font: &Font, charts: &[PdfDocument]) {
    match op {
        Op::Text { x, y, size, text, color, bold } => {
            s.set_fill(Some(fill(*color)));
            s.set_stroke(bold.then(|| stroke(*color, size * 0.045)));
            s.draw_text(Point::from_xy(*x, *y), font.clone(), *size, text, false, TextDirection::Auto);
            s.set_stroke(None);
        }
        Op::Line { x1, y1, x2, y2, width, color } => {
            let mut pb = PathBuilder::new();
            pb.move_to(*x1, *y1);
            pb.line_to(*x2, *y2);
            if let Some(p) = pb.finish() {
                s.set_fill(None);
                s.set_stroke(Some(stroke(*color, *width)));
                s.draw_path(&p);
                s.set_stroke(None);
            }
        }
        Op::Rect { x, y, w, h, color } => {
            let mut pb = PathBuilder::new();
            if let Some(r) = Rect::from_xywh(*x, *y, *w, *h) {
                pb.push_rect(r);
            }
            if let Some(p) = pb.finish() {
                s.set_fill(Some(fill(*color)));
                s.set_stroke(None);
                s.draw_path(&p);
            }
        }
        Op::Chart { idx, x, y, w, h } => {
            if let (Some(doc), Some(size)) = (charts.get(*idx), Size::from_wh(*w, *h)) {
                s.push_transform(&Transform::from_translate(*x, *y));
                s.draw_pdf_page(doc, size, 0);
                s.pop();
            }
        }
    }
}

/// Each chart's SVG as a one-page vector PDF, text in the shipped font (embedded, subset).
fn chart_pdfs(charts: &[Chart]) -> Result<Vec<PdfDocument>, ReportError> {
    let mut db = usvg::fontdb::Database::new();
    db.load_font_data(FONT.to_vec());
    // plotters writes font-family="sans-serif"; without this mapping usvg finds no font and
    // the text silently disappears.
    db.set_sans_serif_family(FAMILY);
    let opt = usvg::Options { fontdb: Arc::new(db), font_family: FAMILY.to_owned(), ..usvg::Options::default() };
    charts
        .iter()
        .map(|c| {
            let err = |why: String| ReportError::Pdf(format!("chart {:?}: {why}", c.title));
            let tree = usvg::Tree::from_str(&c.svg, &opt).map_err(|e| err(e.to_string()))?;
            let bytes = svg2pdf::to_pdf(&tree, svg2pdf::ConversionOptions::default(), svg2pdf::PageOptions::default()).map_err(|e| err(e.to_string()))?;
            let pdf = Pdf::new(bytes).map_err(|e| err(format!("{e:?}")))?;
            Ok(PdfDocument::new(Arc::new(pdf)))
        })
        .collect()
}

/// `generated_at` (RFC 3339) as the PDF's creation date, in UTC.
fn creation_date(generated_at: &str) -> Option<DateTime> {
    use chrono::{Datelike, Timelike};
    let t = chrono::DateTime::parse_from_rfc3339(generated_at).ok()?.with_timezone(&chrono::Utc);
    let year = u16::try_from(t.year()).ok()?;
    // Month, day, hour, minute and second always fit in u8.
    let b = |v: u32| u8::try_from(v).unwrap_or(0);
    Some(DateTime::new(year).month(b(t.month())).day(b(t.day())).hour(b(t.hour())).minute(b(t.minute())).second(b(t.second())).utc_offset_hour(0).utc_offset_minute(0))
}

/// The laid-out pages, plus the characters the font lacks (should be none).
pub struct Rendered {
    pub bytes: Vec<u8>,
    pub pages: usize,
    pub missing_glyphs: Vec<char>,
}

pub fn render(d: &Doc, charts: &[Chart]) -> Result<Rendered, ReportError> {
    let m = Metrics::new(FONT)?;
    let layout = lay_out(&m, &d.blocks);
    let chart_docs = chart_pdfs(charts)?;
    let font = Font::new(Data::from(FONT), 0).ok_or_else(|| ReportError::Pdf("krilla cannot read the shipped font".into()))?;
    let size = Size::from_wh(PAGE_W, PAGE_H).ok_or_else(|| ReportError::Pdf("bad page size".into()))?;
    let mut document = Document::new();
    let n = layout.pages.len();
    let head_left = d.running_head.clone();
    let foot_left = format!("Kilowatch {} · generated {}", d.version, d.generated_at);
    for (i, ops) in layout.pages.iter().enumerate() {
        let mut page = document.start_page_with(PageSettings::new(size));
        let mut s = page.surface();
        let foot_right = format!("page {} of {n}", i + 1);
        let running = [
            Op::Text { x: MX, y: 34.0, size: SMALL, text: head_left.clone(), color: GREY, bold: false },
            Op::Text { x: MX + TEXT_W - m.width(&d.period, SMALL), y: 34.0, size: SMALL, text: d.period.clone(), color: GREY, bold: false },
            Op::Line { x1: MX, y1: 40.0, x2: MX + TEXT_W, y2: 40.0, width: 0.5, color: RULE },
            Op::Line { x1: MX, y1: PAGE_H - 42.0, x2: MX + TEXT_W, y2: PAGE_H - 42.0, width: 0.5, color: RULE },
            Op::Text { x: MX, y: PAGE_H - 30.0, size: SMALL, text: foot_left.clone(), color: GREY, bold: false },
            Op::Text { x: MX + TEXT_W - m.width(&foot_right, SMALL), y: PAGE_H - 30.0, size: SMALL, text: foot_right, color: GREY, bold: false },
        ];
        for op in running.iter().chain(ops) {
            draw(&mut s, op, &font, &chart_docs);
        }
        s.finish();
        page.finish();
    }
    let mut meta =
        Metadata::new().title(d.title.clone()).language("en".into()).creator(format!("Kilowatch {}", d.version)).producer(format!("Kilowatch {}", d.version)).document_id(d.document_id.clone());
    if let Some(t) = creation_date(&d.generated_at) {
        meta = meta.creation_date(t);
    }
    document.set_metadata(meta);
    let bytes = document.finish().map_err(|e| ReportError::Pdf(format!("{e:?}")))?;
    let mut missing = layout.missing;
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        tracing::warn!(chars = ?missing, "characters the report font cannot draw");
    }
    Ok(Rendered { bytes, pages: n, missing_glyphs: missing })
}
