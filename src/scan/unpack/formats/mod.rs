//! One streamed feeder per format family, chosen by [`feeder`] from the detected kind.

mod binhex;
mod codec;
mod cpio;
mod stream;
mod szdd;
mod tar;
mod zip;

use super::detect::Kind;
use super::{Cx, Feed};

/// Output buffer of each decompressing feeder.
const OUT_BYTES: usize = 32 * 1024;

/// The feeder that opens a container of `kind`; `name` is the container's own name.
pub(super) fn feeder(kind: Kind, name: &str, _cx: &Cx<'_>) -> Box<dyn Feed> {
    match kind {
        Kind::Gzip => Box::new(stream::Compressed::new(stream::Format::Gzip, name, OUT_BYTES)),
        Kind::Bzip2 => Box::new(stream::Compressed::new(stream::Format::Bzip2, name, OUT_BYTES)),
        Kind::Zstd => Box::new(stream::Compressed::new(stream::Format::Zstd, name, OUT_BYTES)),
        Kind::Zip => Box::new(zip::Zip::new(OUT_BYTES)),
        Kind::Tar => Box::new(tar::Tar::new()),
        Kind::Cpio(k) => Box::new(cpio::Cpio::new(k)),
        Kind::Mail => Box::new(super::mime::Mime::mail()),
        Kind::Multipart => Box::new(super::mime::Mime::multipart()),
        Kind::Uuencode => Box::new(super::uu::Uu::new()),
        Kind::Binhex => Box::new(binhex::Binhex::new()),
        Kind::Szdd => Box::new(szdd::Szdd::new(name)),
        Kind::Whole(_) => unreachable!("whole formats are buffered, not fed"),
    }
}
