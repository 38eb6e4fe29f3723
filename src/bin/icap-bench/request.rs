//! Building the ICAP requests a run sends, once, before the clock starts.
//!
//! Every object is encoded up front into at most two byte strings: what goes out first (the
//! ICAP head, the encapsulated HTTP head, and the preview or the whole body), and, when a
//! preview does not cover the body, the rest that follows `100 Continue`. Each part is then one
//! `write` call on the socket (more only where the kernel takes less), so the server sees
//! full segments and never waits on Nagle or delayed ACKs.

use crate::body::{self, EicarAt};

/// ICAP method of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Respmod,
    Reqmod,
}

/// Everything about the request framing that is the same for every object.
#[derive(Clone, Debug)]
pub struct Framing {
    pub method: Method,
    /// `host:port` for the request line and the Host header.
    pub authority: String,
    pub service: String,
    pub allow_204: bool,
    /// Preview size in bytes; `None` sends no Preview header.
    pub preview: Option<usize>,
    /// Body bytes per ICAP chunk.
    pub chunk_bytes: usize,
}

/// One object, encoded.
#[derive(Clone, Debug)]
pub struct Object {
    /// Sent first: heads plus the preview (ending `0; ieof` when it holds the whole body) or the
    /// whole body when there is no preview.
    pub first: Vec<u8>,
    /// Sent after `100 Continue`: the body past the preview and the last chunk.
    pub rest: Option<Vec<u8>>,
    pub body_bytes: usize,
    /// Whether EICAR was planted, i.e. whether the server must block this object.
    pub infected: bool,
}

/// Encodes one object with the given body.
pub fn encode(f: &Framing, body: &[u8], infected: bool) -> Object {
    let req_hdr = match f.method {
        Method::Reqmod => format!(
            "POST http://bench.test/upload HTTP/1.1\r\nHost: bench.test\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            body.len()
        ),
        Method::Respmod => "GET http://bench.test/object HTTP/1.1\r\nHost: bench.test\r\n\r\n".to_string(),
    };
    let res_hdr =
        format!("HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n", body.len());
    let (method, encapsulated, http_heads) = match f.method {
        Method::Reqmod => ("REQMOD", format!("req-hdr=0, req-body={}", req_hdr.len()), req_hdr),
        Method::Respmod => (
            "RESPMOD",
            format!("req-hdr=0, res-hdr={}, res-body={}", req_hdr.len(), req_hdr.len() + res_hdr.len()),
            format!("{req_hdr}{res_hdr}"),
        ),
    };
    let mut head = format!("{method} icap://{}/{} ICAP/1.0\r\nHost: {}\r\n", f.authority, f.service, f.authority);
    if f.allow_204 {
        head.push_str("Allow: 204\r\n");
    }
    if let Some(p) = f.preview {
        head.push_str(&format!("Preview: {p}\r\n"));
    }
    head.push_str(&format!("Encapsulated: {encapsulated}\r\n\r\n{http_heads}"));

    let mut first = Vec::with_capacity(head.len() + body.len().min(f.preview.unwrap_or(usize::MAX)) + 64);
    first.extend_from_slice(head.as_bytes());
    let rest = match f.preview {
        Some(p) if body.len() <= p => {
            chunks(body, f.chunk_bytes, &mut first);
            first.extend_from_slice(b"0; ieof\r\n\r\n");
            None
        }
        Some(p) => {
            chunks(&body[..p], f.chunk_bytes, &mut first);
            first.extend_from_slice(b"0\r\n\r\n");
            let mut rest = Vec::with_capacity(body.len() - p + 64);
            chunks(&body[p..], f.chunk_bytes, &mut rest);
            rest.extend_from_slice(b"0\r\n\r\n");
            Some(rest)
        }
        None => {
            chunks(body, f.chunk_bytes, &mut first);
            first.extend_from_slice(b"0\r\n\r\n");
            None
        }
    };
    Object { first, rest, body_bytes: body.len(), infected }
}

/// Appends `data` as ICAP chunks of at most `size` bytes.
fn chunks(data: &[u8], size: usize, out: &mut Vec<u8>) {
    for piece in data.chunks(size.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
}

/// The objects of a run and which one each request sends.
///
/// Request number `seq` sends body `seq % bodies`, with EICAR planted when
/// `seq % eicar_every == eicar_every - 1`: exactly every Nth request must be blocked, whatever
/// the number of connections. When the bodies themselves carry a signature
/// (`bodies_infected`), every request must be blocked.
pub struct Workload {
    /// The objects as given, one per body (clean unless the bodies are known to be infected).
    clean: Vec<Object>,
    /// The same bodies with EICAR planted (empty when nothing is planted).
    infected: Vec<Object>,
    eicar_every: u64,
}

impl Workload {
    pub fn new(
        f: &Framing,
        bodies: &[Vec<u8>],
        bodies_infected: bool,
        eicar_every: u64,
        eicar_at: EicarAt,
    ) -> Workload {
        let clean = bodies.iter().map(|b| encode(f, b, bodies_infected)).collect();
        let infected = if eicar_every > 0 {
            bodies.iter().map(|b| encode(f, &body::with_eicar(b, eicar_at), true)).collect()
        } else {
            Vec::new()
        };
        Workload { clean, infected, eicar_every }
    }

    pub fn object(&self, seq: u64) -> &Object {
        let i = (seq % self.clean.len() as u64) as usize;
        if self.eicar_every > 0 && seq % self.eicar_every == self.eicar_every - 1 {
            &self.infected[i]
        } else {
            &self.clean[i]
        }
    }

    /// Mean body size over the bodies, for reporting.
    pub fn mean_body_bytes(&self) -> f64 {
        self.clean.iter().map(|o| o.body_bytes as f64).sum::<f64>() / self.clean.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use icapd::proto::chunked::{Chunk, ChunkDecoder};

    fn framing(method: Method, preview: Option<usize>, allow_204: bool) -> Framing {
        Framing {
            method,
            authority: "127.0.0.1:1344".into(),
            service: "respmod".into(),
            allow_204,
            preview,
            chunk_bytes: 100,
        }
    }

    /// Splits an encoded part into (ICAP head, encapsulated heads, decoded body, ieof).
    fn decode(part: &[u8], http_heads: bool) -> (String, String, Vec<u8>, bool) {
        let mut rest = part;
        let (mut icap, mut http) = (String::new(), String::new());
        if http_heads {
            let end = memchr::memmem::find(rest, b"\r\n\r\n").unwrap() + 4;
            icap = String::from_utf8(rest[..end].to_vec()).unwrap();
            let encap = icap.lines().find_map(|l| l.strip_prefix("Encapsulated: ")).unwrap();
            let body_at: usize = encap.rsplit('=').next().unwrap().parse().unwrap();
            http = String::from_utf8(rest[end..end + body_at].to_vec()).unwrap();
            rest = &rest[end + body_at..];
        }
        let mut dec = ChunkDecoder::new(256, 4096);
        let mut body = Vec::new();
        loop {
            let (n, ev) = dec.decode(rest).unwrap();
            match ev {
                Chunk::Data { start, end } => body.extend_from_slice(&rest[start..end]),
                Chunk::End { ieof } => {
                    assert_eq!(n, rest.len(), "nothing may follow the last chunk");
                    return (icap, http, body, ieof);
                }
                Chunk::NeedMore => panic!("truncated"),
            }
            rest = &rest[n..];
        }
    }

    #[test]
    fn respmod_preview_covering_the_body_ends_with_ieof() {
        let body = body::synthetic(250);
        let o = encode(&framing(Method::Respmod, Some(1024), true), &body, false);
        assert!(o.rest.is_none());
        let (icap, http, got, ieof) = decode(&o.first, true);
        assert!(icap.starts_with("RESPMOD icap://127.0.0.1:1344/respmod ICAP/1.0\r\n"));
        assert!(icap.contains("\r\nAllow: 204\r\n") && icap.contains("\r\nPreview: 1024\r\n"));
        assert!(http.starts_with("GET ") && http.contains("HTTP/1.1 200 OK\r\n") && http.contains("Length: 250\r\n"));
        assert_eq!((got, ieof), (body, true));
    }

    #[test]
    fn preview_shorter_than_the_body_leaves_a_rest() {
        let body = body::synthetic(5000);
        let o = encode(&framing(Method::Respmod, Some(1024), false), &body, false);
        let (icap, _, preview, ieof) = decode(&o.first, true);
        assert!(!icap.contains("Allow:"));
        assert_eq!((&preview[..], ieof), (&body[..1024], false));
        let (_, _, rest, ieof) = decode(o.rest.as_ref().unwrap(), false);
        assert_eq!((&rest[..], ieof), (&body[1024..], false));
    }

    #[test]
    fn reqmod_without_preview_sends_everything_at_once() {
        let body = body::synthetic(777);
        let o = encode(&framing(Method::Reqmod, None, false), &body, false);
        assert!(o.rest.is_none());
        let (icap, http, got, ieof) = decode(&o.first, true);
        assert!(icap.starts_with("REQMOD ") && icap.contains("Encapsulated: req-hdr=0, req-body="));
        assert!(!icap.contains("Preview:"));
        assert!(http.starts_with("POST ") && http.contains("Content-Length: 777\r\n"));
        assert_eq!((got, ieof), (body, false));
    }

    #[test]
    fn every_nth_request_carries_eicar() {
        let bodies = vec![body::synthetic(300), body::synthetic(400)];
        // One chunk per body, so that EICAR is not split by a chunk boundary in the encoding.
        let f = Framing { chunk_bytes: 65536, ..framing(Method::Respmod, None, true) };
        let w = Workload::new(&f, &bodies, false, 3, EicarAt::Middle);
        for seq in 0..12 {
            let o = w.object(seq);
            assert_eq!(o.infected, seq % 3 == 2);
            assert_eq!(o.body_bytes, bodies[seq as usize % 2].len());
            assert_eq!(memchr::memmem::find(&o.first, body::EICAR).is_some(), o.infected);
        }
        assert_eq!(w.mean_body_bytes(), 350.0);
        let all = Workload::new(&f, &bodies, true, 0, EicarAt::Middle);
        assert!((0..4).all(|seq| all.object(seq).infected));
    }
}
