//! The scale scenario's section of BENCHMARKS.md and its chart: broadcast latency and memory
//! per stream against streams, Tidings and nginx + nchan on the same axes.

use super::{Metric, Outcome};
use crate::scale::hubs::Flavour;
use std::fmt::Write as _;

/// The section's heading, by which a run of the scenario alone finds it to replace.
const HEADING: &str = "## Scale:";

/// `n` with thousands separated: 100,000.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (k, c) in digits.chars().enumerate() {
        if k > 0 && (digits.len() - k).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn sizes(outcome: &Outcome) -> Vec<usize> {
    let mut sizes: Vec<usize> = outcome.shapes.keys().map(|&(_, n)| n).collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

fn flavours(outcome: &Outcome) -> Vec<Flavour> {
    let mut flavours: Vec<Flavour> = outcome.shapes.keys().map(|&(f, _)| f).collect();
    flavours.sort_unstable();
    flavours.dedup();
    flavours
}

pub fn markdown(outcome: &Outcome) -> String {
    let mut out = String::new();
    let sizes = sizes(outcome);
    let (Some(&smallest), Some(&largest)) = (sizes.first(), sizes.last()) else {
        return format!("\n{HEADING} not run\n\nNo hub could be started.\n");
    };
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let limit = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(0, |(_, hard)| hard);
    let cluster = outcome.shapes.iter().find(|(&(f, n), _)| f == Flavour::Tidings && n > outcome.single_max);
    let _ = writeln!(out, "\n{HEADING} {} to {} streams\n", grouped(smallest), grouped(largest));
    let _ = writeln!(
        out,
        "Run on {date}, on {}, {} descriptors a process. Everything shares those cores: the hub's processes, `redis-server` and the load generator's holders. Up to {} streams one hub process holds them (Tidings as one node, nginx with one worker); beyond, {} and nginx + nchan with as many workers (`reuseport`, so the kernel spreads the streams over them). Streams are spread round-robin over the nodes; each broadcast round is published to the next node. {}, the hubs interleaved.\n",
        crate::report::machine(),
        grouped(limit as usize),
        grouped(outcome.single_max),
        cluster.map_or_else(
            || "the same".to_owned(),
            |(_, shape)| {
                let threads = match outcome.node_threads {
                    0 => "a worker thread per core".to_owned(),
                    1 => "one worker thread (`TOKIO_WORKER_THREADS=1`)".to_owned(),
                    k => format!("{k} worker threads (`TOKIO_WORKER_THREADS={k}`)"),
                };
                format!("Tidings runs as {shape} (one `redis-server`), each node with {threads},")
            }
        ),
        if outcome.reps == 1 { "One run".to_owned() } else { format!("Medians of {} runs", outcome.reps) },
    );
    let _ = writeln!(
        out,
        "Memory is the proportional set size (PSS: resident memory, a page shared by several processes divided among them) summed over the hub's processes, per stream: what the streams added, and all of it, the processes' fixed cost included. Redis's is given apart: it holds the history, not the streams.\n"
    );
    for (&n, &(holders, sources)) in &outcome.holders {
        if n == largest || n > outcome.single_max {
            let _ = writeln!(
                out,
                "The load generator held {} streams in {holders} holder processes (`tidings-bench hold`) from {sources} loopback source addresses.",
                grouped(n)
            );
        }
    }
    let _ = writeln!(
        out,
        "\n| hub | streams | holders | connect (s) | connects/s | memory per stream: added / with fixed cost (KB) | broadcast p50 (ms) | broadcast p99 (ms) | broadcast events delivered (%) | CPU per broadcast: hub / load generator (ms) | other load meanwhile (% of the cores) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|");
    let cell = |f: Flavour, n: usize, m: Metric, digits: usize| {
        outcome.median(f, n, m).map_or_else(|| "—".to_owned(), |v| format!("{v:.digits$}"))
    };
    for &n in &sizes {
        for &f in &flavours(outcome) {
            let Some(shape) = outcome.shapes.get(&(f, n)) else { continue };
            let _ = writeln!(
                out,
                "| {}, {shape} | {} | {} | {} | {} | {} / {} | {} | {} | {} | {} / {} | {} |",
                f.name(),
                grouped(n),
                outcome.holders.get(&n).map_or(0, |h| h.0),
                cell(f, n, Metric::ConnectSeconds, 2),
                cell(f, n, Metric::ConnectsPerSec, 0),
                cell(f, n, Metric::KbAdded, 2),
                cell(f, n, Metric::KbTotal, 2),
                cell(f, n, Metric::P50Ms, 1),
                cell(f, n, Metric::P99Ms, 1),
                cell(f, n, Metric::DeliveredPct, 2),
                cell(f, n, Metric::HubCpuMs, 0),
                cell(f, n, Metric::HoldersCpuMs, 0),
                cell(f, n, Metric::OtherCpuPct, 0),
            );
        }
    }
    let _ = writeln!(
        out,
        "\nAt {} streams: unicast, {} publishers spread over the nodes, each event to one user, for 3 s; the reconnect storm (Tidings): every stream dropped, one event to each user and {} broadcasts published meanwhile, then all reopened at once, each on the next node, with the `Last-Event-ID` from before: the time until every stream had every missed event.\n",
        grouped(largest),
        super::UNICAST_PUBLISHERS,
        super::STORM_BROADCASTS,
    );
    let _ = writeln!(
        out,
        "| hub | unicast publishes/s | unicast delivered (%) | storm: all replayed (s) | streams with every missed event (%) | events replayed, of those missed (%) | Redis PSS (MB) |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for &f in &flavours(outcome) {
        let Some(shape) = outcome.shapes.get(&(f, largest)) else { continue };
        let _ = writeln!(
            out,
            "| {}, {shape} | {} | {} | {} | {} | {} | {} |",
            f.name(),
            cell(f, largest, Metric::UnicastPerSec, 0),
            cell(f, largest, Metric::UnicastDeliveredPct, 2),
            cell(f, largest, Metric::StormSeconds, 2),
            cell(f, largest, Metric::StormReplayedPct, 2),
            cell(f, largest, Metric::StormEventsPct, 2),
            cell(f, largest, Metric::RedisMb, 1),
        );
    }
    if !outcome.notes.is_empty() {
        out.push('\n');
        for note in &outcome.notes {
            let _ = writeln!(out, "- {note}");
        }
    }
    let _ = writeln!(out, "\n![Broadcast latency and memory per stream against streams]({})", outcome.chart_path);
    out
}

/// `existing` (a BENCHMARKS.md) with its scale section replaced by `section` (or `section`
/// added at the end), so a run of the scale scenario alone leaves the rest as it was.
pub fn splice(existing: &str, section: &str) -> String {
    let Some(start) = existing.find(&format!("\n{HEADING}")) else {
        return format!("{}\n{}", existing.trim_end(), section);
    };
    let after = start + 1 + HEADING.len();
    let end = existing[after..].find("\n## ").map_or(existing.len(), |at| after + at + 1);
    let gap = if end < existing.len() { "\n\n" } else { "\n" };
    format!("{}{}{gap}{}", &existing[..start], section.trim_end(), &existing[end..]).trim_end().to_owned() + "\n"
}

/// Two panels side by side: broadcast latency (p50 solid, p99 dashed, log scale) and memory per
/// stream with the fixed cost (linear), against streams (log scale); a line where one process
/// gives way to the cluster.
pub fn chart(outcome: &Outcome) -> String {
    let sizes = sizes(outcome);
    let (panel_w, h, pad) = (440.0_f64, 380.0_f64, 60.0_f64);
    let w = 2.0 * panel_w;
    let (lo, hi) =
        ((*sizes.first().unwrap_or(&1) as f64).log10(), (*sizes.last().unwrap_or(&10) as f64).log10().max(1.0));
    let span = (hi - lo).max(0.1);
    let x = |panel: f64, n: f64| panel * panel_w + pad + (n.log10() - lo) / span * (panel_w - 1.5 * pad);
    let all = |m: Metric| -> Vec<f64> {
        flavours(outcome).into_iter().flat_map(|f| sizes.iter().filter_map(move |&n| outcome.median(f, n, m))).collect()
    };
    let ms_hi = all(Metric::P99Ms).into_iter().fold(1.0_f64, f64::max).log10().ceil().max(1.0);
    let ms_lo = all(Metric::P50Ms).into_iter().fold(f64::MAX, f64::min).max(0.1).log10().floor().min(ms_hi - 1.0);
    let kb_hi = (all(Metric::KbTotal).into_iter().fold(1.0_f64, f64::max) / 5.0).ceil() * 5.0;
    let top = 40.0;
    let bottom = h - pad;
    let y_ms = |ms: f64| bottom - (ms.max(0.1).log10() - ms_lo) / (ms_hi - ms_lo) * (bottom - top);
    let y_kb = |kb: f64| bottom - kb / kb_hi * (bottom - top);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{t1}" y="20" text-anchor="middle" font-weight="bold">Broadcast publish-to-arrival (ms, log scale)</text>
<text x="{t2}" y="20" text-anchor="middle" font-weight="bold">Memory per stream, fixed cost included (KB)</text>
"#,
        t1 = panel_w / 2.0 + pad / 4.0,
        t2 = panel_w * 1.5 + pad / 4.0,
    );
    for panel in [0.0, 1.0] {
        let (left, right) = (x(panel, 10f64.powf(lo)), x(panel, 10f64.powf(hi)));
        let _ = writeln!(
            svg,
            r#"<line x1="{left:.1}" y1="{bottom}" x2="{right:.1}" y2="{bottom}" stroke="black"/><line x1="{left:.1}" y1="{top}" x2="{left:.1}" y2="{bottom}" stroke="black"/>"#
        );
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">streams (log scale)</text>"#,
            (left + right) / 2.0,
            h - 14.0
        );
        for &n in &sizes {
            let label = if n >= 1000 { format!("{}k", n / 1000) } else { n.to_string() };
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{label}</text>"#,
                x(panel, n as f64),
                bottom + 16.0
            );
        }
        if sizes.iter().any(|&n| n > outcome.single_max) && sizes.iter().any(|&n| n <= outcome.single_max) {
            let edge = x(panel, outcome.single_max as f64 * 1.15);
            let _ = writeln!(
                svg,
                r##"<line x1="{edge:.1}" y1="{top}" x2="{edge:.1}" y2="{bottom}" stroke="#888" stroke-dasharray="2,3"/><text x="{:.1}" y="{}" fill="#555" font-size="11">one process</text><text x="{:.1}" y="{}" fill="#555" font-size="11">cluster</text>"##,
                edge - 70.0,
                top + 12.0,
                edge + 4.0,
                top + 12.0
            );
        }
    }
    let mut decade = ms_lo;
    while decade <= ms_hi {
        let ms = 10f64.powf(decade);
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#eee"/>"##,
            pad - 4.0,
            y_ms(ms) + 4.0,
            if ms < 1.0 { format!("{ms}") } else { format!("{ms:.0}") },
            pad,
            y_ms(ms),
            x(0.0, 10f64.powf(hi)),
            y_ms(ms)
        );
        decade += 1.0;
    }
    for k in 0..=5 {
        let kb = kb_hi * k as f64 / 5.0;
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{kb:.0}</text>"#,
            panel_w + pad - 4.0,
            y_kb(kb) + 4.0
        );
    }
    for (i, f) in flavours(outcome).into_iter().enumerate() {
        let colour = if f == Flavour::Tidings { "#1f6feb" } else { "#cf222e" };
        let series = |metric: Metric, panel: f64, y: &dyn Fn(f64) -> f64| -> Vec<(f64, f64)> {
            sizes.iter().filter_map(|&n| outcome.median(f, n, metric).map(|v| (x(panel, n as f64), y(v)))).collect()
        };
        for (metric, panel, dash, y) in [
            (Metric::P50Ms, 0.0, "", &y_ms as &dyn Fn(f64) -> f64),
            (Metric::P99Ms, 0.0, r#" stroke-dasharray="6,4""#, &y_ms),
            (Metric::KbTotal, 1.0, "", &y_kb),
        ] {
            let points = series(metric, panel, y);
            if points.is_empty() {
                continue;
            }
            let line: Vec<String> = points.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{}"/>"#,
                line.join(" ")
            );
            for (a, b) in points {
                let _ = writeln!(svg, r#"<circle cx="{a:.1}" cy="{b:.1}" r="3" fill="{colour}"/>"#);
            }
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" fill="{colour}">{} (p50 solid, p99 dashed)</text>"#,
            pad + 10.0,
            top + 34.0 + 16.0 * i as f64,
            f.name()
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::{grouped, splice};

    /// A scale-only run replaces its own section and keeps what comes before and after it.
    #[test]
    fn splice_replaces_only_the_scale_section() {
        let before = "# Benchmarks\n\ntable\n\n## Scale: old\n\nold figures\n\n## Soak\n\nsoak\n";
        let after = splice(before, "\n## Scale: new\n\nnew figures\n");
        assert_eq!(after, "# Benchmarks\n\ntable\n\n## Scale: new\n\nnew figures\n\n## Soak\n\nsoak\n");
        let added = splice("# Benchmarks\n", "\n## Scale: new\n");
        assert!(added.ends_with("## Scale: new\n"));
    }

    /// Stream counts read with thousands separated.
    #[test]
    fn groups_thousands() {
        assert_eq!(grouped(100_000), "100,000");
        assert_eq!(grouped(999), "999");
    }
}
