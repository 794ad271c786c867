//! The impact report of `rules simulate --report DIR`: one self-contained
//! HTML page (no scripts, no outside resources) with server-drawn SVG bar
//! charts, each followed by the table it draws so that screen readers and
//! printouts have the figures.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use minijinja::{Environment, Value, context};

use super::simulate::Outcome;

/// Draws a horizontal bar chart of `(label, value)` as inline SVG; `title` is its accessible name.
pub fn bar_chart(title: &str, rows: &[(String, u64)]) -> String {
    const BAR: usize = 18;
    const GAP: usize = 6;
    const LABEL_W: usize = 260;
    const PLOT_W: usize = 420;
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let height = rows.len() * (BAR + GAP) + GAP;
    let width = LABEL_W + PLOT_W + 90;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"{}\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"12\"><title>{}</title>",
        escape(title),
        escape(title)
    );
    for (i, (label, value)) in rows.iter().enumerate() {
        let y = GAP + i * (BAR + GAP);
        // Long labels (reasons) would run off the left edge; the table under the chart has them whole.
        let label: String =
            if label.chars().count() > 40 { label.chars().take(39).chain(['…']).collect() } else { label.clone() };
        let w = ((*value as f64 / max as f64) * PLOT_W as f64).round().max(if *value > 0 { 1.0 } else { 0.0 });
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{LABEL_W}\" y=\"{y}\" width=\"{w}\" height=\"{BAR}\" fill=\"#2b6cb0\"/>\
             <text x=\"{}\" y=\"{}\">{value}</text>",
            LABEL_W - 6,
            y + BAR - 5,
            escape(&label),
            LABEL_W as f64 + w + 4.0,
            y + BAR - 5,
        ));
    }
    svg.push_str("</svg>");
    svg
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn rows(m: &BTreeMap<String, u64>) -> Vec<(String, u64)> {
    m.iter().map(|(k, v)| (k.clone(), *v)).collect()
}

/// One chart with its table.
fn chart(title: &str, rows: Vec<(String, u64)>) -> Value {
    let svg = bar_chart(title, &rows);
    context! { title => title, svg => Value::from_safe_string(svg), rows => rows }
}

const TEMPLATE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Simulation {{ s.window.from }} – {{ s.window.to }}</title>
<style>
body { font-family: sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #1a202c; line-height: 1.4; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #cbd5e0; padding: 0.25rem 0.6rem; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
caption { text-align: left; font-weight: bold; padding: 0.25rem 0; }
svg { max-width: 100%; height: auto; }
.gain { color: #22543d; } .loss { color: #822727; }
</style>
</head>
<body>
<main>
<h1>What these rules would send, {{ s.window.from }} to {{ s.window.to }}</h1>
<p>A simulation on a throw-away store: every event of the file went through the rules in time order,
timers fired on a virtual clock, and nothing was sent.</p>
<table>
<caption>Totals</caption>
<tbody>
<tr><th scope="row">Events simulated</th><td class="n">{{ s.events }}</td></tr>
<tr><th scope="row">Lines that did not validate (left out)</th><td class="n">{{ s.bad_lines }}</td></tr>
<tr><th scope="row">Notices that would be sent</th><td class="n">{{ s.notices }}</td></tr>
<tr><th scope="row">Recipients reached</th><td class="n">{{ s.recipients }}</td></tr>
<tr><th scope="row">Notices suppressed at routing</th><td class="n">{{ s.suppressed }}</td></tr>
<tr><th scope="row">Notices cancelled before they were due</th><td class="n">{{ s.cancelled }}</td></tr>
<tr><th scope="row">Steps skipped</th><td class="n">{{ s.skipped }}</td></tr>
<tr><th scope="row">Rule errors</th><td class="n">{{ s.rule_errors }}</td></tr>
</tbody>
</table>
{% for c in charts %}
<section>
<h2>{{ c.title }}</h2>
{% if c.rows %}
<figure>{{ c.svg }}<figcaption>{{ c.title }} (the table below has the same figures)</figcaption></figure>
<table>
<caption>{{ c.title }}</caption>
<thead><tr><th scope="col">{{ c.title }}</th><th scope="col">Count</th></tr></thead>
<tbody>
{% for r in c.rows %}<tr><td>{{ r[0] }}</td><td class="n">{{ r[1] }}</td></tr>
{% endfor %}</tbody>
</table>
{% else %}<p>None.</p>{% endif %}
</section>
{% endfor %}
{% if diff %}
<section>
<h2>Compared with the baseline rules</h2>
<p>The baseline rules made {{ baseline_made }} notices; these make {{ simulated_made }}:
<span class="gain">{{ diff.gained }} gained</span>, <span class="loss">{{ diff.lost }} lost</span>
(sent or suppressed, matched by case, step, due time and recipient).</p>
{% if diff_rows %}
<table>
<caption>Notices gained and lost per life situation and step</caption>
<thead><tr><th scope="col">Life situation / step</th><th scope="col">Gained</th><th scope="col">Lost</th>
<th scope="col">Some who gain (masked)</th><th scope="col">Some who lose (masked)</th></tr></thead>
<tbody>
{% for r in diff_rows %}<tr><td>{{ r.step }}</td><td class="n gain">{{ r.gained }}</td><td class="n loss">{{ r.lost }}</td>
<td>{{ r.gain_sample | join(", ") }}</td><td>{{ r.loss_sample | join(", ") }}</td></tr>
{% endfor %}</tbody>
</table>
{% else %}<p>No one gains or loses a notice.</p>{% endif %}
</section>
{% endif %}
{% if bad %}
<section>
<h2>Lines that did not validate</h2>
<table>
<caption>Lines left out of the simulation{% if s.bad_lines > bad|length %} (the first {{ bad|length }} of {{ s.bad_lines }}){% endif %}</caption>
<thead><tr><th scope="col">Line</th><th scope="col">Error</th></tr></thead>
<tbody>
{% for b in bad %}<tr><td class="n">{{ b.line }}</td><td>{{ b.error }}</td></tr>
{% endfor %}</tbody>
</table>
</section>
{% endif %}
{% if s.rule_error_samples %}
<section>
<h2>Rule errors</h2>
<ul>{% for e in s.rule_error_samples %}<li>{{ e }}</li>{% endfor %}</ul>
</section>
{% endif %}
</main>
</body>
</html>
"#;

/// Renders the report page of a simulation.
pub fn render(o: &Outcome) -> Result<String> {
    let s = &o.simulated;
    let charts = vec![
        chart("Notices per life situation", rows(&s.per_situation)),
        chart("Notices per life situation and step", rows(&s.per_step)),
        chart("Notices per channel", rows(&s.per_channel)),
        chart("Notices per language", rows(&s.per_language)),
        chart("Notices per week", rows(&s.per_week)),
        chart("Suppressed, cancelled and skipped, by reason", rows(&s.reasons)),
    ];
    let diff_rows: Vec<Value> = o
        .diff
        .iter()
        .flat_map(|d| {
            d.per_step.iter().map(|(step, (g, l))| {
                context! {
                    step => step, gained => g, lost => l,
                    gain_sample => d.gained_sample.get(step).cloned().unwrap_or_default(),
                    loss_sample => d.lost_sample.get(step).cloned().unwrap_or_default(),
                }
            })
        })
        .collect();
    let mut env = Environment::new();
    env.add_template("report.html", TEMPLATE).context("the report template")?;
    let html = env.get_template("report.html")?.render(context! {
        s => Value::from(minijinja::value::Serde(s)),
        charts => charts,
        diff => Value::from(minijinja::value::Serde(&o.diff)),
        diff_rows => diff_rows,
        baseline_made => o.baseline.as_ref().map(|b| b.notices + b.suppressed),
        simulated_made => s.notices + s.suppressed,
        bad => Value::from(minijinja::value::Serde(&o.bad)),
    })?;
    Ok(html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_and_labels_are_escaped() {
        let svg = bar_chart("A & B", &[("<x>".into(), 10), ("y".into(), 5), ("z".into(), 0)]);
        assert!(svg.contains("<title>A &amp; B</title>"));
        assert!(svg.contains("&lt;x&gt;"));
        assert!(svg.contains("width=\"420\" height=\"18\""));
        assert!(svg.contains("width=\"210\" height=\"18\""));
        assert!(svg.contains("width=\"0\" height=\"18\""));
        assert_eq!(svg.matches("<rect").count(), 3);
    }
}
