//! Differential target for the container layer (`scan::unpack`): an object streamed at the
//! fuzzer's split points and byte by byte must get the verdict, the member path and the limit
//! it gets whole, whatever the bytes are (a zip, a tar, a gzip, a mail, a cpio, ... or
//! garbage that starts like one), and never panic or loop.
//!
//! Flags: bits 0-3 wrap the payload in one of the container kinds the layer opens (0: as it
//! is), so the fuzzer starts inside valid framing; the seeds hold real containers with EICAR
//! and with a clean member. The engine uses the bundled EICAR signatures with a small member
//! count and depth, so that deep or wide inputs reach the limits quickly.
#![no_main]

use icapd::inspect::{Inspector, Progress, Txn, Verdict};
use icapd::limits::Limits;
use icapd::proto::Method;
use icapd::scan::engine::{EngineInspector, ScanCtx};
use icapd::scan::policy::{Early204, OverLimit};
use icapd::scan::unpack::EncryptedPolicy;
use icapd::scan::ScanPolicy;
use icapd::signatures::{load, LoadOptions};
use icapd_fuzz::{every_byte, piece_ends, Input};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;

fn engine() -> RefCell<EngineInspector> {
    let gen = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../signatures"), LoadOptions::default())
        .expect("the bundled signatures load");
    let policy =
        ScanPolicy { over_limit: OverLimit::Block, early_204: Early204::default(), encrypted: EncryptedPolicy::Block };
    let limits = Limits {
        container_depth_max: 6,
        container_members_max: 64,
        member_bytes_max: 1 << 20,
        extracted_bytes_max: 4 << 20,
        ..Limits::default()
    };
    RefCell::new(EngineInspector::new(ScanCtx::new(Arc::new(gen), limits.scan(), policy)))
}

thread_local! {
    static ENGINE: RefCell<EngineInspector> = engine();
}

/// Framing the payload can be put in (as a stored member or as the content).
fn wrap(kind: u8, payload: &[u8]) -> Vec<u8> {
    match kind {
        1 => {
            // A stored zip entry with its sizes and a zero CRC (a CRC error is a finding too).
            let mut z = b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00".to_vec();
            z.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
            z.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            z.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            z.extend_from_slice(&[1, 0, 0, 0, b'f']);
            z.extend_from_slice(payload);
            z.extend_from_slice(b"PK\x05\x06");
            z
        }
        2 => icapd_fuzz::ustar(b"file", payload),
        3 => [b"From: a@b\r\nTo: c@d\r\nContent-Transfer-Encoding: base64\r\n\r\n", payload].concat(),
        4 => [b"--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\n", payload, b"\r\n--b--\r\n"].concat(),
        5 => [b"begin 644 f\n", payload].concat(),
        6 => [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03", payload].concat(),
        7 => [b"070701", payload].concat(),
        _ => payload.to_vec(),
    }
}

fn run(
    inspector: &mut EngineInspector,
    body: &[u8],
    cuts: &[usize],
) -> (Verdict, Option<String>, Option<&'static str>) {
    let txn =
        Txn { method: Method::Respmod, service: "respmod", req_hdr: None, res_hdr: None, policy: Default::default() };
    let v = 'v: {
        if let Progress::Done(v) = inspector.begin(&txn) {
            break 'v v;
        }
        let mut prev = 0;
        for end in piece_ends(cuts, body.len()) {
            if let Progress::Done(v) = inspector.feed(&body[prev..end]) {
                break 'v v;
            }
            prev = end;
        }
        inspector.finish()
    };
    (v, inspector.found_in().map(str::to_string), inspector.limit_hit())
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else { return };
    let body = wrap(input.flags & 15, input.payload);
    let cuts = icapd_fuzz::cuts_of(input.gaps, body.len());
    ENGINE.with(|e| {
        let mut inspector = e.borrow_mut();
        let whole = run(&mut inspector, &body, &[]);
        assert_eq!(run(&mut inspector, &body, &cuts), whole, "split at {cuts:?}");
        if body.len() <= 64 * 1024 {
            assert_eq!(run(&mut inspector, &body, &every_byte(body.len())), whole, "byte by byte");
        }
    });
});
