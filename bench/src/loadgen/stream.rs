//! Reading an event stream as fast as it arrives: optional chunked de-framing, then lines. Only what
//! the contract needs is parsed: `id:` lines and `data:` lines starting with the send timestamp; one
//! such `data:` line is one event. Comments, other fields, keep-alives and CRLF line ends are skipped.

use memchr::memchr;

/// The body of one `GET /events` response, fed in the pieces `read` returns.
#[derive(Debug, Default)]
pub(crate) struct StreamParser {
    /// `None` for a close-delimited body, else where we are in the chunked framing.
    chunk: Option<Chunk>,
    /// An incomplete line carried over to the next piece.
    partial: Vec<u8>,
    /// The `id` of the event being read, if its `id:` line came already.
    id: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading the hex size line; `ext` once past a `;` extension.
    Size { value: usize, ext: bool },
    /// Inside chunk data, this many bytes left.
    Data(usize),
    /// After chunk data, skipping its CRLF.
    DataEnd,
    /// The last (zero-size) chunk came: nothing more is data.
    Done,
}

impl StreamParser {
    /// A parser for a body that is chunked (`Transfer-Encoding: chunked`) or close-delimited.
    pub(crate) fn new(chunked: bool) -> StreamParser {
        StreamParser {
            chunk: chunked.then_some(Chunk::Size { value: 0, ext: false }),
            ..StreamParser::default()
        }
    }

    /// Parses the next piece of the body, calling `event(id, sent_ns)` for each event completed in it.
    pub(crate) fn feed(&mut self, mut bytes: &[u8], event: &mut impl FnMut(Option<u64>, u64)) {
        let Some(mut state) = self.chunk else {
            self.lines(bytes, event);
            return;
        };
        while !bytes.is_empty() {
            match state {
                Chunk::Size { value, ext } => {
                    let byte = bytes[0];
                    bytes = &bytes[1..];
                    state = match byte {
                        b'\n' if value == 0 => Chunk::Done,
                        b'\n' => Chunk::Data(value),
                        b';' => Chunk::Size { value, ext: true },
                        _ if ext => Chunk::Size { value, ext },
                        _ => match (byte as char).to_digit(16) {
                            Some(digit) => Chunk::Size { value: value * 16 + digit as usize, ext },
                            None => Chunk::Size { value, ext },
                        },
                    };
                }
                Chunk::Data(left) => {
                    let take = left.min(bytes.len());
                    self.lines(&bytes[..take], event);
                    bytes = &bytes[take..];
                    state = if take == left { Chunk::DataEnd } else { Chunk::Data(left - take) };
                }
                Chunk::DataEnd => match memchr(b'\n', bytes) {
                    Some(end) => {
                        bytes = &bytes[end + 1..];
                        state = Chunk::Size { value: 0, ext: false };
                    }
                    None => bytes = &[],
                },
                Chunk::Done => bytes = &[],
            }
        }
        self.chunk = Some(state);
    }

    /// Splits data into lines; a line cut between pieces waits in `partial`.
    fn lines(&mut self, mut data: &[u8], event: &mut impl FnMut(Option<u64>, u64)) {
        if !self.partial.is_empty() {
            let Some(end) = memchr(b'\n', data) else {
                self.partial.extend_from_slice(data);
                return;
            };
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&data[..end]);
            self.line(&line, event);
            line.clear();
            self.partial = line;
            data = &data[end + 1..];
        }
        while let Some(end) = memchr(b'\n', data) {
            self.line(&data[..end], event);
            data = &data[end + 1..];
        }
        self.partial.extend_from_slice(data);
    }

    fn line(&mut self, line: &[u8], event: &mut impl FnMut(Option<u64>, u64)) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            self.id = None;
        } else if let Some(value) = line.strip_prefix(b"data:") {
            if let Some(sent_ns) = leading_number(value) {
                event(self.id, sent_ns);
            }
        } else if let Some(value) = line.strip_prefix(b"id:") {
            self.id = leading_number(value);
        }
    }
}

/// The decimal number a field value starts with (after the one optional space), if any.
fn leading_number(value: &[u8]) -> Option<u64> {
    let value = value.strip_prefix(b" ").unwrap_or(value);
    let digits = value.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    value[..digits].iter().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(chunked: bool, body: &[u8], piece: usize) -> Vec<(Option<u64>, u64)> {
        let mut parser = StreamParser::new(chunked);
        let mut seen = Vec::new();
        for part in body.chunks(piece) {
            parser.feed(part, &mut |id, sent| seen.push((id, sent)));
        }
        seen
    }

    const EVENTS: &[u8] =
        b": hello\n\nid: 0\ndata: 111 xx\n\nid: 1\r\ndata: 222 yy\r\n\r\ndata: not-a-time\n\ndata: 333\n\n";

    #[test]
    fn close_delimited_bodies_yield_each_timed_event_whatever_the_pieces() {
        let want = vec![(Some(0), 111), (Some(1), 222), (None, 333)];
        for piece in [1, 2, 3, 7, EVENTS.len()] {
            assert_eq!(parse_in_pieces(false, EVENTS, piece), want, "pieces of {piece}");
        }
    }

    #[test]
    fn chunked_bodies_are_deframed_first() {
        let mut body = Vec::new();
        for part in EVENTS.chunks(11) {
            body.extend_from_slice(format!("{:x};ext=1\r\n", part.len()).as_bytes());
            body.extend_from_slice(part);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\nid: 9\ndata: 999\n\n");
        let want = vec![(Some(0), 111), (Some(1), 222), (None, 333)];
        for piece in [1, 4, 13, body.len()] {
            assert_eq!(parse_in_pieces(true, &body, piece), want, "pieces of {piece}");
        }
    }

    #[test]
    fn numbers_are_read_from_the_front_of_a_value() {
        assert_eq!(leading_number(b" 42 rest"), Some(42));
        assert_eq!(leading_number(b"7"), Some(7));
        assert_eq!(leading_number(b" x1"), None);
        assert_eq!(leading_number(b" 99999999999999999999"), None);
    }
}
