//! Medians of the repetitions, as a Markdown table with the ratio to nchan, a chart of
//! broadcast latency against subscriber count (SVG), and the soak's tables.

use crate::soak::{Outcome, ProbeFigures};
use crate::target::Kind;
use std::collections::BTreeMap;
use std::fmt::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    RssPerStreamKb,
    /// RSS per stream at the idle run's size (`--idle`).
    IdleRssPerStreamKb,
    ConnectsPerSec,
    BroadcastP50Ms,
    BroadcastP99Ms,
    DeliveriesPerSec,
    SustainedDeliveredPct,
    HubCpuPct,
    UnicastPerSec,
    BatchEventsPerSec,
    /// Seconds from a reconnect storm's start until every stream had its replay.
    StormSeconds,
    /// The unicast floor (`floor`): closed-loop publishes/s and round-trip p50/p99, at 8 and
    /// 32 publishers.
    Floor8PerSec,
    Floor8P50Ms,
    Floor8P99Ms,
    /// The hub's CPU time (user and system) per accepted publish, in microseconds: what a
    /// publish costs the hub, whatever else the shared cores were doing.
    Floor8CpuUs,
    Floor32PerSec,
    Floor32P50Ms,
    Floor32P99Ms,
    Floor32CpuUs,
}

impl Metric {
    const TABLE: [Metric; 11] = [
        Metric::RssPerStreamKb,
        Metric::IdleRssPerStreamKb,
        Metric::ConnectsPerSec,
        Metric::BroadcastP50Ms,
        Metric::BroadcastP99Ms,
        Metric::DeliveriesPerSec,
        Metric::SustainedDeliveredPct,
        Metric::HubCpuPct,
        Metric::UnicastPerSec,
        Metric::BatchEventsPerSec,
        Metric::StormSeconds,
    ];

    const FLOOR: [Metric; 8] = [
        Metric::Floor8PerSec,
        Metric::Floor8P50Ms,
        Metric::Floor8P99Ms,
        Metric::Floor8CpuUs,
        Metric::Floor32PerSec,
        Metric::Floor32P50Ms,
        Metric::Floor32P99Ms,
        Metric::Floor32CpuUs,
    ];

    fn header(self) -> &'static str {
        match self {
            Metric::RssPerStreamKb => "RSS per idle stream (KB)",
            Metric::IdleRssPerStreamKb => "RSS per idle stream, idle run (KB)",
            Metric::ConnectsPerSec => "connects/s",
            Metric::BroadcastP50Ms => "broadcast p50 (ms)",
            Metric::BroadcastP99Ms => "broadcast p99 (ms)",
            Metric::DeliveriesPerSec => "deliveries/s sustained",
            Metric::SustainedDeliveredPct => "of those delivered (%)",
            Metric::HubCpuPct => "hub CPU while sustained (%)",
            Metric::UnicastPerSec => "unicast publishes/s",
            Metric::BatchEventsPerSec => "batch events/s",
            Metric::StormSeconds => "reconnect storm: all replayed (s)",
            Metric::Floor8PerSec => "8 publishers: publishes/s",
            Metric::Floor8P50Ms => "p50 (ms)",
            Metric::Floor8P99Ms => "p99 (ms)",
            Metric::Floor8CpuUs | Metric::Floor32CpuUs => "hub CPU per publish (µs)",
            Metric::Floor32PerSec => "32 publishers: publishes/s",
            Metric::Floor32P50Ms => "p50 (ms)",
            Metric::Floor32P99Ms => "p99 (ms)",
        }
    }
}

#[derive(Default)]
pub struct Results {
    values: BTreeMap<(&'static str, Metric, usize), Vec<f64>>,
    /// Findings printed under the table.
    notes: Vec<String>,
    /// The soak's figures, when it ran.
    pub soak: Option<Outcome>,
    /// The HTTPS scenario's runs and its repetitions, when it ran.
    pub tls: Option<(crate::tls::Outcome, usize)>,
    /// Only the unicast floor ran (`--floor-only`): the report is its table alone.
    pub floor_only: bool,
}

impl Results {
    /// A finding printed under the table (once, however many repetitions met it).
    pub fn note(&mut self, note: String) {
        eprintln!("{note}");
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }

    pub fn add(&mut self, kind: Kind, metric: Metric, n: usize, value: f64) {
        self.values.entry((kind.name(), metric, n)).or_default().push(value);
    }

    fn median(&self, kind: Kind, metric: Metric, n: usize) -> Option<f64> {
        let mut values = self.values.get(&(kind.name(), metric, n))?.clone();
        values.sort_by(f64::total_cmp);
        values.get(values.len() / 2).copied()
    }
}

pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().and_then(|l| l.split_whitespace().nth(1)).and_then(|kb| kb.parse::<u64>().ok()))
        .map_or(0, |kb| kb / 1024 / 1024);
    format!("{cpu}, {cores} cores, {mem} GiB")
}

fn format_value(metric: Metric, value: f64) -> String {
    match metric {
        Metric::RssPerStreamKb | Metric::IdleRssPerStreamKb | Metric::BroadcastP50Ms | Metric::BroadcastP99Ms => {
            format!("{value:.1}")
        }
        Metric::Floor8P50Ms | Metric::Floor8P99Ms | Metric::Floor32P50Ms | Metric::Floor32P99Ms => {
            format!("{value:.2}")
        }
        Metric::StormSeconds => format!("{value:.2}"),
        Metric::Floor8CpuUs | Metric::Floor32CpuUs => format!("{value:.1}"),
        Metric::SustainedDeliveredPct | Metric::HubCpuPct => format!("{value:.1}"),
        _ => format!("{:.0}", value.round()),
    }
}

pub fn markdown(results: &Results, kinds: &[Kind], n: usize, idle: usize, reps: usize) -> String {
    let mut out = String::new();
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(out, "Written by `make bench` (`tidings-bench`) on {date}, on {}.", machine());
    if reps > 0 && results.floor_only {
        floor_table(&mut out, results, kinds, n);
        notes(&mut out, results);
    } else if reps > 0 {
        scenarios(&mut out, results, kinds, n, idle, reps);
    }
    if let Some(soak) = &results.soak {
        soak_tables(&mut out, soak);
    }
    if let Some((tls, reps)) = &results.tls {
        crate::tls::markdown(&mut out, tls, *reps);
    }
    out
}

/// The main scenarios' table, its notes and the chart.
fn scenarios(out: &mut String, results: &Results, kinds: &[Kind], n: usize, idle: usize, reps: usize) {
    let _ = writeln!(
        out,
        "Loopback only; the load generator shares the cores with the hub. Medians of {reps} interleaved runs at {n} subscribers; in brackets, the ratio to nginx + nchan (for latency and memory, lower is better).\n"
    );
    let _ = writeln!(
        out,
        "Memory is measured on a fresh process holding idle streams: {n} of them, and {idle} in the idle run. The reconnect storm drops {n} streams, publishes one event to each user while they are away, and reopens all {n} at once with `Last-Event-ID`: the time until every stream has its missed event (Tidings only: nchan's replay wants its own message ids).\n"
    );
    // Tidings' rows get the ratio to nchan, except for shares.
    let ratio = |kind: Kind, metric: Metric| {
        (matches!(kind, Kind::Tidings | Kind::Cluster | Kind::Mercure)
            && !matches!(metric, Metric::SustainedDeliveredPct | Metric::HubCpuPct))
        .then_some(Kind::Nchan)
    };
    let rows: Vec<Kind> = kinds.iter().copied().filter(|&k| k != Kind::Baseline).collect();
    table(out, results, &rows, &Metric::TABLE, n, ratio);
    notes(out, results);
    let _ = writeln!(out, "\n![Broadcast latency (p50) against subscribers](docs/bench-latency.svg)");
    if kinds.contains(&Kind::Baseline) {
        floor_table(out, results, kinds, n);
    }
}

/// The findings, as a list.
fn notes(out: &mut String, results: &Results) {
    if !results.notes.is_empty() {
        out.push('\n');
        for note in &results.notes {
            let _ = writeln!(out, "- {note}");
        }
    }
}

/// The unicast floor: Tidings against the bare axum baseline, with the ratio to it.
fn floor_table(out: &mut String, results: &Results, kinds: &[Kind], n: usize) {
    let _ = writeln!(
        out,
        "\n## Unicast floor\n\n{n} idle streams; each publisher on one kept-alive connection posts `{{\"to\": \"<one user>\", \"event\": \"message\", \"data\": \"<timestamp>\"}}` in a closed loop; round trip of each publish. The baseline is `tidings-baseline` (`bench/src/bin/baseline.rs`), a bare axum handler with a map of per-user channels and no history, ids, limits or validation. In brackets, the ratio to it (for throughput, higher is better; for latency and CPU, lower is better). The hub's CPU per publish is its processes' user and system time over the window divided by the publishes accepted: unlike the rates, it hardly moves with what else the shared cores are doing.\n"
    );
    let rows: Vec<Kind> = kinds.iter().copied().filter(|&k| matches!(k, Kind::Tidings | Kind::Baseline)).collect();
    table(out, results, &rows, &Metric::FLOOR, n, |kind, _| (kind == Kind::Tidings).then_some(Kind::Baseline));
}

/// A table of medians at `n`, one row per kind, with the ratio to the kind `ratio` names.
fn table(
    out: &mut String,
    results: &Results,
    rows: &[Kind],
    metrics: &[Metric],
    n: usize,
    ratio: impl Fn(Kind, Metric) -> Option<Kind>,
) {
    let _ = write!(out, "| hub |");
    for metric in metrics {
        let _ = write!(out, " {} |", metric.header());
    }
    let _ = write!(out, "\n|---|");
    for _ in metrics {
        let _ = write!(out, "---|");
    }
    out.push('\n');
    for &kind in rows {
        let _ = write!(out, "| {} |", kind.name());
        for &metric in metrics {
            let Some(value) = results.median(kind, metric, n) else {
                out.push_str(" — |");
                continue;
            };
            let _ = write!(out, " {}", format_value(metric, value));
            if let Some(theirs) = ratio(kind, metric).and_then(|other| results.median(other, metric, n)) {
                if theirs > 0.0 {
                    let _ = write!(out, " ({:.2}×)", value / theirs);
                }
            }
            out.push_str(" |");
        }
        out.push('\n');
    }
}

/// The soak: what the attackers held, what the probe saw, and the hub's descriptors and memory.
fn soak_tables(out: &mut String, soak: &Outcome) {
    let _ = writeln!(out, "\n## Soak: {} hostile connections for {} s\n", soak.connections, soak.seconds);
    let flags =
        if soak.hub_args.is_empty() { "no extra flags".to_owned() } else { format!("`{}`", soak.hub_args.join(" ")) };
    let _ = writeln!(
        out,
        "A fresh Tidings ({flags}) against slots of every kind at once, each reconnecting (at most once a second) whenever the hub closes it, while a background publisher broadcasts 1 KB five times a second. A probe, every 100 ms: a publish to its own stream (time to the 202, and to the event's arrival), a `/healthz` and a stream open, each on a fresh connection."
    );
    if !soak.unknown_args.is_empty() {
        let _ = writeln!(out, "\nThis hub does not know `{}`, so ran without.", soak.unknown_args.join("`, `"));
    }
    let _ = writeln!(
        out,
        "\n| attacker | slots | held at peak | held on average | connects | closed by the hub | refused | HTTP/1.1 answers |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for a in &soak.attacks {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} |",
            a.name, a.slots, a.peak_held, a.mean_held, a.connects, a.cut, a.refused, a.answers
        );
    }
    let total = |f: fn(&crate::soak::AttackFigures) -> f64| soak.attacks.iter().map(f).sum::<f64>();
    let _ = writeln!(
        out,
        "| all | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | |",
        soak.connections,
        total(|a| a.peak_held as f64),
        total(|a| a.mean_held),
        total(|a| a.connects as f64),
        total(|a| a.cut as f64),
        total(|a| a.refused as f64),
    );
    let _ = writeln!(
        out,
        "\n| probe (ms) | publish → 202 p50 / p99 | publish → arrival p50 / p99 | fresh /healthz p50 / p99 | fresh stream p50 / p99 | probes | failed |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|");
    for (name, probe) in [("alone, before", &soak.quiet), ("under attack", &soak.attacked)] {
        let cell = |values: &[f64]| {
            let (p50, p99) = ProbeFigures::p50_p99(values);
            format!("{p50:.2} / {p99:.2}")
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            cell(&probe.publish),
            cell(&probe.arrival),
            cell(&probe.healthz),
            cell(&probe.fresh_stream),
            probe.rounds,
            probe.failures
        );
    }
    let _ = writeln!(out, "\n| hub | before | peak | {:.1} s after the attackers left |", soak.settled_seconds);
    let _ = writeln!(out, "|---|---|---|---|");
    let _ = writeln!(
        out,
        "| descriptors | {} | {} | {} |",
        soak.before.descriptors, soak.peak.descriptors, soak.after.descriptors
    );
    let mb = |bytes: u64| bytes as f64 / 1e6;
    let _ = writeln!(
        out,
        "| RSS (MB) | {:.1} | {:.1} | {:.1} |",
        mb(soak.before.rss_bytes),
        mb(soak.peak.rss_bytes),
        mb(soak.after.rss_bytes)
    );
    if !soak.rss_back() {
        let _ = writeln!(
            out,
            "\nRSS had not fallen back {:.0} s after the attackers left: {:.1} MB above the start.",
            soak.settled_seconds,
            mb(soak.after.rss_bytes.saturating_sub(soak.before.rss_bytes))
        );
    }
    let _ = writeln!(
        out,
        "\nBackground broadcasts: {} accepted, {} refused or timed out.",
        soak.background_accepted, soak.background_failed
    );
    let reconnects = soak.quiet.publisher_reconnects + soak.attacked.publisher_reconnects;
    if reconnects > 0 {
        let _ = writeln!(
            out,
            "The hub closed the probe's kept-alive publishing connection {reconnects} times; each time the publish was retried once on a new one."
        );
    }
    for probe in [&soak.quiet, &soak.attacked] {
        if let Some(failure) = &probe.first_failure {
            let _ = writeln!(out, "First failed probe: {failure}.");
        }
    }
}

/// An SVG line chart of the median broadcast p50 latency against the number of subscribers.
pub fn chart(results: &Results, kinds: &[Kind], sizes: &[usize]) -> String {
    let (w, h, pad) = (640.0, 360.0, 50.0);
    let max_n = sizes.iter().copied().max().unwrap_or(1) as f64;
    let max_ms = kinds
        .iter()
        .flat_map(|&k| sizes.iter().filter_map(move |&n| results.median(k, Metric::BroadcastP50Ms, n)))
        .fold(1.0_f64, f64::max);
    let x = |n: usize| pad + (n as f64 / max_n) * (w - 2.0 * pad);
    let y = |ms: f64| h - pad - (ms / max_ms) * (h - 2.0 * pad);
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<line x1="{pad}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{pad}" y1="{pad}" x2="{pad}" y2="{b}" stroke="black"/>
<text x="{cx}" y="{lx}" text-anchor="middle">subscribers</text>
<text x="12" y="{cy}" transform="rotate(-90 12 {cy})" text-anchor="middle">broadcast p50 (ms)</text>
<text x="{pad}" y="{t}" text-anchor="end">{max_ms:.0}</text>
"#,
        b = h - pad,
        r = w - pad,
        cx = w / 2.0,
        lx = h - 12.0,
        cy = h / 2.0,
        t = pad + 4.0,
    );
    for (i, &kind) in kinds.iter().enumerate() {
        let colour = ["#1f6feb", "#1a7f37", "#8250df", "#cf222e"][i % 4];
        let points: Vec<String> = sizes
            .iter()
            .filter_map(|&n| {
                results.median(kind, Metric::BroadcastP50Ms, n).map(|ms| format!("{:.1},{:.1}", x(n), y(ms)))
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let _ = writeln!(
            svg,
            r#"<text x="{}" y="{}" fill="{colour}">{}</text>"#,
            pad + 10.0,
            pad + 16.0 * (i as f64 + 1.0),
            kind.name()
        );
    }
    for &n in sizes {
        let _ = writeln!(svg, r#"<text x="{:.1}" y="{}" text-anchor="middle">{n}</text>"#, x(n), h - pad + 16.0);
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::{markdown, Results};
    use crate::target::Kind;

    /// A run of the soak alone has no scenario table, and a run without the soak no soak section.
    #[test]
    fn sections_follow_what_ran() {
        let results = Results::default();
        let with_reps = markdown(&results, &[Kind::Tidings], 100, 0, 1);
        assert!(with_reps.contains("| hub |") && !with_reps.contains("## Soak"));
        let without = markdown(&results, &[Kind::Tidings], 100, 0, 0);
        assert!(!without.contains("| hub |"));
    }
}
