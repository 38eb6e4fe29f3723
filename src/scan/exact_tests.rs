//! Regression tests for issue 13: chunking, gaps, previews, pools and ranges never change a
//! verdict. Each runs whole, at every split and byte by byte (`for_each_split`).

use super::engine::{EngineInspector, ScanCtx};
use super::policy::{Early204, OverLimit};
use super::unpack::EncryptedPolicy;
use super::ScanPolicy;
use crate::inspect::{verdict_of_txn, Inspector, Progress, Txn, Verdict};
use crate::limits::Limits;
use crate::proto::testutil::for_each_split;
use crate::proto::Method;
use crate::signatures::{load, LoadOptions};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

const EICAR: &[u8] = include_bytes!("../../tests/samples/eicar.com");

/// A private signature folder holding the given files; removed on drop.
pub(crate) struct Folder(pub PathBuf);

impl Folder {
    pub fn new(tag: &str, files: &[(&str, &[u8])]) -> Folder {
        let dir = std::env::temp_dir().join(format!("icapd-exact-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, contents) in files {
            std::fs::write(dir.join(name), contents).unwrap();
        }
        Folder(dir)
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bundled(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures").join(name)).unwrap()
}

fn ctx_with(dir: &Path, limits: Limits, policy: ScanPolicy) -> Rc<ScanCtx> {
    let gen = load(dir, LoadOptions::default()).expect("signatures load");
    assert!(gen.problems.is_empty(), "{:?}", gen.problems);
    ScanCtx::new(Arc::new(gen), limits.scan(), policy)
}

fn block() -> ScanPolicy {
    ScanPolicy { over_limit: OverLimit::Block, early_204: Early204::default(), encrypted: EncryptedPolicy::Block }
}

#[allow(dead_code)]
fn pass() -> ScanPolicy {
    ScanPolicy { over_limit: OverLimit::Pass, early_204: Early204::default(), encrypted: EncryptedPolicy::Block }
}

fn infected(threat: &str) -> Verdict {
    Verdict::Infected { threat: threat.into() }
}

/// The verdict and limit for `body`, the same whole, at every split and byte by byte.
fn every_way(inspector: &mut EngineInspector, txn: &Txn<'_>, body: &[u8]) -> (Verdict, Option<&'static str>) {
    let whole = verdict_of_txn(inspector, txn, body, &[]);
    let limit = inspector.limit_hit();
    for_each_split(body.len(), |cuts| {
        let v = verdict_of_txn(inspector, txn, body, cuts);
        assert_eq!(v, whole, "cuts {:?}…", &cuts[..cuts.len().min(4)]);
        assert_eq!(inspector.limit_hit(), limit, "cuts {:?}…", &cuts[..cuts.len().min(4)]);
    });
    (whole, limit)
}

fn respmod(head: &[u8]) -> Txn<'_> {
    Txn { method: Method::Respmod, service: "respmod", req_hdr: None, res_hdr: Some(head), policy: Default::default() }
}

// Item 5: a 206 range from byte 0 is decoded whatever the unit's case or the leading zeros.

#[test]
fn a_range_from_zero_is_decoded_in_any_spelling() {
    use super::decode::tests::{gzip, text};
    let folder = Folder::new("range", &[("eicar.ndb", &bundled("eicar.ndb"))]);
    let mut inspector = EngineInspector::new(ctx_with(&folder.0, Limits::default(), block()));
    let page = gzip(&[EICAR, text(3000).as_slice()].concat());
    for range in ["bytes 0-", "Bytes 0-", "BYTES 0-", "bytes 00-", "bytes 000-", "bYtEs  0-"] {
        let head = format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Encoding: gzip\r\nContent-Range: {range}{}/{}\r\n\r\n",
            page.len() - 1,
            page.len()
        );
        let txn = respmod(head.as_bytes());
        assert_eq!(every_way(&mut inspector, &txn, &page).0, infected("Eicar-Test-Signature"), "{range}");
    }
    for later in ["bytes 1-", "bytes 10-", "bytes 01-", "bytes -", "bytesx 0-", "items 0-"] {
        assert!(!super::engine::range_starts_at_zero(format!("{later}99/100").as_bytes()), "{later}");
    }
}

// Item 7c: a decoding fault in the middle of a stream still lets every scanner conclude on
// what was decoded, under `pass` as under `block`.

#[test]
fn a_fault_mid_stream_still_runs_the_end_of_object_scanners() {
    use super::decode::tests::{gzip, text};
    for (file, threat, object) in [
        ("eicar.yar", "YARA.EICAR_Test_File", [EICAR, text(3000).as_slice()].concat()),
        ("eicar.hdb", "Eicar-Test-Signature-MD5", EICAR.to_vec()),
    ] {
        let folder = Folder::new(&format!("midfault-{file}"), &[(file, &bundled(file))]);
        // Stray bytes after the gzip member: the decoder fails while the body still streams.
        let body = [gzip(&object).as_slice(), b"stray bytes that are no gzip member", &[b'.'; 200]].concat();
        let head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n";
        for policy in [pass(), block()] {
            let mut inspector = EngineInspector::new(ctx_with(&folder.0, Limits::default(), policy.clone()));
            let txn = respmod(head);
            // The fault is found while feeding, not at the end.
            assert!(matches!(inspector.begin(&txn), Progress::More));
            assert!(matches!(inspector.feed(&body), Progress::Done(_)), "{file}");
            assert_eq!(every_way(&mut inspector, &txn, &body), (infected(threat), None), "{file} {policy:?}");
        }
        // Without the signature in what was decoded, the fault decides.
        let clean = [gzip(&text(3000)).as_slice(), b"stray"].concat();
        let mut inspector = EngineInspector::new(ctx_with(&folder.0, Limits::default(), pass()));
        let want = (Verdict::Clean, Some(super::policy::THREAT_BROKEN_ENCODING));
        assert_eq!(every_way(&mut inspector, &respmod(head), &clean), want, "{file}");
    }
}

// Item 7c, every coding: the decoders hand out what they decoded before the fault in the same
// call, so a body sent in one piece is judged like one sent byte by byte.

#[test]
fn every_coding_hands_its_output_before_a_fault_to_the_scanners() {
    use super::decode::tests::{brotli, raw_deflate, text, zlib, zstd};
    let folder =
        Folder::new("faultcodings", &[("eicar.hdb", &bundled("eicar.hdb")), ("eicar.yar", &bundled("eicar.yar"))]);
    let object = [EICAR, text(2000).as_slice()].concat();
    for (coding, encoded) in [
        ("deflate", zlib(&object)),
        ("deflate", raw_deflate(&object)),
        ("br", brotli(&object)),
        ("zstd", zstd(&object)),
        ("deflate", zlib(EICAR)),
    ] {
        let body = [encoded.as_slice(), b"stray bytes after the stream"].concat();
        let head = format!("HTTP/1.1 200 OK\r\nContent-Encoding: {coding}\r\n\r\n");
        let want = if encoded.len() < 100 { "Eicar-Test-Signature-MD5" } else { "YARA.EICAR_Test_File" };
        let mut inspector = EngineInspector::new(ctx_with(&folder.0, Limits::default(), pass()));
        assert_eq!(every_way(&mut inspector, &respmod(head.as_bytes()), &body), (infected(want), None), "{coding}");
    }
}

// Item 2 for logical signatures: past the bound on partial matches the over-limit policy
// decides with a name, under `block` and `pass`, counted as a limit; nothing is dropped quietly.

#[test]
fn ldb_partial_matches_past_their_bound_go_through_the_over_limit_policy() {
    let mut lines = String::new();
    let mut body = Vec::new();
    for i in 0..64u32 {
        lines.push_str(&format!("Many{i};Target:0;0;f1{:02x}f2*0102030405\n", i));
        body.extend_from_slice(&[0xf1, i as u8, 0xf2]);
    }
    let folder = Folder::new("ldbpartials", &[("many.ldb", lines.as_bytes())]);
    let limits = Limits { body_partials_max: 16, ..Limits::default() };
    let txn = respmod(b"HTTP/1.1 200 OK\r\n\r\n");
    let mut inspector = EngineInspector::new(ctx_with(&folder.0, limits.clone(), block()));
    let want = (infected(super::policy::THREAT_PARTIALS), Some(super::policy::THREAT_PARTIALS));
    assert_eq!(every_way(&mut inspector, &txn, &body), want);
    let mut inspector = EngineInspector::new(ctx_with(&folder.0, limits.clone(), pass()));
    assert_eq!(every_way(&mut inspector, &txn, &body), (Verdict::Clean, Some(super::policy::THREAT_PARTIALS)));
    // Within the bound nothing is reported.
    let mut inspector = EngineInspector::new(ctx_with(&folder.0, Limits::default(), block()));
    assert_eq!(every_way(&mut inspector, &txn, &body), (Verdict::Clean, None));
}

// Item 7d: the literal matcher's staged bytes are matched before the preview is judged, so an
// early 204 never leaves the end of a preview unseen.

/// Feeds `preview` in the pieces `cuts` gives and asks for the preview verdict.
fn preview_verdict(inspector: &mut EngineInspector, txn: &Txn<'_>, preview: &[u8], cuts: &[usize]) -> Option<Verdict> {
    if let Progress::Done(v) = inspector.begin(txn) {
        return Some(v);
    }
    let mut prev = 0;
    for &cut in cuts.iter().chain(std::iter::once(&preview.len())) {
        if let Progress::Done(v) = inspector.feed(&preview[prev..cut]) {
            return Some(v);
        }
        prev = cut;
    }
    let v = inspector.preview_verdict();
    // The object goes on after a preview answered 100 Continue, and ends here.
    let end = inspector.finish();
    if v.is_some() {
        assert_eq!(v.as_ref(), Some(&end), "the preview verdict stands");
    }
    v
}

#[test]
fn the_whole_preview_reaches_the_body_matcher_before_an_early_204() {
    let folder = Folder::new("preview-ndb", &[("eicar.ndb", &bundled("eicar.ndb"))]);
    let early = Early204 { content_types: vec!["image/".into()], magic: vec![], size_max_bytes: None };
    let policy = ScanPolicy { over_limit: OverLimit::Block, early_204: early, encrypted: EncryptedPolicy::Block };
    let mut inspector = EngineInspector::new(ctx_with(&folder.0, Limits::default(), policy));
    let head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 100000\r\n\r\n";
    let txn = respmod(head);
    for lead in [0usize, 10, 100, 900] {
        let preview = [vec![b'.'; lead].as_slice(), EICAR, b"..."].concat();
        for_each_split(preview.len(), |cuts| {
            assert_eq!(
                preview_verdict(&mut inspector, &txn, &preview, cuts),
                Some(infected("Eicar-Test-Signature")),
                "lead {lead} cuts {:?}…",
                &cuts[..cuts.len().min(4)]
            );
        });
    }
    // A clean preview still gets its early 204.
    let clean = vec![b'.'; 1024];
    assert_eq!(preview_verdict(&mut inspector, &txn, &clean, &[7]), Some(Verdict::Clean));
}

// Item 4: an exhausted YARA scanner pool never disables YARA silently.

const MARKER_RULE: &[u8] = b"rule Marker { strings: $m = \"yara-only-marker\" condition: $m }";

fn marked(len: usize, at: usize) -> Vec<u8> {
    let mut body = vec![b'.'; len];
    body[at..at + 16].copy_from_slice(b"yara-only-marker");
    body
}

#[test]
fn an_exhausted_scanner_pool_never_disables_yara_silently() {
    let folder = Folder::new("pool", &[("m.yar", MARKER_RULE)]);
    let limits = Limits { yara_block_scanners_max: 1, yara_whole_bytes_max: 8 * 1024, ..Limits::default() };
    for policy in [block(), pass()] {
        // The in-memory copy spools past `yara_whole_bytes_max` (issue 12): the streaming
        // rules then run on the spooled object at the end, and nothing is skipped.
        let spooling = ctx_with(&folder.0, limits, policy.clone());
        let mut holder = EngineInspector::new(spooling.clone());
        let mut inspector = EngineInspector::new(spooling.clone());
        let txn = respmod(b"HTTP/1.1 200 OK\r\n\r\n");
        assert!(matches!(holder.begin(&txn), Progress::More));
        assert!(matches!(holder.feed(b"in flight"), Progress::More));
        assert_eq!(every_way(&mut inspector, &txn, &marked(9000, 100)), (infected("YARA.Marker"), None));
        let _ = holder.finish();
        // Without a spool directory the copy ends at `yara_whole_bytes_max`.
        let gen = spooling.current().gen.clone();
        let ctx =
            ScanCtx::with_budget(gen, limits.scan(), policy.clone(), crate::budget::ShardBudget::new(usize::MAX), None);
        let mut holder = EngineInspector::new(ctx.clone());
        let mut inspector = EngineInspector::new(ctx.clone());
        // `holder` keeps the only block scanner for the rest of the test.
        assert!(matches!(holder.begin(&txn), Progress::More));
        assert!(matches!(holder.feed(b"in flight"), Progress::More));
        // Within the whole-object copy the streaming rules run at the end.
        assert_eq!(every_way(&mut inspector, &txn, &marked(6000, 5000)), (infected("YARA.Marker"), None));
        // Past it the limit decides, and is reported under `pass` too.
        let (v, limit) = every_way(&mut inspector, &txn, &marked(9000, 100));
        assert_eq!(limit, Some(super::policy::THREAT_YARA_SCANNERS), "{policy:?}");
        let want = if policy.over_limit == OverLimit::Block {
            infected(super::policy::THREAT_YARA_SCANNERS)
        } else {
            Verdict::Clean
        };
        assert_eq!(v, want, "{policy:?}");
        // Once the scanner is back, an object that started without one borrows it and
        // catches up from its copy, so a marker before that point is still found.
        let body = marked(20_000, 100);
        for cut in [200, 4000, 8000] {
            assert!(matches!(holder.begin(&txn), Progress::More));
            assert!(matches!(inspector.begin(&txn), Progress::More));
            assert!(matches!(inspector.feed(&body[..cut]), Progress::More));
            let _ = holder.finish();
            let mut rest = Progress::More;
            for piece in body[cut..].chunks(777) {
                rest = inspector.feed(piece);
            }
            assert!(matches!(rest, Progress::More));
            assert_eq!(inspector.finish(), infected("YARA.Marker"), "cut {cut} {policy:?}");
            assert_eq!(inspector.limit_hit(), None);
        }
    }
}

// Item 3: a word in metadata does not make a rule whole-object (and so skipped on large
// objects); item 7a: strings longer than any fixed overlap are found across chunk edges;
// item 7b: fullword ignores chunk edges, and only monotone rules answer at preview time.

fn yara_ctx(tag: &str, rules: &str, limits: Limits, policy: ScanPolicy) -> (Folder, Rc<ScanCtx>) {
    let folder = Folder::new(tag, &[("r.yar", rules.as_bytes())]);
    let ctx = ctx_with(&folder.0, limits, policy);
    (folder, ctx)
}

#[test]
fn a_metadata_word_does_not_make_a_rule_whole_object() {
    let rules = "rule Meta { meta: description = \"checks filesize, uint32 and pe.imports\" strings: $m = \"yara-only-marker\" condition: $m }";
    let limits = Limits { yara_whole_bytes_max: 4096, ..Limits::default() };
    let (_f, ctx) = yara_ctx("meta", rules, limits, pass());
    assert_eq!(ctx.current().gen.yara.whole_rules, 0);
    let mut inspector = EngineInspector::new(ctx);
    let txn = respmod(b"HTTP/1.1 200 OK\r\n\r\n");
    // Larger than the whole-object copy: only a streamed rule can see it.
    assert_eq!(every_way(&mut inspector, &txn, &marked(10_000, 9000)), (infected("YARA.Meta"), None));
}

#[test]
fn long_yara_strings_across_chunk_edges_are_found() {
    let bytes: Vec<u8> = (0..3000u32).map(|i| (i * 13 % 251) as u8).collect();
    let hex: String = bytes.iter().map(|b| format!("{b:02x} ")).collect();
    let rules = format!(
        "rule Long {{ strings: $l = {{ {hex} }} condition: $l }}\n\
         rule Jump {{ strings: $j = {{ 4d 5a 90 00 [2000-2600] 50 45 00 00 }} condition: $j }}\n"
    );
    let (_f, ctx) = yara_ctx("long", &rules, Limits::default(), block());
    let mut inspector = EngineInspector::new(ctx);
    let txn = respmod(b"HTTP/1.1 200 OK\r\n\r\n");
    let mut body = vec![b'.'; 12_000];
    body[4000..7000].copy_from_slice(&bytes);
    assert_eq!(every_way(&mut inspector, &txn, &body).0, infected("YARA.Long"));
    let mut body = vec![b'.'; 12_000];
    body[3000..3004].copy_from_slice(&[0x4d, 0x5a, 0x90, 0]);
    body[5504..5508].copy_from_slice(&[0x50, 0x45, 0, 0]);
    assert_eq!(every_way(&mut inspector, &txn, &body).0, infected("YARA.Jump"));
    // Gzip-encoded, the decoded pieces end at multiples of 32 KiB: put the string across one.
    use super::decode::tests::gzip;
    let mut page = vec![b'-'; 70_000];
    page[32 * 1024 - 1500..32 * 1024 + 1500].copy_from_slice(&bytes);
    let head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n";
    assert_eq!(every_way(&mut inspector, &respmod(head), &gzip(&page)).0, infected("YARA.Long"));
}

#[test]
fn fullword_is_not_fooled_by_a_chunk_edge() {
    let rules = "rule Word { strings: $w = \"evil\" fullword condition: $w }";
    let (_f, ctx) = yara_ctx("fullword", rules, Limits::default(), block());
    let mut inspector = EngineInspector::new(ctx);
    let txn = respmod(b"HTTP/1.1 200 OK\r\n\r\n");
    let mut body = b"lorem ipsum dolor ".repeat(1000);
    let at = 5000 - 5000 % 18 + 6; // just after a space: "ipsum" begins here
    body[at - 1] = b'x';
    body[at..at + 5].copy_from_slice(b"evil ");
    for cut in [at, at + 4, at - 1, at + 1] {
        assert_eq!(verdict_of_txn(&mut inspector, &txn, &body, &[cut]), Verdict::Clean, "cut {cut}");
    }
    assert_eq!(every_way(&mut inspector, &txn, &body).0, Verdict::Clean);
    body[at - 1] = b' ';
    assert_eq!(every_way(&mut inspector, &txn, &body).0, infected("YARA.Word"));
}

#[test]
fn only_monotone_rules_answer_at_preview_time() {
    let rules = r#"
        rule Once { strings: $o = "once" condition: #o == 1 }
        rule NotB { strings: $a = "alpha" $b = "bravo" condition: $a and not $b }
        rule Any { strings: $x = "x-marker" condition: any of them }
    "#;
    let (_f, ctx) = yara_ctx("preview", rules, Limits::default(), block());
    assert_eq!(ctx.current().gen.yara.preview_rules, 1);
    let mut inspector = EngineInspector::new(ctx);
    let txn = respmod(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n");
    // The preview alone satisfies Once and NotB; the rest of the object does not.
    let preview = b"..once..alpha..".to_vec();
    let rest = b"..once..bravo..";
    for_each_split(preview.len(), |cuts| {
        assert_eq!(preview_verdict(&mut inspector, &txn, &preview, cuts), None, "cuts {cuts:?}");
    });
    let whole = [preview.as_slice(), rest].concat();
    assert_eq!(every_way(&mut inspector, &txn, &whole).0, Verdict::Clean);
    // A monotone rule that holds on the preview answers at once.
    let marked = b"..x-marker..".to_vec();
    for_each_split(marked.len(), |cuts| {
        assert_eq!(preview_verdict(&mut inspector, &txn, &marked, cuts), Some(infected("YARA.Any")), "cuts {cuts:?}");
    });
}

// Issue 12: yara-x keeps at most `yara_matches_per_pattern_max` matches per pattern. A rule that
// counts matches or tests offsets can change at the cap, so reaching it there is a named limit
// through `over_limit`; a rule that only asks whether a string occurs cannot, and still names
// the threat.
#[test]
fn the_cap_on_yara_matches_is_a_named_limit_for_rules_that_count() {
    let rules = "rule Counted { strings: $a = \"ab\" condition: #a > 20 }\n\
                 rule Plain { strings: $b = \"xy\" condition: $b }\n\
                 rule Sized { strings: $c = \"cd\" condition: filesize > 10 and #c > 20 }\n\
                 rule Few { strings: $d = \"ef\" condition: #d > 3 }\n";
    let capped = Limits { yara_matches_per_pattern_max: 8, ..Limits::default() };
    let txn = respmod(b"HTTP/1.1 200 OK\r\n\r\n");
    let many = |s: &str| s.repeat(30).into_bytes();
    for policy in [block(), pass()] {
        let (_f, ctx) = yara_ctx("cap", rules, capped, policy.clone());
        assert!(ctx.current().gen.yara.saturable.contains("Counted"));
        assert!(!ctx.current().gen.yara.saturable.contains("Plain"));
        let mut inspector = EngineInspector::new(ctx);
        let limited = if policy.over_limit == OverLimit::Block {
            infected(super::policy::THREAT_YARA_MATCHES)
        } else {
            Verdict::Clean
        };
        // A streamed rule and a whole-object rule, each past the cap.
        for body in [many("ab "), many("cd ")] {
            assert_eq!(
                every_way(&mut inspector, &txn, &body),
                (limited.clone(), Some(super::policy::THREAT_YARA_MATCHES))
            );
        }
        // A rule that only needs one match is unaffected, and names the threat.
        assert_eq!(every_way(&mut inspector, &txn, &many("xy ")), (infected("YARA.Plain"), None));
        // Below the cap nothing changes.
        assert_eq!(every_way(&mut inspector, &txn, b"ef ef ef ef ef ......"), (infected("YARA.Few"), None));
    }
    // With the default cap the counting rules decide as written.
    let (_f, ctx) = yara_ctx("nocap", rules, Limits::default(), block());
    let mut inspector = EngineInspector::new(ctx);
    assert_eq!(every_way(&mut inspector, &txn, &many("ab ")), (infected("YARA.Counted"), None));
    assert_eq!(every_way(&mut inspector, &txn, &many("cd ")), (infected("YARA.Sized"), None));
}

// Issue 12: at the preview, a counting rule whose pattern reached the cap on matches neither
// answers nor lets an early 204 through; the whole object decides.
#[test]
fn a_preview_at_the_cap_on_yara_matches_does_not_answer_early() {
    let rules = "rule Counted { strings: $a = \"ab\" condition: #a > 20 }";
    let early = Early204 { content_types: vec!["image/".into()], magic: vec![], size_max_bytes: None };
    let policy = ScanPolicy { over_limit: OverLimit::Block, early_204: early, encrypted: EncryptedPolicy::Block };
    let head = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 90\r\n\r\n";
    let txn = respmod(head);
    let preview = "ab ".repeat(30).into_bytes();
    let capped = Limits { yara_matches_per_pattern_max: 8, ..Limits::default() };
    let (_f, ctx) = yara_ctx("preview-cap", rules, capped, policy.clone());
    assert_eq!(ctx.current().gen.yara.preview_rules, 1);
    let mut inspector = EngineInspector::new(ctx);
    for_each_split(preview.len(), |cuts| {
        assert_eq!(preview_verdict(&mut inspector, &txn, &preview, cuts), None, "cuts {cuts:?}");
    });
    assert_eq!(every_way(&mut inspector, &txn, &preview).0, infected(super::policy::THREAT_YARA_MATCHES));
    // Below the cap the monotone rule answers at the preview.
    let (_f, ctx) = yara_ctx("preview-nocap", rules, Limits::default(), policy);
    let mut inspector = EngineInspector::new(ctx);
    assert_eq!(preview_verdict(&mut inspector, &txn, &preview, &[]), Some(infected("YARA.Counted")));
}

// A rule that refers to a counting rule inherits its unknown outcome at the cap: `not A` must
// not fire because A lost matches.
#[test]
fn a_rule_that_refers_to_a_counting_rule_at_the_cap_is_not_reported() {
    let rules = "private rule A { strings: $a = \"ab\" condition: #a > 20 }\n\
                 rule B { condition: not A }\n";
    let txn = respmod(b"HTTP/1.1 200 OK\r\n\r\n");
    let body = "ab ".repeat(30).into_bytes();
    let capped = Limits { yara_matches_per_pattern_max: 8, ..Limits::default() };
    let (_f, ctx) = yara_ctx("cap-ref", rules, capped, block());
    assert!(ctx.current().gen.yara.saturable.contains("B"));
    let mut inspector = EngineInspector::new(ctx);
    let limited = infected(super::policy::THREAT_YARA_MATCHES);
    assert_eq!(every_way(&mut inspector, &txn, &body), (limited, Some(super::policy::THREAT_YARA_MATCHES)));
    // Uncapped, A holds and B does not.
    let (_f, ctx) = yara_ctx("nocap-ref", rules, Limits::default(), block());
    let mut inspector = EngineInspector::new(ctx);
    assert_eq!(every_way(&mut inspector, &txn, &body), (Verdict::Clean, None));
}
