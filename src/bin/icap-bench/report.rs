//! The run's result: a markdown table for people and JSON for scripts.
//!
//! JSON is written by hand: the document is flat and small, and the project does not otherwise
//! need a JSON library. MB are 10^6 bytes.

use crate::stats::Tally;
use std::fmt::Write;

pub struct Report {
    pub label: String,
    pub server: String,
    pub method: &'static str,
    /// `None` for a closed loop.
    pub offered_rate: Option<f64>,
    pub connections: usize,
    pub threads: usize,
    pub body_bytes: f64,
    pub preview: Option<usize>,
    pub allow_204: bool,
    pub eicar_every: u64,
    pub elapsed_secs: f64,
    /// CPU time (user + system) the load generator itself used, to tell a client-bound run.
    pub client_cpu_secs: f64,
    pub tally: Tally,
}

impl Report {
    pub fn requests_per_sec(&self) -> f64 {
        self.tally.answered() as f64 / self.elapsed_secs
    }

    pub fn body_mb_per_sec(&self) -> f64 {
        self.tally.body_bytes as f64 / self.elapsed_secs / 1e6
    }

    fn percentile(&self, q: f64) -> u64 {
        if self.tally.latency_us.is_empty() {
            0
        } else {
            self.tally.latency_us.value_at_quantile(q)
        }
    }

    pub fn markdown(&self) -> String {
        let t = &self.tally;
        let mut s = String::new();
        let mode = match self.offered_rate {
            Some(r) => format!("open loop at {r:.0} req/s"),
            None => "closed loop".to_string(),
        };
        let _ = writeln!(
            s,
            "{} — {} {} B bodies, {}, {} connections, preview {}, Allow 204 {}{}",
            self.label,
            self.method,
            self.body_bytes.round(),
            mode,
            self.connections,
            self.preview.map_or("off".to_string(), |p| p.to_string()),
            if self.allow_204 { "on" } else { "off" },
            if self.eicar_every > 0 { format!(", EICAR every {}", self.eicar_every) } else { String::new() }
        );
        let _ = writeln!(s);
        let _ = writeln!(s, "| requests/s | body MB/s | p50 µs | p99 µs | p99.9 µs | max µs | answered | passed | blocked | wrong | errors |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
        let _ = writeln!(
            s,
            "| {:.0} | {:.1} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            self.requests_per_sec(),
            self.body_mb_per_sec(),
            self.percentile(0.5),
            self.percentile(0.99),
            self.percentile(0.999),
            t.latency_us.max(),
            t.answered(),
            t.passed,
            t.blocked(),
            t.wrong,
            t.error_count()
        );
        let _ = writeln!(s);
        let statuses: Vec<String> = t.statuses.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = write!(
            s,
            "client CPU {:.0}% of one core; ICAP statuses: {}",
            100.0 * self.client_cpu_secs / self.elapsed_secs,
            if statuses.is_empty() { "none".into() } else { statuses.join(", ") }
        );
        if t.blocked() > 0 {
            let _ =
                write!(s, "; blocked by page {}, cut echo {}, short echo {}", t.block_page, t.block_cut, t.block_short);
        }
        if t.error_count() > 0 {
            let errors: Vec<String> = t.errors.iter().map(|(k, v)| format!("{} {v}", k.name())).collect();
            let _ = write!(s, "; errors: {}", errors.join(", "));
        }
        if t.unsent > 0 {
            let _ = write!(s, "; {} due requests never sent (the server did not keep up with the rate)", t.unsent);
        }
        let _ = writeln!(s);
        for sample in &t.samples {
            let _ = writeln!(s, "- {sample}");
        }
        s
    }

    pub fn json(&self) -> String {
        let t = &self.tally;
        let statuses: Vec<String> = t.statuses.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
        let errors: Vec<String> = t.errors.iter().map(|(k, v)| format!("\"{}\": {v}", k.name())).collect();
        let samples: Vec<String> = t.samples.iter().map(|s| quote(s)).collect();
        let mut s = String::from("{\n");
        let mut field = |name: &str, value: String| {
            let _ = writeln!(s, "  \"{name}\": {value},");
        };
        field("label", quote(&self.label));
        field("server", quote(&self.server));
        field("method", quote(self.method));
        field("mode", quote(if self.offered_rate.is_some() { "open" } else { "closed" }));
        field("offered_rate", self.offered_rate.map_or("null".into(), |r| format!("{r}")));
        field("connections", self.connections.to_string());
        field("threads", self.threads.to_string());
        field("body_bytes", format!("{}", self.body_bytes));
        field("preview", self.preview.map_or("null".into(), |p| p.to_string()));
        field("allow_204", self.allow_204.to_string());
        field("eicar_every", self.eicar_every.to_string());
        field("elapsed_s", format!("{:.3}", self.elapsed_secs));
        field("client_cpu_s", format!("{:.3}", self.client_cpu_secs));
        field("answered", t.answered().to_string());
        field("requests_per_s", format!("{:.1}", self.requests_per_sec()));
        field("body_mb_per_s", format!("{:.2}", self.body_mb_per_sec()));
        field(
            "latency_us",
            format!(
                "{{\"p50\": {}, \"p90\": {}, \"p99\": {}, \"p99_9\": {}, \"max\": {}, \"mean\": {:.1}}}",
                self.percentile(0.5),
                self.percentile(0.9),
                self.percentile(0.99),
                self.percentile(0.999),
                t.latency_us.max(),
                t.latency_us.mean()
            ),
        );
        field("statuses", format!("{{{}}}", statuses.join(", ")));
        field(
            "verdicts",
            format!(
                "{{\"passed\": {}, \"blocked\": {}, \"block_page\": {}, \"block_cut\": {}, \"block_short\": {}, \"wrong\": {}, \"infected_sent\": {}}}",
                t.passed,
                t.blocked(),
                t.block_page,
                t.block_cut,
                t.block_short,
                t.wrong,
                t.infected_sent
            ),
        );
        field("errors", format!("{{{}}}", errors.join(", ")));
        field("unsent", t.unsent.to_string());
        let _ = writeln!(s, "  \"samples\": [{}]", samples.join(", "));
        s.push_str("}\n");
        s
    }
}

/// A JSON string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::ErrorKind;

    fn report() -> Report {
        let mut tally = Tally::default();
        for us in [100, 200, 300] {
            tally.record_latency(us);
        }
        tally.statuses.insert(204, 2);
        tally.statuses.insert(200, 1);
        tally.passed = 2;
        tally.block_page = 1;
        tally.infected_sent = 1;
        tally.body_bytes = 3_000_000;
        tally.error(ErrorKind::Timeout, || "a \"slow\" one\n".into());
        Report {
            label: "icapd".into(),
            server: "127.0.0.1:1344".into(),
            method: "RESPMOD",
            offered_rate: None,
            connections: 8,
            threads: 1,
            body_bytes: 1e6,
            preview: Some(1024),
            allow_204: true,
            eicar_every: 3,
            elapsed_secs: 2.0,
            client_cpu_secs: 1.0,
            tally,
        }
    }

    #[test]
    fn markdown_has_the_figures() {
        let md = report().markdown();
        assert!(md.contains("| 2 | 1.5 | 200 | 300 | 300 | 300 | 3 | 2 | 1 | 0 | 1 |"), "{md}");
        assert!(md.contains("client CPU 50% of one core; ICAP statuses: 200: 1, 204: 2; blocked by page 1"), "{md}");
        assert!(md.contains("errors: timeout 1"), "{md}");
    }

    #[test]
    fn json_is_well_formed() {
        let js = report().json();
        assert!(js.contains("\"requests_per_s\": 1.5,"), "{js}");
        assert!(js.contains("\"statuses\": {\"200\": 1, \"204\": 2},"), "{js}");
        assert!(js.contains("\"errors\": {\"timeout\": 1},"), "{js}");
        assert!(js.contains("\"samples\": [\"a \\\"slow\\\" one\\u000a\"]"), "{js}");
        assert!(js.contains("\"offered_rate\": null,"), "{js}");
        // Balanced braces and no trailing comma before the closing brace.
        assert_eq!(js.matches('{').count(), js.matches('}').count());
        assert!(!js.contains(",\n}"));
    }
}
