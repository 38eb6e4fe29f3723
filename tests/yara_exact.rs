//! YARA streamed exactly: the verdicts icapd's split rule sets give on an object fed in
//! random chunks (streaming rules through the block feeder, whole-object rules on the whole
//! object) must be exactly the rules yara-x matches when it compiles the files as they are and
//! scans the object in one piece.
//!
//! Rules: synthetic ones built to stress block edges (long strings, hex jumps, counts, offsets,
//! fullword, wide, xor, base64, bounded regular expressions, references, whole-object
//! conditions) and, where the checkout has it (`../shared/data/yara-signature-base/yara`
//! next to the repository, as in CI), the signature-base rules. Objects: ELF binaries from
//! /usr/bin and text files from /usr/share/doc (a few MB), plus synthetic objects with the
//! synthetic rules' strings planted across likely edges. Chunkings come from a seeded PRNG.

use icapd::scan::yara_stream::YaraFeeder;
use icapd::signatures::yara::{compile, YaraSet, GLOBALS};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const LONG: usize = 2500;

fn long_text() -> Vec<u8> {
    (0..LONG).map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789 "[(i * 7 + i / 37) % 37]).collect()
}

fn synthetic_rules() -> String {
    let long = String::from_utf8(long_text()).unwrap();
    let hex: String = (0..1800u32).map(|i| format!("{:02x} ", (i * 31 % 253) as u8)).collect();
    format!(
        r#"
rule Long {{ strings: $l = "{long}" condition: $l }}
rule LongHex {{ strings: $h = {{ {hex} }} condition: $h }}
rule Jump {{ strings: $j = {{ 7f 45 4c 46 [100-3000] 2e 74 65 78 74 }} condition: $j }}
rule JumpAlt {{ strings: $j = {{ 4d 5a ( 90 00 | 50 00 ) [2-2000] 50 45 }} condition: $j }}
rule CountTwo {{ strings: $c = "count-me" condition: #c == 2 }}
rule CountMany {{ strings: $c = "libc" condition: #c > 3 }}
rule Offset {{ strings: $o = "ELF" condition: $o at 1 }}
rule InRange {{ strings: $r = "planted-in-range" condition: $r in (5000..9000) }}
rule Word {{ strings: $w = "main" fullword condition: #w >= 1 }}
rule WordGlued {{ strings: $w = "glued-word" fullword condition: $w }}
rule WideWord {{ strings: $w = "wide-word" wide fullword condition: $w }}
rule NoCase {{ strings: $n = "gnu general public license" nocase condition: $n }}
rule Xor {{ strings: $x = "xor-planted-string" xor(1-20) condition: $x }}
rule B64 {{ strings: $b = "base64-planted-string" base64 condition: $b }}
rule Regex {{ strings: $r = /copyright [0-9]{{4}}(-[0-9]{{4}})?/ nocase condition: #r > 1 }}
rule Boundary {{ strings: $r = /\bfree\b/ condition: $r }}
rule Unbounded {{ strings: $u = /BEGIN.*END/ condition: $u }}
rule Both {{ strings: $a = "GLIBC_2." $b = "__cxa_finalize" condition: $a and $b }}
rule Negated {{ strings: $a = "GLIBC" $b = "planted-negation" condition: $a and not $b }}
rule Size {{ condition: filesize > 100000 and uint32(0) == 0x464c457f }}
rule SizeText {{ meta: note = "no filesize here, and no uint32 either" strings: $t = "the" condition: #t > 5 }}
private rule PrivateBase {{ strings: $p = "GNU" condition: $p }}
rule UsesPrivate {{ strings: $q = ".so." condition: $q and PrivateBase }}
rule UsesWhole {{ condition: Size and PrivateBase }}
"#
    )
}

/// The signature-base rule files next to the repository, when present.
fn signature_base() -> Vec<(PathBuf, String)> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let candidates = [
        manifest.join("../shared/data/yara-signature-base/yara"),
        manifest.join("../../shared/data/yara-signature-base/yara"),
    ];
    let Some(dir) = candidates.iter().find(|d| d.is_dir()) else { return Vec::new() };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yar" || e == "yara"))
        .collect();
    paths.sort();
    paths.into_iter().filter_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t))).collect()
}

/// The files yara-x compiles together (one that does not, or clashes with another, is left
/// out, one at a time), and the rules compiled from them as they are.
fn compilable(mut files: Vec<(PathBuf, String)>) -> (Vec<(PathBuf, String)>, yara_x::Rules, usize) {
    let mut dropped = 0;
    loop {
        match reference(&files) {
            Ok(rules) => return (files, rules, dropped),
            Err(e) => {
                let before = files.len();
                files.retain(|(p, _)| !e.contains(&p.display().to_string()));
                if files.len() == before {
                    files.pop();
                }
                dropped += before - files.len();
            }
        }
    }
}

/// The files compiled as they are, as a user of yara-x would.
fn reference(files: &[(PathBuf, String)]) -> Result<yara_x::Rules, String> {
    let mut compiler = yara_x::Compiler::new();
    for g in GLOBALS {
        compiler.define_global(g, "").unwrap();
    }
    for (path, text) in files {
        let src = yara_x::SourceCode::from(text.as_str()).with_origin(path.display().to_string());
        compiler.add_source(src).map_err(|e| e.to_string())?;
    }
    Ok(compiler.build())
}

fn names<'a>(rules: impl Iterator<Item = yara_x::Rule<'a, 'a>>) -> BTreeSet<String> {
    rules.map(|r| r.identifier().to_string()).collect()
}

fn whole_scan(rules: &yara_x::Rules, data: &[u8]) -> BTreeSet<String> {
    let mut scanner = yara_x::Scanner::new(rules);
    names(scanner.scan(data).unwrap().matching_rules())
}

/// icapd's answer: streaming rules through the feeder at `cuts`, whole-object rules whole.
fn streamed(set: &YaraSet, data: &[u8], cuts: &[usize]) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    if let Some(rules) = &set.stream {
        let mut scanner = yara_x::blocks::Scanner::new(rules);
        let mut feeder = YaraFeeder::new(set.overlap);
        let mut prev = 0;
        for &cut in cuts.iter().chain(std::iter::once(&data.len())) {
            feeder.feed(&mut scanner, &data[prev..cut]).unwrap();
            prev = cut;
        }
        feeder.finish(&mut scanner).unwrap();
        if feeder.scanned_any() {
            found.extend(names(scanner.finish().unwrap().matching_rules()));
        }
    }
    if let Some(rules) = &set.whole {
        found.extend(whole_scan(rules, data));
    }
    found
}

fn corpus(rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    let mut objects = Vec::new();
    let mut elf_bytes = 0;
    let mut bins: Vec<PathBuf> =
        std::fs::read_dir("/usr/bin").map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect()).unwrap_or_default();
    bins.sort();
    for path in bins {
        if elf_bytes > 2_000_000 {
            break;
        }
        let Ok(meta) = std::fs::metadata(&path) else { continue };
        if !meta.is_file() || !(20_000..700_000).contains(&meta.len()) || rng.below(4) != 0 {
            continue;
        }
        let Ok(data) = std::fs::read(&path) else { continue };
        if data.starts_with(b"\x7fELF") {
            elf_bytes += data.len();
            objects.push((path.display().to_string(), data));
        }
    }
    let mut text_bytes = 0;
    let mut stack = vec![PathBuf::from("/usr/share/doc")];
    let mut texts = Vec::new();
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_none_or(|e| e != "gz") {
                texts.push(p);
            }
        }
    }
    for path in texts {
        if text_bytes > 1_000_000 {
            break;
        }
        let Ok(data) = std::fs::read(&path) else { continue };
        if data.len() < 2000 || data.len() > 300_000 {
            continue;
        }
        text_bytes += data.len();
        objects.push((path.display().to_string(), data));
    }
    // Synthetic objects with the synthetic rules' strings planted.
    let long = long_text();
    let hex: Vec<u8> = (0..1800u32).map(|i| (i * 31 % 253) as u8).collect();
    for n in 0..6 {
        let mut data: Vec<u8> = (0..40_000).map(|i| b"lorem ipsum dolor sit amet "[i % 27]).collect();
        let mut plant = |at: usize, bytes: &[u8]| data[at..at + bytes.len()].copy_from_slice(bytes);
        plant(1000 + n * 97, &long);
        plant(6000 + n * 13, b"planted-in-range");
        plant(9000, &hex);
        plant(12_000, b"count-me");
        plant(20_000 + n * 1000, b"count-me");
        plant(14_000, b"xglued-word");
        plant(15_000, b" w\0i\0d\0e\0-\0w\0o\0r\0d\0 ");
        plant(16_000, &b"xor-planted-string".iter().map(|b| b ^ (n as u8 + 3)).collect::<Vec<_>>());
        plant(17_000, b"YmFzZTY0LXBsYW50ZWQtc3RyaW5n");
        plant(18_000, b"BEGIN something END");
        plant(25_000, b"\x4d\x5a\x90\x00");
        plant(25_004 + n * 300, b"PE");
        plant(30_000, b"\x7fELF");
        plant(30_200 + n * 400, b".text");
        objects.push((format!("synthetic-{n}"), data));
    }
    objects
}

/// Random cuts: tiny, mid-sized and large pieces, plus cuts at random points of interest.
fn chunking(rng: &mut Rng, len: usize, style: usize) -> Vec<usize> {
    let mut cuts = Vec::new();
    let mut at = 0;
    loop {
        let step = match style {
            0 => 1 + rng.below(7),
            1 => [1000, 4096, 4095, 4097, 1 + rng.below(9000)][rng.below(5)],
            _ => [32 * 1024, 65_536, 1 + rng.below(100_000)][rng.below(3)],
        };
        at += step;
        if at >= len {
            return cuts;
        }
        cuts.push(at);
        if style == 0 && cuts.len() > 20_000 {
            // Byte-sized pieces for the first part only: debug builds are slow.
            let rest = chunking(rng, len - at, 1);
            cuts.extend(rest.into_iter().map(|c| c + at));
            return cuts;
        }
    }
}

#[test]
fn streamed_yara_gives_exactly_the_whole_object_verdicts() {
    let started = Instant::now();
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    let mut files = vec![(PathBuf::from("synthetic.yar"), synthetic_rules())];
    let base = signature_base();
    let with_base = base.len();
    files.extend(base);
    // yara-x's compile of the files as they are runs beside icapd's (both take a while in a
    // debug build); a file yara-x does not take is left out and both start again.
    let (first, set) = std::thread::scope(|scope| {
        let reference = scope.spawn(|| reference(&files));
        let set = compile(&files, &mut Vec::new());
        (reference.join().unwrap(), set)
    });
    let (files, reference, dropped, set) = match first {
        Ok(rules) => (files, rules, 0, set.expect("icapd compiles the rules")),
        Err(_) => {
            let (files, rules, dropped) = compilable(files);
            let set = compile(&files, &mut Vec::new()).expect("icapd compiles the rules");
            (files, rules, dropped, set)
        }
    };
    let _ = &files;
    let referenced = started.elapsed();
    let compiled = started.elapsed();
    let _ = referenced;
    eprintln!("yara_exact: compiled in {compiled:?} ({dropped} files left out)");
    let objects = corpus(&mut rng);
    let total: usize = objects.iter().map(|o| o.1.len()).sum();
    let mut matched = BTreeSet::new();
    for (name, data) in &objects {
        let want = whole_scan(&reference, data);
        matched.extend(want.iter().cloned());
        for style in 0..3 {
            let cuts = chunking(&mut rng, data.len(), style);
            assert_eq!(streamed(&set, data, &cuts), want, "{name}, chunking style {style}");
        }
        // Preview rules are monotone: what they find on a prefix holds for the whole object.
        if let Some(preview) = &set.preview {
            for len in [1024, 4096] {
                let early = whole_scan(preview, &data[..len.min(data.len())]);
                assert!(early.is_subset(&want), "{name}: preview found {early:?}, whole {want:?}");
            }
        }
    }
    for rule in ["Long", "LongHex", "CountTwo", "InRange", "Xor", "B64", "Jump", "Offset", "Size", "UsesPrivate"] {
        assert!(matched.contains(rule), "{rule} never matched: the corpus does not exercise it");
    }
    eprintln!(
        "yara_exact: {} rules ({} streamed, overlap {} bytes, {} preview, {} whole), {} signature-base files, {} objects, {} bytes, compile {:?}, total {:?}",
        reference.iter().len(),
        set.stream_rules,
        set.overlap,
        set.preview_rules,
        set.whole_rules,
        with_base,
        objects.len(),
        total,
        compiled,
        started.elapsed()
    );
}
