//! The optional minimum transfer rate: a body slower on average than
//! `transfer_rate_min_bytes_per_sec` (after the grace period) meets its deadline like a silent
//! one; with the rate off only inactivity counts.

use super::{Conn, State};
use crate::inspect::InspectorKind;
use crate::limits::Limits;
use crate::proto::blocks::BlockPool;
use crate::proto::conn_tests::{decode_responses, respmod, INFO};
use std::io::IoSlice;
use std::time::{Duration, Instant};

fn feed(conn: &mut Conn, pool: &mut BlockPool, bytes: &[u8], now: Instant) {
    let buf = conn.recv_buf(pool);
    buf[..bytes.len()].copy_from_slice(bytes);
    conn.handle_read(bytes.len(), now, 0);
}

#[test]
fn a_body_slower_than_the_minimum_rate_times_out_and_off_means_only_inactivity() {
    let input = respmod(&[b'a'; 5000], None, true);
    let part = &input[..input.len() - 3000];
    for rate in [0u64, 100] {
        let limits = Limits { transfer_rate_min_bytes_per_sec: rate, ..Limits::default() };
        let t0 = Instant::now();
        let mut pool = BlockPool::new(limits.recv_block_bytes, limits.idle_block_bytes, 4, 0);
        let mut conn = Conn::new(limits, INFO, InspectorKind::Null.build().unwrap(), t0);
        feed(&mut conn, &mut pool, part, t0);
        assert_eq!(conn.state(), State::Body);
        let body_so_far = 2000 - 12; // bytes of data in `part`, less the chunk framing
        let deadline = conn.poll_deadline().unwrap();
        if rate == 0 {
            assert_eq!(deadline, t0 + limits.body_inactivity);
            continue;
        }
        // About 20 s for ~2000 bytes at 100 B/s, plus the 30 s grace: well before the 300 s
        // inactivity deadline.
        assert!(deadline > t0 + limits.transfer_rate_grace + Duration::from_secs(15), "{deadline:?}");
        assert!(deadline < t0 + limits.transfer_rate_grace + Duration::from_secs(body_so_far / 100 + 5));
        conn.handle_timeout(deadline, 0);
        assert_eq!(conn.state(), State::Closing);
        let mut out = Vec::new();
        while conn.has_output() {
            let mut iov = [IoSlice::new(&[]); 4];
            let n = conn.poll_transmit(&mut iov);
            let w: usize = iov[..n].iter().map(|s| s.len()).sum();
            for s in &iov[..n] {
                out.extend_from_slice(s);
            }
            conn.handle_written(w, &mut pool);
        }
        assert_eq!(decode_responses(&out)[0].status(), 408);
    }
}
