//! The control plane: reading a signature folder and compiling it into an immutable
//! [`Generation`], off the data path.
//!
//! A generation is built on a control thread, shared read-only by every shard through an
//! `Arc`, and swapped in at request boundaries; in-flight transactions finish on the generation
//! they started with. A folder that fails to compile (a YARA syntax error, an unreadable file)
//! is reported and the previous generation stays in force. Individual ClamAV lines that are
//! malformed or use unsupported syntax are reported with file and line and skipped.

pub mod clamav;
pub mod generation;
pub mod hashsig;
pub mod ndb;
pub mod problem;
pub mod urls;
pub mod yara;
pub mod yara_rules;

pub use generation::{load, Generation, LoadOptions};
pub use problem::Problem;
