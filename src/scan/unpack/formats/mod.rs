//! One streamed feeder per format family, chosen by [`feeder`] from the detected kind.

mod codec;
mod cpio;
mod stream;
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
        Kind::Binhex | Kind::Szdd => Box::new(Nothing),
        Kind::Whole(_) => unreachable!("whole formats are buffered, not fed"),
    }
}

struct Nothing;
impl Feed for Nothing {
    fn feed(&mut self, _: &[u8], _: &mut super::Emit<'_>) -> Result<std::ops::ControlFlow<()>, super::Fault> {
        Ok(std::ops::ControlFlow::Continue(()))
    }
    fn finish(&mut self, _: &mut super::Emit<'_>) -> Result<std::ops::ControlFlow<()>, super::Fault> {
        Ok(std::ops::ControlFlow::Continue(()))
    }
}
