//! Minimal SVG line plots with axes, ticks and a legend.

use std::fmt::Write;

/// One named curve.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub dashed: bool,
}

/// A line plot; `log_y` puts y on a log10 axis (non-positive values are dropped).
pub struct LinePlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_y: bool,
    pub series: Vec<Series>,
}

const COLOURS: [&str; 6] = ["#000000", "#2ca02c", "#d62728", "#1f77b4", "#ff7f0e", "#9467bd"];

impl LinePlot {
    pub fn to_svg(&self) -> String {
        let (w, h, ml, mr, mt, mb) = (560.0, 380.0, 70.0, 160.0, 40.0, 50.0);
        let ty = |y: f64| if self.log_y { y.log10() } else { y };
        let pts: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|p| p.0.is_finite() && p.1.is_finite() && (!self.log_y || p.1 > 0.0))
            .map(|(x, y)| (x, ty(y)))
            .collect();
        let (mut x0, mut x1, mut y0, mut y1) = pts.iter().fold((f64::MAX, f64::MIN, f64::MAX, f64::MIN), |a, p| {
            (a.0.min(p.0), a.1.max(p.0), a.2.min(p.1), a.3.max(p.1))
        });
        if pts.is_empty() {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        if x1 - x0 < 1e-12 {
            x1 = x0 + 1.0;
        }
        if y1 - y0 < 1e-12 {
            y0 -= 0.5;
            y1 += 0.5;
        }
        if self.log_y {
            y0 = y0.floor();
            y1 = y1.ceil();
        }
        let px = |x: f64| ml + (x - x0) / (x1 - x0) * (w - ml - mr);
        let py = |y: f64| h - mb - (y - y0) / (y1 - y0) * (h - mt - mb);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="20" text-anchor="middle" font-size="14">{}</text>"#,
            (ml + w - mr) / 2.0,
            esc(&self.title)
        );
        let _ = writeln!(s, r#"<line x1="{ml}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#, h - mb, w - mr, h - mb);
        let _ = writeln!(s, r#"<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{}" stroke="black"/>"#, h - mb);
        for x in nice_ticks(x0, x1) {
            let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#, px(x), h - mb + 16.0, num(x));
        }
        let yticks: Vec<f64> = if self.log_y {
            (y0 as i64..=y1 as i64).map(|e| e as f64).collect()
        } else {
            (0..=4).map(|i| y0 + (y1 - y0) * i as f64 / 4.0).collect()
        };
        for y in yticks {
            let label = if self.log_y { format!("1e{}", y as i64) } else { num(y) };
            let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="end">{label}</text>"#, ml - 6.0, py(y) + 4.0);
            let _ = writeln!(s, r##"<line x1="{ml}" y1="{0}" x2="{1}" y2="{0}" stroke="#ddd"/>"##, py(y), w - mr);
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            (ml + w - mr) / 2.0,
            h - 12.0,
            esc(&self.x_label)
        );
        let _ = writeln!(
            s,
            r#"<text transform="translate(16,{}) rotate(-90)" text-anchor="middle">{}</text>"#,
            (mt + h - mb) / 2.0,
            esc(&self.y_label)
        );
        for (k, ser) in self.series.iter().enumerate() {
            let colour = COLOURS[k % COLOURS.len()];
            let dash = if ser.dashed { r#" stroke-dasharray="6,4""# } else { "" };
            let path: Vec<String> = ser
                .points
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite() && (!self.log_y || p.1 > 0.0))
                .map(|&(x, y)| format!("{:.2},{:.2}", px(x), py(ty(y))))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{}"/>"#,
                path.join(" ")
            );
            for p in &path {
                let (cx, cy) = p.split_once(',').unwrap_or(("0", "0"));
                let _ = writeln!(s, r#"<circle cx="{cx}" cy="{cy}" r="2.5" fill="{colour}"/>"#);
            }
            let ly = mt + 10.0 + 18.0 * k as f64;
            let _ = writeln!(
                s,
                r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2"{dash}/>"#,
                w - mr + 10.0,
                w - mr + 34.0
            );
            let _ = writeln!(s, r#"<text x="{}" y="{}">{}</text>"#, w - mr + 40.0, ly + 4.0, esc(&ser.name));
        }
        s.push_str("</svg>\n");
        s
    }
}

/// Ticks at a round step (1, 2 or 5 times a power of ten) inside `[lo, hi]`.
fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let raw = (hi - lo) / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

fn num(x: f64) -> String {
    if x.abs() >= 1000.0 || (x != 0.0 && x.abs() < 0.01) {
        format!("{x:.1e}")
    } else {
        format!("{:.3}", x).trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// One cloud of points in a scatter panel.
pub struct Cloud {
    pub name: String,
    pub points: Vec<[f64; 2]>,
    pub colour: String,
}

/// Scatter panels side by side, sharing the square window `[-lim, lim]^2`, with ticks on both
/// axes (`x1` across, `x2` up) and a legend under each panel.
pub fn scatter_panels(title: &str, panels: &[(String, Vec<Cloud>)], lim: f64) -> String {
    let (side, gap, top) = (260.0, 44.0, 50.0);
    let w = gap + panels.len() as f64 * (side + gap);
    let h = top + side + 62.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{}" y="20" text-anchor="middle" font-size="14">{}</text>"#, w / 2.0, esc(title));
    for (k, (name, clouds)) in panels.iter().enumerate() {
        let ox = gap + k as f64 * (side + gap);
        let _ = writeln!(s, r##"<rect x="{ox}" y="{top}" width="{side}" height="{side}" fill="none" stroke="#999"/>"##);
        let _ =
            writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#, ox + side / 2.0, top - 8.0, esc(name));
        for v in nice_ticks(-lim, lim) {
            let x = ox + (v + lim) / (2.0 * lim) * side;
            let y = top + (lim - v) / (2.0 * lim) * side;
            let _ = writeln!(
                s,
                r#"<line x1="{x:.1}" y1="{0}" x2="{x:.1}" y2="{1}" stroke="black"/>"#,
                top + side,
                top + side + 4.0
            );
            let _ = writeln!(s, r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#, top + side + 16.0, num(v));
            let _ = writeln!(s, r#"<line x1="{0}" y1="{y:.1}" x2="{ox}" y2="{y:.1}" stroke="black"/>"#, ox - 4.0);
            let _ = writeln!(s, r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#, ox - 6.0, y + 4.0, num(v));
        }
        let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="end">x1</text>"#, ox + side, top + side + 28.0);
        let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="end">x2</text>"#, ox - 6.0, top - 8.0);
        for (j, c) in clouds.iter().enumerate() {
            for p in &c.points {
                if p[0].abs() > lim || p[1].abs() > lim || !p[0].is_finite() || !p[1].is_finite() {
                    continue;
                }
                let (x, y) = (ox + (p[0] + lim) / (2.0 * lim) * side, top + (lim - p[1]) / (2.0 * lim) * side);
                let _ =
                    writeln!(s, r#"<circle cx="{x:.1}" cy="{y:.1}" r="1.2" fill="{}" fill-opacity="0.5"/>"#, c.colour);
            }
            let ly = top + side + 44.0;
            let lx = ox + 10.0 + 120.0 * j as f64;
            let _ = writeln!(s, r#"<circle cx="{lx}" cy="{}" r="4" fill="{}"/>"#, ly - 4.0, c.colour);
            let _ = writeln!(s, r#"<text x="{}" y="{ly}">{}</text>"#, lx + 8.0, esc(&c.name));
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_has_one_polyline_per_series_and_escapes_text() {
        let plot = LinePlot {
            title: "a < b".into(),
            x_label: "n".into(),
            y_label: "err".into(),
            log_y: true,
            series: vec![
                Series { name: "one".into(), points: vec![(1.0, 1.0), (2.0, 0.01)], dashed: false },
                Series { name: "two".into(), points: vec![(1.0, 0.0), (2.0, 0.1)], dashed: true },
            ],
        };
        let s = plot.to_svg();
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains("a &lt; b") && s.contains("1e-2") && s.contains("stroke-dasharray"));
        assert_eq!(s.matches("<circle").count(), 3, "log axis drops the zero");
    }

    #[test]
    fn ticks_fall_on_round_numbers() {
        assert_eq!(nice_ticks(1.0, 16.0), vec![5.0, 10.0, 15.0]);
        assert_eq!(nice_ticks(0.0, 2.0), vec![0.0, 0.5, 1.0, 1.5, 2.0]);
        assert_eq!(nice_ticks(10.0, 500.0), vec![200.0, 400.0]);
    }

    #[test]
    fn scatter_panels_have_ticks_axis_names_and_a_legend() {
        let cloud = Cloud { name: "data".into(), points: vec![[0.5, -0.5], [9.0, 0.0]], colour: "red".into() };
        let s = scatter_panels("t", &[("panel".into(), vec![cloud])], 3.0);
        for tick in [">-2<", ">0<", ">2<"] {
            assert_eq!(s.matches(tick).count(), 2, "tick {tick} on both axes");
        }
        assert!(s.contains(">x1<") && s.contains(">x2<") && s.contains(">data<") && s.contains(">panel<"));
        assert_eq!(s.matches(r#"r="1.2""#).count(), 1, "the point outside the window is dropped");
    }
}
