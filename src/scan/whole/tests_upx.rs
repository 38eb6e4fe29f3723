//! UPX fixtures: a minimal PE with UPX0/UPX1 sections whose data is an NRV2B stream written
//! here (literals and the end marker; the corpus's clam-upx.exe covers matches).

use super::tests::*;
use super::*;

/// NRV's bit stream: 32-bit little-endian words of bits, most significant first, with bytes
/// interleaved where the decoder reads them.
#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    word_at: usize,
    word: u32,
    n: u32,
}

impl BitWriter {
    fn bit(&mut self, b: u32) {
        if self.n == 0 {
            self.word_at = self.out.len();
            self.out.extend_from_slice(&[0; 4]);
        }
        self.word = self.word << 1 | b;
        self.n += 1;
        if self.n == 32 {
            self.flush();
        }
    }
    fn flush(&mut self) {
        if self.n > 0 {
            let w = self.word << (32 - self.n);
            self.out[self.word_at..self.word_at + 4].copy_from_slice(&w.to_le_bytes());
            self.n = 0;
            self.word = 0;
        }
    }
    fn byte(&mut self, b: u8) {
        self.out.push(b);
    }
}

/// NRV2B of `data`: every byte a literal, then the end marker (offset code 0x1000002 and the
/// byte 0xFF, i.e. offset 0xFFFFFFFF).
pub(super) fn nrv2b_literals(data: &[u8]) -> Vec<u8> {
    let mut w = BitWriter::default();
    for &b in data {
        w.bit(1);
        w.byte(b);
    }
    w.bit(0);
    let code: u32 = 0x0100_0002;
    for i in (0..24).rev() {
        w.bit((code >> i) & 1);
        w.bit(u32::from(i == 0));
    }
    w.byte(0xFF);
    w.flush();
    w.out
}

pub(super) fn pe(packed: &[u8], upx_header: Option<u8>) -> Vec<u8> {
    let mut f = vec![0u8; 0x200];
    f[0..2].copy_from_slice(b"MZ");
    f[0x3C..0x40].copy_from_slice(&0x40u32.to_le_bytes());
    f[0x40..0x44].copy_from_slice(b"PE\0\0");
    f[0x44..0x46].copy_from_slice(&0x14Cu16.to_le_bytes());
    f[0x46..0x48].copy_from_slice(&2u16.to_le_bytes());
    f[0x54..0x56].copy_from_slice(&0xE0u16.to_le_bytes());
    let opt = 0x58;
    f[opt..opt + 2].copy_from_slice(&0x10Bu16.to_le_bytes());
    f[opt + 16..opt + 20].copy_from_slice(&0x2F00u32.to_le_bytes()); // entry in UPX1, no stub
    f[opt + 28..opt + 32].copy_from_slice(&0x40_0000u32.to_le_bytes());
    let sec = opt + 0xE0;
    let sections = [
        (b"UPX0\0\0\0\0", 0x1000u32, 0x1000u32, 0u32, 0u32),
        (b"UPX1\0\0\0\0", 0x1000, 0x2000, packed.len() as u32, 0x200),
    ];
    for (i, (name, vsize, rva, raw_size, raw_at)) in sections.iter().enumerate() {
        let s = sec + 40 * i;
        f[s..s + 8].copy_from_slice(*name);
        for (k, v) in [vsize, rva, raw_size, raw_at].iter().enumerate() {
            f[s + 8 + 4 * k..s + 12 + 4 * k].copy_from_slice(&v.to_le_bytes());
        }
    }
    if let Some(method) = upx_header {
        let h = 0x1C0;
        f[h..h + 4].copy_from_slice(b"UPX!");
        f[h + 4] = 13;
        f[h + 5] = 9;
        f[h + 6] = method;
    }
    f.extend_from_slice(packed);
    f
}

#[test]
fn unpacked_image_is_a_member() {
    let f = pe(&nrv2b_literals(EICAR), None);
    assert_eq!(detect(&f), Some(Kind::Pe));
    let (r, c) = run(Kind::Pe, &f, &LOOSE);
    assert_eq!(r, Ok(()));
    assert_eq!((c.members[0].0.as_str(), c.members[0].1.as_slice()), ("upx", EICAR));
    // With the pack header naming NRV2B.
    let (r, c) = run(Kind::Pe, &pe(&nrv2b_literals(EICAR), Some(2)), &LOOSE);
    assert_eq!(r, Ok(()));
    assert_eq!(c.members[0].1, EICAR);
}

#[test]
fn clean_image() {
    let (r, c) = run(Kind::Pe, &pe(&nrv2b_literals(b"just some code"), None), &LOOSE);
    assert_eq!(r, Ok(()));
    assert!(!has_member(&c, EICAR));
    assert_eq!(c.members[0].1, b"just some code");
}

#[test]
fn plain_pe_is_not_upx() {
    let mut f = pe(b"", None);
    f[0x138..0x13C].copy_from_slice(b".txt");
    f[0x160..0x164].copy_from_slice(b".dat");
    assert_eq!(detect(&f), None);
}

#[test]
fn truncated_is_broken() {
    let packed = nrv2b_literals(EICAR);
    let f = pe(&packed, None);
    for cut in [0x100, 0x200 + 10, f.len() - 2] {
        assert_eq!(run(Kind::Pe, &f[..cut], &LOOSE).0, Err(Fault::Broken("Heuristics.Broken.Executable")), "cut {cut}");
    }
}

#[test]
fn lzma_is_reported() {
    let f = pe(&nrv2b_literals(EICAR), Some(14));
    assert_eq!(run(Kind::Pe, &f, &LOOSE).0, Err(Fault::Broken("Heuristics.Broken.Executable.UPX.Unsupported")));
}

#[test]
fn limits_are_faults() {
    let f = pe(&nrv2b_literals(&[0x90; 3000]), None);
    assert_eq!(run(Kind::Pe, &f, &Limits { member_bytes_max: 1000, ..LOOSE }).0, Err(Fault::Limit(LIMIT_FILE_SIZE)));
}

#[test]
fn nrv_rejects_matches_before_the_start() {
    // Offset code 3 with byte 0 is offset 1, with nothing written yet.
    let mut w = BitWriter::default();
    w.bit(0);
    w.bit(1);
    w.bit(1); // gamma: 1 -> 3, stop
    w.byte(0);
    w.bit(0);
    w.bit(1);
    w.flush();
    for m in [nrv::Method::B, nrv::Method::D, nrv::Method::E] {
        assert!(nrv::decompress(m, &w.out, 1 << 20).is_err(), "{m:?}");
    }
}
