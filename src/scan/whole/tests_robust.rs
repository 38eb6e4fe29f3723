//! Hostile-input robustness without the fuzzer: every fixture, mutated many ways (bytes
//! changed, cut, spliced), through every kind's extractor with small limits. Each run must
//! return, and the sink must see the contract kept (the same checks as
//! `fuzz/fuzz_targets/whole.rs`).

use std::ops::ControlFlow;

use super::tests::EICAR;
use super::*;

const SMALL: Limits = Limits { member_bytes_max: 64 << 10, members_max: 16, ratio_max: 50 };

#[derive(Default)]
struct Check {
    open: bool,
    members: u32,
    member_bytes: u64,
    total: u64,
}

impl Sink for Check {
    fn member_start(&mut self, _: &str) -> ControlFlow<()> {
        assert!(!self.open);
        self.open = true;
        self.members += 1;
        assert!(self.members <= SMALL.members_max);
        self.member_bytes = 0;
        ControlFlow::Continue(())
    }
    fn member_data(&mut self, d: &[u8]) -> ControlFlow<()> {
        assert!(self.open && d.len() <= PIECE_BYTES);
        self.member_bytes += d.len() as u64;
        self.total += d.len() as u64;
        assert!(self.member_bytes <= SMALL.member_bytes_max);
        ControlFlow::Continue(())
    }
    fn member_end(&mut self) -> ControlFlow<()> {
        assert!(self.open);
        self.open = false;
        ControlFlow::Continue(())
    }
}

fn fixtures() -> Vec<Vec<u8>> {
    vec![
        super::tests_ole2::build(&[("/WordDocument", b"text"), ("/Macros/Mod", EICAR)]),
        super::tests_pdf::pdf(
            &[
                ("/Filter /FlateDecode", &super::tests_pdf::zlib(&[7u8; 5000])),
                ("/Filter [/AHx /LZW]", b"800B6050220C0C8501>"),
                ("/Filter /A85", b"9jqo^~>"),
            ],
            "",
        ),
        super::tests_rtf::rtf_with(&super::tests_rtf::hex(&super::tests_rtf::ole1("Package", EICAR))),
        super::tests_cab::build(::cab::CompressionType::MsZip, &[("a.txt", &[b'a'; 40_000]), ("e.com", EICAR)]),
        super::tests_tnef::tnef(&[("e.com", EICAR)]),
        format!("<a href=\"data:;base64,{}\">", super::tests_html::b64(EICAR)).into_bytes(),
        super::tests_7z::build(&[("e.com", EICAR), ("b.txt", b"bbbb")], None),
        super::tests_chm::chm(&[("/e.htm", EICAR)]),
        super::tests_upx::pe(&super::tests_upx::nrv2b_literals(EICAR), Some(2)),
    ]
}

#[test]
fn mutated_fixtures_never_break_the_contract() {
    let mut x = 0x2545_F491u32;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    let mut runs = 0u32;
    for base in fixtures() {
        for round in 0..120 {
            let mut m = base.clone();
            match round % 4 {
                0 => {
                    for _ in 0..1 + rand() % 8 {
                        let i = rand() as usize % m.len();
                        m[i] = rand() as u8;
                    }
                }
                1 => m.truncate(rand() as usize % m.len()),
                2 => {
                    let i = rand() as usize % m.len();
                    let n = (rand() as usize % 64).min(m.len() - i);
                    let chunk = m[i..i + n].to_vec();
                    let j = rand() as usize % m.len();
                    m.splice(j..j, chunk);
                }
                _ => {
                    // Large values in likely count and size fields.
                    let i = rand() as usize % m.len().saturating_sub(4).max(1);
                    let v = [0xFFFF_FFFFu32, 0x7FFF_FFFF, 0x8000_0000, 0x0001_0000][rand() as usize % 4];
                    let end = (i + 4).min(m.len());
                    m[i..end].copy_from_slice(&v.to_le_bytes()[..end - i]);
                }
            }
            for kind in Kind::ALL {
                let mut sink = Check::default();
                let _ = extract(kind, &m, &SMALL, &mut sink);
                assert!(sink.total <= SMALL.ratio_max * (m.len() as u64).max(1));
                runs += 1;
            }
        }
    }
    assert!(runs > 9000);
}
