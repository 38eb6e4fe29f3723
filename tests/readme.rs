//! The README's "Try it" step, run as written: its shell commands (the EICAR file, a clean
//! file, and `c-icap-client` against the server) against the real binary with the bundled
//! signatures, with only the port changed, and every line of the output the README promises
//! must appear in what the client printed. So the first thing a new user runs cannot drift
//! from what the server does.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;

/// The fenced block that follows the marker comment `<!-- name -->` in README.md.
fn block_after(readme: &str, name: &str) -> String {
    let marker = format!("<!-- {name} -->");
    let start = readme.find(&marker).unwrap_or_else(|| panic!("README.md has no {marker}")) + marker.len();
    let rest = readme[start..].trim_start();
    let fence_end = rest.find('\n').expect("a fence line");
    assert!(rest.starts_with("```"), "{marker} is followed by a fenced block");
    let body = &rest[fence_end + 1..];
    body[..body.find("\n```").expect("a closing fence")].to_string()
}

/// The lines promised in an expected-output block, `...` (lines left out) excluded.
fn promised(block: &str) -> Vec<String> {
    block.lines().map(str::trim).filter(|l| !l.is_empty() && *l != "...").map(str::to_string).collect()
}

#[test]
fn the_try_it_commands_print_what_the_readme_says() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let commands = block_after(&readme, "try-it:commands");
    assert_eq!(commands.matches("c-icap-client").count(), 2, "{commands}");
    assert!(commands.contains("-p 1344"), "{commands}");
    let signatures = concat!(env!("CARGO_MANIFEST_DIR"), "/signatures");
    let server = Server::start(&["--shards", "1", "--signatures", signatures], None);
    // Each command line on its own, so that each client's output (stdout and stderr, which
    // c-icap-client splits the answer over) can be held against its own promised block.
    let mut outputs = Vec::new();
    for line in commands.lines().filter(|l| !l.trim().is_empty()) {
        let line = line.replace("-p 1344", &format!("-p {}", server.port));
        let out = Command::new("bash")
            .args(["-e", "-c", &line])
            .current_dir(&server.dir)
            .output()
            .expect("bash and c-icap-client (Debian package c-icap; the test command installs it)");
        assert!(out.status.success(), "{line}: {out:?}");
        if line.starts_with("c-icap-client") {
            outputs.push(String::from_utf8_lossy(&[out.stdout, out.stderr].concat()).to_string());
        }
    }
    assert_eq!(outputs.len(), 2);
    for (name, printed) in ["try-it:eicar", "try-it:clean"].into_iter().zip(&outputs) {
        let lines: Vec<&str> = printed.lines().map(str::trim).collect();
        for want in promised(&block_after(&readme, name)) {
            assert!(lines.contains(&want.as_str()), "{name}: {want:?} is not in what the client printed:\n{printed}");
        }
    }
    assert!(!outputs[1].contains("Eicar"), "the clean file is not blocked: {}", outputs[1]);
    // The EICAR file the README writes is the real test file (plus the newline of printf).
    let written = std::fs::read(server.dir.join("eicar.com")).unwrap();
    let sample = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/samples/eicar.com")).unwrap();
    assert_eq!(written, [&sample[..], b"\n"].concat());
    assert!(server.stop().success());
}
