//! The plain-text status page: what an operator checks first, readable with `curl`.

use super::snapshot::{ProcessInfo, ShardSnapshot};
use std::fmt::Write;

/// Renders the status page. Shards that did not answer in time are listed as such.
pub fn render(p: &ProcessInfo, shards: &[ShardSnapshot]) -> String {
    let mut out = String::with_capacity(1024);
    let _ = writeln!(out, "icapd {}", p.version);
    let _ = writeln!(out, "listening:  {}", p.listen);
    let _ = writeln!(out, "started:    {}", iso8601(p.started_unix));
    let _ = writeln!(out, "uptime:     {}", human_duration(p.uptime_secs));
    let _ = writeln!(out, "inspector:  {}", p.inspector);
    let _ = writeln!(out, "shards:     {} on CPUs {}", p.cpus.len(), cpu_list(&p.cpus));
    match &p.signatures {
        Some(sig) => {
            let s = &sig.summary;
            let _ = writeln!(out, "ISTag:      \"{}\"", sig.istag);
            let _ = writeln!(
                out,
                "signatures: generation {}: {} body, {} hash, {} YARA streaming + {} whole-object, {} URL rules from {} files; {} lines skipped; loaded in {:.0?} at {}",
                sig.generation, s.body, s.hashes, s.yara_stream, s.yara_whole, s.urls, s.files, s.skipped_lines, s.load_time, iso8601(sig.loaded_unix)
            );
            let _ = writeln!(out, "reloads:    {} ok, {} failed", p.reloads_ok, p.reloads_failed);
        }
        None => {
            let istag = shards.first().map_or("", |s| s.istag.as_str());
            let _ = writeln!(out, "ISTag:      \"{istag}\"");
            let _ = writeln!(out, "signatures: none (built-in inspector)");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "shard  cpu  connections  transactions  generation  busy_s  busy%  handed_off  received  moved_out  moved_in");
    for (shard, &cpu) in p.cpus.iter().enumerate() {
        match shards.iter().find(|s| s.shard == shard) {
            Some(s) => {
                let generation = s.generation.map_or_else(|| "-".to_string(), |g| g.to_string());
                let _ = writeln!(
                    out,
                    "{:>5}  {:>3}  {:>11}  {:>12}  {:>10}  {:>6.1}  {:>5.1}  {:>10}  {:>8}  {:>9}  {:>8}",
                    shard,
                    cpu,
                    s.active,
                    s.metrics.transactions(),
                    generation,
                    s.metrics.busy.sum_us as f64 / 1e6,
                    f64::from(s.metrics.busy_permille) / 10.0,
                    s.metrics.connections_handed_off,
                    s.metrics.connections_received,
                    s.metrics.connections_moved_out,
                    s.metrics.connections_moved_in
                );
            }
            None => {
                let _ = writeln!(out, "{shard:>5}  {cpu:>3}  (did not answer in time)");
            }
        }
    }
    out
}

/// `0-3,6` for a CPU list.
pub fn cpu_list(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    parts.join(",")
}

/// ISO 8601 in UTC to the second (`2026-12-04T01:23:45Z`): what people and log tools read
/// without converting, unlike seconds since the epoch.
pub fn iso8601(unix_secs: u64) -> String {
    let (y, mo, d) = crate::proto::date::civil_from_days((unix_secs / 86_400) as i64);
    let rem = unix_secs % 86_400;
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn human_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h {m}m {s}s")
    } else if h > 0 {
        format!("{h}h {m}m {s}s")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::obs::metrics::ShardMetrics;

    #[test]
    fn cpu_lists_and_durations() {
        assert_eq!(cpu_list(&[3, 0, 1, 2, 6, 8, 9]), "0-3,6,8-9");
        assert_eq!(cpu_list(&[5]), "5");
        assert_eq!(human_duration(59), "59s");
        assert_eq!(human_duration(3 * 86_400 + 3661), "3d 1h 1m 1s");
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_796_152_421), "2026-12-01T19:13:41Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z", "a leap day");
    }

    #[test]
    fn page_lists_every_shard() {
        let p = ProcessInfo {
            version: "0.1.0",
            listen: "127.0.0.1:1344".parse().unwrap(),
            inspector: "null",
            started_unix: 1_796_152_421,
            uptime_secs: 61,
            cpus: vec![2, 3],
            signatures: None,
            reloads_ok: 0,
            reloads_failed: 0,
            log_write_errors: 0,
        };
        let shard0 = ShardSnapshot {
            shard: 0,
            cpu: 2,
            active: 7,
            generation: None,
            istag: "icapd-null".into(),
            metrics: ShardMetrics::new(4),
        };
        let page = render(&p, &[shard0]);
        assert!(page.contains("shards:     2 on CPUs 2-3"), "{page}");
        assert!(page.contains("ISTag:      \"icapd-null\""), "{page}");
        assert!(page.contains("    0    2            7"), "{page}");
        assert!(page.contains("    1    3  (did not answer in time)"), "{page}");
        assert!(page.contains("uptime:     1m 1s"), "{page}");
        assert!(page.contains("started:    2026-12-01T19:13:41Z"), "{page}");
    }
}
