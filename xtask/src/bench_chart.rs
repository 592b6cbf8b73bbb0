//! `chart.svg`: grouped bars on a log scale, one panel per QEMU mode; per case a bar for
//! our hypervisor and one for Xen, coloured by kind (PV, trap, PV round trip), with the
//! floor (bare round trips measured by our hypervisor) as dashed lines across. Written
//! by hand: no plotting dependency for one picture.

use std::fmt::Write as _;

use crate::bench_cases::{CASES, Case, Kind};
use crate::bench_report::{Report, show};

const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const PANEL_TOP: f64 = 40.0;
const PLOT_HEIGHT: f64 = 260.0;
const LABELS: f64 = 130.0;
const SLOT: f64 = 38.0;
const BAR: f64 = 14.0;
const LEGEND: f64 = 60.0;

fn colour(kind: Kind, ours: bool) -> &'static str {
    match (kind, ours) {
        (Kind::Pv, true) => "#1f4e9c",
        (Kind::Pv, false) => "#93b5e6",
        (Kind::Trap, true) => "#c0501f",
        (Kind::Trap, false) => "#f2ad8a",
        (Kind::RoundTrip, true) => "#2e7d32",
        (Kind::RoundTrip, false) => "#a5d6a7",
        (Kind::Floor, _) => "#b71c1c",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The cases drawn as bars in `mode`: every non-floor case with a value on either side.
fn bar_cases<'a>(report: &Report, mode: &str) -> Vec<&'a Case> {
    CASES
        .iter()
        .filter(|c| c.kind != Kind::Floor)
        .filter(|c| {
            report.median(c.name, mode, "ours").is_some()
                || report.median(c.name, mode, "xen").is_some()
        })
        .collect()
}

/// The SVG document.
pub fn svg(report: &Report) -> String {
    let modes = report.modes();
    let slots = modes
        .iter()
        .map(|m| bar_cases(report, m).len())
        .max()
        .unwrap_or(1)
        .max(1);
    let width = LEFT + RIGHT + slots as f64 * SLOT;
    let panel = PANEL_TOP + PLOT_HEIGHT + LABELS;
    let height = LEGEND + panel * modes.len().max(1) as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" viewBox="0 0 {width:.0} {height:.0}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    legend(&mut s);
    for (i, mode) in modes.iter().enumerate() {
        let top = LEGEND + i as f64 * panel;
        draw_panel(&mut s, report, mode, top, width);
    }
    s.push_str("</svg>\n");
    s
}

fn legend(s: &mut String) {
    let items = [
        (colour(Kind::Pv, true), "PV, ours"),
        (colour(Kind::Pv, false), "PV, Xen 4.17"),
        (colour(Kind::Trap, true), "trap, ours"),
        (colour(Kind::Trap, false), "trap, Xen 4.17"),
        (colour(Kind::RoundTrip, true), "PV round trip, ours"),
        (colour(Kind::RoundTrip, false), "PV round trip, Xen 4.17"),
    ];
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="18" font-size="14" font-weight="bold">Per operation, log scale: our hypervisor vs Xen 4.17, PV vs trap-and-emulate</text>"#
    );
    for (i, (fill, label)) in items.iter().enumerate() {
        let x = LEFT + (i % 3) as f64 * 200.0;
        let y = 28.0 + (i / 3) as f64 * 14.0;
        let _ = writeln!(
            s,
            r#"<rect x="{x}" y="{y}" width="10" height="10" fill="{fill}"/><text x="{}" y="{}">{label}</text>"#,
            x + 14.0,
            y + 9.0
        );
    }
    let _ = writeln!(
        s,
        r#"<line x1="{}" y1="38" x2="{}" y2="38" stroke="{}" stroke-dasharray="4 3"/><text x="{}" y="42">floor (bare round trip, ours)</text>"#,
        LEFT + 600.0,
        LEFT + 625.0,
        colour(Kind::Floor, true),
        LEFT + 630.0
    );
}

fn draw_panel(s: &mut String, report: &Report, mode: &str, top: f64, width: f64) {
    let cases = bar_cases(report, mode);
    let values: Vec<f64> = CASES
        .iter()
        .flat_map(|c| {
            [
                report.median(c.name, mode, "ours"),
                report.median(c.name, mode, "xen"),
            ]
        })
        .flatten()
        .filter(|v| *v > 0.0)
        .collect();
    let lo = values
        .iter()
        .copied()
        .fold(f64::INFINITY, f64::min)
        .max(1.0);
    let hi = values.iter().copied().fold(1.0, f64::max);
    let (lo, hi) = (
        lo.log10().floor(),
        hi.log10().ceil().max(lo.log10().floor() + 1.0),
    );
    let plot_top = top + PANEL_TOP;
    let base = plot_top + PLOT_HEIGHT;
    let y = |v: f64| {
        let v = v.max(10f64.powf(lo));
        base - (v.log10() - lo) / (hi - lo) * PLOT_HEIGHT
    };
    let title = if mode == "icount" {
        "Instructions per operation (-icount shift=0)"
    } else {
        "Host TSC ticks per operation (plain TCG, median)"
    };
    let _ = writeln!(
        s,
        r#"<text x="{LEFT}" y="{}" font-size="13" font-weight="bold">{title}</text>"#,
        top + 16.0
    );
    // Decades.
    let mut decade = lo as i32;
    while f64::from(decade) <= hi {
        let v = 10f64.powi(decade);
        let yy = y(v);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#dddddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            width - RIGHT,
            LEFT - 6.0,
            yy + 4.0,
            show(v)
        );
        decade += 1;
    }
    let _ = writeln!(
        s,
        r#"<line x1="{LEFT}" y1="{plot_top}" x2="{LEFT}" y2="{base}" stroke="black"/><line x1="{LEFT}" y1="{base}" x2="{:.1}" y2="{base}" stroke="black"/>"#,
        width - RIGHT
    );
    // Bars, group separators and labels.
    let mut group = "";
    for (i, case) in cases.iter().enumerate() {
        let x0 = LEFT + i as f64 * SLOT + 4.0;
        if case.group != group {
            group = case.group;
            if i > 0 {
                let _ = writeln!(
                    s,
                    r##"<line x1="{:.1}" y1="{plot_top}" x2="{:.1}" y2="{base}" stroke="#999999" stroke-dasharray="2 2"/>"##,
                    x0 - 4.0,
                    x0 - 4.0
                );
            }
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" fill="#555555">{group}</text>"##,
                x0,
                plot_top - 4.0
            );
        }
        for (j, hv) in ["ours", "xen"].into_iter().enumerate() {
            let x = x0 + j as f64 * (BAR + 2.0);
            match report.median(case.name, mode, hv) {
                Some(v) => {
                    let yy = y(v);
                    let _ = writeln!(
                        s,
                        r#"<rect x="{x:.1}" y="{yy:.1}" width="{BAR}" height="{:.1}" fill="{}"><title>{} {hv}: {}</title></rect>"#,
                        (base - yy).max(0.5),
                        colour(case.kind, hv == "ours"),
                        case.name,
                        show(v)
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        r##"<text x="{:.1}" y="{:.1}" font-size="9" fill="#888888" text-anchor="middle">n/a</text>"##,
                        x + BAR / 2.0,
                        base - 3.0
                    );
                }
            }
        }
        let lx = x0 + BAR;
        let ly = base + 10.0;
        let _ = writeln!(
            s,
            r#"<text x="{lx:.1}" y="{ly:.1}" text-anchor="end" transform="rotate(-45 {lx:.1} {ly:.1})">{}</text>"#,
            escape(case.name)
        );
    }
    // The floor lines; the two can be close: one label below its line, one above.
    for (name, label, dy) in [
        ("floor_syscall", "syscall/sysretq", 12.0),
        ("floor_gp", "#GP/iretq", -3.0),
    ] {
        if let Some(v) = report.median(name, mode, "ours") {
            let yy = y(v);
            let _ = writeln!(
                s,
                r#"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="{}" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}" fill="{}" text-anchor="end" stroke="white" stroke-width="3" paint-order="stroke">floor {}: {}</text>"#,
                width - RIGHT,
                colour(Kind::Floor, true),
                width - RIGHT - 2.0,
                yy + dy,
                colour(Kind::Floor, true),
                escape(label),
                show(v)
            );
        }
    }
}
