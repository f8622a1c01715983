#![no_main]
//! The request reader on arbitrary bytes: the head parser on every prefix of a growing buffer (never
//! past the limit; the server parses only some of them, once the end of the head can be there, so
//! each must give the answer the whole would), then the body reader on what follows.
//!
//! Checked: no panic; a head is reported only within the input and the limit, and parses the same on
//! its own; reading in pieces ends exactly as reading at once; every refusal is a 400, 413 or 431; a
//! body is never over its limit.

use libfuzzer_sys::fuzz_target;
use sse_handler::fuzzing::{MAX_HEADERS, parse_head, read_body_from};
use sse_handler::{Error, Request, Result};

type Outcome = Result<Option<(Request, usize)>>;

fuzz_target!(|input: &[u8]| {
    // The first bytes choose the limits and the size of each read; the rest is what the client sent.
    let Some((knobs, bytes)) = input.split_first_chunk::<4>() else { return };
    let max_head = 64 + usize::from(u16::from_le_bytes([knobs[0], knobs[1]]) % 4096);
    let max_body = usize::from(knobs[2]) * 16;
    let step = 1 + usize::from(knobs[3] % 64);
    let available = bytes.len().min(max_head);

    let at_once = parse_head(&bytes[..available], max_head);
    check_head(&at_once, bytes, max_head);

    let mut seen = 0;
    let in_pieces = loop {
        seen = (seen + step).min(available);
        let outcome = parse_head(&bytes[..seen], max_head);
        if !matches!(outcome, Ok(None)) || seen == available {
            break outcome;
        }
    };
    assert_eq!(format!("{in_pieces:?}"), format!("{at_once:?}"), "reads cut the head differently");

    if let Ok(Some((request, len))) = at_once {
        let mut rest = &bytes[len..];
        match read_body_from(&mut rest, &request, max_body) {
            Ok(body) => assert!(body.len() <= max_body, "{} bytes over a limit of {max_body}", body.len()),
            Err(Error::BadRequest(_) | Error::BodyTooLarge { .. }) => {}
            Err(other) => panic!("unexpected body error {other:?}"),
        }
    }
});

fn check_head(outcome: &Outcome, bytes: &[u8], max_head: usize) {
    match outcome {
        Ok(Some((request, len))) => {
            let len = *len;
            assert!(len <= bytes.len() && len <= max_head, "head of {len} bytes (limit {max_head})");
            assert!(bytes[..len].ends_with(b"\n"));
            assert!(!request.method().is_empty() && request.headers().len() <= MAX_HEADERS);
            let alone = parse_head(&bytes[..len], max_head);
            assert!(matches!(alone, Ok(Some((ref r, l))) if r == request && l == len), "{alone:?}");
        }
        Ok(None) => assert!(bytes.len() < max_head, "waits for more past the limit"),
        Err(Error::BadRequest(_) | Error::HeadTooLarge { .. }) => {}
        Err(other) => panic!("unexpected head error {other:?}"),
    }
}
