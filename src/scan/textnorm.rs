//! ClamAV's text and HTML normalisation, streamed: what signatures for target types 7 (ASCII
//! text) and 3 (HTML) are matched against.
//!
//! ClamAV does not match those signatures against the raw bytes but against a normalised copy:
//! letters lower-cased and every run of whitespace collapsed into one space, and for HTML also
//! character references decoded (`&lt;`, `&#60;`, `&#x3c;` become `<`). Signatures for these
//! targets are written for that form, so matching them on raw bytes would miss. The
//! normaliser here is a small state machine over chunks: a reference cut by a chunk boundary
//! is held (at most [`ENTITY_BYTES_MAX`] bytes) until it completes, so the output does not
//! depend on where the object was cut.
//!
//! What icapd leaves out of ClamAV's HTML normalisation: removing comments and tags (ClamAV
//! also matches a tag-free copy) and decoding scripts. A signature written for those forms
//! misses here; none fires that would not fire in ClamAV on the same normalised text.

/// The longest character reference held across a chunk boundary (`&#x0010ffff;` fits).
pub const ENTITY_BYTES_MAX: usize = 12;

/// One normaliser; `html` also decodes character references.
#[derive(Debug, Clone, Default)]
pub struct TextNorm {
    html: bool,
    last_space: bool,
    entity: Vec<u8>,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

impl TextNorm {
    pub fn new(html: bool) -> Self {
        TextNorm { html, last_space: false, entity: Vec::with_capacity(ENTITY_BYTES_MAX) }
    }

    pub fn reset(&mut self) {
        self.last_space = false;
        self.entity.clear();
    }

    fn emit(&mut self, b: u8, out: &mut Vec<u8>) {
        if is_space(b) {
            if !self.last_space {
                out.push(b' ');
            }
            self.last_space = true;
        } else {
            out.push(b.to_ascii_lowercase());
            self.last_space = false;
        }
    }

    /// Appends the normalised form of `chunk` to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        for &b in chunk {
            if !self.html {
                self.emit(b, out);
                continue;
            }
            if self.entity.is_empty() {
                if b == b'&' {
                    self.entity.push(b);
                } else {
                    self.emit(b, out);
                }
                continue;
            }
            if b == b';' {
                match decode(&self.entity[1..]) {
                    Some(c) => {
                        self.entity.clear();
                        self.emit(c, out);
                    }
                    None => {
                        self.flush(out);
                        self.emit(b, out);
                    }
                }
            } else if b.is_ascii_alphanumeric() || (b == b'#' && self.entity.len() == 1) {
                self.entity.push(b);
                if self.entity.len() > ENTITY_BYTES_MAX {
                    self.flush(out);
                }
            } else {
                self.flush(out);
                if b == b'&' {
                    self.entity.push(b);
                } else {
                    self.emit(b, out);
                }
            }
        }
    }

    /// Writes out a reference that never completed, as it was.
    fn flush(&mut self, out: &mut Vec<u8>) {
        let held = std::mem::take(&mut self.entity);
        for &b in &held {
            self.emit(b, out);
        }
        self.entity = held;
        self.entity.clear();
    }

    /// Ends the object.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        self.flush(out);
    }
}

/// The byte a character reference stands for, when it is ASCII.
fn decode(name: &[u8]) -> Option<u8> {
    let value = match name {
        [b'#', b'x' | b'X', hex @ ..] if !hex.is_empty() => {
            u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?
        }
        [b'#', dec @ ..] if !dec.is_empty() => std::str::from_utf8(dec).ok()?.parse().ok()?,
        b"lt" => 0x3c,
        b"gt" => 0x3e,
        b"amp" => 0x26,
        b"quot" => 0x22,
        b"apos" => 0x27,
        b"nbsp" => 0x20,
        _ => return None,
    };
    u8::try_from(value).ok().filter(u8::is_ascii)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::testutil::for_each_split;

    fn norm(html: bool, data: &[u8], cuts: &[usize]) -> Vec<u8> {
        let mut n = TextNorm::new(html);
        let mut out = Vec::new();
        let mut prev = 0;
        for &c in cuts.iter().chain(std::iter::once(&data.len())) {
            n.feed(&data[prev..c], &mut out);
            prev = c;
        }
        n.finish(&mut out);
        out
    }

    #[test]
    fn text_and_html_every_way_cut() {
        let text = b"Hello\t\r\n  WORLD  x";
        assert_eq!(norm(false, text, &[]), b"hello world x");
        let html = b"<SCRIPT>A&lt;b &#65;&#x42; &amp &unknown; &#99999;</script>";
        let want = b"<script>a<b ab &amp &unknown; &#99999;</script>".to_vec();
        assert_eq!(norm(true, html, &[]), want);
        for_each_split(html.len(), |cuts| assert_eq!(norm(true, html, cuts), want, "{cuts:?}"));
        for_each_split(text.len(), |cuts| assert_eq!(norm(false, text, cuts), b"hello world x", "{cuts:?}"));
    }
}
