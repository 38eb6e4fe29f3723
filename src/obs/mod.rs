//! Observability without I/O: what a finished transaction looks like to an operator, the
//! per-shard counters it feeds, the access-log line it becomes, and the text pages the
//! metrics listener serves.
//!
//! Each shard owns one [`metrics::ShardMetrics`] and one [`access_log::AccessLog`] buffer and
//! updates them from its own connection tasks: plain integers in a `RefCell`, no atomics and
//! no locks on the request path. A scrape asks every shard for a copy over its control
//! channel and merges the copies, so the cost of aggregation is paid by the scraper, once per
//! scrape, not by every request. Like `proto`, nothing here touches sockets, files or clocks:
//! times come in as arguments and bytes go out in buffers; `server` does the writing.

pub mod access_log;
pub mod histogram;
pub mod metrics;
pub mod prometheus;
pub mod record;
pub mod scrape;
pub mod snapshot;
pub mod status;
