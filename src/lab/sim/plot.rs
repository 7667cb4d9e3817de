//! A small dependency-free SVG line chart: stake-weighted coverage over time, one line per
//! strategy. Each series is already sampled (the window minimum, so short dips stay visible).

use std::fmt::Write;

const W: f64 = 900.0;
const H: f64 = 360.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 80.0;
const COLOURS: [&str; 6] = ["#d62728", "#ff7f0e", "#2ca02c", "#1f77b4", "#9467bd", "#8c564b"];
/// Dash patterns, so that identical lines (two strategies that never differ) stay visible.
const DASHES: [&str; 6] = ["", "6,4", "", "2,3", "8,3,2,3", "4,4"];
const WIDTHS: [f64; 6] = [3.5, 2.0, 1.5, 1.5, 1.5, 1.5];

/// One line: a name and (day, value in 0..=1) points.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Render the chart. `days` is the x range.
pub fn svg(title: &str, days: f64, series: &[Series<'_>]) -> String {
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x = |d: f64| LEFT + d / days.max(1e-9) * pw;
    let y = |v: f64| TOP + (1.0 - v.clamp(0.0, 1.0)) * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{}" y="22" font-size="14" text-anchor="middle">{}</text>"#, W / 2.0, esc(title));
    for i in 0..=4 {
        let v = f64::from(i) / 4.0;
        let _ =
            writeln!(s, r##"<line x1="{LEFT}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/>"##, W - RIGHT, y(v), y(v));
        let _ =
            writeln!(s, r#"<text x="{}" y="{:.1}" text-anchor="end">{:.0}%</text>"#, LEFT - 6.0, y(v) + 4.0, v * 100.0);
    }
    let step = if days > 20.0 {
        5.0
    } else if days > 6.0 {
        2.0
    } else {
        1.0
    };
    let mut d = 0.0;
    while d <= days + 1e-9 {
        let _ = writeln!(s, r#"<text x="{:.1}" y="{}" text-anchor="middle">{d:.0}</text>"#, x(d), TOP + ph + 16.0);
        d += step;
    }
    let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">days</text>"#, LEFT + pw / 2.0, TOP + ph + 32.0);
    let _ = writeln!(
        s,
        r#"<text x="14" y="{}" transform="rotate(-90 14 {})" text-anchor="middle">stake-weighted coverage</text>"#,
        TOP + ph / 2.0,
        TOP + ph / 2.0
    );
    for (i, se) in series.iter().enumerate() {
        let c = COLOURS[i % COLOURS.len()];
        let mut pts = String::new();
        for (d, v) in &se.points {
            let _ = write!(pts, "{:.1},{:.1} ", x(*d), y(*v));
        }
        let (dash, width) = (DASHES[i % DASHES.len()], WIDTHS[i % WIDTHS.len()]);
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="{width}" stroke-dasharray="{dash}" points="{}"/>"#,
            pts.trim_end()
        );
        let lx = LEFT + (i as f64 % 3.0) * (pw / 3.0);
        let ly = H - 24.0 + if i >= 3 { 16.0 } else { 0.0 };
        let _ = writeln!(s, r#"<rect x="{lx:.1}" y="{:.1}" width="14" height="3" fill="{c}"/>"#, ly - 4.0);
        let _ = writeln!(s, r#"<text x="{:.1}" y="{ly:.1}">{}</text>"#, lx + 18.0, esc(se.name));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_well_formed_svg() {
        let s = svg("t <x>", 14.0, &[Series { name: "a&b", points: vec![(0.0, 1.0), (7.0, 0.5), (14.0, 0.57)] }]);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("t &lt;x&gt;") && s.contains("a&amp;b"));
        assert_eq!(s.matches("<polyline").count(), 1);
    }
}
