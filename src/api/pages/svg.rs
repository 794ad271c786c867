//! Bar charts drawn by the server as inline SVG: no script, no outside
//! resource, and the same numbers as the table beside each chart (which is
//! what a screen reader reads; the chart is one labelled image).

use std::fmt::Write as _;

/// One bar: its label, and its parts (label, value) stacked left to right.
pub struct Bar {
    /// What the bar stands for.
    pub label: String,
    /// Its segments; a plain bar has one.
    pub parts: Vec<(String, f64)>,
}

/// Fill colours of the segments, in order: dark enough against white for the
/// 3:1 that WCAG asks of graphics, and told apart by the legend's order too.
const FILLS: [&str; 6] = ["#1f5f8b", "#b34700", "#2e7d32", "#6a1b9a", "#8d6e00", "#ad1457"];

/// XML-escapes text for an SVG.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn number(v: f64, percent: bool) -> String {
    if percent {
        format!("{:.0} %", v * 100.0)
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// A horizontal bar chart titled `title`; `percent` for shares (0…1, drawn against 100 %).
pub fn bars(title: &str, bars: &[Bar], percent: bool) -> String {
    const LABEL_W: f64 = 180.0;
    const BAR_W: f64 = 300.0;
    const ROW_H: f64 = 28.0;
    let series: Vec<&str> = {
        let mut s: Vec<&str> = Vec::new();
        for b in bars {
            for (name, _) in &b.parts {
                if !s.contains(&name.as_str()) {
                    s.push(name);
                }
            }
        }
        s
    };
    let fill = |name: &str| FILLS[series.iter().position(|s| *s == name).unwrap_or(0) % FILLS.len()];
    let max = if percent {
        1.0
    } else {
        bars.iter().map(|b| b.parts.iter().map(|p| p.1).sum::<f64>()).fold(0.0, f64::max).max(1.0)
    };
    let legend = series.len() > 1;
    let legend_h = if legend { 24.0 } else { 0.0 };
    let height = legend_h + ROW_H * bars.len() as f64 + 8.0;
    let width = LABEL_W + BAR_W + 70.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" role="img" aria-label="{t}" viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg"><title>{t}</title>"#,
        t = esc(title)
    );
    if legend {
        let mut x = 0.0;
        for s in &series {
            let _ = write!(
                svg,
                r##"<rect x="{x}" y="4" width="12" height="12" fill="{}"/><text x="{}" y="15" font-size="12" fill="#1a1a1a">{}</text>"##,
                fill(s),
                x + 16.0,
                esc(s)
            );
            x += 24.0 + 7.0 * s.chars().count() as f64;
        }
    }
    for (i, b) in bars.iter().enumerate() {
        let y = legend_h + ROW_H * i as f64;
        let label: String = b.label.chars().take(28).collect();
        let _ = write!(
            svg,
            r##"<text x="{}" y="{}" font-size="13" text-anchor="end" fill="#1a1a1a">{}</text>"##,
            LABEL_W - 8.0,
            y + 18.0,
            esc(&label)
        );
        let mut x = LABEL_W;
        let mut total = 0.0;
        for (name, v) in &b.parts {
            let w = (v / max * BAR_W).max(0.0);
            if w > 0.0 {
                let _ = write!(
                    svg,
                    r#"<rect x="{x:.1}" y="{:.1}" width="{w:.1}" height="18" fill="{}"><title>{}: {}</title></rect>"#,
                    y + 5.0,
                    fill(name),
                    esc(name),
                    number(*v, percent)
                );
            }
            x += w;
            total += v;
        }
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{}" font-size="13" fill="#1a1a1a">{}</text>"##,
            x + 6.0,
            y + 18.0,
            number(total, percent)
        );
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_is_one_titled_image_with_a_bar_per_row_and_its_numbers() {
        let rows = vec![
            Bar { label: "birth".into(), parts: vec![("sent".into(), 3.0), ("cancelled".into(), 1.0)] },
            Bar { label: "<death>".into(), parts: vec![("sent".into(), 2.0)] },
        ];
        let svg = bars("Notices & outcomes", &rows, false);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(svg.contains(r#"role="img" aria-label="Notices &amp; outcomes""#), "{svg}");
        assert!(svg.contains("&lt;death&gt;"), "labels are escaped");
        assert_eq!(svg.matches("<rect").count(), 2 + 3, "two legend keys, three segments");
        assert!(svg.contains(">4</text>") && svg.contains(">2</text>"), "totals: {svg}");
        let share = bars("Take-up", &[Bar { label: "x".into(), parts: vec![("take-up".into(), 0.5)] }], true);
        assert!(share.contains(">50 %</text>"), "{share}");
        assert!(share.contains(r#"width="150.0""#), "half of the bar's width: {share}");
    }
}
