#![no_main]
//! The WebSocket reader of a server connection on arbitrary client frames (good and bad), then
//! arbitrary bytes, cut into arbitrary reads.
//!
//! Checked: no panic; the items do not depend on how the reads cut the input; no message is over its
//! limit and every refusal is 1002, 1007 or 1009; and the items are what a plain transcription of the
//! rules of RFC 6455 §5 makes of the frames (the bytes after them may add more). A frame may announce
//! more payload than follows, which ends the input; the limits go up to 256 MiB, far above any input,
//! so a run with `-malloc_limit_mb=16` also catches a buffer sized from a header rather than from the
//! bytes that came.

use std::io::{self, Read};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sse_handler::fuzzing::{WsItem, ws_read_all};
use sse_handler::ws::Message;

const MAX_LIMIT: u32 = 256 << 20;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Sizes of the reads, cycled (0 is taken as 1).
    sizes: Vec<u8>,
    max_frame: u32,
    max_message: u32,
    frames: Vec<Frame>,
    /// Bytes after the frames: anything at all.
    tail: Vec<u8>,
}

#[derive(Arbitrary, Debug)]
struct Frame {
    fin: bool,
    /// Mostly a known opcode; now and then any four bits.
    kind: u8,
    /// Reserved bits set when below 16 (rarely).
    reserved: u8,
    /// Unmasked when 0 (rarely).
    unmasked: u8,
    mask: [u8; 4],
    /// How the length is written: the shortest form, or 16 or 64 bits whatever it is.
    length_form: u8,
    payload: Payload,
    /// The header announces more bytes than the payload has (this many, plus one); the input ends
    /// after it.
    missing: Option<u32>,
}

#[derive(Arbitrary, Debug)]
enum Payload {
    Bytes(Vec<u8>),
    Text(String),
    Close(u16, String),
}

impl Frame {
    fn opcode(&self) -> u8 {
        match self.kind % 8 {
            0 => 0x0,
            1 => 0x1,
            2 => 0x2,
            3 => 0x8,
            4 => 0x9,
            5 => 0xA,
            _ => self.kind >> 4,
        }
    }

    fn reserved_bits(&self) -> u8 {
        if self.reserved < 16 { (self.reserved & 0x7) << 4 } else { 0 }
    }

    fn masked(&self) -> bool {
        self.unmasked != 0
    }

    fn payload(&self) -> Vec<u8> {
        match &self.payload {
            Payload::Bytes(bytes) => bytes.clone(),
            Payload::Text(text) => text.as_bytes().to_vec(),
            Payload::Close(code, reason) => [&code.to_be_bytes()[..], reason.as_bytes()].concat(),
        }
    }

    /// Whether the input ends inside this frame.
    fn is_cut(&self) -> bool {
        self.missing.is_some()
    }

    fn announced(&self) -> u64 {
        self.payload().len() as u64 + self.missing.map_or(0, |missing| u64::from(missing) + 1)
    }

    fn encode(&self) -> Vec<u8> {
        let payload = self.payload();
        let len = self.announced();
        let mut out = vec![u8::from(self.fin) << 7 | self.reserved_bits() | self.opcode()];
        let mask_bit = if self.masked() { 0x80 } else { 0 };
        match self.length_form % 3 {
            0 if len < 126 => out.push(mask_bit | len as u8),
            0 | 1 if len <= 0xFFFF => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&len.to_be_bytes());
            }
        }
        if self.masked() {
            out.extend_from_slice(&self.mask);
            out.extend(payload.iter().zip(self.mask.iter().cycle()).map(|(byte, key)| byte ^ key));
        } else {
            out.extend_from_slice(&payload);
        }
        out
    }
}

fuzz_target!(|input: Input| {
    let max_frame = 1 + (input.max_frame % MAX_LIMIT) as usize;
    let max_message = 1 + (input.max_message % MAX_LIMIT) as usize;
    // Frames up to the first that announces more than it has, which ends the input.
    let cut = input.frames.iter().position(Frame::is_cut);
    let frames = &input.frames[..cut.map_or(input.frames.len(), |at| at + 1)];
    let mut bytes: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
    if cut.is_none() {
        bytes.extend_from_slice(&input.tail);
    }

    let at_once = ws_read_all(&bytes[..], max_frame, max_message);
    let sizes = if input.sizes.is_empty() { vec![1] } else { input.sizes.clone() };
    let in_pieces = ws_read_all(Pieces { bytes: &bytes, sizes, next: 0 }, max_frame, max_message);
    assert_eq!(in_pieces, at_once, "reads cut the input differently");

    for item in &at_once {
        match item {
            WsItem::Message(message) => assert!(message.len() <= max_message, "a message over its limit"),
            WsItem::Violation(code, _) => assert!(matches!(code, 1002 | 1007 | 1009), "close code {code}"),
            _ => {}
        }
    }

    let (expected, stopped) = reference(frames, max_frame, max_message);
    let codes = |items: &[WsItem]| items.iter().map(without_reason).collect::<Vec<_>>();
    if stopped || input.tail.is_empty() {
        let mut expected = expected;
        if !stopped {
            expected.push(WsItem::End);
        }
        assert_eq!(codes(&at_once), codes(&expected), "differs from the rules");
    } else {
        assert!(at_once.len() >= expected.len(), "fewer items than the frames make");
        assert_eq!(codes(&at_once[..expected.len()]), codes(&expected), "differs from the rules");
    }
});

/// Violations compare by close code: the reason is the reader's wording.
fn without_reason(item: &WsItem) -> WsItem {
    match item {
        WsItem::Violation(code, _) => WsItem::Violation(*code, ""),
        other => other.clone(),
    }
}

/// What RFC 6455 §5 makes of `frames`, read by a server with these limits; and whether the reading
/// stopped (a close frame, a violation, or the end of the input inside a frame).
fn reference(frames: &[Frame], max_frame: usize, max_message: usize) -> (Vec<WsItem>, bool) {
    let mut items = Vec::new();
    // The message being put together: whether it is text, and its bytes so far.
    let mut partial: Option<(bool, Vec<u8>)> = None;
    for frame in frames {
        let stop = match next_item(frame, &mut partial, max_frame, max_message) {
            Ok(None) => continue,
            Ok(Some(item)) => {
                let last = matches!(item, WsItem::Close(_) | WsItem::End);
                items.push(item);
                last
            }
            Err(code) => {
                items.push(WsItem::Violation(code, ""));
                true
            }
        };
        if stop {
            return (items, true);
        }
    }
    (items, false)
}

/// One frame under the rules: `Err(code)` for a violation, `WsItem::End` for a frame cut short.
fn next_item(
    frame: &Frame,
    partial: &mut Option<(bool, Vec<u8>)>,
    max_frame: usize,
    max_message: usize,
) -> Result<Option<WsItem>, u16> {
    // §5.2: no extension is negotiated, so the reserved bits must be clear; §5.1: clients mask.
    if frame.reserved_bits() != 0 || !matches!(frame.opcode(), 0x0..=0x2 | 0x8..=0xA) || !frame.masked() {
        return Err(1002);
    }
    let opcode = frame.opcode();
    let announced = frame.announced();
    let payload = frame.payload();
    // §5.5: control frames are short and never fragmented.
    if opcode >= 0x8 {
        if !frame.fin || announced > 125 {
            return Err(1002);
        }
        if frame.is_cut() {
            return Ok(Some(WsItem::End));
        }
        return match opcode {
            0x9 => Ok(Some(WsItem::Ping(payload))),
            0xA => Ok(Some(WsItem::Pong(payload))),
            _ => close(&payload).map(|close| Some(WsItem::Close(close))),
        };
    }
    if announced > max_frame as u64 {
        return Err(1009);
    }
    // §5.4: a continuation continues a message; a new message waits for the last to end.
    match (opcode == 0x0, partial.is_some()) {
        (true, false) | (false, true) => return Err(1002),
        (true, true) => {}
        (false, false) => *partial = Some((opcode == 0x1, Vec::new())),
    }
    let Some((text, data)) = partial.as_mut() else { unreachable!("set above") };
    if data.len() as u64 + announced > max_message as u64 {
        return Err(1009);
    }
    if frame.is_cut() {
        return Ok(Some(WsItem::End));
    }
    data.extend_from_slice(&payload);
    // §8.1: text that can no longer become UTF-8 fails at once; a character cut at the end of a
    // fragment waits for the next.
    if *text {
        match std::str::from_utf8(data) {
            Ok(_) => {}
            Err(err) if err.error_len().is_none() && !frame.fin => {}
            Err(_) => return Err(1007),
        }
    }
    if !frame.fin {
        return Ok(None);
    }
    let Some((text, data)) = partial.take() else { unreachable!("set above") };
    Ok(Some(WsItem::Message(if text {
        Message::Text(String::from_utf8(data).expect("checked above"))
    } else {
        Message::Binary(data)
    })))
}

/// §5.5.1 and §7.4: an empty close, or a code that may be sent and a UTF-8 reason.
fn close(payload: &[u8]) -> Result<Option<(u16, String)>, u16> {
    match payload {
        [] => Ok(None),
        [_] => Err(1002),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(1002);
            }
            let reason = String::from_utf8(reason.to_vec()).map_err(|_| 1007u16)?;
            Ok(Some((code, reason)))
        }
    }
}

struct Pieces<'a> {
    bytes: &'a [u8],
    sizes: Vec<u8>,
    next: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let size = usize::from(self.sizes[self.next % self.sizes.len()].max(1));
        self.next += 1;
        let n = size.min(out.len()).min(self.bytes.len());
        out[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}
