//! Messages out of frames (RFC 6455 §5.4–5.6): fragments joined under the size limits, text checked as
//! UTF-8 fragment by fragment, control frames passed through between fragments, close frames parsed and
//! their codes checked.

use std::io::Read;
use std::sync::Arc;

use super::frame::{self, FrameReader, OpCode, ReadError, Role, Violation};

/// A WebSocket data message: text (always valid UTF-8) or binary.
///
/// What [`WsHandler::send_all`](super::WsHandler::send_all) sends and what the `on_message` hook
/// receives. Strings become text messages and byte vectors binary ones:
///
/// ```
/// use sse_handler::ws::Message;
///
/// assert_eq!(Message::from("hi"), Message::Text("hi".into()));
/// assert_eq!(Message::from(vec![1u8, 2]), Message::Binary(vec![1, 2]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
}

impl Message {
    /// The text of a text message, `None` for a binary one.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(text) => Some(text),
            Message::Binary(_) => None,
        }
    }

    /// The payload bytes, whatever the kind.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes,
        }
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The message as one unmasked frame, as a server sends it; shared, so a broadcast encodes once.
    pub(crate) fn encode(&self) -> Arc<[u8]> {
        let opcode = if self.is_text() { OpCode::Text } else { OpCode::Binary };
        frame::encode(true, opcode, self.as_bytes(), None).into()
    }
}

impl From<String> for Message {
    fn from(text: String) -> Message {
        Message::Text(text)
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Message {
        Message::Text(text.to_owned())
    }
}

impl From<Vec<u8>> for Message {
    fn from(bytes: Vec<u8>) -> Message {
        Message::Binary(bytes)
    }
}

impl From<&[u8]> for Message {
    fn from(bytes: &[u8]) -> Message {
        Message::Binary(bytes.to_vec())
    }
}

/// The code and reason of a close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloseFrame {
    pub(crate) code: u16,
    pub(crate) reason: String,
}

/// The longest close reason: a control payload holds 125 bytes, two of which are the code.
pub(crate) const MAX_CLOSE_REASON: usize = frame::MAX_CONTROL_PAYLOAD - 2;

/// Whether `code` may travel in a close frame (RFC 6455 §7.4 and the IANA registry): the defined codes
/// 1000–1003 and 1007–1014, and 3000–4999 for libraries and applications. 1004 is reserved; 1005,
/// 1006 and 1015 only ever describe a closure locally.
pub(crate) fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The payload of a close frame. `None` sends a close frame without a code.
pub(crate) fn close_payload(close: Option<&CloseFrame>) -> Vec<u8> {
    let Some(close) = close else { return Vec::new() };
    let mut payload = close.code.to_be_bytes().to_vec();
    payload.extend_from_slice(truncate_utf8(&close.reason, MAX_CLOSE_REASON).as_bytes());
    payload
}

/// The longest prefix of `text` that fits in `max` bytes without splitting a character.
pub(crate) fn truncate_utf8(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn parse_close(payload: &[u8]) -> Result<Option<CloseFrame>, Violation> {
    match payload {
        [] => Ok(None),
        [_] => Err(Violation::protocol("close frame with a one-byte payload")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !is_valid_close_code(code) {
                return Err(Violation::protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(reason)
                .map_err(|_| Violation { code: 1007, reason: "close reason is not valid UTF-8" })?;
            Ok(Some(CloseFrame { code, reason: reason.to_owned() }))
        }
    }
}

/// What the peer sent: a whole data message, or a control frame (which may arrive between the
/// fragments of a message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    Message(Message),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// A close frame, with its code and reason when it had them.
    Close(Option<CloseFrame>),
}

/// Size limits on what a peer may send, in payload bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_frame: usize,
    pub(crate) max_message: usize,
}

/// A message being put together from its fragments.
#[derive(Debug)]
struct Partial {
    text: bool,
    data: Vec<u8>,
    /// How many leading bytes of `data` are known to be valid UTF-8.
    checked: usize,
}

/// Reads whole messages and control frames, enforcing the rules that span frames.
#[derive(Debug)]
pub(crate) struct MessageReader<R> {
    frames: FrameReader<R>,
    limits: Limits,
    partial: Option<Partial>,
}

impl<R: Read> MessageReader<R> {
    pub(crate) fn new(input: R, role: Role, limits: Limits) -> MessageReader<R> {
        MessageReader { frames: FrameReader::new(input, role), limits, partial: None }
    }

    /// The next message or control frame. After an error the reader is of no further use: the
    /// connection is to be failed (a violation) or is gone (I/O).
    pub(crate) fn next(&mut self) -> Result<Incoming, ReadError> {
        loop {
            let header = self.frames.read_header()?;
            if header.opcode.is_control() {
                let mut payload = Vec::with_capacity(header.len as usize);
                self.frames.read_payload(&header, &mut payload)?;
                return Ok(match header.opcode {
                    OpCode::Ping => Incoming::Ping(payload),
                    OpCode::Pong => Incoming::Pong(payload),
                    _ => Incoming::Close(parse_close(&payload)?),
                });
            }
            if header.len > self.limits.max_frame as u64 {
                return Err(Violation { code: 1009, reason: "frame larger than the limit" }.into());
            }
            match (header.opcode, self.partial.is_some()) {
                (OpCode::Continuation, false) => {
                    return Err(Violation::protocol("continuation frame with no message to continue").into());
                }
                (OpCode::Continuation, true) => {}
                (_, true) => {
                    return Err(
                        Violation::protocol("new message before the previous one was finished").into()
                    );
                }
                (opcode, false) => {
                    let text = opcode == OpCode::Text;
                    self.partial = Some(Partial { text, data: Vec::new(), checked: 0 });
                }
            }
            let Some(partial) = self.partial.as_mut() else { unreachable!("set just above") };
            if partial.data.len() as u64 + header.len > self.limits.max_message as u64 {
                return Err(Violation { code: 1009, reason: "message larger than the limit" }.into());
            }
            self.frames.read_payload(&header, &mut partial.data)?;
            if partial.text {
                check_utf8(&partial.data, &mut partial.checked, header.fin)?;
            }
            if header.fin {
                let Some(done) = self.partial.take() else { unreachable!("set just above") };
                return Ok(Incoming::Message(if done.text {
                    // Checked in full above, so this cannot fail.
                    let text = String::from_utf8(done.data)
                        .map_err(|_| Violation { code: 1007, reason: "text message is not valid UTF-8" })?;
                    Message::Text(text)
                } else {
                    Message::Binary(done.data)
                }));
            }
        }
    }
}

/// Checks the bytes of a text message received since the last check. A character cut at the end of a
/// fragment waits for the next one; anything that can no longer become valid UTF-8 fails at once,
/// without waiting for the rest of the message.
fn check_utf8(data: &[u8], checked: &mut usize, complete: bool) -> Result<(), Violation> {
    match std::str::from_utf8(&data[*checked..]) {
        Ok(_) => {
            *checked = data.len();
            Ok(())
        }
        Err(err) if err.error_len().is_none() && !complete => {
            *checked += err.valid_up_to();
            Ok(())
        }
        Err(_) => Err(Violation { code: 1007, reason: "text message is not valid UTF-8" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: Option<[u8; 4]> = Some([0xA1, 0xB2, 0xC3, 0xD4]);
    const LIMITS: Limits = Limits { max_frame: 100, max_message: 250 };

    fn frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        frame::encode(fin, opcode, payload, MASK)
    }

    fn read_all(frames: &[Vec<u8>]) -> Vec<Result<Incoming, u16>> {
        let bytes = frames.concat();
        let mut reader = MessageReader::new(&bytes[..], Role::Server, LIMITS);
        let mut out = Vec::new();
        loop {
            match reader.next() {
                Ok(incoming) => out.push(Ok(incoming)),
                Err(ReadError::Violation(v)) => {
                    out.push(Err(v.code));
                    return out;
                }
                Err(ReadError::Io(_)) => return out,
            }
        }
    }

    fn text(text: &str) -> Result<Incoming, u16> {
        Ok(Incoming::Message(Message::Text(text.into())))
    }

    #[test]
    fn fragments_join_with_control_frames_between() {
        let got = read_all(&[
            frame(false, OpCode::Text, b"fra"),
            frame(true, OpCode::Ping, b"p"),
            frame(false, OpCode::Continuation, b"gme"),
            frame(true, OpCode::Pong, b""),
            frame(true, OpCode::Continuation, b"nted"),
            frame(true, OpCode::Binary, &[0, 255]),
        ]);
        assert_eq!(
            got,
            [
                Ok(Incoming::Ping(b"p".to_vec())),
                Ok(Incoming::Pong(Vec::new())),
                text("fragmented"),
                Ok(Incoming::Message(Message::Binary(vec![0, 255]))),
            ]
        );
    }

    #[test]
    fn empty_messages_and_empty_fragments() {
        let got = read_all(&[
            frame(true, OpCode::Text, b""),
            frame(false, OpCode::Binary, b""),
            frame(false, OpCode::Continuation, b""),
            frame(true, OpCode::Continuation, b""),
        ]);
        assert_eq!(got, [text(""), Ok(Incoming::Message(Message::Binary(Vec::new())))]);
    }

    #[test]
    fn fragmentation_order_is_enforced() {
        assert_eq!(read_all(&[frame(true, OpCode::Continuation, b"x")]), [Err(1002)]);
        assert_eq!(
            read_all(&[frame(false, OpCode::Text, b"a"), frame(true, OpCode::Text, b"b")]),
            [Err(1002)]
        );
        assert_eq!(
            read_all(&[frame(false, OpCode::Binary, b"a"), frame(true, OpCode::Binary, b"b")]),
            [Err(1002)]
        );
    }

    #[test]
    fn utf8_is_checked_across_fragments() {
        // "κόσμε" split inside a two-byte character is fine.
        let word = "κόσμε".as_bytes();
        let got = read_all(&[
            frame(false, OpCode::Text, &word[..3]),
            frame(true, OpCode::Continuation, &word[3..]),
        ]);
        assert_eq!(got, [text("κόσμε")]);
        // A character cut at the end of the last fragment is not.
        assert_eq!(read_all(&[frame(true, OpCode::Text, &word[..3])]), [Err(1007)]);
        // An invalid byte fails at its own fragment, before the message is finished.
        let got =
            read_all(&[frame(false, OpCode::Text, b"ok"), frame(false, OpCode::Continuation, &[0xC0, 0x80])]);
        assert_eq!(got, [Err(1007)]);
        // A prefix that cannot become valid (a UTF-16 surrogate) fails without waiting for more.
        let got = read_all(&[frame(false, OpCode::Text, &[0xED, 0xA0])]);
        assert_eq!(got, [Err(1007)]);
        // Binary messages are not text.
        let got = read_all(&[frame(true, OpCode::Binary, &[0xFF])]);
        assert_eq!(got, [Ok(Incoming::Message(Message::Binary(vec![0xFF])))]);
    }

    #[test]
    fn size_limits_give_1009() {
        assert_eq!(read_all(&[frame(true, OpCode::Binary, &[0; 100])]).len(), 1);
        assert_eq!(read_all(&[frame(true, OpCode::Binary, &[0; 101])]), [Err(1009)]);
        let chunk = [b'a'; 100];
        let got = read_all(&[
            frame(false, OpCode::Text, &chunk),
            frame(false, OpCode::Continuation, &chunk),
            frame(true, OpCode::Continuation, &chunk[..51]),
        ]);
        assert_eq!(got, [Err(1009)]);
    }

    #[test]
    fn close_frames_are_parsed_and_checked() {
        let close = |payload: &[u8]| read_all(&[frame(true, OpCode::Close, payload)]);
        assert_eq!(close(b""), [Ok(Incoming::Close(None))]);
        assert_eq!(
            close(b"\x03\xe8bye"),
            [Ok(Incoming::Close(Some(CloseFrame { code: 1000, reason: "bye".into() })))]
        );
        assert_eq!(close(b"\x03"), [Err(1002)]);
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535] {
            assert_eq!(close(&code.to_be_bytes()), [Err(1002)], "code {code}");
        }
        for code in [1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999] {
            assert!(matches!(close(&code.to_be_bytes())[..], [Ok(Incoming::Close(Some(_)))]), "code {code}");
        }
        assert_eq!(close(b"\x03\xe8\xff"), [Err(1007)]);
    }

    #[test]
    fn close_payloads_fit_in_a_control_frame() {
        let long = "é".repeat(100);
        let payload = close_payload(Some(&CloseFrame { code: 1001, reason: long }));
        assert_eq!(payload.len(), 2 + 122, "cut at a character boundary");
        assert_eq!(&payload[..2], &[0x03, 0xE9]);
        assert!(close_payload(None).is_empty());
    }
}
