//! PDF: every stream, decoded through its `/Filter` chain, is a member; `/EmbeddedFile` streams
//! (files attached to the document) are named as such. The file is not parsed through its
//! cross-reference table (often wrong in hostile files); instead every `stream` keyword after a
//! dictionary is found, the dictionary read back from the nearest `obj`, and the data delimited
//! by `/Length` where it lands on `endstream`, else by the next `endstream`. An `/Encrypt` entry
//! in a trailer or cross-reference dictionary means the streams are ciphertext:
//! `Heuristics.Encrypted.PDF`.
//!
//! Tolerance is that of readers, bounded: a stream whose filter is unknown (images: DCT, JPX,
//! JBIG2, CCITT) is emitted as far as it was decoded; a Flate stream without its end is kept as
//! far as it inflates. A stream cut off by the end of the file, a filter that fails before
//! producing anything, or a file without `%%EOF` near its end makes the result
//! `Heuristics.Broken.PDF` once every other stream has been emitted.

use memchr::memmem;

use super::deflate::inflate;
use super::out::{broken, Buf, Out, Put, Stop, R};
use super::pdf_filters::{self as f, is_space, Predictor, Unpredict, BROKEN};

const ENCRYPTED: &str = "Heuristics.Encrypted.PDF";
/// How far back from a `stream` keyword its object header is looked for.
const DICT_BACK_BYTES: usize = 64 * 1024;
/// Nesting depth of arrays and dictionaries the object reader follows.
const DEPTH_MAX: u32 = 32;
/// Filters in one chain.
const FILTERS_MAX: usize = 8;

/// A PDF value, as far as this reader needs one.
#[derive(Clone, Debug, PartialEq)]
enum Obj<'a> {
    Name(&'a [u8]),
    Int(i64),
    Ref(i64),
    Arr(Vec<Obj<'a>>),
    Dict(Vec<(&'a [u8], Obj<'a>)>),
    Other,
}

impl<'a> Obj<'a> {
    fn get(&self, key: &[u8]) -> Option<&Obj<'a>> {
        match self {
            Obj::Dict(d) => d.iter().find(|(k, _)| *k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

fn is_delim(b: u8) -> bool {
    matches!(b, b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%')
}

/// A small recursive-descent reader over `s[*at..]`.
struct Lexer<'a> {
    s: &'a [u8],
    at: usize,
}

impl<'a> Lexer<'a> {
    fn skip_ws(&mut self) {
        while let Some(&b) = self.s.get(self.at) {
            if is_space(b) {
                self.at += 1;
            } else if b == b'%' {
                while let Some(&c) = self.s.get(self.at) {
                    if c == b'\r' || c == b'\n' {
                        break;
                    }
                    self.at += 1;
                }
            } else {
                break;
            }
        }
    }

    fn regular(&mut self) -> &'a [u8] {
        let start = self.at;
        while let Some(&b) = self.s.get(self.at) {
            if is_space(b) || is_delim(b) {
                break;
            }
            self.at += 1;
        }
        &self.s[start..self.at]
    }

    fn value(&mut self, depth: u32) -> Option<Obj<'a>> {
        if depth > DEPTH_MAX {
            return None;
        }
        self.skip_ws();
        let &b = self.s.get(self.at)?;
        match b {
            b'/' => {
                self.at += 1;
                Some(Obj::Name(self.regular()))
            }
            b'<' if self.s.get(self.at + 1) == Some(&b'<') => {
                self.at += 2;
                let mut d = Vec::new();
                loop {
                    self.skip_ws();
                    match self.s.get(self.at)? {
                        b'>' => {
                            self.at += 2;
                            return Some(Obj::Dict(d));
                        }
                        b'/' => {
                            self.at += 1;
                            let k = self.regular();
                            let v = self.value(depth + 1)?;
                            d.push((k, v));
                        }
                        _ => {
                            // Junk in a dictionary: skip one token, as readers do.
                            let before = self.at;
                            self.value(depth + 1)?;
                            if self.at == before {
                                self.at += 1;
                            }
                        }
                    }
                }
            }
            b'<' => {
                let end = memchr::memchr(b'>', &self.s[self.at..])?;
                self.at += end + 1;
                Some(Obj::Other)
            }
            b'[' => {
                self.at += 1;
                let mut a = Vec::new();
                loop {
                    self.skip_ws();
                    if *self.s.get(self.at)? == b']' {
                        self.at += 1;
                        return Some(Obj::Arr(a));
                    }
                    let before = self.at;
                    let v = self.value(depth + 1)?;
                    if self.at == before {
                        self.at += 1;
                    }
                    a.push(v);
                }
            }
            b'(' => {
                let mut nest = 0u32;
                while let Some(&c) = self.s.get(self.at) {
                    self.at += 1;
                    match c {
                        b'\\' => self.at += 1,
                        b'(' => nest += 1,
                        b')' => {
                            nest -= 1;
                            if nest == 0 {
                                return Some(Obj::Other);
                            }
                        }
                        _ => {}
                    }
                }
                None
            }
            b'>' | b']' | b')' | b'{' | b'}' => {
                self.at += 1;
                Some(Obj::Other)
            }
            _ => {
                let tok = self.regular();
                if tok.is_empty() {
                    self.at += 1;
                    return Some(Obj::Other);
                }
                let Some(n) = int(tok) else { return Some(Obj::Other) };
                // `N G R` is a reference.
                let save = self.at;
                self.skip_ws();
                let g = self.regular();
                self.skip_ws();
                if int(g).is_some() && self.s.get(self.at) == Some(&b'R') {
                    self.at += 1;
                    return Some(Obj::Ref(n));
                }
                self.at = save;
                Some(Obj::Int(n))
            }
        }
    }
}

fn int(tok: &[u8]) -> Option<i64> {
    std::str::from_utf8(tok).ok()?.parse().ok()
}

/// A stream found in the file: where its object header and data are, and its dictionary.
struct Found<'a> {
    obj_at: usize,
    start: usize,
    end: usize,
    cut: bool,
    dict: Obj<'a>,
}

pub fn extract(data: &[u8], out: &mut Out) -> R {
    let found = find_streams(data, out.limits().members_max as usize + 1);
    if encrypted(data, &found) {
        return Err(Stop::Fault(super::Fault::Encrypted(ENCRYPTED)));
    }
    let mut broken_seen = false;
    for s in &found {
        let name = match obj_number(data, s.obj_at) {
            Some(n) => format!("obj{n}"),
            None => format!("stream@{}", s.start),
        };
        let embedded = s.dict.get(b"Type") == Some(&Obj::Name(b"EmbeddedFile"));
        let name = if embedded { format!("{name}/EmbeddedFile") } else { name };
        out.start(&name)?;
        match decode(&data[s.start..s.end], &s.dict, out) {
            Ok(()) => {}
            Err(Stop::Fault(super::Fault::Broken(_))) => broken_seen = true,
            Err(e) => return Err(e),
        }
        out.end()?;
        broken_seen |= s.cut;
    }
    let tail = &data[data.len().saturating_sub(1024)..];
    if memmem::find(tail, b"%%EOF").is_none() || (found.is_empty() && memmem::find(data, b"obj").is_none()) {
        broken_seen = true;
    }
    if broken_seen {
        return Err(broken(BROKEN));
    }
    Ok(())
}

/// Every stream in file order, up to `max` of them (one more than the member limit, so that
/// the limit still trips). One forward pass: the `obj` keyword before each `stream` is tracked
/// as the search goes, and each object header serves one stream at most, so the work is
/// linear in the file size.
fn find_streams(data: &[u8], max: usize) -> Vec<Found<'_>> {
    let mut found = Vec::new();
    let mut search = 0usize;
    let mut obj_cursor = 0usize;
    let mut last_obj: Option<usize> = None;
    let mut used_obj: Option<usize> = None;
    while let Some(pos) = memmem::find(&data[search..], b"stream").map(|p| p + search) {
        if found.len() >= max {
            break;
        }
        search = pos + 6;
        if pos >= 3 && &data[pos - 3..pos] == b"end" {
            continue;
        }
        while let Some(o) = data.get(obj_cursor..pos).and_then(|w| memmem::find(w, b"obj")).map(|p| p + obj_cursor) {
            last_obj = Some(o);
            obj_cursor = o + 3;
        }
        obj_cursor = obj_cursor.max(pos);
        let Some(start) = data_start(data, pos + 6) else { continue };
        let Some(obj) = last_obj.filter(|&o| Some(o) != used_obj && pos - o <= DICT_BACK_BYTES) else { continue };
        // Spent even when it does not parse: each header is read once, so the reading stays
        // linear in the file size whatever lies between the headers and the keywords.
        used_obj = Some(obj);
        let mut lx = Lexer { s: &data[..pos], at: obj + 3 };
        let Some(dict @ Obj::Dict(_)) = lx.value(0) else { continue };
        let (end, cut) = data_end(data, start, &dict);
        found.push(Found { obj_at: obj, start, end, cut, dict });
        search = end.max(search);
        obj_cursor = obj_cursor.max(search);
    }
    found
}

/// True where a dictionary outside stream data (the trailer, or a cross-reference stream's
/// dictionary) has an `/Encrypt` entry: a name token exactly, as `/EncryptMetadata` is
/// something else.
fn encrypted(data: &[u8], found: &[Found]) -> bool {
    memmem::find_iter(data, b"/Encrypt").any(|p| {
        let next = data.get(p + 8).copied().unwrap_or(b' ');
        let token = is_space(next) || is_delim(next) || next.is_ascii_digit();
        token && !found.iter().any(|s| (s.start..s.end).contains(&p))
    })
}

/// After `stream`: CRLF or LF (CR alone, as some writers do) starts the data.
fn data_start(data: &[u8], at: usize) -> Option<usize> {
    let mut i = at;
    while data.get(i) == Some(&b' ') {
        i += 1;
    }
    match (data.get(i), data.get(i + 1)) {
        (Some(b'\r'), Some(b'\n')) => Some(i + 2),
        (Some(b'\n'), _) | (Some(b'\r'), _) => Some(i + 1),
        _ => None,
    }
}

/// `N G obj` before `at`: the object number N.
fn obj_number(data: &[u8], obj_at: usize) -> Option<i64> {
    let head = &data[obj_at.saturating_sub(32)..obj_at];
    let mut words = head.split(|&b| is_space(b)).filter(|w| !w.is_empty()).rev();
    let _gen = int(words.next()?)?;
    int(words.next()?)
}

/// The end of the stream data, and whether the stream was cut off by the end of the file.
fn data_end(data: &[u8], start: usize, dict: &Obj) -> (usize, bool) {
    let len = match dict.get(b"Length") {
        Some(Obj::Int(n)) => Some(*n),
        // An indirect length is not looked up (a search per stream would make hostile files
        // quadratic); `endstream` delimits those streams.
        _ => None,
    };
    if let Some(len) = len.and_then(|l| usize::try_from(l).ok()) {
        if let Some(end) = start.checked_add(len).filter(|&e| e <= data.len()) {
            let mut after = end;
            while data.get(after).is_some_and(|&b| is_space(b)) {
                after += 1;
            }
            if data[after..].starts_with(b"endstream") {
                return (end, false);
            }
        }
    }
    match memmem::find(&data[start..], b"endstream") {
        Some(p) => {
            let mut end = start + p;
            // The EOL before `endstream` is not data.
            if end > start && data[end - 1] == b'\n' {
                end -= 1;
            }
            if end > start && data[end - 1] == b'\r' {
                end -= 1;
            }
            (end, false)
        }
        None => (data.len(), true),
    }
}

fn names<'a>(o: Option<&Obj<'a>>) -> Vec<&'a [u8]> {
    match o {
        Some(Obj::Name(n)) => vec![n],
        Some(Obj::Arr(a)) => a.iter().filter_map(|o| if let Obj::Name(n) = o { Some(*n) } else { None }).collect(),
        _ => Vec::new(),
    }
}

fn parms<'a, 'b>(o: Option<&'b Obj<'a>>, i: usize) -> Option<&'b Obj<'a>> {
    match o? {
        d @ Obj::Dict(_) if i == 0 => Some(d),
        Obj::Arr(a) => a.get(i).filter(|d| matches!(d, Obj::Dict(_))),
        _ => None,
    }
}

fn int_of(d: Option<&Obj>, key: &[u8], default: i64) -> i64 {
    match d.and_then(|d| d.get(key)) {
        Some(Obj::Int(n)) => *n,
        _ => default,
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Filter {
    Flate,
    Hex,
    A85,
    Lzw,
    RunLength,
}

fn filter(name: &[u8]) -> Option<Filter> {
    Some(match name {
        b"FlateDecode" | b"Fl" => Filter::Flate,
        b"ASCIIHexDecode" | b"AHx" => Filter::Hex,
        b"ASCII85Decode" | b"A85" => Filter::A85,
        b"LZWDecode" | b"LZW" => Filter::Lzw,
        b"RunLengthDecode" | b"RL" => Filter::RunLength,
        _ => return None,
    })
}

/// Runs the filter chain: each stage but the last into a buffer bounded by the member limit,
/// the last into the member. A filter this reader does not know ends the chain there: the
/// bytes so far are the member.
fn decode(raw: &[u8], dict: &Obj, out: &mut Out) -> R {
    let chain = names(dict.get(b"Filter").or(dict.get(b"F")));
    let parm = dict.get(b"DecodeParms").or(dict.get(b"DP"));
    let known: Vec<(Filter, Option<&Obj>)> = chain
        .iter()
        .take(FILTERS_MAX)
        .map_while(|n| filter(n))
        .enumerate()
        .map(|(i, fl)| (fl, parms(parm, i)))
        .collect();
    let cap = out.limits().member_bytes_max;
    let mut owned: Vec<u8>;
    let mut input: &[u8] = raw;
    for (i, (fl, p)) in known.iter().enumerate() {
        if i + 1 == known.len() {
            return stage(*fl, *p, input, out);
        }
        let mut b = Buf::new(cap);
        stage(*fl, *p, input, &mut b)?;
        owned = b.bytes;
        input = &owned;
    }
    out.data(input)
}

fn stage(fl: Filter, parms: Option<&Obj>, input: &[u8], put: &mut dyn Put) -> R {
    let predictor = Predictor {
        kind: int_of(parms, b"Predictor", 1),
        colors: int_of(parms, b"Colors", 1),
        bits: int_of(parms, b"BitsPerComponent", 8),
        columns: int_of(parms, b"Columns", 1),
    };
    let mut counted = Counted { put, n: 0 };
    let r = if predictor.kind > 1 && matches!(fl, Filter::Flate | Filter::Lzw) {
        let mut u = Unpredict::new(predictor, &mut counted);
        let r = run_filter(fl, parms, input, &mut u);
        r.and_then(|()| u.finish())
    } else {
        run_filter(fl, parms, input, &mut counted)
    };
    match r {
        // A filter that fails after producing bytes keeps them, as readers do.
        Err(Stop::Fault(super::Fault::Broken(_))) if counted.n > 0 => Ok(()),
        r => r,
    }
}

fn run_filter(fl: Filter, parms: Option<&Obj>, input: &[u8], put: &mut dyn Put) -> R {
    match fl {
        Filter::Flate => {
            // Some writers leave out the zlib header: try raw deflate where zlib fails at once.
            let mut counted = Counted { put, n: 0 };
            match inflate(input, true, true, BROKEN, &mut counted) {
                Err(Stop::Fault(super::Fault::Broken(_))) if counted.n == 0 => {
                    inflate(input, false, true, BROKEN, counted.put).map(|_| ())
                }
                r => r.map(|_| ()),
            }
        }
        Filter::Hex => f::ascii_hex(input, put),
        Filter::A85 => f::ascii85(input, put),
        Filter::Lzw => f::lzw(input, int_of(parms, b"EarlyChange", 1) != 0, put),
        Filter::RunLength => f::run_length(input, put),
    }
}

/// Counts what passes, so a failure after output can be told from one before.
struct Counted<'a> {
    put: &'a mut dyn Put,
    n: u64,
}

impl Put for Counted<'_> {
    fn put(&mut self, data: &[u8]) -> R {
        self.n += data.len() as u64;
        self.put.put(data)
    }
}
