//! One streamed feeder per format family, chosen by [`feeder`] from the detected kind.

mod binhex;
pub(crate) mod codec;
mod cpio;
mod isfiles;
mod nsis;
mod overlay;
mod stream;
mod szdd;
mod tar;
mod zip;

use super::detect::Kind;
use super::{Cx, Feed};

pub use isfiles::starts_list as starts_installshield_list;
pub use nsis::MAGIC as NSIS_MAGIC;
pub use overlay::overlay_offset;

/// Output buffer of each decompressing feeder.
const OUT_BYTES: usize = 32 * 1024;

/// The feeder that opens a container of `kind`; `name` is the container's own name.
/// `None` when the format's decoder cannot be set up within its limits.
pub(super) fn feeder(kind: Kind, name: &str, cx: &Cx<'_>) -> Option<Box<dyn Feed>> {
    let lzma_max = cx.tree.limits.lzma_memory_bytes_max;
    let compressed = |f| stream::Compressed::new(f, name, OUT_BYTES, lzma_max).map(|c| Box::new(c) as Box<dyn Feed>);
    Some(match kind {
        Kind::Gzip => compressed(stream::Format::Gzip)?,
        Kind::Bzip2 => compressed(stream::Format::Bzip2)?,
        Kind::Zstd => compressed(stream::Format::Zstd)?,
        Kind::Xz => compressed(stream::Format::Xz)?,
        Kind::Lzma => compressed(stream::Format::Lzma)?,
        Kind::Zip => Box::new(zip::Zip::new(OUT_BYTES, lzma_max)),
        Kind::Tar => Box::new(tar::Tar::new()),
        Kind::Cpio(k) => Box::new(cpio::Cpio::new(k)),
        Kind::Mail => Box::new(super::mime::Mime::mail()),
        Kind::Multipart => Box::new(super::mime::Mime::multipart()),
        Kind::Uuencode => Box::new(super::uu::Uu::new()),
        Kind::Binhex => Box::new(binhex::Binhex::new()),
        Kind::Szdd => Box::new(szdd::Szdd::new(name)),
        Kind::Nsis => Box::new(nsis::Nsis::new(OUT_BYTES, lzma_max)),
        Kind::InstallShield => Box::new(isfiles::IsFiles::new()),
        Kind::PeOverlay(at) => Box::new(overlay::Overlay::new(at)),
        Kind::Whole(_) => unreachable!("whole formats are buffered, not fed"),
    })
}
