//! Server-rendered SVG charts: a value over time with dated x ticks, "nice" y ticks, the unit,
//! an optional shaded reference band and one point per value with a tooltip. No script runs in
//! the browser (the CSP forbids inline code anyway), and the chart is a plain string that any
//! page can embed with `|safe`.
//!
//! The SVG has a `viewBox` and no fixed width, so it scales to the column it sits in, from a
//! phone to a laptop; `svg.chart` in `static/fasten.css` makes it fill the width. Colours are SVG
//! presentation attributes (text uses `currentColor`, so dark mode follows the page). Every
//! piece of text is escaped here: titles and units come from records.

use std::fmt::Write;

use time::{Date, Month};

/// A reference range to shade, in the chart's unit. It is defined with the Observation reader,
/// whose ranges print through it.
pub use crate::fhir::observation::Band;
use crate::record::units::format_number;

/// The drawing size in SVG user units; the browser scales it to the available width keeping
/// the aspect ratio. Text is 12 units high, so narrower sizes give larger text on a phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub width: u32,
    pub height: u32,
}

impl Size {
    /// A trend under a page heading (Labs).
    pub const WIDE: Size = Size {
        width: 560,
        height: 260,
    };
    /// A small card, e.g. on the dashboard.
    pub const SMALL: Size = Size {
        width: 360,
        height: 220,
    };
}

const LINE: &str = "#2f6db5";
const OUT_OF_RANGE: &str = "#c0392b";
const BAND: &str = "#2e9b5a";

/// Margins around the plot area: room for y labels on the left and dates below.
const LEFT: f64 = 52.0;
const RIGHT: f64 = 14.0;
const TOP: f64 = 24.0;
const BOTTOM: f64 = 30.0;

/// A line-and-points chart of `points` (date, value in `unit`), in date order whatever the
/// input order. `band` is the reference range in the same unit: drawn as a shaded strip (to the
/// chart's edge on an open side), and points outside it are drawn in red. `title` names the chart for screen readers and
/// tooltips; the page shows its own heading. With no points the chart says so.
pub fn line_chart(
    title: &str,
    unit: &str,
    points: &[(Date, f64)],
    band: Option<Band>,
    size: Size,
) -> String {
    let mut points: Vec<(Date, f64)> = points
        .iter()
        .copied()
        .filter(|(_, v)| v.is_finite())
        .collect();
    points.sort_by_key(|(d, _)| *d);
    let (width, height) = (f64::from(size.width), f64::from(size.height));
    let unit_text = if unit.is_empty() {
        String::new()
    } else {
        format!(" {unit}")
    };

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" role="img" class="chart" font-family="sans-serif" font-size="12">"#,
        size.width, size.height
    );
    let _ = write!(svg, "<title>{}</title>", escape(title));
    let _ = write!(
        svg,
        "<desc>{}</desc>",
        escape(&describe(&points, &unit_text, band))
    );
    if points.is_empty() {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="currentColor">No numbers to chart</text></svg>"#,
            width / 2.0,
            height / 2.0
        );
        return svg;
    }

    let plot_right = width - RIGHT;
    let plot_bottom = height - BOTTOM;

    // X: days, padded so the first and last points do not sit on the frame.
    let first = points[0].0.to_julian_day() as f64;
    let last = points[points.len() - 1].0.to_julian_day() as f64;
    let (mut x0, mut x1) = (first, last);
    if x1 - x0 < 2.0 {
        x0 -= 15.0;
        x1 += 15.0;
    }
    let pad = (x1 - x0) * 0.04;
    let (x0, x1) = (x0 - pad, x1 + pad);
    let x = |day: f64| LEFT + (day - x0) / (x1 - x0) * (plot_right - LEFT);

    // Y: nice ticks over the values and the band.
    let mut lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let mut hi = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    for bound in band.iter().flat_map(|b| [b.low(), b.high()]).flatten() {
        lo = lo.min(bound);
        hi = hi.max(bound);
    }
    let (y0, y1, step) = nice_ticks(lo, hi, 5);
    let y = |v: f64| plot_bottom - (v - y0) / (y1 - y0) * (plot_bottom - TOP);

    if let Some(band) = band {
        let (top, bottom) = (y(band.high().unwrap_or(y1)), y(band.low().unwrap_or(y0)));
        let _ = write!(
            svg,
            r#"<rect class="band" x="{LEFT:.1}" y="{top:.1}" width="{:.1}" height="{:.1}" fill="{BAND}" fill-opacity="0.15"><title>Reference range {}{}</title></rect>"#,
            plot_right - LEFT,
            (bottom - top).max(1.0),
            escape(&band.label()),
            escape(&unit_text)
        );
    }

    svg.push_str(r#"<g class="y-axis" fill="currentColor" text-anchor="end">"#);
    let count = ((y1 - y0) / step).round() as i64;
    for i in 0..=count {
        let value = y0 + i as f64 * step;
        let py = y(value);
        let _ = write!(
            svg,
            r#"<line x1="{LEFT:.1}" x2="{plot_right:.1}" y1="{py:.1}" y2="{py:.1}" stroke="currentColor" stroke-opacity="0.15"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            LEFT - 6.0,
            py + 4.0,
            escape(&format_number(value))
        );
    }
    svg.push_str("</g>");
    if !unit.is_empty() {
        let _ = write!(
            svg,
            r#"<text class="unit" x="{LEFT:.1}" y="{:.1}" fill="currentColor">{}</text>"#,
            TOP - 8.0,
            escape(unit)
        );
    }

    svg.push_str(r#"<g class="x-axis" fill="currentColor" text-anchor="middle">"#);
    let _ = write!(
        svg,
        r#"<line x1="{LEFT:.1}" x2="{plot_right:.1}" y1="{plot_bottom:.1}" y2="{plot_bottom:.1}" stroke="currentColor" stroke-opacity="0.5"/>"#
    );
    let start = Date::from_julian_day(x0.ceil() as i32).unwrap_or(points[0].0);
    let end = Date::from_julian_day(x1.floor() as i32).unwrap_or(points[points.len() - 1].0);
    // Date labels are up to ~60 units wide: fewer ticks on a narrow chart so they never overlap.
    let max_ticks = (((plot_right - LEFT) / 70.0) as i64).clamp(2, 6);
    for (date, label) in date_ticks(start, end, max_ticks) {
        let px = x(date.to_julian_day() as f64);
        let _ = write!(
            svg,
            r#"<line x1="{px:.1}" x2="{px:.1}" y1="{plot_bottom:.1}" y2="{:.1}" stroke="currentColor" stroke-opacity="0.5"/><text x="{px:.1}" y="{:.1}">{}</text>"#,
            plot_bottom + 4.0,
            plot_bottom + 18.0,
            escape(&label)
        );
    }
    svg.push_str("</g>");

    let coordinates: Vec<(f64, f64)> = points
        .iter()
        .map(|(d, v)| (x(d.to_julian_day() as f64), y(*v)))
        .collect();
    if coordinates.len() > 1 {
        let list: Vec<String> = coordinates
            .iter()
            .map(|(px, py)| format!("{px:.1},{py:.1}"))
            .collect();
        let _ = write!(
            svg,
            r#"<polyline class="line" points="{}" fill="none" stroke="{LINE}" stroke-width="2"/>"#,
            list.join(" ")
        );
    }
    svg.push_str(r#"<g class="points">"#);
    for ((date, value), (px, py)) in points.iter().zip(&coordinates) {
        let outside = band.is_some_and(|b| !b.contains(*value));
        let colour = if outside { OUT_OF_RANGE } else { LINE };
        let _ = write!(
            svg,
            r#"<circle cx="{px:.1}" cy="{py:.1}" r="4" fill="{colour}"{}><title>{}: {}{}</title></circle>"#,
            if outside { r#" class="out""# } else { "" },
            people_date(*date),
            escape(&format_number(*value)),
            escape(&unit_text)
        );
    }
    svg.push_str("</g></svg>");
    svg
}

/// A day as the pages write it ("12 Mar 2019"), through the read model's one date format.
fn people_date(day: Date) -> String {
    crate::fhir::read::date(&day.to_string())
}

/// The chart in words, for screen readers: how many values, over which dates, their extremes.
fn describe(points: &[(Date, f64)], unit: &str, band: Option<Band>) -> String {
    let Some((first, last)) = points.first().zip(points.last()) else {
        return "No values.".into();
    };
    let lo = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let mut text = if points.len() == 1 {
        format!(
            "One value: {}{unit} on {}.",
            format_number(first.1),
            people_date(first.0)
        )
    } else {
        format!(
            "{} values from {} to {}, lowest {}{unit}, highest {}{unit}, latest {}{unit}.",
            points.len(),
            people_date(first.0),
            people_date(last.0),
            format_number(lo),
            format_number(hi),
            format_number(last.1)
        )
    };
    if let Some(band) = band {
        let _ = write!(text, " Reference range {}{unit}.", band.label());
    }
    text
}

/// Tick positions covering `lo..=hi` at a step of 1, 2, 2.5 or 5 times a power of ten, with
/// at most about `max_ticks` ticks: (first tick, last tick, step). A flat series gets room
/// around it; a series of positive values does not get a negative axis.
fn nice_ticks(lo: f64, hi: f64, max_ticks: u32) -> (f64, f64, f64) {
    let (mut lo, mut hi) = (lo, hi);
    if hi - lo < f64::EPSILON * hi.abs().max(1.0) {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        lo -= pad;
        hi += pad;
    }
    let rough = (hi - lo) / f64::from(max_ticks.max(2) - 1);
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|n| n * magnitude)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * magnitude);
    let mut first = (lo / step).floor() * step;
    let last = (hi / step).ceil() * step;
    if lo >= 0.0 && first < 0.0 {
        first = 0.0;
    }
    (first, last, step)
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Date ticks inside `start..=end`, at most about `max`, on round dates: 1 January every 1, 2,
/// 5... years for long series, the first of every 1, 2, 3 or 6 months for a year or two, and
/// every 1, 2, 7 or 14 days for a few weeks.
fn date_ticks(start: Date, end: Date, max: i64) -> Vec<(Date, String)> {
    let span = (end - start).whole_days().max(1);
    let mut ticks = Vec::new();
    if span > 2 * 365 {
        let years = span / 365;
        let step = [1, 2, 5, 10, 20, 50, 100]
            .into_iter()
            .find(|s| years / s <= max)
            .unwrap_or(100);
        let mut year = start.year() + 1;
        if let Ok(d) = Date::from_calendar_date(start.year(), Month::January, 1)
            && d >= start
        {
            year = start.year();
        }
        while year <= end.year() {
            if year.rem_euclid(step as i32) == 0
                && let Ok(d) = Date::from_calendar_date(year, Month::January, 1)
            {
                ticks.push((d, year.to_string()));
            }
            year += 1;
        }
    } else if span > 60 {
        let months = span / 30;
        let step = [1, 2, 3, 6, 12]
            .into_iter()
            .find(|s| months / s <= max)
            .unwrap_or(12);
        let mut next = Date::from_calendar_date(start.year(), start.month(), 1).ok();
        while let Some(d) = next.filter(|d| *d <= end) {
            let month = d.month() as i64;
            if d >= start && (month - 1) % step == 0 {
                let label = if step == 12 {
                    d.year().to_string()
                } else {
                    format!("{} {}", MONTHS[month as usize - 1], d.year())
                };
                ticks.push((d, label));
            }
            next = match d.month() {
                Month::December => Date::from_calendar_date(d.year() + 1, Month::January, 1),
                m => Date::from_calendar_date(d.year(), m.next(), 1),
            }
            .ok();
        }
    } else {
        let step = [1, 2, 7, 14, 28]
            .into_iter()
            .find(|s| span / s <= max)
            .unwrap_or(28);
        let mut d = start;
        while d <= end {
            ticks.push((d, format!("{} {}", d.day(), MONTHS[d.month() as usize - 1])));
            match d.checked_add(time::Duration::days(step)) {
                Some(next) => d = next,
                None => break,
            }
        }
    }
    ticks
}

/// Escapes text for markup Fasten writes itself: SVG content and attributes, and the XHTML
/// narrative of the IPS summary.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn count(svg: &str, needle: &str) -> usize {
        svg.matches(needle).count()
    }

    #[test]
    fn every_value_is_a_point_with_a_tooltip() {
        let points = [
            (date!(2019 - 03 - 12), 5.4),
            (date!(2018 - 01 - 02), 6.1),
            (date!(2020 - 07 - 30), 4.9),
        ];
        let svg = line_chart("Glucose", "mmol/L", &points, None, Size::WIDE);
        assert!(svg.starts_with("<svg "));
        assert!(svg.ends_with("</svg>"));
        assert!(svg.contains(r#"role="img""#));
        assert!(svg.contains(r#"viewBox="0 0 560 260""#));
        assert!(!svg.contains("width=\"560\""), "no fixed width: it scales");
        assert_eq!(count(&svg, "<circle"), 3);
        assert!(svg.contains("<title>12 Mar 2019: 5.4 mmol/L</title>"));
        assert!(svg.contains("<title>Glucose</title>"));
        assert!(svg.contains("3 values from 2 Jan 2018 to 30 Jul 2020"));
        assert_eq!(count(&svg, "<polyline"), 1);
        assert!(!svg.contains(r#"class="band""#));
        // Points are drawn in date order: the 2018 point first.
        let first = svg.find("2 Jan 2018: 6.1").unwrap();
        assert!(first < svg.find("12 Mar 2019: 5.4").unwrap());
        // Yearly ticks over two and a half years, the unit above the axis.
        assert!(svg.contains(">2019</text>") && svg.contains(">2020</text>"));
        assert!(svg.contains(r#"class="unit""#));
    }

    #[test]
    fn the_reference_band_is_shaded_and_points_outside_are_marked() {
        let points = [
            (date!(2021 - 01 - 01), 120.0),
            (date!(2021 - 06 - 01), 85.0),
        ];
        let band = Band::new(Some(70.0), Some(99.0));
        let svg = line_chart("Glucose", "mg/dL", &points, band, Size::WIDE);
        assert_eq!(count(&svg, r#"<rect class="band""#), 1);
        assert!(svg.contains("Reference range 70–99 mg/dL"));
        assert_eq!(count(&svg, r#"class="out""#), 1);
        // Monthly ticks over five months.
        assert!(svg.contains(">Mar 2021</text>"), "{svg}");
    }

    #[test]
    fn a_range_with_one_bound_is_shaded_to_the_edge() {
        // Total cholesterol: "< 200". The band runs from the axis' foot up to 200.
        let points = [
            (date!(2019 - 01 - 01), 230.0),
            (date!(2021 - 01 - 01), 180.0),
        ];
        let svg = line_chart(
            "Cholesterol",
            "mg/dL",
            &points,
            Band::new(None, Some(200.0)),
            Size::WIDE,
        );
        assert!(svg.contains("Reference range &lt; 200 mg/dL"), "{svg}");
        assert_eq!(count(&svg, r#"class="out""#), 1, "230 is above");
        let bottom = Size::WIDE.height as f64 - BOTTOM;
        let rect = &svg[svg.find(r#"<rect class="band""#).unwrap()..];
        let attribute = |name: &str| -> f64 {
            let at = rect.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            rect[at..at + rect[at..].find('"').unwrap()]
                .parse()
                .unwrap()
        };
        let (top, height) = (attribute("y"), attribute("height"));
        assert!((top + height - bottom).abs() < 0.2, "reaches the x axis");
        assert!(top > TOP, "stops below the top, at 200");
        // HDL: "> 40" reaches the top instead; a reversed range is no band.
        let hdl = line_chart(
            "HDL",
            "mg/dL",
            &[(date!(2020 - 01 - 01), 35.0)],
            Band::new(Some(40.0), None),
            Size::SMALL,
        );
        assert!(hdl.contains("Reference range &gt; 40 mg/dL"));
        assert_eq!(count(&hdl, r#"class="out""#), 1, "35 is below");
        assert_eq!(Band::new(Some(9.0), Some(1.0)), None);
        assert_eq!(Band::new(None, Some(f64::NAN)), None);
    }

    #[test]
    fn text_from_records_is_escaped() {
        let svg = line_chart(
            "<script>alert('x')</script> & co",
            "\"mg\"/dL",
            &[(date!(2020 - 01 - 01), 1.0)],
            None,
            Size::SMALL,
        );
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co"));
        assert!(svg.contains("&quot;mg&quot;/dL"));
        assert_eq!(count(&svg, "<circle"), 1);
        assert_eq!(count(&svg, "<polyline"), 0, "one point, no line");
        assert!(svg.contains("One value: 1 &quot;mg&quot;/dL on 1 Jan 2020."));
    }

    #[test]
    fn no_points_says_so() {
        let svg = line_chart("Empty", "", &[], Band::new(Some(1.0), None), Size::SMALL);
        assert!(svg.contains("No numbers to chart"));
        assert_eq!(count(&svg, "<circle"), 0);
    }

    #[test]
    fn y_ticks_are_round_numbers() {
        assert_eq!(nice_ticks(3.2, 9.7, 5), (2.0, 10.0, 2.0));
        assert_eq!(nice_ticks(150.0, 230.0, 5), (140.0, 240.0, 20.0));
        let (lo, hi, step) = nice_ticks(5.0, 5.0, 5);
        assert!(lo < 5.0 && hi > 5.0 && step > 0.0);
        assert_eq!(nice_ticks(0.5, 90.0, 5).0, 0.0, "no negative axis");
    }

    #[test]
    fn date_ticks_fit_the_span() {
        let days = date_ticks(date!(2021 - 03 - 01), date!(2021 - 03 - 10), 6);
        assert!(days.len() >= 2 && days.len() <= 7, "{days:?}");
        assert_eq!(days[0].1, "1 Mar");
        let months = date_ticks(date!(2020 - 01 - 15), date!(2021 - 01 - 15), 6);
        assert!(months.len() >= 2 && months.len() <= 7, "{months:?}");
        assert!(months.iter().all(|(d, _)| d.day() == 1));
        let years = date_ticks(date!(1990 - 06 - 01), date!(2024 - 06 - 01), 6);
        assert!(years.len() >= 3 && years.len() <= 7, "{years:?}");
        assert!(years.iter().all(|(_, l)| l.len() == 4));
        let few = date_ticks(date!(1990 - 06 - 01), date!(2024 - 06 - 01), 3);
        assert!(few.len() <= 4, "{few:?}");
    }
}
