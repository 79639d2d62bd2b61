//! HTTP/1.1 message syntax: head parsing, framing decisions and chunked
//! decoding. This module does no I/O and never allocates: it reads a byte
//! slice and reports spans into it, so the worker can forward unchanged
//! header bytes verbatim.
//!
//! Unsafe code is confined to `simd/` (the `std::arch` scanning loops).
//!
//! The same rules apply to both sides (requests from clients, responses from
//! backends): a message two parsers could read differently is rejected.

pub mod chunked;
pub mod compose;
pub mod framing;
#[cfg(test)]
mod framing_reference;
pub mod parse;
pub mod scan;
pub mod simd;
pub mod target;

pub use chunked::{ChunkError, ChunkedDecoder};
pub use framing::{BodyMode, ConnectionOpts, RequestMeta, ResponseMeta};
pub use parse::{
    parse_request, parse_response, HeaderRef, ParseError, RequestHead, ResponseHead, Span, Status,
};
pub use target::AbsoluteForm;
