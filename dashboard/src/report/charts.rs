//! The report's charts, drawn with `plotters` into SVG: daily PUE, stacked daily energy, daily
//! WUE, hours per cooling mode against outside temperature, water per day against wet bulb.
//! The same SVG strings go inline into the HTML and, through `svg2pdf`, into the PDF.
//!
//! Text is laid out with the shipped DejaVu Sans (registered with `register_font`), so label
//! positions never depend on the host's fonts; the SVG names the family `sans-serif`, which the
//! PDF side maps to the same font.

use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use super::{FONT, MonthlyReport, ReportError};

/// Drawing size in SVG user units (px); the PDF scales it to the text width.
pub const W: u32 = 720;
pub const H: u32 = 250;
const FAMILY: &str = "sans-serif";
const TITLE_H: u32 = 26;
const COLORS: [RGBColor; 6] = [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(148, 103, 189), RGBColor(140, 86, 75), RGBColor(127, 127, 127)];
const OVERLAY: RGBColor = RGBColor(214, 39, 40);

type DrawResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// plotters keeps registered fonts in a process-wide map: register once.
fn register() -> Result<(), ReportError> {
    static DONE: OnceLock<bool> = OnceLock::new();
    if *DONE.get_or_init(|| register_font(FAMILY, FontStyle::Normal, FONT).is_ok()) { Ok(()) } else { Err(ReportError::Chart("the shipped font DejaVuSans.ttf does not parse".into())) }
}

/// One chart: its title (for the PDF's and HTML's accessibility text) and its SVG.
#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub svg: String,
}

/// A quantity drawn as a line over the days (gaps where a day has no value).
struct Line<'a> {
    name: &'a str,
    unit: &'a str,
    values: Vec<Option<f64>>,
}

/// Bars stacked per day, bottom series first.
struct Stack<'a> {
    unit: &'a str,
    series: Vec<(&'a str, Vec<f64>)>,
    /// Fixed top of the axis, e.g. 24 h; else a rounded maximum.
    top: Option<f64>,
}

fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    [1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0].iter().map(|m| m * p).find(|m| *m >= v).unwrap_or(10.0 * p)
}

fn value_range(vals: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in vals.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.01).max(1e-6);
    // Quantities that cannot be negative keep a floor at 0 rather than a "-0.1" tick.
    let floor = if lo >= 0.0 { 0.0 } else { f64::NEG_INFINITY };
    ((lo - pad).max(floor), hi + pad)
}

/// Tick labels with as many decimals as the axis span needs, thousands as "12k".
fn tick(v: f64, span: f64) -> String {
    if span >= 20_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if span >= 20.0 {
        format!("{v:.0}")
    } else if span >= 0.5 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

fn font(size: f64) -> TextStyle<'static> {
    (FAMILY, size).into_font().color(&BLACK)
}

/// Title at the left of the top band, legend entries right-aligned on the same line.
fn header(area: &DrawingArea<SVGBackend, Shift>, title: &str, legend: &[(&str, RGBColor)]) -> DrawResult<()> {
    area.draw(&Text::new(title.to_owned(), (8, 6), font(15.0)))?;
    let small = font(12.0);
    let mut x = W as i32 - 10;
    for (name, color) in legend.iter().rev() {
        let (tw, _) = area.estimate_text_size(name, &small)?;
        x -= tw as i32;
        area.draw(&Text::new((*name).to_owned(), (x, 8), small.clone()))?;
        x -= 16;
        area.draw(&Rectangle::new([(x, 8), (x + 11, 19)], color.filled()))?;
        x -= 14;
    }
    Ok(())
}

/// Runs of consecutive days with a value, as (day, value) points; a missing day breaks the line.
fn runs(values: &[Option<f64>]) -> Vec<Vec<(f64, f64)>> {
    let mut out = vec![Vec::new()];
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) if v.is_finite() => {
                if let Some(r) = out.last_mut() {
                    r.push((i as f64 + 1.0, *v));
                }
            }
            _ => out.push(Vec::new()),
        }
    }
    out.retain(|r| !r.is_empty());
    out
}

fn draw(title: &str, days: usize, stack: Option<Stack>, line: Option<Line>) -> Result<Chart, ReportError> {
    draw_along(title, "day of month", days, stack, line)
}

/// Bars of `series` stacked per period (1..=`n`, `x_desc` naming them) with a line over them
/// (a customer statement's energy per day or month and its PUE).
pub fn stacked_with_line(title: &str, x_desc: &str, n: usize, unit: &str, series: Vec<(&str, Vec<f64>)>, line: (&str, &str, Vec<Option<f64>>)) -> Result<Chart, ReportError> {
    draw_along(title, x_desc, n, Some(Stack { unit, series, top: None }), Some(Line { name: line.0, unit: line.1, values: line.2 }))
}

fn draw_along(title: &str, x_desc: &str, days: usize, stack: Option<Stack>, line: Option<Line>) -> Result<Chart, ReportError> {
    register()?;
    let mut svg = String::new();
    draw_into(&mut svg, title, x_desc, days, stack, line).map_err(|e| ReportError::Chart(format!("{title}: {e}")))?;
    // A class for the HTML's print CSS; harmless to the PDF side.
    Ok(Chart { title: title.to_owned(), svg: svg.replacen("<svg ", "<svg class=\"chart\" ", 1) })
}

fn draw_into(svg: &mut String, title: &str, x_desc: &str, days: usize, stack: Option<Stack>, line: Option<Line>) -> DrawResult<()> {
    let root = SVGBackend::with_string(svg, (W, H)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, body) = root.split_vertically(TITLE_H);
    let mut legend: Vec<(&str, RGBColor)> = Vec::new();
    if let Some(s) = &stack {
        legend.extend(s.series.iter().enumerate().map(|(k, (n, _))| (*n, COLORS[k % COLORS.len()])));
    }
    let line_color = if stack.is_some() { OVERLAY } else { COLORS[0] };
    if let (Some(l), Some(_)) = (&line, &stack) {
        legend.push((l.name, line_color));
    }
    header(&top, title, &legend)?;

    let x_range = 0.5..(days.max(1) as f64 + 0.5);
    let (lo, hi) = match (&stack, &line) {
        (Some(s), _) => {
            let totals = (0..days).map(|i| s.series.iter().map(|(_, v)| v.get(i).copied().unwrap_or(0.0).max(0.0)).sum::<f64>());
            (0.0, s.top.unwrap_or_else(|| nice_max(totals.fold(0.0, f64::max))))
        }
        (None, Some(l)) => value_range(l.values.iter().flatten().copied()),
        (None, None) => (0.0, 1.0),
    };
    let (l2, h2) = line.as_ref().map(|l| value_range(l.values.iter().flatten().copied())).unwrap_or((0.0, 1.0));
    let overlay = stack.is_some() && line.is_some();
    let mut chart = ChartBuilder::on(&body)
        .margin_left(6)
        .margin_right(if overlay { 6 } else { 16 })
        .margin_bottom(4)
        .x_label_area_size(38)
        .y_label_area_size(58)
        .right_y_label_area_size(if overlay { 52 } else { 0 })
        .build_cartesian_2d(x_range.clone(), lo..hi)?
        .set_secondary_coord(x_range, l2..h2);
    let left_unit = stack.as_ref().map(|s| s.unit).or(line.as_ref().map(|l| l.unit)).unwrap_or("");
    let (xfmt, yfmt) = (|x: &f64| format!("{x:.0}"), |y: &f64| tick(*y, hi - lo));
    chart
        .configure_mesh()
        .disable_x_mesh()
        // Major grid lines only: the minor ones print as a grey wash at report size.
        .light_line_style(TRANSPARENT)
        .bold_line_style(RGBColor(225, 225, 225))
        .x_labels(days.clamp(2, 16))
        .x_label_formatter(&xfmt)
        .y_labels(6)
        .y_label_formatter(&yfmt)
        .x_desc(x_desc)
        .y_desc(left_unit)
        .label_style(font(12.0))
        .axis_desc_style(font(12.0))
        .draw()?;
    if let Some(s) = &stack {
        let mut base = vec![0.0; days];
        for (k, (_, vals)) in s.series.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            let bars: Vec<Rectangle<(f64, f64)>> = (0..days)
                .filter_map(|i| {
                    let v = vals.get(i).copied().unwrap_or(0.0).max(0.0);
                    let b = base[i];
                    base[i] += v;
                    let x = i as f64 + 1.0;
                    (v > 0.0).then(|| Rectangle::new([(x - 0.38, b), (x + 0.38, b + v)], color.filled()))
                })
                .collect();
            chart.draw_series(bars)?;
        }
    }
    if let Some(l) = &line {
        let style = line_color.stroke_width(2);
        let dots = l.values.iter().enumerate().filter_map(|(i, v)| v.filter(|v| v.is_finite()).map(|v| Circle::new((i as f64 + 1.0, v), 2, line_color.filled())));
        if overlay {
            let fmt2 = |y: &f64| tick(*y, h2 - l2);
            chart.configure_secondary_axes().y_desc(l.unit).y_labels(6).y_label_formatter(&fmt2).label_style(font(12.0)).axis_desc_style(font(12.0)).draw()?;
            for run in runs(&l.values) {
                chart.draw_secondary_series(LineSeries::new(run, style))?;
            }
            chart.draw_secondary_series(dots)?;
        } else {
            for run in runs(&l.values) {
                chart.draw_series(LineSeries::new(run, style))?;
            }
            chart.draw_series(dots)?;
        }
    }
    root.present()?;
    Ok(())
}

/// Every chart of the report, in the order the documents show them.
pub fn all(r: &MonthlyReport) -> Result<Vec<Chart>, ReportError> {
    let n = r.daily.len();
    let col = |f: fn(&super::Day) -> f64| r.daily.iter().map(f).collect::<Vec<f64>>();
    let c = &r.climate;
    let modes: Vec<(&str, Vec<f64>)> = c.mode_hours.keys().map(|m| (m.as_str(), c.days.iter().map(|d| d.mode_hours.get(m).copied().unwrap_or(0.0)).collect())).collect();
    let line = |name, unit, values| Some(Line { name, unit, values });
    Ok(vec![
        draw("Daily PUE (operational indicator)", n, None, line("PUE", "PUE", r.daily.iter().map(|d| d.pue).collect()))?,
        draw(
            "Daily energy E_DC",
            n,
            Some(Stack {
                unit: "kWh",
                series: vec![("IT", col(|d| d.it_energy_kwh)), ("cooling", col(|d| d.cooling_kwh)), ("losses", col(|d| d.power_losses_kwh)), ("other", col(|d| d.other_kwh))],
                top: None,
            }),
            None,
        )?,
        draw("Daily WUE (operational indicator)", n, None, line("WUE", "L/kWh", r.daily.iter().map(|d| d.wue_l_per_kwh).collect()))?,
        draw(
            "Hours per cooling mode and outside temperature",
            c.days.len(),
            Some(Stack { unit: "hours (unit average)", series: modes, top: Some(25.0) }),
            line("outside °C (daily mean)", "°C", c.days.iter().map(|d| d.outside_temp_mean_c).collect()),
        )?,
        draw(
            "Water per day and wet bulb",
            n,
            Some(Stack { unit: "m³", series: vec![("water", col(|d| d.water_m3.unwrap_or(0.0)))], top: None }),
            line("wet bulb °C (daily mean)", "°C", c.days.iter().map(|d| d.wet_bulb_mean_c).collect()),
        )?,
    ])
}

/// Where each chart goes in the documents (indices into [`all`]).
pub const PUE: usize = 0;
pub const ENERGY: usize = 1;
pub const WUE: usize = 2;
pub const MODES: usize = 3;
pub const WATER: usize = 4;
