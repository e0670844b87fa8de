//! `{{ $value }}`, `{{ $labels.node }}` and `{{ $value | printf "%.1f" }}`-free templating:
//! the two forms Prometheus rule authors use most, without pulling in a template engine.

use kilowatch_model::Labels;

/// Replaces `{{ $value }}` (rounded to 2 decimals) and `{{ $labels.KEY }}` (empty when the
/// label is missing, as in Prometheus). Unknown expressions are left as written, so a typo
/// shows in the notification instead of vanishing.
pub fn render(text: &str, value: f64, labels: &Labels) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let expr = rest[start + 2..start + end].trim();
        if expr == "$value" {
            out.push_str(&format_value(value));
        } else if let Some(k) = expr.strip_prefix("$labels.") {
            out.push_str(labels.get(k.trim()).map(String::as_str).unwrap_or(""));
        } else {
            out.push_str(&rest[start..start + end + 2]);
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{v:.0}") } else { format!("{v:.2}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_value_and_labels() {
        let mut l = Labels::new();
        l.insert("node".into(), "dgx-007".into());
        assert_eq!(render("{{ $labels.node }} at {{ $value }} °C", 81.256, &l), "dgx-007 at 81.26 °C");
        assert_eq!(render("{{$value}} {{ $labels.gpu }}|{{ $oops }}", 3.0, &l), "3 |{{ $oops }}");
        assert_eq!(render("open {{ $value", 1.0, &l), "open {{ $value");
    }
}
