//! The command line.

use crate::body::EicarAt;
use crate::request::Method;
use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
icap-bench: ICAP load generator (closed or open loop) that checks every answer

USAGE:
    icap-bench [OPTIONS]

OPTIONS:
    --server HOST:PORT     ICAP server [default: 127.0.0.1:1344]
    --service NAME         service name in the request URI [default: the method's name]
    --method M             respmod | reqmod [default: respmod]
    --connections N        keep-alive connections [default: 8]
    --threads N            worker threads driving the connections [default: CPUs available, at most N]
    --duration SECS        how long to send (fractions allowed) [default: 10]
    --requests N           stop after N requests (whichever of this and --duration comes first)
    --rate R               open loop: R requests/s in total, latency measured from each
                           request's intended send time [default: closed loop]
    --body-size BYTES      synthetic body size; suffixes K and M (x1024) [default: 1024]
    --body-file PATH       send this file's bytes as the body; repeat for several files, sent
                           round robin (instead of --body-size)
    --chunk-size BYTES     ICAP chunk size [default: 65536]
    --preview N|off        send a preview of N bytes [default: 1024]
    --no204                do not send Allow: 204 (the server must echo the whole body)
    --eicar-every N        plant EICAR in every Nth request (numbers N-1, 2N-1, ...); those must
                           be blocked and all others must pass [default: 0, never]
    --eicar-at OFFSET|middle   where in the body EICAR goes [default: middle]
    --expect-blocked       the bodies (--body-file) carry a signature: every answer must be a block
    --tls                  connect with TLS (icaps), e.g. to icapd's --tls-listen port
    --tls-ca FILE          with --tls: trust the CA certificates in this PEM file
    --tls-no-verify        with --tls: accept any server certificate (self-signed test setups)
    --timeout SECS         a request without a complete answer after this is an error [default: 30]
    --label TEXT           name of the run in the report [default: the server address]
    --json FILE|-          also write the report as JSON to FILE (- for stdout)
    --quiet                no progress line on stderr

Every answer is checked: a clean object must get 204 (only with Allow: 204) or a 200 echo of
exactly its bytes; an object with EICAR must get a block page (encapsulated 403 or
X-Infection-Found), or an echo that is cut off or short. The exit status is 1 when any answer
was wrong, any request failed, or nothing was answered; 2 for a bad command line.
";

pub struct Options {
    pub server: String,
    pub service: Option<String>,
    pub method: Method,
    pub connections: usize,
    pub threads: Option<usize>,
    pub duration: Duration,
    pub requests: Option<u64>,
    pub rate: Option<f64>,
    pub body_size: usize,
    pub body_files: Vec<PathBuf>,
    pub chunk_size: usize,
    pub preview: Option<usize>,
    pub allow_204: bool,
    pub eicar_every: u64,
    pub eicar_at: EicarAt,
    pub expect_blocked: bool,
    pub timeout: Duration,
    pub tls: bool,
    pub tls_ca: Option<PathBuf>,
    pub tls_no_verify: bool,
    pub label: Option<String>,
    pub json: Option<String>,
    pub quiet: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            server: "127.0.0.1:1344".into(),
            service: None,
            method: Method::Respmod,
            connections: 8,
            threads: None,
            duration: Duration::from_secs(10),
            requests: None,
            rate: None,
            body_size: 1024,
            body_files: Vec::new(),
            chunk_size: 65536,
            preview: Some(1024),
            allow_204: true,
            eicar_every: 0,
            eicar_at: EicarAt::Middle,
            expect_blocked: false,
            timeout: Duration::from_secs(30),
            tls: false,
            tls_ca: None,
            tls_no_verify: false,
            label: None,
            json: None,
            quiet: false,
        }
    }
}

/// What the command line asked for: a run, or the usage text.
pub enum Parsed {
    Run(Box<Options>),
    Help,
}

/// `1024`, `64K`, `10M` (binary multiples).
pub fn size(s: &str) -> Option<usize> {
    let (digits, mult) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1024),
        b'M' | b'm' => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    digits.parse::<usize>().ok()?.checked_mul(mult)
}

fn positive_secs(s: &str) -> Option<Duration> {
    let v: f64 = s.parse().ok()?;
    (v.is_finite() && v > 0.0).then(|| Duration::from_secs_f64(v))
}

pub fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().map(String::as_str).ok_or(format!("{a} needs a value"));
        let bad = |v: &str| format!("{a}: '{v}' is not valid");
        match a.as_str() {
            "--server" => o.server = value()?.to_string(),
            "--service" => o.service = Some(value()?.to_string()),
            "--method" => {
                o.method = match value()? {
                    "respmod" | "RESPMOD" => Method::Respmod,
                    "reqmod" | "REQMOD" => Method::Reqmod,
                    v => return Err(bad(v)),
                }
            }
            "--connections" => {
                let v = value()?;
                o.connections = v.parse().ok().filter(|&n| n > 0).ok_or_else(|| bad(v))?
            }
            "--threads" => {
                let v = value()?;
                o.threads = Some(v.parse().ok().filter(|&n| n > 0).ok_or_else(|| bad(v))?)
            }
            "--duration" => {
                let v = value()?;
                o.duration = positive_secs(v).ok_or_else(|| bad(v))?
            }
            "--requests" => {
                let v = value()?;
                o.requests = Some(v.parse().ok().filter(|&n| n > 0).ok_or_else(|| bad(v))?)
            }
            "--rate" => {
                let v = value()?;
                o.rate = Some(v.parse().ok().filter(|r: &f64| r.is_finite() && *r > 0.0).ok_or_else(|| bad(v))?)
            }
            "--body-size" => {
                let v = value()?;
                o.body_size = size(v).ok_or_else(|| bad(v))?
            }
            "--body-file" => o.body_files.push(PathBuf::from(value()?)),
            "--chunk-size" => {
                let v = value()?;
                o.chunk_size = size(v).filter(|&n| n > 0).ok_or_else(|| bad(v))?
            }
            "--preview" => {
                let v = value()?;
                o.preview = if v == "off" { None } else { Some(size(v).ok_or_else(|| bad(v))?) }
            }
            "--no204" => o.allow_204 = false,
            "--eicar-every" => {
                let v = value()?;
                o.eicar_every = v.parse().map_err(|_| bad(v))?
            }
            "--eicar-at" => {
                let v = value()?;
                o.eicar_at =
                    if v == "middle" { EicarAt::Middle } else { EicarAt::Offset(size(v).ok_or_else(|| bad(v))?) }
            }
            "--expect-blocked" => o.expect_blocked = true,
            "--timeout" => {
                let v = value()?;
                o.timeout = positive_secs(v).ok_or_else(|| bad(v))?
            }
            "--tls" => o.tls = true,
            "--tls-ca" => o.tls_ca = Some(PathBuf::from(value()?)),
            "--tls-no-verify" => o.tls_no_verify = true,
            "--label" => o.label = Some(value()?.to_string()),
            "--json" => o.json = Some(value()?.to_string()),
            "--quiet" => o.quiet = true,
            "--help" | "-h" => return Ok(Parsed::Help),
            _ => return Err(format!("unknown argument {a} (see --help)")),
        }
    }
    if !o.tls && (o.tls_ca.is_some() || o.tls_no_verify) {
        return Err("--tls-ca and --tls-no-verify need --tls".into());
    }
    Ok(Parsed::Run(Box::new(o)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        match parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())? {
            Parsed::Run(o) => Ok(*o),
            Parsed::Help => Err("help".into()),
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(size("1024"), Some(1024));
        assert_eq!(size("64K"), Some(65536));
        assert_eq!(size("10M"), Some(10 << 20));
        assert_eq!(size("M"), None);
        assert_eq!(size("-1"), None);
        assert_eq!(size("99999999999999999999M"), None);
    }

    #[test]
    fn options() {
        let o = run(&[
            "--method",
            "reqmod",
            "--rate",
            "500.5",
            "--body-size",
            "1M",
            "--preview",
            "off",
            "--no204",
            "--eicar-every",
            "10",
            "--eicar-at",
            "4K",
            "--expect-blocked",
            "--duration",
            "0.5",
            "--body-file",
            "a",
            "--body-file",
            "b",
        ])
        .unwrap();
        assert_eq!(o.method, Method::Reqmod);
        assert_eq!(o.rate, Some(500.5));
        assert_eq!((o.body_size, o.preview, o.allow_204), (1 << 20, None, false));
        assert_eq!((o.eicar_every, o.eicar_at, o.expect_blocked), (10, EicarAt::Offset(4096), true));
        assert_eq!(o.duration, Duration::from_millis(500));
        assert_eq!(o.body_files.len(), 2);
        let t = run(&["--tls", "--tls-ca", "ca.pem"]).unwrap();
        assert!(t.tls && !t.tls_no_verify && t.tls_ca == Some(PathBuf::from("ca.pem")));
        assert!(run(&["--tls", "--tls-no-verify"]).unwrap().tls_no_verify);
        assert!(run(&["--tls-no-verify"]).is_err(), "TLS options without --tls");
        let d = run(&[]).unwrap();
        assert_eq!((d.preview, d.allow_204, d.connections, d.rate), (Some(1024), true, 8, None));
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["--connections", "0"][..],
            &["--rate", "-3"],
            &["--rate", "inf"],
            &["--duration", "0"],
            &["--method", "options"],
            &["--frobnicate"],
            &["--server"],
        ] {
            assert!(run(args).is_err(), "{args:?}");
        }
        assert!(matches!(parse(&["--help".to_string()]), Ok(Parsed::Help)));
    }
}
