//! Differential target for the signature engine: streamed scanning must equal whole-buffer
//! scanning, and both must agree with a brute-force reading of the signatures.
//!
//! The engine is the real [`EngineInspector`] over a small generation loaded (once per
//! process) from `.ndb`, `.ldb`, `.hdb` and `.yar` text written to a private folder: EICAR,
//! exact, masked, nibble, offset, `*`, `{n-m}` and `{n-}` signatures, a short one for the
//! automaton path, a long one, an MD5 hash signature, logical signatures with every
//! subsignature modifier (`::i`, `::w`, `::a`, `::f`), anchors, negated alternatives, gaps,
//! counts, a conjunction and `EOF-n` offsets, and YARA rules built to stress block edges (a
//! string longer than the old fixed overlap, a hex jump, a count, an offset, fullword, a
//! negation and a whole-object condition).
//!
//! A payload starting `~gz`, `~df`, `~br` or `~zs` is sent gzip-, deflate-, brotli- or
//! zstd-encoded (the deflate, brotli and zstd ones followed by stray bytes, a decoding fault in
//! the middle of the body), after the plants; one starting `~bx` or `~zx` is sent brotli- or
//! zstd-encoded with a byte in the middle of the stream flipped, so the decoder meets a corrupt
//! spot wherever the fuzzer's cuts fall. For those two only the differential check runs (the
//! readable part of a corrupt stream is not the body the oracles read). One starting `~zp` is
//! sent as the only (stored) member of a zip, and one starting `~tz` as the only member of a
//! gzip-compressed tar: the container layer must extract it at every split, and a clean
//! verdict must mean that the member really is clean (a threat may also be found in the
//! container's own bytes, which the oracles do not model, so a block is not checked further).
//!
//! Flags: bits 0-3 plant one of the sample matches into the body (0: none) at the position
//! given by the payload's first byte, so that the fuzzer starts next to real matches and
//! mutates around them; bit 4 sends a response head with a (possibly wrong) Content-Length;
//! bits 5-7 plant one of the logical-signature samples (0: none) at the position given by the
//! payload's next byte.
//!
//! Checks: the verdict is identical whole, at the fuzzer's split points and byte by byte; a
//! reported threat really is present (brute force over the parsed `.ndb` signatures, a regular
//! expression or direct check written beside each `.ldb` line, the MD5, or yara-x scanning the
//! whole body with the rule file compiled as it is); and every present signature or matching
//! rule is found, bounded gaps included.
#![no_main]

use icapd::inspect::{Inspector, Progress, Txn, Verdict};
use icapd::limits::Limits;
use icapd::proto::Method;
use icapd::scan::engine::{EngineInspector, ScanCtx};
use icapd::scan::policy::{Early204, OverLimit};
use icapd::scan::ScanPolicy;
use icapd::signatures::ndb::{parse_ndb_line, NdbOffset, NdbSignature};
use icapd::signatures::{load, LoadOptions};
use icapd_fuzz::{every_byte, piece_ends, Input};
use libfuzzer_sys::fuzz_target;
use md5::{Digest, Md5};
use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::sync::Arc;

const EICAR: &[u8] = br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
const HASHED: &[u8] = b"fuzz-hash-object\n";

/// `.ndb` lines; every one must load.
const NDB: &[&str] = &[
    "Eicar-Test-Signature:0:*:58354f2150254041505b345c505a58353428505e2937434329377d2445494341522d5354414e444152442d414e544956495255532d544553542d46494c452124482b482a",
    "Fuzz.Exact:0:*:66757a7a2d6578616374", // fuzz-exact
    "Fuzz.Mask:0:*:4d41??4b3?45",          // MA?K[0x30-0x3f]E
    "Fuzz.Offset:0:4:6f66667365742121",    // offset!! at byte 4
    "Fuzz.Star:0:*:73746172742d*2d656e64", // start-*-end
    "Fuzz.Range:0:*:72616e67{2-5}6574",    // rang{2-5}et
    "Fuzz.AtLeast:0:*:6c6f6e67{3-}7761797321", // long{3-}ways!
    "Fuzz.Short:0:*:7e7e5e",               // ~~^ (short-anchor automaton)
    "Fuzz.Long:0:*:7468652d717569636b2d62726f776e2d666f782d6a756d70732d6f7665722d7468652d6c617a792d646f67", // the-quick-brown-fox-jumps-over-the-lazy-dog
];

/// `.ldb` lines, each with its oracle: a regular expression (bytes, no Unicode) that matches
/// where the signature does, or a direct check on the whole body.
const LDB: &[(&str, Oracle)] = &[
    ("Ldb.Gap;Target:0;0;6c6467{2-5}6761703a", Oracle::Re(r"(?s)ldg.{2,5}gap:")), // ldg{2-5}gap:
    ("Ldb.Star;Target:0;0;6c7374*656e6421", Oracle::Re(r"(?s)lst.*end!")),        // lst*end!
    ("Ldb.Nocase;Target:0;0;6e6f636173652d6d65::i", Oracle::Re(r"(?i)nocase-me")),
    ("Ldb.Wide;Target:0;0;7769646521::w", Oracle::Re(r"w\x00i\x00d\x00e\x00!\x00")),
    ("Ldb.AsciiWide;Target:0;0;6177696465::aw", Oracle::Re(r"awide|a\x00w\x00i\x00d\x00e\x00")),
    ("Ldb.Full;Target:0;0;66756c6c776f7264::f", Oracle::Re(r"\bfullword\b")),
    ("Ldb.FullCi;Target:0;0;66756c6c6369::if", Oracle::Re(r"(?i)\bfullci\b")),
    ("Ldb.FullGap;Target:0;0;667731{1-4}667732::f", Oracle::Re(r"(?s)\bfw1.{1,4}fw2\b")),
    ("Ldb.Anchor;Target:0;0;(B)616e63686f72(B)", Oracle::Re(r"\banchor\b")),
    ("Ldb.Line;Target:0;0;(L)6c696e652d7374617274", Oracle::Re(r"(?:\A|[\r\n])line-start")),
    ("Ldb.Not;Target:0;0;6e6f74!(41|42)6f6b", Oracle::Re(r"(?s)not[^AB]ok")),
    ("Ldb.Count;Target:0;0>2;636e7421", Oracle::Count(b"cnt!", 3)),
    ("Ldb.And;Target:0;0&1;616e642d31;616e642d32", Oracle::Re(r"(?s)and-1.*and-2|and-2.*and-1")),
    ("Ldb.Eof;Target:0;0;EOF-8:656f662d68657265", Oracle::EndsWith(b"eof-here")),
    // eg{ {2-3} }, starting 20 to 16 bytes before the end: a bounded gap with a deferred offset.
    ("Ldb.EofGap;Target:0;0;EOF-20,4:65677b{2-3}7d", Oracle::Fn(eof_gap)),
];

/// One sample match per logical-signature plant index 1..=7.
const LDB_PLANTS: [&[u8]; 7] = [
    b"ldg..ldg..gap:",
    b" fullword ",
    b"fw1..fw2",
    b"not.ok",
    b"cnt!cnt!cnt!",
    b"eg{..}..............",
    b"ldgldgldgldgldgldgldgldgldgldg-gap:",
];

#[derive(Clone, Copy)]
enum Oracle {
    Re(&'static str),
    /// At least this many non-overlapping occurrences (the string cannot overlap itself).
    Count(&'static [u8], usize),
    EndsWith(&'static [u8]),
    Fn(fn(&[u8]) -> bool),
}

fn eof_gap(body: &[u8]) -> bool {
    // `EOF-20` is no position in an object shorter than 20 bytes.
    let Some(base) = body.len().checked_sub(20) else { return false };
    (base..=base + 4).any(|i| body[i..].starts_with(b"eg{") && (2..=3).any(|g| body.get(i + 3 + g) == Some(&b'}')))
}

/// YARA rules; the whole-object oracle is yara-x over this text compiled as it is.
const YAR: &str = r#"
rule Yara_Long { strings: $l = "LONG-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789-abcdefghijklmnopqrstuvwxyz-END" condition: $l }
rule Yara_Jump { strings: $j = { 4a 55 4d 50 [0-300] 4f 56 45 52 } condition: $j }
rule Yara_Count { strings: $c = "twice" condition: #c == 2 }
rule Yara_Offset { strings: $o = "at-eight" condition: $o at 8 }
rule Yara_Word { strings: $w = "word" fullword condition: $w }
rule Yara_Not { strings: $a = "yes-here" $b = "but-not" condition: $a and not $b }
rule Yara_Size { strings: $s = "sized" condition: $s and filesize < 200 }
"#;

/// One sample match per plant index 1..=15.
const PLANTS: [&[u8]; 15] = [
    EICAR,
    b"fuzz-exact",
    b"MA\x00K5E",
    b"start--end",
    b"rang12345et",
    b"longXYZways!",
    HASHED,
    b"LONG-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789-abcdefghijklmnopqrstuvwxyz-END",
    b"JUMP over there OVER",
    b"twice twice",
    b"at-eight",
    b" word ",
    b"yes-here",
    b"sized",
    b"rang12rang34et",
];

struct Engine {
    inspector: RefCell<EngineInspector>,
    sigs: Vec<NdbSignature>,
    /// Each `.ldb` line's name and oracle, regular expressions compiled.
    ldb: Vec<(&'static str, Oracle, Option<regex::bytes::Regex>)>,
    hash: [u8; 16],
    yara: yara_x::Rules,
}

fn engine() -> Engine {
    let dir = std::env::temp_dir().join(format!("icapd-fuzz-sigs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    std::fs::write(dir.join("fuzz.ndb"), NDB.join("\n") + "\n").expect("write ndb");
    let hash: [u8; 16] = Md5::digest(HASHED).into();
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    std::fs::write(dir.join("fuzz.hdb"), format!("{hex}:{}:Fuzz.Hash\n", HASHED.len())).expect("write hdb");
    std::fs::write(dir.join("fuzz.yar"), YAR).expect("write yar");
    let ldb_text: String = LDB.iter().map(|(line, _)| format!("{line}\n")).collect();
    std::fs::write(dir.join("fuzz.ldb"), ldb_text).expect("write ldb");
    let gen = load(&dir, LoadOptions::default()).expect("the fuzz signatures load");
    assert!(gen.problems.is_empty(), "{:?}", gen.problems);
    let _ = std::fs::remove_dir_all(&dir);
    let policy = ScanPolicy {
        over_limit: OverLimit::Block,
        early_204: Early204::default(),
        encrypted: icapd::scan::unpack::EncryptedPolicy::Block,
    };
    let ctx = ScanCtx::new(Arc::new(gen), Limits::default().scan(), policy);
    let sigs = NDB.iter().map(|l| parse_ndb_line(l).expect("valid line")).collect();
    let yara = yara_x::compile(YAR).expect("the fuzz rules compile");
    let ldb = LDB
        .iter()
        .map(|&(line, oracle)| {
            let name = line.split(';').next().expect("a name");
            let re = match oracle {
                Oracle::Re(re) => {
                    Some(regex::bytes::RegexBuilder::new(re).unicode(false).build().expect("the oracle compiles"))
                }
                _ => None,
            };
            (name, oracle, re)
        })
        .collect();
    Engine { inspector: RefCell::new(EngineInspector::new(Rc::clone(&ctx))), sigs, ldb, hash, yara }
}

thread_local! {
    static ENGINE: Engine = engine();
}

fn verdict(inspector: &mut EngineInspector, res_hdr: Option<&[u8]>, body: &[u8], cuts: &[usize]) -> Verdict {
    let txn = Txn { method: Method::Respmod, service: "respmod", req_hdr: None, res_hdr, policy: Default::default() };
    if let Progress::Done(v) = inspector.begin(&txn) {
        return v;
    }
    let mut prev = 0;
    for end in piece_ends(cuts, body.len()) {
        if let Progress::Done(v) = inspector.feed(&body[prev..end]) {
            return v;
        }
        prev = end;
    }
    inspector.finish()
}

/// Brute force: can `sig` be placed in `body`? Tracks every position where the next segment
/// may start.
fn present(sig: &NdbSignature, body: &[u8]) -> bool {
    let n = body.len();
    let mut starts = vec![false; n + 1];
    match sig.offset {
        NdbOffset::Any => starts.iter_mut().for_each(|s| *s = true),
        NdbOffset::Exact(at) if (at as usize) <= n => starts[at as usize] = true,
        NdbOffset::Exact(_) => return false,
    }
    for (k, seg) in sig.segments.iter().enumerate() {
        let ends: Vec<usize> = (0..=n)
            .filter(|&p| starts[p] && p + seg.len() <= n && seg.matches(&body[p..p + seg.len()]))
            .map(|p| p + seg.len())
            .collect();
        if k + 1 == sig.segments.len() {
            return !ends.is_empty();
        }
        starts = vec![false; n + 1];
        let gap = sig.gaps[k];
        for e in ends {
            let lo = e + gap.min() as usize;
            let hi = gap.max().map_or(n, |m| (e + m as usize).min(n));
            for s in starts.iter_mut().take(hi + 1).skip(lo) {
                *s = true;
            }
        }
    }
    unreachable!("a signature has at least one segment")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("writing to memory");
    e.finish().expect("writing to memory")
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("writing to memory");
    e.finish().expect("writing to memory")
}

#[derive(Clone, Copy)]
enum Container {
    Zip,
    TarGz,
}

/// A zip with `data` as its only member, stored (the layout of APPNOTE 4.3: local header,
/// data, central directory, end record).
fn stored_zip(name: &[u8], data: &[u8]) -> Vec<u8> {
    let (crc, len, name_len) = (crc32fast::hash(data), data.len() as u32, name.len() as u16);
    let mut z = Vec::new();
    z.extend_from_slice(b"PK\x03\x04");
    for v in [20u16, 0, 0, 0, 0x21] {
        z.extend_from_slice(&v.to_le_bytes());
    }
    for v in [crc, len, len] {
        z.extend_from_slice(&v.to_le_bytes());
    }
    z.extend_from_slice(&name_len.to_le_bytes());
    z.extend_from_slice(&0u16.to_le_bytes());
    z.extend_from_slice(name);
    z.extend_from_slice(data);
    let central_at = z.len() as u32;
    z.extend_from_slice(b"PK\x01\x02");
    for v in [20u16, 20, 0, 0, 0, 0x21] {
        z.extend_from_slice(&v.to_le_bytes());
    }
    for v in [crc, len, len] {
        z.extend_from_slice(&v.to_le_bytes());
    }
    for v in [name_len, 0, 0, 0, 0] {
        z.extend_from_slice(&v.to_le_bytes());
    }
    z.extend_from_slice(&0u32.to_le_bytes()); // external attributes
    z.extend_from_slice(&0u32.to_le_bytes()); // the local header's offset
    z.extend_from_slice(name);
    let central_len = z.len() as u32 - central_at;
    z.extend_from_slice(b"PK\x05\x06");
    for v in [0u16, 0, 1, 1] {
        z.extend_from_slice(&v.to_le_bytes());
    }
    for v in [central_len, central_at] {
        z.extend_from_slice(&v.to_le_bytes());
    }
    z.extend_from_slice(&0u16.to_le_bytes());
    z
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut e = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
    e.write_all(data).expect("writing to memory");
    e.into_inner()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; zstd_safe::compress_bound(data.len())];
    let n = zstd_safe::compress(&mut out[..], data, 3).expect("zstd compresses into its bound");
    out.truncate(n);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else { return };
    let mut body = input.payload.to_vec();
    let plant = (input.flags & 15) as usize;
    if plant > 0 && !body.is_empty() {
        let at = (body.remove(0) as usize).min(body.len());
        body.splice(at..at, PLANTS[plant - 1].iter().copied());
    }
    let ldb_plant = (input.flags >> 5) as usize;
    if ldb_plant > 0 && !body.is_empty() {
        let at = (body.remove(0) as usize).min(body.len());
        body.splice(at..at, LDB_PLANTS[ldb_plant - 1].iter().copied());
    }
    // A body starting `~gz`, `~df`, `~br` or `~zs` is sent encoded, all but gzip with stray
    // bytes after the stream (a fault the decoder meets in the middle of the body); the oracles
    // judge the decoded bytes, which every scanner must have seen. `~bx` and `~zx` flip a byte
    // inside the stream instead.
    let (coding, corrupt) = match body.get(..3) {
        Some(b"~gz") => (Some("gzip"), false),
        Some(b"~df") => (Some("deflate"), false),
        Some(b"~br") => (Some("br"), false),
        Some(b"~zs") => (Some("zstd"), false),
        Some(b"~bx") => (Some("br"), true),
        Some(b"~zx") => (Some("zstd"), true),
        _ => (None, false),
    };
    let container = match body.get(..3) {
        Some(b"~zp") => Some(Container::Zip),
        Some(b"~tz") => Some(Container::TarGz),
        _ => None,
    };
    let wire = match coding {
        Some(c) => {
            body.drain(..3);
            let mut stream = match c {
                "gzip" => gzip(&body),
                "deflate" => zlib(&body),
                "br" => brotli(&body),
                _ => zstd(&body),
            };
            if corrupt {
                let at = stream.len() / 2;
                stream[at] ^= 0x5a;
            } else if c != "gzip" {
                stream.extend_from_slice(b"stray");
            }
            stream
        }
        None => match container {
            Some(kind) => {
                body.drain(..3);
                match kind {
                    Container::Zip => stored_zip(b"member.bin", &body),
                    Container::TarGz => gzip(&icapd_fuzz::ustar(b"member.bin", &body)),
                }
            }
            None => body.clone(),
        },
    };
    let res_hdr = match coding {
        Some(c) => Some(format!("HTTP/1.1 200 OK\r\nContent-Encoding: {c}\r\n\r\n").into_bytes()),
        None => (input.flags & 16 != 0)
            .then(|| format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", input.gaps.len()).into_bytes()),
    };
    let res_hdr = res_hdr.as_deref();
    let cuts = icapd_fuzz::cuts_of(input.gaps, wire.len());
    ENGINE.with(|e| {
        let mut inspector = e.inspector.borrow_mut();
        let whole = verdict(&mut inspector, res_hdr, &wire, &[]);
        assert_eq!(verdict(&mut inspector, res_hdr, &wire, &cuts), whole, "split at {cuts:?}");
        assert_eq!(verdict(&mut inspector, res_hdr, &wire, &every_byte(wire.len())), whole, "byte by byte");
        if corrupt {
            return;
        }

        // A find inside a container member, or a container that could not be read, is not in
        // the raw bytes; the unpack target checks those.
        let in_member = inspector.found_in().is_some();
        let hashed = body.len() == HASHED.len() && <[u8; 16]>::from(Md5::digest(&body)) == e.hash;
        let matching: Vec<&str> = e.sigs.iter().filter(|s| present(s, &body)).map(|s| s.name.as_str()).collect();
        let logical: Vec<&str> = e
            .ldb
            .iter()
            .filter(|(_, oracle, re)| match (oracle, re) {
                (_, Some(re)) => re.is_match(&body),
                (Oracle::Count(s, n), _) => memchr::memmem::find_iter(&body, s).count() >= *n,
                (Oracle::EndsWith(s), _) => body.ends_with(s),
                (Oracle::Fn(f), _) => f(&body),
                (Oracle::Re(_), None) => unreachable!("compiled in engine()"),
            })
            .map(|(name, _, _)| *name)
            .collect();
        let mut scanner = yara_x::Scanner::new(&e.yara);
        let rules: Vec<String> = scanner
            .scan(&body)
            .expect("yara-x scans")
            .matching_rules()
            .map(|r| format!("YARA.{}", r.identifier()))
            .collect();
        match &whole {
            Verdict::Infected { .. } if container.is_some() => {}
            Verdict::Infected { threat } if in_member || threat.starts_with("Heuristics.") => {}
            Verdict::Infected { threat } if &**threat == "Fuzz.Hash" => {
                assert!(hashed, "hash reported for another object");
                assert!(matching.is_empty(), "body signatures {matching:?} are checked before hashes");
            }
            Verdict::Infected { threat } if threat.starts_with("YARA.") => {
                assert!(rules.iter().any(|r| r == &**threat), "{threat} reported but yara-x finds {rules:?}");
                assert!(matching.is_empty() && !hashed, "body and hash signatures are checked before YARA");
                assert!(logical.is_empty(), "{logical:?} present: logical signatures are checked before YARA");
            }
            Verdict::Infected { threat } if threat.starts_with("Ldb.") => {
                assert!(logical.contains(&&**threat), "{threat} reported but only {logical:?} present");
                assert!(matching.is_empty() && !hashed, "body and hash signatures are checked first");
            }
            Verdict::Infected { threat } => {
                assert!(matching.contains(&&**threat), "{threat} reported but only {matching:?} present")
            }
            Verdict::Clean => {
                assert!(!hashed, "the hashed object passed");
                assert!(matching.is_empty(), "{matching:?} present but the body passed");
                assert!(rules.is_empty(), "yara-x finds {rules:?} but the body passed");
                assert!(logical.is_empty(), "{logical:?} present but the body passed");
            }
        }
    });
});
