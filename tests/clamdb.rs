//! `icapd --check` on a ClamAV user's folder: one line per file and reason, every line with
//! `-v`, and the formats it does not load named with their reason.

use std::path::PathBuf;
use std::process::Command;

fn folder(tag: &str, files: &[(&str, String)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("icapd-clamdb-check-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
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
        ndb.push_str(&format!("Neg.Sig-{i}:0:*:3c736372697074!({:02x}|41)42\n", i % 256));
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
    assert!(out.contains("local.ndb: 2000 lines skipped: negated alternatives `…` at character N are not supported"), "{out}");
    assert!(out.contains("daily.cbc: not loaded: bytecode"), "{out}");
    assert!(out.contains("daily.wdb: not loaded: phishing"), "{out}");
    assert!(out.contains("local.ldb: 1 line skipped"), "{out}");
    assert!(out.contains("signatures ok: 1 body, 1 logical"), "{out}");
    let verbose = check(&dir, true);
    assert!(verbose.lines().count() >= 2_000, "{}", verbose.lines().count());
    let shown = format!("{}:2: Neg.Sig-0: negated alternatives", dir.join("local.ndb").display());
    assert!(verbose.contains(&shown), "{shown}");
    assert!(verbose.contains(&format!("{}:2: Broken: the logical expression names subsignature 2", dir.join("local.ldb").display())));
    let _ = std::fs::remove_dir_all(&dir);
}
