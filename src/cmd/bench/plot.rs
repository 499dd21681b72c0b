//! SVG charts for `pmdswitch bench`: throughput as grouped bars (one group per frame size, one
//! bar per series), latency as CDFs over a log time axis. plotters with its SVG backend only, so
//! nothing to install: no font or image libraries. The SVG viewer lays out the text, so layout
//! decisions here use an estimate of text width rather than measured glyphs.
//!
//! Both charts bring their own x axis instead of plotters' defaults: a line chart over frame
//! size collapses to dots for a run of one frame size, and plotters' log axis labels every 1..9
//! step of a decade, whose labels run into each other (800, 900, 1000). `Groups` puts one
//! label under each group; `LogAxis` labels 1-2-5 per decade with units ("500 ns", "2 us",
//! "1 ms"), or only the decades when that is too dense for the width, so labels never overlap.

use std::ops::Range;
use std::path::Path;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

const FONT: &str = "sans-serif";
/// Picture size, pixels.
const W: u32 = 900;
const H: u32 = 560;
/// Font sizes as plotters takes them; its SVG backend writes `font-size` = size / 1.24.
const TITLE_PT: f64 = 22.0;
const LABEL_PT: f64 = 15.0;
const VALUE_PT: f64 = 13.0;
/// Title strip, then one legend row per `LEGEND_ROW` pixels, then the chart.
const TITLE_H: u32 = 36;
const LEGEND_ROW: u32 = 20;
const LEGEND_PAD: u32 = 6;
/// Around the chart. The right margin leaves room for half of the last x label, which is
/// centred on the plot's right edge on the log axis.
const MARGIN_L: u32 = 16;
const MARGIN_R: u32 = 40;
const MARGIN_T: u32 = 8;
const MARGIN_B: u32 = 8;
/// Label areas: below the plot (tick labels + axis name), left of it (y labels + axis name).
const X_AREA: u32 = 48;
const Y_AREA: u32 = 64;
/// Least free space between two neighbouring labels, pixels.
const LABEL_GAP: f64 = 8.0;
/// Widest slot per bar: wider stops reading as a bar (a run of one frame size is one wide group).
const MAX_BAR_PX: f64 = 72.0;
/// The log axis spans at most 1 ns .. 1000 s (values are microseconds): below is not a
/// latency, and clamping keeps the logarithm finite.
const MIN_US: f64 = 1e-3;
const MAX_US: f64 = 1e9;

/// One bar series: a label and a value per frame size (None = no bar).
///
/// `series[i].1[j]` is the value for `frames[j]`; a missing, negative or non-finite value
/// leaves a gap, and a series without any value is left out (legend included).
pub fn throughput_bars(path: &Path, title: &str, frames: &[usize], series: &[(String, Vec<Option<f64>>)]) -> Result<(), String> {
    let series: Vec<(&str, Vec<Option<f64>>)> = series
        .iter()
        .map(|(name, vals)| {
            (
                name.as_str(),
                (0..frames.len()).map(|j| vals.get(j).copied().flatten().filter(|v| v.is_finite() && *v >= 0.0)).collect::<Vec<_>>(),
            )
        })
        .filter(|(_, vals)| vals.iter().any(Option::is_some))
        .collect();
    let root = SVGBackend::new(path, (W, H)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    if series.is_empty() {
        return no_data(&root, title);
    }
    let names: Vec<&str> = series.iter().map(|s| s.0).collect();
    let legend = legend(&names);
    let area = title_and_legend(&root, title, &names, &legend, true)?;
    let (pw, ph) = plot_size(legend.rows.len());

    let (n, k) = (frames.len(), series.len());
    let group_px = pw / n as f64;
    // Bars take 80 % of a group, so groups stay apart; each bar is 85 % of its slot.
    let slot_px = (group_px * 0.8 / k as f64).min(MAX_BAR_PX);
    let values: Vec<Vec<Option<(f64, String)>>> =
        series.iter().map(|s| s.1.iter().map(|v| v.map(|v| (v, mpps_label(v)))).collect()).collect();
    let widest = values.iter().flatten().flatten().map(|(_, t)| text_w(t, VALUE_PT)).fold(0.0, f64::max);
    // Values go above the bars, across if they fit the slot, else turned upright, else (bars
    // thinner than a line of text) not at all: overlapping numbers would say nothing.
    let value_h = VALUE_PT / 1.24;
    let across = widest + 2.0 <= slot_px;
    let upright = !across && value_h + 2.0 <= slot_px;
    let head_px = if across {
        value_h + 8.0
    } else if upright {
        widest + 10.0
    } else {
        4.0
    };
    let vmax = values.iter().flatten().flatten().map(|v| v.0).fold(0.0, f64::max);
    // Headroom so that the tallest bar's value stays inside the plot.
    let top = if vmax > 0.0 { vmax * ph / (ph - head_px).max(ph / 2.0) } else { 1.0 };
    // One label per group unless they would run into each other (many frame sizes).
    let widest_frame = frames.iter().map(|f| text_w(&frame_label(*f), LABEL_PT)).fold(0.0, f64::max);
    let step = ((widest_frame + LABEL_GAP) / group_px).ceil().max(1.0) as usize;

    let mut chart = chart_builder(&area).build_cartesian_2d(Groups { n, step }, 0f64..top).map_err(err)?;
    let x_fmt = |v: &f64| {
        let g = v.floor();
        if g >= 0.0 && (g as usize) < n {
            frame_label(frames[g as usize])
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        // Bold lines at the labelled rates are enough to read a bar against.
        .y_max_light_lines(0)
        .x_desc("frame size")
        .y_desc("Mpps (both directions)")
        .x_label_formatter(&x_fmt)
        .label_style((FONT, LABEL_PT))
        .draw()
        .map_err(err)?;
    let slot = slot_px / group_px;
    for (si, vals) in values.iter().enumerate() {
        let c = COLORS[si % COLORS.len()];
        for (g, v) in vals.iter().enumerate() {
            let Some((v, text)) = v else { continue };
            // Fixed slots per series, so a missing value is a gap and colours line up across groups.
            let x0 = g as f64 + 0.5 - slot * k as f64 / 2.0 + slot * si as f64;
            let (l, r) = (x0 + slot * 0.075, x0 + slot * 0.925);
            chart.draw_series(std::iter::once(Rectangle::new([(l, *v), (r, 0.0)], c.filled()))).map_err(err)?;
            let at = EmptyElement::at(((l + r) / 2.0, *v));
            if across {
                let style = TextStyle::from((FONT, VALUE_PT)).pos(Pos::new(HPos::Center, VPos::Bottom));
                chart.draw_series(std::iter::once(at + Text::new(text.clone(), (0, -3), style))).map_err(err)?;
            } else if upright {
                let style = TextStyle::from((FONT, VALUE_PT)).transform(FontTransform::Rotate270).pos(Pos::new(HPos::Left, VPos::Center));
                chart.draw_series(std::iter::once(at + Text::new(text.clone(), (0, -4), style))).map_err(err)?;
            }
        }
    }
    root.present().map_err(err)
}

/// Latency CDFs: per series (label, points (latency_us, fraction)).
///
/// Points with a non-finite or non-positive latency are skipped, fractions are clamped to
/// 0..1, latencies to 1 ns .. 1000 s; a series left without points is left out.
pub fn latency_cdf(path: &Path, title: &str, series: &[(String, Vec<(f64, f64)>)]) -> Result<(), String> {
    let series: Vec<(&str, Vec<(f64, f64)>)> = series
        .iter()
        .map(|(name, pts)| {
            let mut p: Vec<(f64, f64)> = pts
                .iter()
                .filter(|(x, y)| x.is_finite() && *x > 0.0 && !y.is_nan())
                .map(|&(x, y)| (x.clamp(MIN_US, MAX_US), y.clamp(0.0, 1.0)))
                .collect();
            // A CDF is drawn left to right; unsorted input would zigzag.
            p.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
            (name.as_str(), p)
        })
        .filter(|(_, p)| !p.is_empty())
        .collect();
    let root = SVGBackend::new(path, (W, H)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    if series.is_empty() {
        return no_data(&root, title);
    }
    let (xmin, xmax) =
        series.iter().flat_map(|s| s.1.iter()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    let names: Vec<&str> = series.iter().map(|s| s.0).collect();
    let legend = legend(&names);
    let area = title_and_legend(&root, title, &names, &legend, false)?;
    let (pw, _) = plot_size(legend.rows.len());

    let mut chart = chart_builder(&area).build_cartesian_2d(LogAxis::new(xmin, xmax, pw), 0f64..1f64).map_err(err)?;
    chart
        .configure_mesh()
        // Light grid lines on the time axis only: the 1..9 steps of each decade say "log scale"
        // at a glance; fractions have a labelled line every 0.1 already.
        .y_max_light_lines(0)
        .x_desc("latency (log scale)")
        .y_desc("fraction of packets")
        .x_label_formatter(&|v| us_label(*v))
        .label_style((FONT, LABEL_PT))
        .draw()
        .map_err(err)?;
    for (i, (_, pts)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        chart.draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2))).map_err(err)?;
        // Markers only where they tell something: a sparse CDF (or a single point, which a
        // line would not show); on a dense one they would hide the curve.
        if pts.len() <= 40 {
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled()))).map_err(err)?;
        }
    }
    root.present().map_err(err)
}

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn no_data(root: &DrawingArea<SVGBackend, Shift>, title: &str) -> Result<(), String> {
    root.draw(&Text::new(format!("{title}: no data"), (40, 40), (FONT, 20))).map_err(err)?;
    root.present().map_err(err)
}

/// Pixels the viewer will likely need for `text` at `pt`. 0.65 em per character is a little
/// more than sans-serif digits take (DejaVu Sans: 0.64 em), so labels judged apart here are
/// apart on screen too.
fn text_w(text: &str, pt: f64) -> f64 {
    0.65 * pt / 1.24 * text.chars().count() as f64
}

fn frame_label(bytes: usize) -> String {
    format!("{bytes} B")
}

/// "14.3" for a bar: three figures at most rates, two for rates under 1 Mpps.
fn mpps_label(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A latency in microseconds with the unit that keeps the number short: "500 ns", "2 us",
/// "1 ms", "10 s".
fn us_label(us: f64) -> String {
    // The tolerance keeps 1e-1 * 10 (0.999...) from becoming "1000 ns".
    let t = us * (1.0 + 1e-9);
    let (v, unit) = if t < 1.0 {
        (us * 1e3, "ns")
    } else if t < 1e3 {
        (us, "us")
    } else if t < 1e6 {
        (us / 1e3, "ms")
    } else {
        (us / 1e6, "s")
    };
    let r = v.round();
    if (v - r).abs() <= 1e-6 * v.abs().max(1.0) {
        format!("{r:.0} {unit}")
    } else {
        let s = format!("{v:.3}");
        format!("{} {unit}", s.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// Legend entries flowed into rows under the title: (series index, x offset from the plot's
/// left edge) per row. Above the plot rather than on it, so it never hides a bar or a curve.
/// At most `MAX_LEGEND_ROWS`, so that the plot keeps its height; entries that do not fit are
/// counted in `more`, drawn as "+N more" at offset `more_x` of the last row.
struct Legend {
    rows: Vec<Vec<(usize, f64)>>,
    more: usize,
    more_x: f64,
}

const MAX_LEGEND_ROWS: usize = 4;

fn legend(names: &[&str]) -> Legend {
    let width = plot_size(0).0;
    let entry_w = |name: &str| 24.0 + text_w(name, LABEL_PT);
    let mut rows: Vec<Vec<(usize, f64)>> = vec![Vec::new()];
    let mut x = 0.0;
    let mut more = 0;
    for (i, name) in names.iter().enumerate() {
        let w = entry_w(name);
        if x > 0.0 && x + w > width {
            if rows.len() == MAX_LEGEND_ROWS {
                more = names.len() - i;
                break;
            }
            rows.push(Vec::new());
            x = 0.0;
        }
        if let Some(row) = rows.last_mut() {
            row.push((i, x));
        }
        x += w + 2.0 * LABEL_GAP;
    }
    // Room for "+N more" on the last row: its last entries join the count until it fits.
    let row_end = |row: &[(usize, f64)]| row.last().map_or(0.0, |&(i, dx)| dx + entry_w(names[i]) + 2.0 * LABEL_GAP);
    if let Some(last) = rows.last_mut().filter(|_| more > 0) {
        while last.len() > 1 && row_end(last) + text_w(&format!("+{more} more"), LABEL_PT) > width {
            last.pop();
            more += 1;
        }
    }
    let more_x = rows.last().map_or(0.0, |r| row_end(r));
    Legend { rows, more, more_x }
}

fn legend_h(rows: usize) -> u32 {
    rows as u32 * LEGEND_ROW + LEGEND_PAD
}

/// Width and height of the plotting area, pixels, from the fixed layout above. Decisions that
/// must be made before plotters builds the chart (tick density, headroom) use it.
fn plot_size(legend_rows: usize) -> (f64, f64) {
    let w = W - MARGIN_L - MARGIN_R - Y_AREA;
    let h = H.saturating_sub(TITLE_H + legend_h(legend_rows) + MARGIN_T + MARGIN_B + X_AREA);
    (f64::from(w), f64::from(h.max(100)))
}

/// Draws title and legend; returns the area left for the chart.
fn title_and_legend<'a>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    title: &str,
    names: &[&str],
    legend: &Legend,
    bars: bool,
) -> Result<DrawingArea<SVGBackend<'a>, Shift>, String> {
    // A long title gets a smaller font, then is cut: beyond the picture it would be lost anyway.
    let room = f64::from(W - 20);
    let pt = (room / text_w(title, 1.0)).clamp(12.0, TITLE_PT);
    let fit = (room / text_w("x", pt)) as usize;
    let title =
        if title.chars().count() > fit { title.chars().take(fit.saturating_sub(1)).chain(['…']).collect() } else { title.to_string() };
    let title_style = TextStyle::from((FONT, pt)).pos(Pos::new(HPos::Center, VPos::Top));
    root.draw(&Text::new(title, (W as i32 / 2, 10), title_style)).map_err(err)?;
    let left = (MARGIN_L + Y_AREA) as i32;
    let label_style = TextStyle::from((FONT, LABEL_PT)).pos(Pos::new(HPos::Left, VPos::Center));
    let row_y = |r: usize| (TITLE_H + LEGEND_PAD / 2 + r as u32 * LEGEND_ROW + LEGEND_ROW / 2) as i32;
    for (r, row) in legend.rows.iter().enumerate() {
        let y = row_y(r);
        for &(i, dx) in row {
            let x = left + dx as i32;
            let c = COLORS[i % COLORS.len()];
            if bars {
                root.draw(&Rectangle::new([(x + 3, y - 6), (x + 15, y + 6)], c.filled())).map_err(err)?;
            } else {
                root.draw(&PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))).map_err(err)?;
            }
            root.draw(&Text::new(names[i].to_string(), (x + 24, y), label_style.clone())).map_err(err)?;
        }
    }
    if legend.more > 0 {
        let at = (left + legend.more_x as i32, row_y(legend.rows.len().saturating_sub(1)));
        root.draw(&Text::new(format!("+{} more", legend.more), at, label_style)).map_err(err)?;
    }
    Ok(root.split_vertically(TITLE_H + legend_h(legend.rows.len())).1)
}

fn chart_builder<'a, 'b>(area: &'a DrawingArea<SVGBackend<'b>, Shift>) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(area);
    b.margin_left(MARGIN_L)
        .margin_right(MARGIN_R)
        .margin_top(MARGIN_T)
        .margin_bottom(MARGIN_B)
        .x_label_area_size(X_AREA)
        .y_label_area_size(Y_AREA);
    b
}

/// Maps a fraction `f` of an axis (0 at its start, 1 at its end) to pixels in `limit`.
fn lerp(f: f64, limit: (i32, i32)) -> i32 {
    // `as` saturates (NaN becomes 0) and so does the add: odd input moves a point, it never panics.
    limit.0.saturating_add((f64::from(limit.1 - limit.0) * f).round() as i32)
}

/// The bar chart's x axis: group `i` spans `i..i + 1`, labelled at its centre (every `step`th
/// group when there are too many for their labels).
struct Groups {
    n: usize,
    step: usize,
}

impl Ranged for Groups {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        lerp(v / self.n.max(1) as f64, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // No light lines: between groups they would only cross the bars.
        if hint.weight().allow_light_points() {
            return Vec::new();
        }
        (0..self.n).step_by(self.step.max(1)).map(|i| i as f64 + 0.5).collect()
    }

    fn range(&self) -> Range<f64> {
        0.0..self.n as f64
    }
}

/// Log-scale time axis from `lo` to `hi` (microseconds, both labelled ticks). Labels at
/// `ticks`, light grid lines at `minor` (the other 1..9 steps of each decade).
struct LogAxis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    minor: Vec<f64>,
}

impl LogAxis {
    /// Densest tick set whose labels fit `width_px` without overlapping: 1-2-5 per decade,
    /// else every decade, else every 2nd, 3rd ... decade. The axis ends on ticks around the data.
    fn new(xmin: f64, xmax: f64, width_px: f64) -> LogAxis {
        let xmin = if xmin.is_finite() { xmin.clamp(MIN_US, MAX_US) } else { MIN_US };
        let xmax = if xmax.is_finite() { xmax.clamp(xmin, MAX_US) } else { xmin };
        let mut every = 0;
        loop {
            let (mantissas, decades): (&[f64], i32) = if every == 0 { (&[1.0, 2.0, 5.0], 1) } else { (&[1.0], every) };
            let d0 = xmin.log10().floor() as i32 - decades;
            let d1 = xmax.log10().ceil() as i32 + decades;
            let all: Vec<f64> =
                (d0..=d1).filter(|d| d.rem_euclid(decades) == 0).flat_map(|d| mantissas.iter().map(move |m| m * 10f64.powi(d))).collect();
            // Ticks just around the data; the tolerance keeps a value on a tick from adding one.
            let lo = all.iter().copied().filter(|t| *t <= xmin * (1.0 + 1e-9)).fold(f64::NAN, f64::max);
            let hi = all.iter().copied().filter(|t| *t >= xmax * (1.0 - 1e-9) && *t > lo * (1.0 + 1e-9)).fold(f64::NAN, f64::min);
            let ticks: Vec<f64> = all.iter().copied().filter(|t| *t >= lo * (1.0 - 1e-9) && *t <= hi * (1.0 + 1e-9)).collect();
            let span = (hi / lo).ln();
            let x = |t: f64| width_px * (t / lo).ln() / span;
            let fits = ticks
                .windows(2)
                .all(|p| x(p[1]) - x(p[0]) >= (text_w(&us_label(p[0]), LABEL_PT) + text_w(&us_label(p[1]), LABEL_PT)) / 2.0 + LABEL_GAP);
            // 12 decades (the clamp) at one label each always fit 900 px; the bound is a backstop.
            if (fits || every >= 12) && lo.is_finite() && hi.is_finite() {
                let minor_m: &[f64] = if decades == 1 { &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0] } else { &[1.0] };
                let minor = (d0..=d1)
                    .flat_map(|d| minor_m.iter().map(move |m| m * 10f64.powi(d)))
                    .filter(|v| *v > lo && *v < hi && !ticks.iter().any(|t| (v / t - 1.0).abs() < 1e-9))
                    .collect();
                return LogAxis { lo, hi, ticks, minor };
            }
            if every >= 12 {
                // Unreachable with the clamps above; an axis over the clamp range beats a panic.
                return LogAxis { lo: MIN_US, hi: MAX_US, ticks: vec![MIN_US, MAX_US], minor: Vec::new() };
            }
            every += 1;
        }
    }
}

impl Ranged for LogAxis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let v = v.clamp(self.lo, self.hi);
        lerp((v / self.lo).ln() / (self.hi / self.lo).ln(), limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // plotters asks twice: for light grid lines (unlabelled), then for bold labelled ones.
        if hint.weight().allow_light_points() {
            self.minor.clone()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `<text>` element: its text, anchor point, and estimated box `b` = [x0, y0, x1, y1]:
    /// 0.6 em per character, 1 em high (an estimate of its own, not the code's `text_w`).
    #[derive(Debug, Clone)]
    struct Label {
        text: String,
        x: f64,
        y: f64,
        b: [f64; 4],
    }

    fn attr(tag: &str, name: &str) -> Option<String> {
        let i = tag.find(&format!(" {name}=\""))? + name.len() + 3;
        Some(tag[i..i + tag[i..].find('"')?].to_string())
    }

    fn labels(svg: &str) -> Vec<Label> {
        let mut out = Vec::new();
        for part in svg.split("<text").skip(1) {
            let (tag, rest) = part.split_once('>').unwrap();
            let text = rest.split("</text>").next().unwrap().trim();
            let text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&");
            let num = |n: &str| attr(tag, n).and_then(|v| v.parse::<f64>().ok());
            let (x, y, fs) = (num("x").unwrap(), num("y").unwrap(), num("font-size").unwrap());
            let w = 0.6 * fs * text.chars().count() as f64;
            let (x0, x1) = match attr(tag, "text-anchor").as_deref() {
                Some("middle") => (x - w / 2.0, x + w / 2.0),
                Some("end") => (x - w, x),
                _ => (x, x + w),
            };
            let (y0, y1) = match attr(tag, "dy").as_deref() {
                Some("0.76em") => (y, y + fs),
                Some("0.5ex") => (y - fs / 2.0, y + fs / 2.0),
                Some("-0.5ex") => (y - fs, y),
                _ => (y - 0.8 * fs, y + 0.2 * fs),
            };
            // rotate(a, cx, cy): turn the box's corners, keep their bounding box.
            let b = match attr(tag, "transform") {
                Some(t) => {
                    let v: Vec<f64> =
                        t.trim_start_matches("rotate(").trim_end_matches(')').split(',').map(|s| s.trim().parse().unwrap()).collect();
                    let (s, c) = v[0].to_radians().sin_cos();
                    let corners = [(x0, y0), (x1, y0), (x0, y1), (x1, y1)]
                        .map(|(px, py)| (v[1] + (px - v[1]) * c - (py - v[2]) * s, v[2] + (px - v[1]) * s + (py - v[2]) * c));
                    let (xs, ys): (Vec<f64>, Vec<f64>) = corners.into_iter().unzip();
                    let lo = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    [lo(&xs), lo(&ys), hi(&xs), hi(&ys)]
                }
                None => [x0, y0, x1, y1],
            };
            out.push(Label { text, x, y, b });
        }
        out
    }

    fn overlapping(ls: &[Label]) -> Vec<(String, String)> {
        let mut bad = Vec::new();
        for (i, a) in ls.iter().enumerate() {
            for b in &ls[i + 1..] {
                if a.b[0] < b.b[2] && b.b[0] < a.b[2] && a.b[1] < b.b[3] && b.b[1] < a.b[3] {
                    bad.push((a.text.clone(), b.text.clone()));
                }
            }
        }
        bad
    }

    /// Every label inside the picture and clear of every other one.
    fn assert_readable(svg: &str) {
        let ls = labels(svg);
        let bad = overlapping(&ls);
        assert!(bad.is_empty(), "overlapping labels: {bad:?}");
        for l in &ls {
            assert!(l.b[0] >= 0.0 && l.b[1] >= 0.0 && l.b[2] <= f64::from(W) && l.b[3] <= f64::from(H), "{l:?} outside the picture");
        }
    }

    /// A latency tick label back in microseconds ("500 ns" -> 0.5).
    fn parse_us(t: &str) -> Option<f64> {
        let (v, unit) = t.split_once(' ')?;
        let scale = match unit {
            "ns" => 1e-3,
            "us" => 1.0,
            "ms" => 1e3,
            "s" => 1e6,
            _ => return None,
        };
        Some(v.parse::<f64>().ok()? * scale)
    }

    struct Tmp(std::path::PathBuf);
    impl Tmp {
        fn new(name: &str) -> Tmp {
            let d = std::env::temp_dir().join(format!("pmds-plot-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&d).unwrap();
            Tmp(d)
        }
        fn svg(&self) -> std::path::PathBuf {
            self.0.join("t.svg")
        }
        fn read(&self) -> String {
            std::fs::read_to_string(self.svg()).unwrap()
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn series(v: &[(&str, &[Option<f64>])]) -> Vec<(String, Vec<Option<f64>>)> {
        v.iter().map(|(n, vals)| (n.to_string(), vals.to_vec())).collect()
    }

    /// Draws bars, checks labels, and that the picture has exactly one `<rect` for the
    /// background, one per legend entry and one per present value (bars stand on one baseline).
    fn check_bars(tmp: &Tmp, frames: &[usize], s: &[(String, Vec<Option<f64>>)]) -> String {
        throughput_bars(&tmp.svg(), "Throughput by frame size (1 flow(s))", frames, s).unwrap();
        let svg = tmp.read();
        assert_readable(&svg);
        let present: Vec<f64> =
            s.iter().flat_map(|x| x.1.iter().take(frames.len()).flatten().copied()).filter(|v| v.is_finite() && *v >= 0.0).collect();
        let shown = s.iter().filter(|x| x.1.iter().take(frames.len()).flatten().any(|v| v.is_finite() && *v >= 0.0)).count();
        let rects: Vec<[f64; 4]> = svg
            .split("<rect")
            .skip(1)
            .map(|r| {
                let tag = r.split('>').next().unwrap();
                ["x", "y", "width", "height"].map(|a| attr(tag, a).unwrap().parse::<f64>().unwrap())
            })
            .collect();
        assert_eq!(rects[0], [0.0, 0.0, f64::from(W), f64::from(H)], "background first");
        let base = rects[1..].iter().map(|r| r[1] + r[3]).fold(0.0, f64::max);
        let bars: Vec<&[f64; 4]> = rects[1..].iter().filter(|r| r[1] + r[3] == base).collect();
        assert_eq!(bars.len(), present.len(), "one bar per present value");
        assert_eq!(rects.len(), 1 + shown + present.len(), "background + legend + bars");
        for (i, a) in bars.iter().enumerate() {
            for b in &bars[i + 1..] {
                assert!(a[0] + a[2] <= b[0] || b[0] + b[2] <= a[0], "bars overlap: {a:?} {b:?}");
            }
        }
        let ls = labels(&svg);
        let ticks: Vec<&Label> = ls.iter().filter(|l| l.text.ends_with(" B")).collect();
        assert_eq!(ticks.len(), frames.len(), "{ticks:?}");
        for (t, f) in ticks.iter().zip(frames) {
            assert_eq!(t.text, format!("{f} B"));
            assert_eq!(t.y, ticks[0].y, "x labels in one row");
        }
        assert!(ls.iter().any(|l| l.text == "Mpps (both directions)"));
        // The y axis starts at 0: its "0" label is level with the bars' baseline.
        let zero = ls.iter().find(|l| l.x < f64::from(MARGIN_L + Y_AREA) && (l.y - base).abs() <= 1.0);
        assert!(zero.is_some_and(|l| l.text.parse::<f64>() == Ok(0.0)), "{zero:?} at the baseline {base}");
        // Values (numbers right of the y axis) inside the plot: the headroom above the bars.
        let names: Vec<&str> = s
            .iter()
            .filter(|x| x.1.iter().take(frames.len()).flatten().any(|v| v.is_finite() && *v >= 0.0))
            .map(|x| x.0.as_str())
            .collect();
        let plot_top = f64::from(TITLE_H + legend_h(legend(&names).rows.len()) + MARGIN_T);
        for l in ls.iter().filter(|l| l.x > f64::from(MARGIN_L + Y_AREA) && l.text.parse::<f64>().is_ok()) {
            assert!(l.b[1] >= plot_top, "{l:?} above the plot (top {plot_top})");
        }
        svg
    }

    #[test]
    fn bars_for_one_and_three_frame_sizes() {
        let tmp = Tmp::new("bars");
        let one = series(&[("pmdswitch max", &[Some(14.3)]), ("pmdswitch NDR", &[Some(9.87)]), ("testpmd max", &[Some(14.25)])]);
        let svg = check_bars(&tmp, &[64], &one);
        for t in ["64 B", "14.3", "9.9", "pmdswitch NDR", "testpmd max"] {
            assert!(labels(&svg).iter().any(|l| l.text == t), "no label {t}");
        }
        let three = series(&[
            ("pmdswitch max", &[Some(14.3), Some(5.17), Some(2.91)]),
            ("pmdswitch NDR", &[Some(6.1), None, Some(0.42)]),
            ("testpmd max", &[Some(12.96), Some(5.02), Some(2.72)]),
            ("testpmd NDR", &[None, None, None]),
        ]);
        let svg = check_bars(&tmp, &[64, 512, 1518], &three);
        for t in ["64 B", "512 B", "1518 B", "14.3", "0.42", "13.0"] {
            assert!(labels(&svg).iter().any(|l| l.text == t), "no label {t}");
        }
        assert!(!svg.contains("testpmd NDR"), "a series without values has no legend entry");
    }

    #[test]
    fn bars_many_frames_and_series_stay_readable() {
        let tmp = Tmp::new("bars-many");
        let frames = [64, 128, 256, 512, 1024, 1280, 1518];
        let names = ["pmdswitch max", "pmdswitch NDR", "testpmd max", "testpmd NDR", "ovs-dpdk max", "ovs-dpdk NDR"];
        let s: Vec<(String, Vec<Option<f64>>)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| {
                (n.to_string(), frames.iter().map(|f| Some(14.88 * 84.0 / (*f as f64 + 20.0) / (1.0 + i as f64 / 4.0))).collect())
            })
            .collect();
        let svg = check_bars(&tmp, &frames, &s);
        assert!(svg.contains("rotate(270"), "values turned upright on thin bars");
        // Eighteen frame sizes: bars too thin for any value, labels on every other group.
        let frames: Vec<usize> = (0..18).map(|i| 64 + i * 85).collect();
        let s: Vec<(String, Vec<Option<f64>>)> =
            names.iter().map(|n| (n.to_string(), frames.iter().map(|f| Some(1e3 / *f as f64)).collect())).collect();
        throughput_bars(&tmp.svg(), "many", &frames, &s).unwrap();
        assert_readable(&tmp.read());
    }

    #[test]
    fn bars_odd_input_and_no_data() {
        let tmp = Tmp::new("bars-odd");
        // NaN, infinite and negative are gaps; a short value list leaves gaps, a long one is cut.
        let s = series(&[
            ("a", &[Some(f64::NAN), Some(-1.0), Some(0.0)]),
            ("b", &[Some(f64::INFINITY), Some(3.0), Some(1.0), Some(99.0)]),
            ("c", &[Some(2.0)]),
        ]);
        let svg = check_bars(&tmp, &[64, 512, 1518], &s);
        assert!(!svg.contains(">\n99"), "value beyond the frames not drawn");
        let s = series(&[("a", &[Some(0.0), Some(0.0)])]);
        check_bars(&tmp, &[64, 64], &s);
        for (frames, s) in [
            (&[64usize][..], series(&[])),
            (&[64, 512][..], series(&[("a", &[None, None]), ("b", &[Some(f64::NAN)])])),
            (&[][..], series(&[("a", &[Some(1.0)])])),
        ] {
            throughput_bars(&tmp.svg(), "T", frames, &s).unwrap();
            let svg = tmp.read();
            assert!(svg.contains("T: no data"), "{svg}");
            assert_eq!(svg.matches("<rect").count(), 1);
        }
        assert!(throughput_bars(Path::new("/nonexistent-dir/t.svg"), "T", &[64], &series(&[("a", &[Some(1.0)])])).is_err());
    }

    /// Draws CDFs over `lo..hi` us and checks the x axis: tick labels only, 1-2-5 or one per
    /// decade, covering the data, none overlapping, on the plot's edges at both ends.
    fn check_cdf(tmp: &Tmp, lo: f64, hi: f64) -> Vec<(f64, String)> {
        let curve = |scale: f64| -> Vec<(f64, f64)> {
            (0..=100)
                .map(|i| (lo * (hi / lo).powf(i as f64 / 100.0) * scale, (i as f64 / 100.0).powi(2)))
                .map(|(x, q)| (x.clamp(lo, hi), q))
                .collect()
        };
        let s = vec![("pmdswitch".to_string(), curve(1.0)), ("testpmd".to_string(), curve(0.7))];
        latency_cdf(&tmp.svg(), "Latency CDF at max rate, 64 B, 1 flow(s)", &s).unwrap();
        let svg = tmp.read();
        let ls = labels(&svg);
        let ticks: Vec<(f64, &Label)> = ls.iter().filter_map(|l| Some((parse_us(&l.text)?, l))).collect();
        assert!(ticks.len() >= 2, "{ticks:?}");
        let row = ticks[0].1.y;
        assert_eq!(ls.iter().filter(|l| l.y == row).count(), ticks.len(), "nothing but ticks on the x axis");
        let b = overlapping(&ticks.iter().map(|t| t.1.clone()).collect::<Vec<_>>());
        assert!(b.is_empty(), "overlapping ticks {b:?}");
        assert_readable(&svg);
        assert!(ticks[0].0 <= lo * 1.000001 && ticks[ticks.len() - 1].0 >= hi * 0.999999, "ticks cover the data: {ticks:?}");
        // One complete 1-2-5 (or 1-per-decade) sequence, left to right.
        let dense = ticks.iter().any(|t| t.1.text.starts_with('2') || t.1.text.starts_with('5'));
        for (v, _) in &ticks {
            let m = v / 10f64.powf(v.log10().floor());
            assert!([1.0, 2.0, 5.0, 10.0].iter().any(|x| (m - x).abs() < 1e-6), "tick {v} is not 1, 2 or 5 times a power of ten");
        }
        for w in ticks.windows(2) {
            let r = w[1].0 / w[0].0;
            let ok = if dense { [2.0, 2.5].iter().any(|x| (r - x).abs() < 1e-6) } else { (r - 10.0).abs() < 1e-6 };
            assert!(ok, "{} then {}", w[0].1.text, w[1].1.text);
            assert!(w[1].1.x > w[0].1.x);
        }
        // The axis ends on ticks, at the plot's edges (the layout that the density rule assumed).
        let left = f64::from(MARGIN_L + Y_AREA);
        assert!((ticks[0].1.x - left).abs() <= 1.0, "{}", ticks[0].1.x);
        assert!((ticks[ticks.len() - 1].1.x - (left + plot_size(1).0)).abs() <= 1.0, "{}", ticks[ticks.len() - 1].1.x);
        ticks.iter().map(|t| (t.0, t.1.text.clone())).collect()
    }

    #[test]
    fn cdf_ticks_with_units_never_overlap() {
        let tmp = Tmp::new("cdf");
        let t = check_cdf(&tmp, 3.0, 2500.0);
        let texts: Vec<&str> = t.iter().map(|x| x.1.as_str()).collect();
        assert_eq!(texts, ["2 us", "5 us", "10 us", "20 us", "50 us", "100 us", "200 us", "500 us", "1 ms", "2 ms", "5 ms"]);
        let t = check_cdf(&tmp, 0.4, 40_000.0);
        assert!(t.iter().any(|x| x.1 == "1 ms") && t.iter().any(|x| x.1 == "100 ns"), "{t:?}");
        // Narrow ranges and extreme ones.
        for (lo, hi) in [(5.0, 5.0), (5.0, 6.0), (0.9, 1.1), (999.0, 1001.0), (1e-3, 1e9), (0.05, 3.0), (10.0, 1e6)] {
            check_cdf(&tmp, lo, hi);
        }
    }

    #[test]
    fn cdf_odd_input_and_no_data() {
        let tmp = Tmp::new("cdf-odd");
        let odd = vec![
            (
                "a".to_string(),
                vec![
                    (f64::NAN, 0.1),
                    (-3.0, 0.2),
                    (0.0, 0.3),
                    (1e-9, 0.4),
                    (5.0, f64::NAN),
                    (20.0, 1.5),
                    (7.0, -0.5),
                    (f64::INFINITY, 1.0),
                ],
            ),
            ("b".to_string(), vec![(1e300, 1.0)]),
            ("c".to_string(), vec![]),
        ];
        latency_cdf(&tmp.svg(), "odd", &odd).unwrap();
        let svg = tmp.read();
        assert_readable(&svg);
        assert!(
            svg.contains("1 ns") && svg.contains("1000 s") && !svg.contains(">\nc\n"),
            "clamped to 1 ns .. 1000 s, empty series left out"
        );
        // Too many series for the legend, a title too long for the width: still all readable.
        let many: Vec<(String, Vec<(f64, f64)>)> =
            (0..60).map(|i| (format!("series {i} with a long name"), vec![(1.0 + i as f64, 0.5)])).collect();
        latency_cdf(&tmp.svg(), &"a very long title ".repeat(20), &many).unwrap();
        let svg = tmp.read();
        assert_readable(&svg);
        assert!(svg.contains(" more\n") && svg.contains('…'), "legend cut to +N more, title cut");
        latency_cdf(&tmp.svg(), "one point", &[("a".to_string(), vec![(42.0, 1.0)])]).unwrap();
        let svg = tmp.read();
        assert_readable(&svg);
        assert!(svg.contains("<circle"), "a single point still shows");
        for s in [vec![], vec![("a".to_string(), vec![])], vec![("a".to_string(), vec![(f64::NAN, 0.5), (0.0, 1.0)])]] {
            latency_cdf(&tmp.svg(), "L", &s).unwrap();
            assert!(tmp.read().contains("L: no data"));
        }
    }

    #[test]
    fn unit_labels() {
        let cases = [
            (0.5, "500 ns"),
            (1.0, "1 us"),
            (2.0, "2 us"),
            (10.0, "10 us"),
            (1000.0, "1 ms"),
            (2000.0, "2 ms"),
            (1e6, "1 s"),
            (1e-3, "1 ns"),
            (0.999_999_999_9, "1 us"),
            (1.5, "1.5 us"),
        ];
        for (v, s) in cases {
            assert_eq!(us_label(v), s);
        }
        assert_eq!((mpps_label(14.2573), mpps_label(0.4234), mpps_label(148.8)), ("14.3".into(), "0.42".into(), "149".into()));
    }
}
