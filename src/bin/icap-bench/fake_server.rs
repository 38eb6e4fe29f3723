//! A small ICAP server for the load generator's own tests, over loopback.
//!
//! It answers the way the real servers answer, so the tests exercise every path of the client:
//! `204` for a clean preview with `ieof`, `100 Continue` otherwise, a block page when EICAR is in
//! the preview or `Allow: 204` was sent, a full echo of a clean object without `Allow: 204`,
//! and half an echo followed by a close (a cut) when EICAR turns up in an echoed object. In
//! lying mode it answers `204` to everything, which a correct client must count as wrong.

use crate::body::EICAR;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// Starts the server on an ephemeral port; it serves until the test process ends.
pub fn start(lying: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("local address");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = serve(stream, lying);
            });
        }
    });
    addr
}

/// Reads chunks up to the last one; returns whether it carried `ieof`.
fn read_chunks(r: &mut impl BufRead, out: &mut Vec<u8>) -> std::io::Result<bool> {
    loop {
        let mut line = String::new();
        r.read_line(&mut line)?;
        let (size, ext) = line.trim_end().split_once(';').unwrap_or((line.trim_end(), ""));
        let size = usize::from_str_radix(size.trim(), 16).map_err(std::io::Error::other)?;
        if size == 0 {
            let mut crlf = String::new();
            r.read_line(&mut crlf)?;
            return Ok(ext.trim() == "ieof");
        }
        let at = out.len();
        out.resize(at + size + 2, 0);
        r.read_exact(&mut out[at..])?;
        out.truncate(at + size);
    }
}

fn serve(stream: TcpStream, lying: bool) -> std::io::Result<()> {
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let end = line == "\r\n";
            head.push_str(&line);
            if end {
                break;
            }
        }
        let header = |name: &str| head.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()));
        let allow_204 = header("Allow:").is_some();
        let preview = header("Preview:").is_some();
        let encap = header("Encapsulated:").unwrap_or_default();
        let body_at: usize = encap.rsplit('=').next().and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut heads = vec![0; body_at];
        r.read_exact(&mut heads)?;
        let mut body = Vec::new();
        let ieof = read_chunks(&mut r, &mut body)?;
        let infected = |b: &[u8]| memchr::memmem::find(b, EICAR).is_some();
        if lying {
            // Answering the preview itself keeps the stream in step: no rest will come.
            w.write_all(b"ICAP/1.0 204 No Content\r\nEncapsulated: null-body=0\r\n\r\n")?;
            continue;
        }
        if preview && !infected(&body) && !ieof {
            w.write_all(b"ICAP/1.0 100 Continue\r\n\r\n")?;
            read_chunks(&mut r, &mut body)?;
        }
        let res_hdr = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
        if infected(&body) && (allow_204 || preview && body.len() <= 1024) {
            let page = "HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\n";
            let answer = format!(
                "ICAP/1.0 200 OK\r\nX-Infection-Found: Type=0; Resolution=2; Threat=Eicar;\r\nEncapsulated: res-hdr=0, res-body={}\r\n\r\n{page}2\r\nno\r\n0\r\n\r\n",
                page.len()
            );
            w.write_all(answer.as_bytes())?;
        } else if infected(&body) {
            let half = &body[..body.len() / 2];
            let mut answer = format!(
                "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body={}\r\n\r\n{res_hdr}{:x}\r\n",
                res_hdr.len(),
                half.len()
            )
            .into_bytes();
            answer.extend_from_slice(half);
            w.write_all(&answer)?;
            return w.shutdown(std::net::Shutdown::Both);
        } else if allow_204 {
            w.write_all(b"ICAP/1.0 204 No Content\r\nEncapsulated: null-body=0\r\n\r\n")?;
        } else {
            let mut answer = format!(
                "ICAP/1.0 200 OK\r\nEncapsulated: res-hdr=0, res-body={}\r\n\r\n{res_hdr}{:x}\r\n",
                res_hdr.len(),
                body.len()
            )
            .into_bytes();
            answer.extend_from_slice(&body);
            answer.extend_from_slice(b"\r\n0\r\n\r\n");
            w.write_all(&answer)?;
        }
    }
}
