//! No silent skips: whole-object YARA rules (`filesize`, `uintXX`) run on objects larger than
//! the in-memory copy (`yara_whole_bytes_max`, 4 MiB): the copy moves to a spool file and is
//! mapped for yara-x at the end. With the spool off, such an object is a named limit instead of
//! passing unscanned.

mod common;

use common::*;
use std::path::PathBuf;

const RULE: &str = r#"
rule Big_PE_With_Marker
{
    strings:
        $s = "SPOOLED-PAYLOAD-MARKER"
    condition:
        uint16(0) == 0x5A4D and filesize > 5MB and $s
}
"#;

fn folder() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("icapd-spool-sigs-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("big.yar"), RULE).unwrap();
    dir
}

/// A 6 MiB "PE" (starts with MZ), with the marker at `marker_at` if given.
fn object(marker_at: Option<usize>) -> Vec<u8> {
    let mut body = pseudo_random(6 << 20, 3);
    body[..2].copy_from_slice(b"MZ");
    if let Some(at) = marker_at {
        body[at..at + 22].copy_from_slice(b"SPOOLED-PAYLOAD-MARKER");
    }
    body
}

fn threat(r: &Response) -> Option<String> {
    r.header("X-Infection-Found").and_then(|v| v.split("Threat=").nth(1)).map(|t| t.trim_end_matches(';').to_string())
}

#[test]
fn a_6_mib_object_matched_only_by_a_whole_object_rule_is_blocked() {
    let dir = folder();
    let spool = std::env::temp_dir().join(format!("icapd-spool-dir-{}", std::process::id()));
    std::fs::create_dir_all(&spool).unwrap();
    let config = format!("spool_dir = \"{}\"\n", spool.display());
    let server = Server::start(&["--shards", "1", "--signatures", dir.to_str().unwrap()], Some(&config));
    for marker in [Some(5 << 20), Some(100), None] {
        let r = exchange(&server.connect(), respmod(&object(marker), true)).expect("an answer");
        match marker {
            Some(_) => assert_eq!(threat(&r).as_deref(), Some("YARA.Big_PE_With_Marker"), "{:?}", r.head),
            None => assert_eq!(r.status, 204, "without the marker the object is clean: {:?}", r.head),
        }
    }
    // Without Allow: 204 the echo has started when the rule concludes at the end: it is cut off
    // before the held-back tail, so the object never arrives whole.
    match exchange(&server.connect(), respmod(&object(Some(100)), false)) {
        Err(ReadError::Truncated(_)) => {}
        other => panic!("expected a cut-off echo, got {other:?}"),
    }
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0, "spool files leave no name behind");
    server.stop();

    // With the spool off, the rule cannot run on an object this big: a named limit, not a pass.
    let server = Server::start(&["--shards", "1", "--signatures", dir.to_str().unwrap()], Some("spool_dir = \"off\"\n"));
    let r = exchange(&server.connect(), respmod(&object(None), true)).expect("an answer");
    assert_eq!(threat(&r).as_deref(), Some("Heuristics.Limits.Exceeded.MaxYaraWholeSize"), "{:?}", r.head);
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&spool);
}
