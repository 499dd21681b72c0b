//! SVG line charts for `pmdswitch bench` (plotters, SVG backend only: nothing to install).

use std::path::Path;

use plotters::prelude::*;

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Draws each series as a line with points. `log_x` for latency CDFs (microseconds span
/// decades). An empty series list still writes a chart saying "no data".
pub fn lines(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
    log_x: bool,
) -> Result<(), String> {
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let pts = series.iter().flat_map(|s| s.1.iter());
    let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0f64);
    for &(x, y) in pts {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if !x0.is_finite() {
        root.draw(&Text::new(format!("{title}: no data"), (40, 40), ("sans-serif", 20))).map_err(|e| e.to_string())?;
        return root.present().map_err(|e| e.to_string());
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let y1 = if y1 <= 0.0 { 1.0 } else { y1 * 1.1 };
    let mut b = ChartBuilder::on(&root);
    b.caption(title, ("sans-serif", 22)).margin(16).x_label_area_size(48).y_label_area_size(64);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart.configure_mesh().x_desc(x_label).y_desc(y_label).draw().map_err(|e| e.to_string())?;
            for (i, (name, data)) in series.iter().enumerate() {
                let c = COLORS[i % COLORS.len()];
                chart
                    .draw_series(LineSeries::new(data.iter().copied(), c.stroke_width(2)))
                    .map_err(|e| e.to_string())?
                    .label(name.as_str())
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
                chart.draw_series(data.iter().map(|&p| Circle::new(p, 3, c.filled()))).map_err(|e| e.to_string())?;
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::LowerRight)
                .draw()
                .map_err(|e| e.to_string())?;
        }};
    }
    if log_x {
        let lo = (x0 * 0.8).max(1e-3);
        draw!(b.build_cartesian_2d((lo..x1 * 1.25).log_scale(), 0f64..1.02f64).map_err(|e| e.to_string())?);
    } else {
        let pad = (x1 - x0) * 0.05;
        draw!(b.build_cartesian_2d((x0 - pad)..(x1 + pad), 0f64..y1).map_err(|e| e.to_string())?);
    }
    root.present().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_svg_with_labels() {
        let dir = std::env::temp_dir().join(format!("pmds-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.svg");
        lines(&p, "Throughput", "frame", "Mpps", &[("pmdswitch max".into(), vec![(64.0, 7.5), (512.0, 5.0), (1518.0, 2.5)])], false)
            .unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.starts_with("<svg") && s.contains("pmdswitch max") && s.contains("<polyline"), "{s}");
        lines(&p, "Latency", "us", "fraction", &[("a".into(), vec![(5.0, 0.5), (50.0, 0.99), (500.0, 1.0)])], true).unwrap();
        lines(&p, "Empty", "x", "y", &[], false).unwrap();
        assert!(std::fs::read_to_string(&p).unwrap().contains("no data"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
