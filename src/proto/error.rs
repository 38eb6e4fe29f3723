//! The protocol error type and the one place that maps an error to an ICAP status.
//!
//! Errors are small `Copy` values that say what went wrong, never strings built from network
//! input. [`ProtoError::status`] is the only mapping from error to response status, so the
//! catalogue of answers to hostile input can be read off one `match`.

use std::fmt;

/// Everything that can be wrong with a request, named by cause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoError {
    /// The request line is not `METHOD SP URI SP VERSION`.
    RequestLine,
    /// The method is a well-formed token we do not implement.
    UnknownMethod,
    /// The version is `ICAP/x.y` but not `ICAP/1.0`.
    Version,
    /// The URI is not `icap://authority/service[?query]`.
    Uri,
    /// The URI names a service we do not offer.
    UnknownService,
    /// The service exists but does not offer this method.
    MethodNotAllowed,
    /// A line ended in LF without CR.
    BareLf,
    /// A header line started with whitespace (obsolete line folding).
    HeaderFolding,
    /// A header line has no colon or an invalid name.
    HeaderSyntax,
    /// A control byte (NUL, CR alone, ...) inside a header.
    ControlByte,
    /// The ICAP head is larger than `icap_header_bytes_max`.
    HeadTooLarge,
    /// More header lines than `icap_header_count_max`.
    TooManyHeaders,
    /// A header that must appear once appeared twice.
    DuplicateHeader,
    /// REQMOD or RESPMOD without an Encapsulated header.
    EncapsulatedMissing,
    /// The Encapsulated value is not a list of `name=offset`.
    EncapsulatedSyntax,
    /// Offsets are not strictly increasing, the first is not 0, or a name repeats.
    EncapsulatedOrder,
    /// Sections that the method does not allow (res-hdr in REQMOD, no body entry, ...).
    EncapsulatedMethod,
    /// The encapsulated HTTP headers exceed `http_header_bytes_max`.
    HttpHeadTooLarge,
    /// An encapsulated HTTP header section does not end in CRLF CRLF or holds bad bytes.
    HttpHead,
    /// Preview value that is not a decimal number.
    PreviewSyntax,
    /// Preview larger than we advertised.
    PreviewTooLarge,
    /// More preview data than the Preview header announced.
    PreviewOverrun,
    /// A chunk size that is not plain hex (sign, 0x, whitespace, empty).
    ChunkSize,
    /// A chunk size that does not fit in 64 bits.
    ChunkOverflow,
    /// A chunk-size line (with extensions) longer than `chunk_line_bytes_max`.
    ChunkLineTooLong,
    /// A chunk extension with bytes that are not allowed.
    ChunkExtension,
    /// Chunk data not followed by CRLF.
    ChunkDataEnd,
    /// `ieof` on a chunk that carries data.
    IeofOnData,
    /// Trailer section larger than `trailer_bytes_max`.
    TrailerTooLarge,
    /// Trailer line that is not a header line.
    TrailerSyntax,
    /// An encapsulated HTTP head whose body framing is ambiguous: Content-Length together with
    /// Transfer-Encoding, Content-Length values that differ, or one that is not plain decimal.
    HttpFraming,
}

impl ProtoError {
    /// The ICAP status answered for this error. Every error closes the connection after the
    /// answer: once framing is in doubt, nothing later on the connection can be trusted.
    pub fn status(self) -> u16 {
        use ProtoError::*;
        match self {
            UnknownMethod => 501,
            Version => 505,
            UnknownService => 404,
            MethodNotAllowed => 405,
            HeadTooLarge | TooManyHeaders => 431,
            HttpHeadTooLarge => 413,
            RequestLine | Uri | BareLf | HeaderFolding | HeaderSyntax | ControlByte | DuplicateHeader
            | EncapsulatedMissing | EncapsulatedSyntax | EncapsulatedOrder | EncapsulatedMethod | HttpHead
            | PreviewSyntax | PreviewTooLarge | PreviewOverrun | ChunkSize | ChunkOverflow | ChunkLineTooLong
            | ChunkExtension | ChunkDataEnd | IeofOnData | TrailerTooLarge | TrailerSyntax | HttpFraming => 400,
        }
    }
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} ({})", self, self.status())
    }
}

impl std::error::Error for ProtoError {}

/// Reason phrase for the statuses this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        404 => "ICAP Service Not Found",
        405 => "Method Not Allowed For Service",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Server Error",
        501 => "Method Not Implemented",
        503 => "Service Overloaded",
        505 => "ICAP Version Not Supported",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let table = [
            (ProtoError::UnknownMethod, 501),
            (ProtoError::Version, 505),
            (ProtoError::UnknownService, 404),
            (ProtoError::MethodNotAllowed, 405),
            (ProtoError::HeadTooLarge, 431),
            (ProtoError::TooManyHeaders, 431),
            (ProtoError::HttpHeadTooLarge, 413),
            (ProtoError::BareLf, 400),
            (ProtoError::ChunkOverflow, 400),
            (ProtoError::HttpFraming, 400),
        ];
        for (error, status) in table {
            assert_eq!(error.status(), status, "{error:?}");
            assert_ne!(reason(status), "Error");
        }
    }
}
