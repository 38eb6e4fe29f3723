//! The random-access container library (`icapd::scan::whole`): every kind's extractor on
//! arbitrary bytes, with small limits.
//!
//! The flags byte picks the kind (modulo 11; 9 means "what `detect` says", skipped when it
//! says nothing; 10 the zip central-directory reader, held from the offset the next flags
//! give); the payload is the object. Split bytes are unused (the library takes the
//! whole object).
//!
//! Checks: extraction returns (no panic, no endless loop: libFuzzer's timeout), and the sink
//! sees what the contract promises: data only inside a member, pieces of at most
//! `PIECE_BYTES`, no member over `member_bytes_max`, no more than `members_max` members, and no
//! more bytes in all than `ratio_max` times the input; and a `Break` from the sink ends the
//! extraction with `Ok` before another call reaches it.
#![no_main]

use std::ops::ControlFlow;

use icapd::scan::whole::{detect, extract, extract_zip, Kind, Limits, Sink, ZipDone, PIECE_BYTES};
use icapd_fuzz::Input;
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits { member_bytes_max: 256 << 10, members_max: 64, ratio_max: 50 };

struct Check {
    open: bool,
    members: u32,
    member_bytes: u64,
    total: u64,
    /// Break at this member's start (0: never).
    break_at: u32,
    broke: bool,
}

impl Sink for Check {
    fn member_start(&mut self, _name: &str) -> ControlFlow<()> {
        assert!(!self.broke, "called after Break");
        assert!(!self.open, "member started inside another");
        self.open = true;
        self.members += 1;
        assert!(self.members <= LIMITS.members_max, "members_max passed");
        self.member_bytes = 0;
        if self.members == self.break_at {
            self.broke = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
    fn member_data(&mut self, data: &[u8]) -> ControlFlow<()> {
        assert!(!self.broke, "called after Break");
        assert!(self.open, "data outside a member");
        assert!(data.len() <= PIECE_BYTES, "piece too large");
        self.member_bytes += data.len() as u64;
        self.total += data.len() as u64;
        assert!(self.member_bytes <= LIMITS.member_bytes_max, "member_bytes_max passed");
        ControlFlow::Continue(())
    }
    fn member_end(&mut self) -> ControlFlow<()> {
        assert!(!self.broke, "called after Break");
        assert!(self.open, "end outside a member");
        self.open = false;
        ControlFlow::Continue(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else { return };
    let payload = input.payload;
    let pick = input.flags % 11;
    if pick == 10 {
        // Held from a base inside the payload, with the first entry (if any) done.
        let base = (usize::from(input.flags >> 4) * 7).min(payload.len());
        let done = [ZipDone { offset: 0, crc: 0, csize: 0 }];
        for break_at in [0u32, 1] {
            let mut sink = Check { open: false, members: 0, member_bytes: 0, total: 0, break_at, broke: false };
            let r = extract_zip(&payload[base..], base as u64, &done, 1 << 20, icapd::limits::LZMA_MEMORY_BYTES_MAX, &LIMITS, &mut sink);
            assert!(sink.total <= LIMITS.ratio_max * (payload.len() as u64).max(1), "ratio_max passed");
            if sink.broke {
                assert!(r.is_ok(), "Break must end with Ok, got {r:?}");
            }
        }
        return;
    }
    let kind = match Kind::ALL.get(pick as usize) {
        Some(&k) => k,
        None => match detect(&payload[..payload.len().min(4096)]) {
            Some(k) => k,
            None => return,
        },
    };
    for break_at in [0u32, 1] {
        let mut sink = Check { open: false, members: 0, member_bytes: 0, total: 0, break_at, broke: false };
        let r = extract(kind, payload, &LIMITS, &mut sink);
        assert!(sink.total <= LIMITS.ratio_max * (payload.len() as u64).max(1), "ratio_max passed");
        if sink.broke {
            assert!(r.is_ok(), "Break must end with Ok, got {r:?}");
        }
    }
});
