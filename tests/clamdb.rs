//! `icapd --check` on a ClamAV user's folder: one line per file and reason, every line with
//! `-v`, and the formats it does not load named with their reason.

mod common;

use common::*;
use icapd::signatures::clamav::cvd;
use std::path::PathBuf;
use std::process::Command;

const CLAM_EXE: &str = "/usr/share/clamav-testfiles/clam.exe";
const EICAR: &[u8] = include_bytes!("samples/eicar.com");

fn folder(tag: &str, files: &[(&str, String)]) -> PathBuf {
    let bytes: Vec<(&str, Vec<u8>)> = files.iter().map(|(n, t)| (*n, t.clone().into_bytes())).collect();
    folder_bytes(tag, &bytes)
}

fn folder_bytes(tag: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("icapd-clamdb-check-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, data) in files {
        std::fs::write(dir.join(name), data).unwrap();
    }
    dir
}

fn check(dir: &PathBuf, verbose: bool) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_icapd"));
    cmd.arg("--check").arg("--signatures").arg(dir);
    if verbose {
        cmd.arg("-v");
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn check_summarises_and_verbose_lists_every_line() {
    let mut ndb = String::from("Good:0:*:676f6f642d7369676e6174757265\n");
    for i in 0..2_000 {
        ndb.push_str(&format!("Neg.Sig-{i}:0:*:3c736372697074{:02x}(B)(L)42\n", i % 256));
    }
    let dir = folder(
        "v",
        &[
            ("local.ndb", ndb),
            ("daily.cbc", "bytecode\n".into()),
            ("daily.wdb", "X:a.example:b.example\n".into()),
            ("local.ldb", "Logical;Target:1;0&1;4d5a;5045\nBroken;Target:1;0&2;4d5a\n".into()),
        ],
    );
    let out = check(&dir, false);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() <= 8, "{out}");
    assert!(
        out.contains("local.ndb: 2000 lines skipped: the anchor `…` at character N is not supported inside a pattern"),
        "{out}"
    );
    assert!(out.contains("daily.cbc: not loaded: bytecode"), "{out}");
    assert!(out.contains("daily.wdb: not loaded: phishing"), "{out}");
    assert!(out.contains("local.ldb: 1 line skipped"), "{out}");
    assert!(out.contains("signatures ok: 1 body, 1 logical"), "{out}");
    let verbose = check(&dir, true);
    assert!(verbose.lines().count() >= 2_000, "{}", verbose.lines().count());
    let shown = format!("{}:2: Neg.Sig-0: the anchor `(B)`", dir.join("local.ndb").display());
    assert!(verbose.contains(&shown), "{shown}");
    assert!(verbose.contains(&format!(
        "{}:2: Broken: the logical expression names subsignature 2",
        dir.join("local.ldb").display()
    )));
    let _ = std::fs::remove_dir_all(&dir);
}

fn threat(r: &Response) -> Option<String> {
    r.header("X-Infection-Found").and_then(|v| v.split("Threat=").nth(1)).map(|t| t.trim_end_matches(';').to_string())
}

/// A freshclam-style folder served for real: clam.exe is found by a logical signature inside
/// a `.cvd` and named `Clamav.Test.File-6`, an allowlisted object passes, and `/metrics`
/// counts what each format loaded.
#[test]
fn a_freshclam_folder_is_served_end_to_end() {
    let exe = std::fs::read(CLAM_EXE).expect("clamav-testfiles installed (scripts/test installs it)");
    let ldb = "Clamav.Test.File-6;Engine:51-255,Target:1;0&1;EP+0:bb71104000{-4}33c050;434c414d657373616765426f7841\n";
    let ndb = "Eicar-Test-Signature:0:*:58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e444152442d414e544956495255532d544553542d46494c452124482b482a\n";
    let main = cvd::build(&[("main.ldb", ldb.as_bytes()), ("main.ndb", ndb.as_bytes())], 62, false);
    let md5 = {
        use md5::Digest;
        md5::Md5::digest(EICAR).iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    let daily = cvd::build(&[("daily.fp", format!("{md5}:{}:Eicar.Allowed\n", EICAR.len()).as_bytes())], 27000, true);
    let dir = folder_bytes("serve", &[("main.cvd", main), ("daily.cld", daily), ("bytecode.cbc", b"x".to_vec())]);
    let metrics_port = free_port();
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let server =
        Server::start(&["--shards", "1", "--signatures", dir.to_str().unwrap(), "--metrics", &metrics_addr], None);
    let r = exchange(&server.connect(), respmod(&exe, true)).expect("a response");
    assert_eq!(threat(&r).as_deref(), Some("Clamav.Test.File-6"), "{r:?}");
    assert_eq!(r.header("X-Virus-ID"), Some("Clamav.Test.File-6"));
    let r = exchange(&server.connect(), respmod(EICAR, true)).expect("a response");
    assert_eq!(r.status, 204, "EICAR is on daily.fp's allowlist: {r:?}");
    let (status, page) = http_get(metrics_port, "/metrics");
    assert_eq!(status, 200);
    let m = parse_metrics(&page);
    assert_eq!(metric(&m, "icapd_signature_format_lines{format=\"ldb\",result=\"loaded\"}"), 1.0);
    assert_eq!(metric(&m, "icapd_signature_format_lines{format=\"fp\",result=\"loaded\"}"), 1.0);
    assert_eq!(metric(&m, "icapd_signature_format_lines{format=\"cbc\",result=\"skipped\"}"), 1.0);
    assert_eq!(metric(&m, "icapd_signatures{kind=\"logical\"}"), 1.0);
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
