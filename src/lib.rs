//! icapd: a thread-per-core ICAP (RFC 3507) content-scanning server.
//!
//! ```text
//! socket bytes -> shard (one per CPU, own listener, own buffers)       [server]
//!              -> connection state machine (bytes in, events out)     [proto::conn]
//!              -> chunk decoder (ICAP chunks -> body slices)           [proto::chunked]
//!              -> inspector (begin / feed / finish -> verdict)         [inspect]
//!              -> response encoder (100 / 204 / 200 echo / block / errors) [proto::response]
//!              -> socket
//! ```
//!
//! The rule that shapes the crate: `proto` and `inspect` never do I/O. They take bytes and time
//! as arguments and return bytes and decisions, so every parser and the whole connection state
//! machine can be tested at every split point, fuzzed, and benchmarked without sockets. Only
//! `server` imports glommio.

pub mod access;
pub mod balance;
pub mod budget;
pub mod config;
pub mod inspect;
pub mod limits;
pub mod obs;
pub mod proto;
pub mod scan;
pub mod server;
pub mod signatures;
