//! Ways in for the fuzz targets in `fuzz/`, compiled only with the `fuzzing` feature.
//!
//! Not part of the public API: hidden from the docs, with no stability promise. It re-exports the
//! crate-private parsers that face the network, unchanged, so that the fuzzers run exactly the code
//! the server runs.

use std::io::Read;

use crate::error::Result;
use crate::http::{self, Request};

/// The most header fields a request head may have (more is answered 431).
pub const MAX_HEADERS: usize = http::MAX_HEADERS;

/// The request-head parser the server runs on what it has read so far: `Ok(None)` while the head
/// is incomplete and shorter than `max_head_bytes`, else the request and the head's length.
///
/// # Errors
/// As the server answers: a malformed head, or one over the limit.
pub fn parse_head(buf: &[u8], max_head_bytes: usize) -> Result<Option<(Request, usize)>> {
    http::parse_head(buf, max_head_bytes)
}

/// The body reader of the publish endpoint: the body that `request`'s headers announce
/// (`Content-Length` or chunked), read from `input`, at most `max_body_bytes` of it.
///
/// # Errors
/// As the server answers: bad framing, or a body over the limit.
pub fn read_body_from(input: &mut impl Read, request: &Request, max_body_bytes: usize) -> Result<Vec<u8>> {
    http::read_body_from(input, request, max_body_bytes)
}
