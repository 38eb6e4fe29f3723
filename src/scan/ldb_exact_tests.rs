//! Exactness of the `.ldb` matcher (issue 13): bounded gaps remember every end in reach,
//! partial matches are never evicted (past a bound the over-limit policy is told), the start
//! of a subsignature with a deferred offset is every start that leads to a match, and the
//! checks on neighbouring bytes (`::f`, `(B)`, `!(..)`) give the same answer however the
//! object is cut, large pieces included. Every case runs whole, at every split point and byte
//! by byte.

use super::ldb::{LdbSet, LdbStream};
use crate::proto::testutil::{for_each_split, pieces};
use crate::signatures::clamav::ldb::{ndb_as_ldb, parse_ldb_line};

fn set(lines: &[String]) -> LdbSet {
    let sigs = lines
        .iter()
        .map(|l| if l.contains(';') { parse_ldb_line(l) } else { ndb_as_ldb(l) }.unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    LdbSet::new(sigs).unwrap()
}

fn lines(l: &[&str]) -> Vec<String> {
    l.iter().map(|s| s.to_string()).collect()
}

fn scan_with(set: &LdbSet, stream: &mut LdbStream, data: &[u8], cuts: &[usize]) -> Option<String> {
    stream.reset(set);
    for piece in pieces(data, cuts) {
        stream.feed(set, piece);
    }
    stream.finish(set).map(|s| set.name(s).to_string())
}

/// The answer whole, at every split point, byte by byte and in pieces of a few common sizes;
/// all must agree, and the stream must not have overflowed.
fn all_ways(set: &LdbSet, data: &[u8]) -> Option<String> {
    let mut stream = LdbStream::new(set, 1 << 20);
    let whole = scan_with(set, &mut stream, data, &[]);
    assert!(!stream.overflowed() && stream.limit_hit().is_none());
    for_each_split(data.len(), |cuts| assert_eq!(scan_with(set, &mut stream, data, cuts), whole, "cuts {cuts:?}"));
    for size in [7, 1000, 4096, 8191, 65536] {
        let cuts: Vec<usize> = (size..data.len()).step_by(size).collect();
        assert_eq!(scan_with(set, &mut stream, data, &cuts), whole, "pieces of {size}");
    }
    whole
}

#[test]
fn bounded_gaps_remember_every_end_in_reach() {
    // Issue 13, item 1: the true first segment followed by nine more copies too close to the
    // second one (the matcher used to keep the last eight ends).
    let s = set(&lines(&["Gap;Target:0;0;414243{1000-2000}58595a"]));
    let mut data = vec![b'.'; 1800];
    data[0..3].copy_from_slice(b"ABC");
    for i in 0..9 {
        data[1500 + i * 20..1503 + i * 20].copy_from_slice(b"ABC");
    }
    data[1700..1703].copy_from_slice(b"XYZ");
    assert_eq!(all_ways(&s, &data).as_deref(), Some("Gap"));
    let near = set(&lines(&["Gap;Target:0;0;414243{1000-1600}58595a"]));
    assert_eq!(all_ways(&near, &data), None, "the true first segment is 1697 bytes back");
    data[600..603].copy_from_slice(b"ABC");
    assert_eq!(all_ways(&near, &data).as_deref(), Some("Gap"), "in reach through a later copy");
}

#[test]
fn a_segment_repeated_byte_by_byte_is_linear_and_bounded() {
    let s = set(&lines(&["Run;Target:0;0;61616161{5000-5001}62626262"]));
    let mut data = vec![b'a'; 100_000];
    data.extend_from_slice(b"bbbb");
    // One run of ends, whatever its length: two ends in all are plenty.
    let mut stream = LdbStream::with_limits(&s, 0, 16, 2);
    assert_eq!(scan_with(&s, &mut stream, &data, &[]).as_deref(), Some("Run"));
    assert!(!stream.overflowed());
}

/// One real partial match after 4,096 first segments of other signatures (the matcher used to
/// drop new partial matches past 4,096, silently).
fn many_gapped(gap: &str) -> (LdbSet, Vec<u8>) {
    let mut l = Vec::new();
    let mut data = Vec::new();
    for i in 0..4096u32 {
        let seg = [0xf1, (i >> 8) as u8, i as u8, 0xf2];
        let hex: String = seg.iter().map(|b| format!("{b:02x}")).collect();
        l.push(format!("Other{i};Target:0;0;{hex}{gap}0102030405"));
        data.extend_from_slice(&seg);
    }
    l.push(format!("Real;Target:0;0;a1b2c3d4{gap}e5f60718"));
    data.extend_from_slice(b"\xa1\xb2\xc3\xd4....\xe5\xf6\x07\x18");
    (set(&l), data)
}

#[test]
fn other_signatures_cannot_crowd_out_a_partial_match() {
    for gap in ["*", "{4-}", "{4-20000}"] {
        let (s, data) = many_gapped(gap);
        let mut stream = LdbStream::new(&s, 0);
        assert_eq!(scan_with(&s, &mut stream, &data, &[]).as_deref(), Some("Real"), "{gap}");
        assert!(!stream.overflowed());
        for cut in (1..data.len()).step_by(997) {
            assert_eq!(scan_with(&s, &mut stream, &data, &[cut]).as_deref(), Some("Real"), "{gap} cut {cut}");
        }
        let every: Vec<usize> = (1..data.len()).collect();
        assert_eq!(scan_with(&s, &mut stream, &data, &every).as_deref(), Some("Real"), "{gap} byte by byte");
        // With room for fewer partial matches the stream says so instead of passing quietly.
        let mut small = LdbStream::with_limits(&s, 0, 100, 1 << 16);
        assert_eq!(scan_with(&s, &mut small, &data, &[]), None, "{gap}");
        assert!(small.overflowed(), "{gap}");
        assert_eq!(small.limit_hit(), Some(crate::scan::policy::THREAT_PARTIALS));
    }
    // Ends count against their own bound.
    let s = set(&lines(&["R;Target:0;0;41424344{10-100000}5758595a"]));
    let mut small = LdbStream::with_limits(&s, 0, 100, 50);
    assert_eq!(scan_with(&s, &mut small, &b"ABCD.".repeat(60), &[]), None);
    assert!(small.overflowed());
    assert_eq!(small.limit_hit(), Some(crate::scan::policy::THREAT_PARTIALS));
    // A bound met does not stop the other matches: a one-segment signature later is found.
    let s = set(&lines(&["R;Target:0;0;41424344{10-100000}5758595a", "One;Target:0;0;6f6e652d6f6e65"]));
    let mut small = LdbStream::with_limits(&s, 0, 100, 50);
    let mut data = b"ABCD.".repeat(60);
    data.extend_from_slice(b"one-one");
    assert_eq!(scan_with(&s, &mut small, &data, &[]).as_deref(), Some("One"));
    assert!(small.overflowed());
}

#[test]
fn deferred_offsets_see_every_start() {
    // `EOF-n` decides at the end which start counts: the earliest first segment is not the one.
    let s = set(&lines(&["Eof;Target:0;0;EOF-10:41414141*42424242", "EofGap;Target:0;0;EOF-13:43434343{2-3}44444444"]));
    let mut data = b"AAAA....................BBBB".to_vec();
    assert_eq!(all_ways(&s, &data), None, "10 bytes from the end is `..`");
    data.extend_from_slice(b"AAAA..BBBB");
    assert_eq!(all_ways(&s, &data).as_deref(), Some("Eof"), "the second AAAA, 10 bytes from the end");
    // A bounded gap: the later start (13 from the end) is the one, the first two are too early.
    let data = b"CCCC..CCCC..DDDDxxxxxxxxxxxxxxxxxCCCC..DDDD...".to_vec();
    assert_eq!(all_ways(&s, &data).as_deref(), Some("EofGap"));
    let mut data2 = data.clone();
    data2.push(b'.');
    assert_eq!(all_ways(&s, &data2), None);
}

#[test]
fn word_edges_at_every_cut_and_in_large_pieces() {
    let s = set(&lines(&["Full;Target:0;0;776f7264::f", "Anchored;Target:0;0;(B)6b6579(B)"]));
    // Longer than a piece and than the 8 KiB ring the matcher used to keep.
    let pad = vec![b'x'; 10_000];
    let spaces = vec![b' '; 10_000];
    // The byte after the word lies in the same large piece as bytes 8 KiB later.
    let mut a = b"a word.".to_vec();
    a.extend_from_slice(&pad);
    assert_eq!(all_ways(&s, &a).as_deref(), Some("Full"));
    // The byte before the word is a letter, however far behind it the piece ends.
    let mut b = b"xword ".to_vec();
    b.extend_from_slice(&spaces);
    assert_eq!(all_ways(&s, &b), None);
    let mut c = b"_key ".to_vec();
    c.extend_from_slice(&spaces);
    assert_eq!(all_ways(&s, &c), None, "`_` is a word byte");
    let mut d = b"(key)".to_vec();
    d.extend_from_slice(&pad);
    assert_eq!(all_ways(&s, &d).as_deref(), Some("Anchored"));
    // At the end of the object the edge is a boundary.
    let mut e = spaces.clone();
    e.extend_from_slice(b"word");
    assert_eq!(all_ways(&s, &e).as_deref(), Some("Full"));
    let mut f = spaces;
    f.extend_from_slice(b"words");
    assert_eq!(all_ways(&s, &f), None);
}

#[test]
fn modifiers_agree_at_every_cut() {
    let s = set(&lines(&[
        "WideFull;Target:0;0;6869::wf",
        "Both;Target:0;0;6a6b::aw",
        "Ci;Target:0;0;6c6d6e6f::if",
        "CiWide;Target:0;0;7071::iw",
        "Gapped;Target:0;0;7273*7475::f",
        "Not;Target:0;0;6e6f!(41|42)74::f",
    ]));
    let cases: &[(&[u8], Option<&str>)] = &[
        (b".h\0i\0.", Some("WideFull")),
        (b"xh\0i\0", None),
        (b"h\0i\0y", None),
        (b"hi", None),
        (b"-jk-", Some("Both")),
        (b"-j\0k\0-", Some("Both")),
        (b"-LmNo-", Some("Ci")),
        (b"-LmNoP", None),
        (b"P\0q\0", Some("CiWide")),
        (b"rs 1 2 tu", Some("Gapped")),
        (b"rs 1 2 tux", None),
        (b"xrs 1 2 tu", None),
        (b"(noCt)", Some("Not")),
        (b"(noAt)", None),
        (b"xnoCt", None),
    ];
    let mut stream = LdbStream::new(&s, 0);
    for &(data, want) in cases {
        let shown = String::from_utf8_lossy(data);
        assert_eq!(all_ways(&s, data).as_deref(), want, "{shown:?}");
        // Behind and before more than a piece of padding: whole, byte by byte, in pieces.
        let mut padded = vec![b' '; 9000];
        padded.extend_from_slice(data);
        padded.extend(std::iter::repeat(b' ').take(9000));
        for part in [&padded[..], &padded[9000..], &padded[..9000 + data.len()]] {
            let every: Vec<usize> = (1..part.len()).collect();
            for cuts in [vec![], every, (4096..part.len()).step_by(4096).collect(), vec![9000, 9001]] {
                assert_eq!(scan_with(&s, &mut stream, part, &cuts).as_deref(), want, "{shown:?} padded");
            }
        }
    }
}

#[test]
fn identical_segments_share_one_pattern() {
    let s = set(&lines(&[
        "One;Target:0;0;41424344*45464748",
        "Two;Target:0;0;41424344{2-4}494a4b4c",
        "Three;Target:0;0&1;41424344;494a4b4c",
        "Ci;Target:0;0;61626364::i",
    ]));
    // ABCD, EFGH and IJKL raw; abcd in the lower-cased view.
    assert_eq!(s.patterns(), 4);
    assert_eq!(all_ways(&s, b"ABCD..IJKL").as_deref(), Some("Two"));
    assert_eq!(all_ways(&s, b"ABCD.....IJKL..EFGH").as_deref(), Some("One"));
    assert_eq!(all_ways(&s, b"ABCD.....IJKL").as_deref(), Some("Three"));
    assert_eq!(all_ways(&s, b"..aBcD..").as_deref(), Some("Ci"));
    // One pattern standing for two segments of the same subsignature.
    let u = set(&lines(&["Twice;Target:0;0;41424344{1-2}41424344"]));
    assert_eq!(u.patterns(), 1);
    assert_eq!(all_ways(&u, b"ABCD.ABCD").as_deref(), Some("Twice"));
    assert_eq!(all_ways(&u, b"ABCDABCD"), None);
}

#[test]
fn alternatives_of_different_lengths_keep_what_a_longer_one_needs() {
    // `BB` and `CCBB` end together; the short one starts later and must not drop the end of
    // `AA` that the long one needs (occurrences come in order of their ends, not starts).
    let s = set(&lines(&["Alt;Target:0;0;4141{2-3}(4242|43434242)", "Tail;Target:0;0;(4242|43434242){1-2}4444"]));
    assert_eq!(all_ways(&s, b"AA..CCBB").as_deref(), Some("Alt"));
    assert_eq!(all_ways(&s, b"AA....BB"), None);
    assert_eq!(all_ways(&s, b"CCBB.DD").as_deref(), Some("Tail"));
    let deferred = set(&lines(&["Eof;Target:0;0;EOF-8:4141{2-3}(4242|43434242)"]));
    assert_eq!(all_ways(&deferred, b"AA..CCBB").as_deref(), Some("Eof"));
}
