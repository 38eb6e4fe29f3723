//! Content-Encoding end to end: the real binary with the bundled signatures, spoken to over
//! loopback. An encoded EICAR page is blocked however the proxy sends it, and a clean encoded
//! page comes back byte for byte as the origin sent it (decoding is only for scanning).

mod common;

use common::*;
use std::io::{BufReader, Write};
use std::path::Path;

const EICAR: &[u8] = include_bytes!("samples/eicar.com");

fn start(config: Option<&str>) -> Server {
    let signatures = Path::new(env!("CARGO_MANIFEST_DIR")).join("signatures");
    Server::start(&["--shards", "2", "--signatures", signatures.to_str().unwrap()], config)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A page that compresses about 2:1, so its gzip form is several KiB (longer than a preview).
fn page(len: usize, seed: u64) -> Vec<u8> {
    pseudo_random(len, seed).iter().map(|b| b"0123456789abcdef"[usize::from(b & 15)]).collect()
}

fn res_hdr(len: usize) -> String {
    format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Encoding: gzip\r\nContent-Length: {len}\r\n\r\n")
}

fn threat(r: &Response) -> Option<String> {
    r.header("X-Infection-Found").and_then(|v| v.split("Threat=").nth(1)).map(|t| t.trim_end_matches(';').to_string())
}

/// Sends one RESPMOD carrying `body` with a gzip res-hdr, with or without a preview, and
/// returns the final response (after a 100 Continue when the server asks for the rest).
fn send(server: &Server, body: &[u8], preview: Option<usize>, allow_204: bool) -> Response {
    let hdr = res_hdr(body.len());
    let mut req = format!(
        "RESPMOD icap://127.0.0.1/respmod ICAP/1.0\r\nHost: 127.0.0.1\r\n{}{}Encapsulated: req-hdr=0, res-hdr={}, res-body={}\r\n\r\n{REQ_HDR}{hdr}",
        if allow_204 { "Allow: 204\r\n" } else { "" },
        preview.map(|p| format!("Preview: {p}\r\n")).unwrap_or_default(),
        REQ_HDR.len(),
        REQ_HDR.len() + hdr.len()
    )
    .into_bytes();
    let stream = server.connect();
    let Some(preview) = preview else {
        req.extend(chunked(body, 4096));
        req.extend_from_slice(b"0\r\n\r\n");
        return exchange(&stream, req).expect("a response");
    };
    let head_len = preview.min(body.len());
    req.extend(chunked(&body[..head_len], 4096));
    req.extend_from_slice(if head_len == body.len() { b"0; ieof\r\n\r\n" } else { b"0\r\n\r\n" });
    let mut writer = stream.try_clone().unwrap();
    writer.write_all(&req).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let first = read_response(&mut reader).expect("a response to the preview");
    if first.status != 100 {
        return first;
    }
    let mut rest = chunked(&body[head_len..], 4096);
    rest.extend_from_slice(b"0\r\n\r\n");
    writer.write_all(&rest).unwrap();
    read_response(&mut reader).expect("a final response")
}

#[test]
fn a_gzip_encoded_eicar_page_is_blocked() {
    let server = start(None);
    let infected = gzip(&[page(6000, 1).as_slice(), EICAR, page(2000, 2).as_slice()].concat());
    assert!(infected.len() > 1024 && infected.len() < 32 * 1024, "{}", infected.len());
    for preview in [None, Some(1024)] {
        for allow_204 in [false, true] {
            let r = send(&server, &infected, preview, allow_204);
            assert_eq!(r.status, 200, "preview {preview:?}, allow 204 {allow_204}");
            assert_eq!(threat(&r).as_deref(), Some("Eicar-Test-Signature"), "preview {preview:?}, allow {allow_204}");
            assert!(r.hdr.starts_with(b"HTTP/1.1 403"));
        }
    }
    // A small page whose whole gzip fits in the preview (ieof).
    let small = gzip(EICAR);
    let r = send(&server, &small, Some(1024), true);
    assert_eq!(threat(&r).as_deref(), Some("Eicar-Test-Signature"));
}

#[test]
fn a_clean_gzip_page_passes_byte_exact() {
    let server = start(None);
    let clean = gzip(&page(40_000, 3));
    for preview in [None, Some(1024)] {
        let r = send(&server, &clean, preview, false);
        assert_eq!(r.status, 200, "preview {preview:?}");
        assert!(threat(&r).is_none());
        assert_eq!(r.hdr, res_hdr(clean.len()).as_bytes(), "the head is echoed as sent");
        assert!(r.body.as_deref() == Some(clean.as_slice()), "the body comes back as the origin encoded it");
        assert_eq!(send(&server, &clean, preview, true).status, 204, "preview {preview:?}");
    }
}

#[test]
fn decode_limits_follow_the_configuration_and_the_over_limit_policy() {
    // 8 MiB of zeros: about 8 KiB of gzip, a ratio of about 1000:1.
    let bomb = gzip(&vec![0u8; 8 << 20]);
    let server = start(None);
    let r = send(&server, &bomb, None, true);
    assert_eq!(threat(&r).as_deref(), Some("Heuristics.Limits.Exceeded.MaxDecodeRatio"));
    drop(server);
    let server = start(Some("[limits]\ndecode_ratio_max = 5000\ndecoded_bytes_max = 1048576\n"));
    let r = send(&server, &bomb, None, true);
    assert_eq!(threat(&r).as_deref(), Some("Heuristics.Limits.Exceeded.MaxDecodedSize"));
    let mut broken = gzip(&page(5000, 4));
    broken.truncate(broken.len() - 4);
    assert_eq!(threat(&send(&server, &broken, None, true)).as_deref(), Some("Heuristics.Broken.ContentEncoding"));
    drop(server);
    let server = start(Some("[policy]\nover_limit = \"pass\"\n"));
    assert_eq!(send(&server, &bomb, None, true).status, 204);
    assert_eq!(send(&server, &broken, None, true).status, 204);
}
