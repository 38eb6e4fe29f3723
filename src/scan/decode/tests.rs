//! Every decoder and the chain, each case whole, at every split point and byte by byte (sampled
//! splits for large inputs), with the same answer every time.

use super::*;
use crate::proto::testutil::for_each_split;
use std::io::Write;

fn limits() -> DecodeLimits {
    DecodeLimits {
        decoded_bytes_max: 100 << 20,
        decode_ratio_max: 100,
        decode_ratio_floor_bytes: 1 << 20,
        encodings_max: 3,
        zstd_window_bytes_max: 8 << 20,
        decode_buffer_bytes: 32 << 10,
    }
}

/// Decodes `input` cut at `cuts`; the decoded bytes, or the fault.
fn run(
    chain: &mut DecodeChain,
    plan: &[Coding],
    partial: bool,
    input: &[u8],
    cuts: &[usize],
) -> Result<Vec<u8>, Fault> {
    match run_parts(chain, plan, partial, input, cuts) {
        (out, None) => Ok(out),
        (_, Some(fault)) => Err(fault),
    }
}

/// Decodes `input` cut at `cuts`: every byte handed out, and the fault that stopped the
/// stream, if any.
fn run_parts(
    chain: &mut DecodeChain,
    plan: &[Coding],
    partial: bool,
    input: &[u8],
    cuts: &[usize],
) -> (Vec<u8>, Option<Fault>) {
    chain.begin(plan, partial);
    let mut out = Vec::new();
    let mut take = |piece: &[u8]| {
        out.extend_from_slice(piece);
        ControlFlow::Continue(())
    };
    let mut prev = 0;
    for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
        match chain.feed(&input[prev..cut], &mut take) {
            Ok(flow) => assert!(flow.is_continue(), "this sink never stops the chain"),
            Err(fault) => {
                chain.end();
                return (out, Some(fault));
            }
        }
        prev = cut;
    }
    let fault = match chain.finish(&mut take) {
        Ok(flow) => {
            assert!(flow.is_continue(), "this sink never stops the chain");
            None
        }
        Err(fault) => Some(fault),
    };
    chain.end();
    (out, fault)
}

/// Cut lists for `len` bytes: every split and byte by byte up to 4 KiB; beyond, a sample (64
/// single cuts, pieces of 997 bytes, and byte by byte over the first 4 KiB), since a debug
/// build decodes slowly and every split of a large input would take minutes.
fn splits(len: usize, mut check: impl FnMut(&[usize])) {
    if len <= 4096 {
        return for_each_split(len, check);
    }
    check(&[]);
    for k in 1..64 {
        check(&[len * k / 64]);
    }
    check(&(997..len).step_by(997).collect::<Vec<_>>());
    check(&(1..4096).collect::<Vec<_>>());
}

/// The answer for `input` under every split; asserts they agree and returns it.
fn decode_all(limits: DecodeLimits, plan: &[Coding], partial: bool, input: &[u8]) -> Result<Vec<u8>, Fault> {
    let mut chain = DecodeChain::new(limits);
    let whole = run(&mut chain, plan, partial, input, &[]);
    splits(input.len(), |cuts| {
        // Compared by value, but never printed whole: decoded bombs are megabytes.
        let got = run(&mut chain, plan, partial, input, cuts);
        assert!(got == whole, "{} cuts of {}: {:?} vs {:?}", cuts.len(), input.len(), summary(&got), summary(&whole));
    });
    whole
}

fn summary(r: &Result<Vec<u8>, Fault>) -> Result<usize, Fault> {
    r.as_ref().map(Vec::len).map_err(|f| *f)
}

pub fn text(len: usize) -> Vec<u8> {
    let words = ["scan ", "the ", "decoded ", "bytes ", "<html>", "</p>\n", "icapd ", "stream "];
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut out = Vec::with_capacity(len + 16);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(words[(x % 8) as usize].as_bytes());
    }
    out.truncate(len);
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn raw_deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn brotli(data: &[u8]) -> Vec<u8> {
    let mut e = ::brotli::CompressorWriter::new(Vec::new(), 4096, 5, 22);
    e.write_all(data).unwrap();
    e.into_inner()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; zstd_safe::compress_bound(data.len())];
    let n = zstd_safe::compress(&mut out[..], data, 3).unwrap();
    out.truncate(n);
    out
}

#[test]
fn plans_follow_the_header() {
    use Coding::*;
    let cases: &[(&str, Result<&[Coding], Fault>)] = &[
        ("Content-Encoding: gzip\r\n", Ok(&[Gzip])),
        ("Content-Encoding: x-gzip\r\n", Ok(&[Gzip])),
        ("content-encoding:  GZip \r\n", Ok(&[Gzip])),
        ("Content-Encoding: deflate\r\n", Ok(&[Deflate])),
        ("Content-Encoding: br\r\n", Ok(&[Brotli])),
        ("Content-Encoding: zstd\r\n", Ok(&[Zstd])),
        ("Content-Encoding: identity\r\n", Ok(&[])),
        ("Content-Encoding: gzip, identity\r\n", Ok(&[Gzip])),
        ("Content-Encoding: gzip, br\r\n", Ok(&[Brotli, Gzip])),
        ("Content-Encoding: gzip\r\nX-Other: 1\r\nContent-Encoding: zstd\r\n", Ok(&[Zstd, Gzip])),
        ("Content-Encoding: gzip,,br\r\n", Ok(&[Brotli, Gzip])),
        ("Content-Encoding: compress\r\n", Ok(&[])),
        ("Content-Encoding: x-foo\r\n", Ok(&[])),
        ("Content-Encoding: gzip, x-foo\r\n", Ok(&[])),
        ("Content-Encoding: x-foo, gzip\r\n", Ok(&[Gzip])),
        ("Content-Encoding: gzip, gzip, gzip\r\n", Ok(&[Gzip, Gzip, Gzip])),
        ("Content-Encoding: gzip, gzip, gzip, gzip\r\n", Err(Fault::Encodings)),
        ("Content-Encoding: x-a, x-b, x-c, x-d\r\n", Err(Fault::Encodings)),
        ("Content-Encoding: identity, identity, identity, identity, gzip\r\n", Ok(&[Gzip])),
        ("Content-Type: text/html\r\n", Ok(&[])),
        ("X-Content-Encoding: gzip\r\n", Ok(&[])),
        ("Content-Encoding : gzip\r\n", Ok(&[Gzip])),
    ];
    let mut out = Vec::new();
    for (fields, want) in cases {
        let head = format!("HTTP/1.1 200 OK\r\n{fields}\r\n");
        let got = plan(head.as_bytes(), 3, &mut out).map(|()| out.clone());
        assert_eq!(got, want.map(<[Coding]>::to_vec), "{fields:?}");
    }
    // The status line is never a field, even when it looks like one.
    assert_eq!(plan(b"Content-Encoding: gzip\r\n\r\n", 3, &mut out), Ok(()));
    assert!(out.is_empty());
}

#[test]
fn each_coding_round_trips_at_every_split() {
    let small = text(3000);
    let large = text(100_000);
    for data in [&small, &large] {
        for (coding, encoded) in [
            (Coding::Gzip, gzip(data)),
            (Coding::Deflate, zlib(data)),
            (Coding::Deflate, raw_deflate(data)),
            (Coding::Brotli, brotli(data)),
            (Coding::Zstd, zstd(data)),
        ] {
            let got = decode_all(limits(), &[coding], false, &encoded);
            assert!(got.as_ref() == Ok(data), "{coding:?}: {:?}", summary(&got));
        }
    }
}

#[test]
fn gzip_headers_with_every_optional_field() {
    let data = text(2000);
    let mut e = flate2::GzBuilder::new()
        .filename("page.html")
        .comment("a comment that is skipped as it streams past")
        .extra(vec![7u8; 300])
        .write(Vec::new(), flate2::Compression::fast());
    e.write_all(&data).unwrap();
    let encoded = e.finish().unwrap();
    assert_eq!(decode_all(limits(), &[Coding::Gzip], false, &encoded), Ok(data.clone()));
    // FHCRC: the header CRC is checked.
    let body = raw_deflate(&data);
    let crc = crc32fast::hash(&data);
    let mut header = vec![0x1f, 0x8b, 8, FHCRC_FOR_TEST, 0, 0, 0, 0, 0, 3];
    let hcrc = crc32fast::hash(&header) as u16;
    let trailer = [crc.to_le_bytes(), (data.len() as u32).to_le_bytes()].concat();
    let good = [header.clone(), hcrc.to_le_bytes().to_vec(), body.clone(), trailer.clone()].concat();
    assert_eq!(decode_all(limits(), &[Coding::Gzip], false, &good), Ok(data.clone()));
    let bad = [header.clone(), (hcrc ^ 1).to_le_bytes().to_vec(), body, trailer].concat();
    assert_eq!(decode_all(limits(), &[Coding::Gzip], false, &bad), Err(Fault::Broken));
    // Reserved flag bits are refused.
    header[3] = 0x20;
    assert_eq!(decode_all(limits(), &[Coding::Gzip], false, &header), Err(Fault::Broken));
}

const FHCRC_FOR_TEST: u8 = 0x02;

#[test]
fn gzip_members_concatenate() {
    let (a, b) = (text(1500), b"second member".to_vec());
    let encoded = [gzip(&a), gzip(&b)].concat();
    assert_eq!(decode_all(limits(), &[Coding::Gzip], false, &encoded), Ok([a, b].concat()));
}

#[test]
fn corrupt_truncated_and_trailing_streams_are_broken() {
    let data = text(2500);
    let mut cases: Vec<(Coding, Vec<u8>)> = Vec::new();
    for (coding, encoded) in [
        (Coding::Gzip, gzip(&data)),
        (Coding::Deflate, zlib(&data)),
        (Coding::Deflate, raw_deflate(&data)),
        (Coding::Brotli, brotli(&data)),
        (Coding::Zstd, zstd(&data)),
    ] {
        cases.push((coding, encoded[..encoded.len() - 3].to_vec()));
        cases.push((coding, encoded[..encoded.len() / 2].to_vec()));
        cases.push((coding, [encoded.as_slice(), b"junk"].concat()));
        let mut flipped = encoded.clone();
        let at = flipped.len() - 6;
        flipped[at] ^= 0x55;
        cases.push((coding, flipped));
    }
    // Plain text claiming to be compressed.
    for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
        cases.push((coding, b"<html>not compressed at all</html>".to_vec()));
    }
    for (coding, input) in &cases {
        assert_eq!(decode_all(limits(), &[*coding], false, input), Err(Fault::Broken), "{coding:?} {}", input.len());
    }
}

#[test]
fn an_empty_body_is_an_empty_object() {
    for coding in [Coding::Gzip, Coding::Deflate, Coding::Brotli, Coding::Zstd] {
        assert_eq!(decode_all(limits(), &[coding], false, b""), Ok(Vec::new()));
    }
}

#[test]
fn a_leading_range_may_end_anywhere() {
    let data = text(5000);
    let encoded = gzip(&data);
    let cut = &encoded[..encoded.len() / 2];
    let got = decode_all(limits(), &[Coding::Gzip], true, cut).unwrap();
    assert!(!got.is_empty() && data.starts_with(&got));
    assert_eq!(decode_all(limits(), &[Coding::Gzip], false, cut), Err(Fault::Broken));
    // Corruption is still corruption.
    assert_eq!(decode_all(limits(), &[Coding::Gzip], true, b"this is not a gzip stream"), Err(Fault::Broken));
}

#[test]
fn stacked_codings_are_undone_outermost_first() {
    let data = text(4000);
    // Content-Encoding: gzip, br, zstd: gzip applied first, zstd last.
    let encoded = zstd(&brotli(&gzip(&data)));
    let mut p = Vec::new();
    plan(b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip, br, zstd\r\n\r\n", 3, &mut p).unwrap();
    assert_eq!(p, [Coding::Zstd, Coding::Brotli, Coding::Gzip]);
    assert_eq!(decode_all(limits(), &p, false, &encoded), Ok(data.clone()));
    // The wrong order is a broken stream, never a pass-through.
    assert_eq!(
        decode_all(limits(), &[Coding::Gzip, Coding::Brotli, Coding::Zstd], false, &encoded),
        Err(Fault::Broken)
    );
}

#[test]
fn zstd_windows_past_the_limit_are_refused() {
    // A frame header with no content size and a declared window (Window_Descriptor exponent
    // e means 2^(10+e)), followed by an empty last raw block.
    let frame = |exponent: u8| vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, exponent << 3, 0x01, 0x00, 0x00];
    assert_eq!(decode_all(limits(), &[Coding::Zstd], false, &frame(13)), Ok(Vec::new()), "8 MiB");
    assert_eq!(decode_all(limits(), &[Coding::Zstd], false, &frame(14)), Err(Fault::Window), "16 MiB");
    let small = DecodeLimits { zstd_window_bytes_max: 1 << 20, ..limits() };
    assert_eq!(decode_all(small, &[Coding::Zstd], false, &frame(11)), Err(Fault::Window), "2 MiB over a 1 MiB cap");
    assert_eq!(zstd::window_log(8 << 20), 23);
    assert_eq!(zstd::window_log((8 << 20) + 1), 23);
    assert_eq!(zstd::window_log(10), 10);
}

/// A gzip stream of `copies` MiB of zeros built from one compressed MiB repeated (each piece
/// ends with a full flush, so the pieces are independent deflate blocks): a bomb of any size
/// for the cost of building one MiB.
pub fn zero_bomb(copies: usize) -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    let mut c = flate2::Compress::new(flate2::Compression::best(), false);
    let mut piece = Vec::with_capacity(4096);
    c.compress_vec(&zeros, &mut piece, flate2::FlushCompress::Full).unwrap();
    assert_eq!(c.total_in(), zeros.len() as u64);
    let mut crc = crc32fast::Hasher::new();
    let mut one = crc32fast::Hasher::new();
    one.update(&zeros);
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    for _ in 0..copies {
        out.extend_from_slice(&piece);
        crc.combine(&one);
    }
    out.extend_from_slice(&[0x03, 0x00]); // a final, empty fixed-Huffman block
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&((copies as u64) << 20).to_le_bytes()[..4]);
    out
}

#[test]
fn the_bomb_builder_makes_a_valid_stream() {
    let bomb = zero_bomb(3);
    let roomy = DecodeLimits { decode_ratio_max: u64::MAX, ..limits() };
    let mut chain = DecodeChain::new(roomy);
    let got = run(&mut chain, &[Coding::Gzip], false, &bomb, &[]);
    assert!(got == Ok(vec![0u8; 3 << 20]), "{:?}", summary(&got));
}

#[test]
fn bombs_stop_at_the_caps_early() {
    // 1 GiB of zeros in about 1 MiB.
    let bomb = zero_bomb(1024);
    let mut chain = DecodeChain::new(limits());
    assert_eq!(run(&mut chain, &[Coding::Gzip], false, &bomb, &[]), Err(Fault::Ratio));
    // It stopped just past the floor: a few hundred KiB of decoded output over it at most.
    chain.begin(&[Coding::Gzip], false);
    let mut decoded = 0u64;
    let r = chain.feed(&bomb, &mut |piece| {
        decoded += piece.len() as u64;
        ControlFlow::Continue(())
    });
    assert_eq!(r, Err(Fault::Ratio));
    assert!(decoded <= (1 << 20) + (32 << 10), "{decoded}");
    assert!(chain.received_bytes() < 64 << 10, "{}", chain.received_bytes());
    // Without a ratio cap, the size cap stops it.
    let no_ratio = DecodeLimits { decode_ratio_max: u64::MAX, decoded_bytes_max: 8 << 20, ..limits() };
    let mut chain = DecodeChain::new(no_ratio);
    assert_eq!(run(&mut chain, &[Coding::Gzip], false, &bomb, &[]), Err(Fault::DecodedSize));
    assert!(chain.decoded_bytes() <= (8 << 20) + (32 << 10));
    // The same answers at sampled splits (and byte by byte over a smaller bomb).
    let small = zero_bomb(16);
    let tight = DecodeLimits { decode_ratio_floor_bytes: 256 << 10, ..limits() };
    assert_eq!(decode_all(tight, &[Coding::Gzip], false, &small), Err(Fault::Ratio));
    let sized = DecodeLimits { decode_ratio_max: u64::MAX, decoded_bytes_max: 1 << 20, ..limits() };
    assert_eq!(decode_all(sized, &[Coding::Gzip], false, &small), Err(Fault::DecodedSize));
    // Under the caps the whole thing decodes.
    let roomy = DecodeLimits { decode_ratio_max: 2000, ..limits() };
    let mut chain = DecodeChain::new(roomy);
    assert_eq!(summary(&run(&mut chain, &[Coding::Gzip], false, &small, &[])), Ok(16 << 20));
}

#[test]
fn a_stacked_bomb_is_judged_against_the_received_bytes() {
    // Each layer alone is harmless-looking; together they are not.
    let inner = zero_bomb(8);
    let outer = gzip(&inner);
    let tight = DecodeLimits { decode_ratio_floor_bytes: 256 << 10, ..limits() };
    assert_eq!(decode_all(tight, &[Coding::Gzip, Coding::Gzip], false, &outer), Err(Fault::Ratio));
}

#[test]
fn a_small_page_is_not_judged_on_its_ratio() {
    let blank = vec![b' '; 512 << 10];
    let got = decode_all(limits(), &[Coding::Gzip], false, &gzip(&blank));
    assert!(got == Ok(blank), "{:?}", summary(&got));
}

#[test]
fn a_stream_that_ends_at_a_buffer_boundary_is_complete() {
    // 256 KiB decoded is exactly eight 32 KiB buffers: the chain asks each decoder once more
    // after the last full buffer, and that empty call must not look like a new stream.
    let data = text(256 << 10);
    for (coding, encoded) in [
        (Coding::Gzip, gzip(&data)),
        (Coding::Deflate, zlib(&data)),
        (Coding::Brotli, brotli(&data)),
        (Coding::Zstd, zstd(&data)),
    ] {
        let got = decode_all(limits(), &[coding], false, &encoded);
        assert!(got.as_ref() == Ok(&data), "{coding:?}: {:?}", summary(&got));
    }
}

/// [`run_parts`] for a whole (not partial) object.
fn run_lossy(chain: &mut DecodeChain, plan: &[Coding], input: &[u8], cuts: &[usize]) -> (Vec<u8>, Option<Fault>) {
    run_parts(chain, plan, false, input, cuts)
}

/// The output and fault for `input` under every split (sampled for large inputs); asserts they
/// agree and returns them.
fn lossy_all(limits: DecodeLimits, plan: &[Coding], input: &[u8]) -> (Vec<u8>, Option<Fault>) {
    let mut chain = DecodeChain::new(limits);
    let whole = run_lossy(&mut chain, plan, input, &[]);
    splits(input.len(), |cuts| {
        let got = run_lossy(&mut chain, plan, input, cuts);
        assert!(
            got == whole,
            "{} cuts of {}: {:?} vs {:?}",
            cuts.len(),
            input.len(),
            (got.0.len(), got.1),
            (whole.0.len(), whole.1)
        );
    });
    whole
}

// Issue 13, item 7: every decoder hands out what it decoded before a fault, in the same call,
// so the scanners see those bytes however the body was cut.
#[test]
fn what_was_decoded_before_a_fault_is_handed_out() {
    let data = text(3000);
    // With whether the stream ends in a checksum of the data.
    for (coding, encoded, summed) in [
        (Coding::Gzip, gzip(&data), true),
        (Coding::Deflate, zlib(&data), true),
        (Coding::Deflate, raw_deflate(&data), false),
        (Coding::Brotli, brotli(&data), false),
        (Coding::Zstd, zstd(&data), false),
    ] {
        // Bytes after the end of the stream: everything before them was decoded.
        let trailing = [encoded.as_slice(), b"junk"].concat();
        assert_eq!(lossy_all(limits(), &[coding], &trailing), (data.clone(), Some(Fault::Broken)), "{coding:?}");
        // A corrupt trailer (checksum): the data before it was decoded too.
        let mut bad_sum = encoded.clone();
        if summed {
            let at = bad_sum.len() - 2;
            bad_sum[at] ^= 0x55;
            let (out, fault) = lossy_all(limits(), &[coding], &bad_sum);
            assert_eq!(fault, Some(Fault::Broken), "{coding:?}");
            assert!(
                out.len() >= data.len() - 8 && data.starts_with(&out),
                "{coding:?}: {} of {}",
                out.len(),
                data.len()
            );
        }
    }
    // Corrupt in the middle of a long stream: the same readable part under every split, more
    // than the first buffer of it, for every coding (brotli hands out what its ring buffer
    // still holds at the corrupt spot; zstd, what it decoded of the blocks before it).
    let long = text(300_000);
    for (coding, encoded) in [
        (Coding::Gzip, gzip(&long)),
        (Coding::Deflate, zlib(&long)),
        (Coding::Brotli, brotli(&long)),
        (Coding::Zstd, zstd(&long)),
    ] {
        let mut broken = encoded.clone();
        let at = broken.len() * 3 / 5;
        for b in &mut broken[at..at + 16] {
            *b = 0xff;
        }
        let (out, fault) = lossy_all(limits(), &[coding], &broken);
        assert_eq!(fault, Some(Fault::Broken), "{coding:?}");
        // Byte by byte through the corrupt spot too (the sampled splits cut only the start).
        let every: Vec<usize> = (1..broken.len()).collect();
        let by_byte = run_lossy(&mut DecodeChain::new(limits()), &[coding], &broken, &every);
        assert!(by_byte == (out.clone(), fault), "{coding:?} byte by byte: {} vs {} bytes", by_byte.0.len(), out.len());
        let good = out.iter().zip(&long).take_while(|(a, b)| a == b).count();
        assert!(good > 32 << 10, "{coding:?}: {good} good bytes of {}", out.len());
    }
    // The cap on decoded bytes: the bytes up to it are handed out, then the fault.
    let capped = DecodeLimits { decoded_bytes_max: 1000, ..limits() };
    for (coding, encoded) in [(Coding::Gzip, gzip(&data)), (Coding::Deflate, zlib(&data)), (Coding::Zstd, zstd(&data))]
    {
        assert_eq!(
            lossy_all(capped, &[coding], &encoded),
            (data[..1000].to_vec(), Some(Fault::DecodedSize)),
            "{coding:?}"
        );
    }
    // Stacked: the inner stream's readable part reaches the sink through the outer one.
    let stacked = gzip(&[zlib(&data).as_slice(), b"junk"].concat());
    assert_eq!(lossy_all(limits(), &[Coding::Gzip, Coding::Deflate], &stacked), (data.clone(), Some(Fault::Broken)));
}

// Issue 13, item 7, for every coding: a corrupt spot anywhere in a long stream leaves the same
// readable part whole, at sampled splits and byte by byte. Brotli would otherwise keep what
// its ring buffer held at the spot, and zstd what one call had written before failing.
#[test]
fn the_readable_part_of_a_corrupt_stream_does_not_depend_on_the_cuts() {
    let long = text(120_000);
    for (coding, encoded) in [
        (Coding::Gzip, gzip(&long)),
        (Coding::Deflate, zlib(&long)),
        (Coding::Brotli, brotli(&long)),
        (Coding::Zstd, zstd(&long)),
    ] {
        for (k, flip) in [(1usize, 0x01u8), (3, 0x80), (5, 0x5a), (7, 0xff), (9, 0x10)] {
            let mut broken = encoded.clone();
            let at = broken.len() * k / 10;
            broken[at] ^= flip;
            let whole = lossy_all(limits(), &[coding], &broken);
            // Pieces of 8 and 31 bytes in turn (the cuts the fuzzer found a brotli miss with).
            let mut uneven = Vec::new();
            let mut at_cut = 0;
            for step in [8usize, 31].iter().cycle() {
                at_cut += step;
                if at_cut >= broken.len() {
                    break;
                }
                uneven.push(at_cut);
            }
            let cut_unevenly = run_lossy(&mut DecodeChain::new(limits()), &[coding], &broken, &uneven);
            assert!(cut_unevenly == whole, "{coding:?}, byte {at} ^ {flip:#x}: pieces of 8 and 31 bytes");
            let every: Vec<usize> = (1..broken.len()).collect();
            let by_byte = run_lossy(&mut DecodeChain::new(limits()), &[coding], &broken, &every);
            assert!(
                by_byte == whole,
                "{coding:?}, byte {at} ^ {flip:#x}: {} bytes and {:?} byte by byte, {} and {:?} whole",
                by_byte.0.len(),
                by_byte.1,
                whole.0.len(),
                whole.1
            );
        }
    }
}
