//! The sans-IO protocol core: ICAP/1.0 parsing, the connection state machine and response
//! encoding. Nothing here touches a socket, a clock or the executor; bytes and time come in as
//! arguments and bytes to send come out.

#[cfg(test)]
mod allow206_tests;
pub mod blocks;
pub mod chunked;
pub mod conn;
#[cfg(test)]
mod conn_tests;
pub mod date;
pub mod encapsulated;
pub mod error;
pub mod head;
pub mod httphead;
pub mod identity;
pub mod request;
pub mod response;
pub mod service;
#[doc(hidden)]
pub mod testutil;

/// The three ICAP methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Options,
    Reqmod,
    Respmod,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Options => "OPTIONS",
            Method::Reqmod => "REQMOD",
            Method::Respmod => "RESPMOD",
        }
    }
}
