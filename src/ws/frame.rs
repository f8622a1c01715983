//! The frame layer of RFC 6455 §5: one frame header read and checked, its payload read and unmasked,
//! and frames encoded for the wire. Pure byte work over `Read`; no threads, no sockets, no state
//! beyond the bytes of one frame (fragmentation and limits belong to [`super::message`]).

use std::io::{self, Read};

/// A frame's opcode (RFC 6455 §5.2). Other values are refused when read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    /// Close, ping and pong: at most 125 bytes, never fragmented, allowed between fragments.
    pub(crate) fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// Which end of the connection we are. A server requires masked frames and sends unmasked ones; a
/// client the reverse (RFC 6455 §5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Server,
    Client,
}

/// The largest payload of a control frame.
pub(crate) const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame that breaks the protocol: the close code to answer with (1002, 1007 or 1009) and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Violation {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
}

impl Violation {
    pub(crate) const fn protocol(reason: &'static str) -> Violation {
        Violation { code: 1002, reason }
    }
}

/// Why no frame (or message) could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed the TCP connection, or a read failed.
    Io(io::Error),
    /// The peer broke the protocol; the connection is to be failed with this close code.
    Violation(Violation),
}

impl From<io::Error> for ReadError {
    fn from(err: io::Error) -> ReadError {
        ReadError::Io(err)
    }
}

impl From<Violation> for ReadError {
    fn from(violation: Violation) -> ReadError {
        ReadError::Violation(violation)
    }
}

/// The fixed part of a frame, checked against the rules that need no other frame to judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameHeader {
    pub(crate) fin: bool,
    pub(crate) opcode: OpCode,
    pub(crate) mask: Option<[u8; 4]>,
    pub(crate) len: u64,
}

/// Reads frames one at a time from a buffered input.
#[derive(Debug)]
pub(crate) struct FrameReader<R> {
    input: R,
    role: Role,
}

impl<R: Read> FrameReader<R> {
    pub(crate) fn new(input: R, role: Role) -> FrameReader<R> {
        FrameReader { input, role }
    }

    /// Reads and checks the next frame header: reserved bits clear, a known opcode, masking as the role
    /// requires, control frames short and unfragmented. Nothing of the payload is read yet, so a frame
    /// over a limit can be refused before its bytes are taken in.
    pub(crate) fn read_header(&mut self) -> Result<FrameHeader, ReadError> {
        let mut head = [0u8; 2];
        self.input.read_exact(&mut head)?;
        let [b0, b1] = head;
        if b0 & 0x70 != 0 {
            return Err(Violation::protocol("reserved bits set without a negotiated extension").into());
        }
        let opcode = OpCode::from_bits(b0 & 0x0F).ok_or(Violation::protocol("unknown opcode"))?;
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        match (self.role, masked) {
            (Role::Server, false) => return Err(Violation::protocol("client frames must be masked").into()),
            (Role::Client, true) => {
                return Err(Violation::protocol("server frames must not be masked").into());
            }
            _ => {}
        }
        let len = match b1 & 0x7F {
            126 => {
                let mut bytes = [0u8; 2];
                self.input.read_exact(&mut bytes)?;
                u64::from(u16::from_be_bytes(bytes))
            }
            127 => {
                let mut bytes = [0u8; 8];
                self.input.read_exact(&mut bytes)?;
                let len = u64::from_be_bytes(bytes);
                if len >> 63 != 0 {
                    return Err(Violation::protocol("payload length with its high bit set").into());
                }
                len
            }
            short => u64::from(short),
        };
        if opcode.is_control() {
            if !fin {
                return Err(Violation::protocol("fragmented control frame").into());
            }
            if len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(Violation::protocol("control frame longer than 125 bytes").into());
            }
        }
        let mask = if masked {
            let mut key = [0u8; 4];
            self.input.read_exact(&mut key)?;
            Some(key)
        } else {
            None
        };
        Ok(FrameHeader { fin, opcode, mask, len })
    }

    /// Reads the payload `header` announced, unmasked, onto the end of `out`. The caller has checked
    /// `header.len` against its limits.
    ///
    /// `out` grows as the bytes arrive, never ahead of them: a header alone, announcing a megabyte that
    /// never comes, costs no more memory than the bytes that did.
    pub(crate) fn read_payload(&mut self, header: &FrameHeader, out: &mut Vec<u8>) -> io::Result<()> {
        let too_long = || io::Error::from(io::ErrorKind::OutOfMemory);
        let len = usize::try_from(header.len).map_err(|_| too_long())?;
        let start = out.len();
        let end = start.checked_add(len).ok_or_else(too_long)?;
        while out.len() < end {
            grow_toward(out, end);
            let room = out.capacity().min(end) - out.len();
            // Reads into the room just made, and no further: `read_to_end` does not grow `out` then.
            if (&mut self.input).take(room as u64).read_to_end(out)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        if let Some(key) = header.mask {
            apply_mask(&mut out[start..], key);
        }
        Ok(())
    }
}

/// The first room made for a payload that does not fit in what its buffer holds already.
const FIRST_PIECE: usize = 4096;

/// Makes room in `out` for more of a payload that ends at `end`, once what it has is full: twice what it
/// holds (at least [`FIRST_PIECE`]), as a `Vec` grows, but never past `end`.
fn grow_toward(out: &mut Vec<u8>, end: usize) {
    if out.len() == out.capacity() {
        let more = out.capacity().max(FIRST_PIECE).min(end - out.len());
        out.reserve_exact(more);
    }
}

/// XORs `bytes` with the masking key (the same operation masks and unmasks).
pub(crate) fn apply_mask(bytes: &mut [u8], key: [u8; 4]) {
    for (byte, k) in bytes.iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// Encodes one frame: header, then the payload (masked with `mask` when given, as a client must).
pub(crate) fn encode(fin: bool, opcode: OpCode, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 14);
    frame.push(if fin { 0x80 } else { 0 } | opcode.bits());
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        len @ 0..=125 => frame.push(mask_bit | len as u8),
        len @ 126..=0xFFFF => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    let start = frame.len() + mask.map_or(0, |key| key.len());
    if let Some(key) = mask {
        frame.extend_from_slice(&key);
    }
    frame.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut frame[start..], key);
    }
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bytes: &[u8], role: Role) -> Result<FrameHeader, ReadError> {
        FrameReader::new(bytes, role).read_header()
    }

    fn violation(bytes: &[u8]) -> Violation {
        match header(bytes, Role::Server) {
            Err(ReadError::Violation(v)) => v,
            other => panic!("expected a violation for {bytes:?}, got {other:?}"),
        }
    }

    #[test]
    fn rfc_example_masked_hello() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let bytes = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let mut reader = FrameReader::new(&bytes[..], Role::Server);
        let head = reader.read_header().unwrap();
        assert_eq!((head.fin, head.opcode, head.len), (true, OpCode::Text, 5));
        let mut payload = Vec::new();
        reader.read_payload(&head, &mut payload).unwrap();
        assert_eq!(payload, b"Hello");
        assert_eq!(encode(true, OpCode::Text, b"Hello", Some([0x37, 0xfa, 0x21, 0x3d])), bytes);
    }

    #[test]
    fn rfc_example_unmasked_and_fragments() {
        assert_eq!(encode(true, OpCode::Text, b"Hello", None), [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!(encode(false, OpCode::Text, b"Hel", None), [0x01, 0x03, 0x48, 0x65, 0x6c]);
        assert_eq!(encode(true, OpCode::Continuation, b"lo", None), [0x80, 0x02, 0x6c, 0x6f]);
        assert_eq!(encode(true, OpCode::Ping, b"Hello", None)[..2], [0x89, 0x05]);
    }

    #[test]
    fn length_encodings_round_trip() {
        for len in [0usize, 1, 125, 126, 127, 0xFFFF, 0x1_0000, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let frame = encode(true, OpCode::Binary, &payload, Some([1, 2, 3, 4]));
            let mut reader = FrameReader::new(&frame[..], Role::Server);
            let head = reader.read_header().unwrap();
            assert_eq!(head.len, len as u64);
            let mut out = Vec::new();
            reader.read_payload(&head, &mut out).unwrap();
            assert_eq!(out, payload, "length {len}");
        }
        assert_eq!(encode(true, OpCode::Binary, &[0; 126], None)[..4], [0x82, 126, 0, 126]);
        assert_eq!(
            encode(true, OpCode::Binary, &[0; 0x1_0000], None)[..10],
            [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }

    #[test]
    fn broken_headers_are_violations() {
        assert_eq!(violation(&[0x81, 0x05]).reason, "client frames must be masked");
        for rsv in [0x40, 0x20, 0x10, 0x70] {
            assert_eq!(violation(&[0x81 | rsv, 0x80]).code, 1002);
        }
        for opcode in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(violation(&[0x80 | opcode, 0x80]).reason, "unknown opcode");
        }
        assert_eq!(violation(&[0x09, 0x80]).reason, "fragmented control frame");
        assert_eq!(violation(&[0x89, 0x80 | 126, 0, 126]).reason, "control frame longer than 125 bytes");
        assert_eq!(violation(&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0]).code, 1002);
        match header(&[0x81, 0x85, 0, 0, 0, 0], Role::Client) {
            Err(ReadError::Violation(v)) => assert_eq!(v.reason, "server frames must not be masked"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_header_alone_does_not_allocate_the_length_it_announces() {
        // A header announcing 1 MiB, then 10 bytes of payload and the end of the input.
        let mut bytes = vec![0x82, 0x80 | 127];
        bytes.extend_from_slice(&(1u64 << 20).to_be_bytes());
        bytes.extend_from_slice(&[1, 2, 3, 4]);
        bytes.extend_from_slice(&[0; 10]);
        let mut reader = FrameReader::new(&bytes[..], Role::Server);
        let head = reader.read_header().unwrap();
        let mut out = Vec::new();
        let err = reader.read_payload(&head, &mut out).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert!(out.capacity() < 64 * 1024, "{} bytes allocated for 10 received", out.capacity());

        // A payload that does arrive is held in a buffer of its size, not of the next power of two.
        let frame = encode(true, OpCode::Binary, &[7; 70_000], Some([1, 2, 3, 4]));
        let mut reader = FrameReader::new(&frame[..], Role::Server);
        let head = reader.read_header().unwrap();
        let mut out = Vec::new();
        reader.read_payload(&head, &mut out).unwrap();
        assert_eq!((out.len(), out.capacity()), (70_000, 70_000));
    }

    #[test]
    fn a_cut_header_is_an_io_error() {
        assert!(matches!(header(&[0x81], Role::Server), Err(ReadError::Io(_))));
        assert!(matches!(header(&[0x81, 0xFE, 0], Role::Server), Err(ReadError::Io(_))));
    }
}
