//! One client of the load generator: a non-blocking socket that connects, asks for `GET /events`,
//! reads the response head, then counts and times every event, checking that they come in order.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::stream::StreamParser;
use crate::contract::{self, EVENTS_PATH};

/// The most bytes a response head may take before the client gives up on it.
const MAX_HEAD: usize = 16 * 1024;

/// Where a client is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Head,
    Streaming,
    Closed,
}

/// What a readiness event changed, for the worker's counters.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Change {
    /// The response head arrived: the client is registered.
    pub(crate) registered: bool,
    /// The connection ended, and why: before its head arrived (`registered` is then false and the
    /// client never was), or while streaming.
    pub(crate) ended: Option<String>,
}

/// Everything one worker records about the events its clients received.
#[derive(Debug, Default)]
pub(crate) struct Deliveries {
    /// Receive time minus send time, one per event, in ns.
    pub(crate) latencies_ns: Vec<u64>,
    /// Receive time of the last event, ns since the epoch (0 before any).
    pub(crate) last_ns: u64,
}

/// The events one client expects, publish after publish: ids `0..count` within each publish, send
/// times never going back.
#[derive(Debug)]
pub(crate) struct Sequence {
    plan: Arc<[u32]>,
    publish: usize,
    next_id: u64,
    last_sent_ns: u64,
    /// Events that did not come where expected (a gap, a duplicate, an extra or an unordered one).
    pub(crate) out_of_order: u64,
    /// Events received.
    pub(crate) received: u64,
}

impl Sequence {
    pub(crate) fn new(plan: Arc<[u32]>) -> Sequence {
        Sequence { plan, publish: 0, next_id: 0, last_sent_ns: 0, out_of_order: 0, received: 0 }
    }

    pub(crate) fn record(&mut self, id: Option<u64>, sent_ns: u64) {
        self.received += 1;
        let expected =
            self.publish < self.plan.len() && id == Some(self.next_id) && sent_ns >= self.last_sent_ns;
        if !expected {
            self.out_of_order += 1;
        }
        // Follow what came, so that one gap counts once.
        self.last_sent_ns = self.last_sent_ns.max(sent_ns);
        self.next_id = id.unwrap_or(self.next_id) + 1;
        if self.plan.get(self.publish).is_some_and(|&count| self.next_id >= u64::from(count)) {
            self.publish += 1;
            self.next_id = 0;
        }
    }
}

#[derive(Debug)]
pub(crate) struct Client {
    stream: TcpStream,
    phase: Phase,
    head: Vec<u8>,
    parser: StreamParser,
    registered: bool,
    pub(crate) sequence: Sequence,
}

impl Client {
    /// Starts a non-blocking connect and registers the socket for both readiness kinds.
    pub(crate) fn connect(
        addr: SocketAddr,
        token: Token,
        registry: &Registry,
        plan: Arc<[u32]>,
    ) -> io::Result<Client> {
        let mut stream = TcpStream::connect(addr)?;
        registry.register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)?;
        Ok(Client {
            stream,
            phase: Phase::Connecting,
            head: Vec::new(),
            parser: StreamParser::default(),
            registered: false,
            sequence: Sequence::new(plan),
        })
    }

    /// Whether the response head arrived (the client was registered), whatever happened since.
    pub(crate) fn was_registered(&self) -> bool {
        self.registered
    }

    /// Handles a readiness event: finish connecting, send the request, read whatever arrived.
    /// `buf` is the worker's read buffer; each `read` is stamped with one receive time.
    pub(crate) fn on_ready(
        &mut self,
        buf: &mut [u8],
        deliveries: &mut Deliveries,
        delivered: &mut u64,
    ) -> Change {
        let mut change = Change::default();
        if self.phase == Phase::Connecting {
            match self.finish_connect() {
                Ok(true) => self.phase = Phase::Head,
                Ok(false) => return change,
                Err(err) => return self.close(change, format!("connect: {err}")),
            }
        }
        while matches!(self.phase, Phase::Head | Phase::Streaming) {
            let read = match self.stream.read(buf) {
                Ok(0) => return self.close(change, "the server closed the stream".into()),
                Ok(read) => read,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return self.close(change, format!("read: {err}")),
            };
            let received_ns = contract::now_ns();
            let mut bytes = &buf[..read];
            if self.phase == Phase::Head {
                match self.take_head(bytes) {
                    Ok(Some(body_start)) => {
                        bytes = &bytes[body_start..];
                        self.phase = Phase::Streaming;
                        self.registered = true;
                        change.registered = true;
                    }
                    Ok(None) => continue,
                    Err(err) => return self.close(change, err),
                }
            }
            let sequence = &mut self.sequence;
            self.parser.feed(bytes, &mut |id, sent_ns| {
                sequence.record(id, sent_ns);
                deliveries.latencies_ns.push(received_ns.saturating_sub(sent_ns));
                *delivered += 1;
            });
            if *delivered > 0 {
                deliveries.last_ns = deliveries.last_ns.max(received_ns);
            }
        }
        change
    }

    /// True once connected and the request is written; false while the connect is in progress.
    fn finish_connect(&mut self) -> io::Result<bool> {
        if let Some(err) = self.stream.take_error()? {
            return Err(err);
        }
        match self.stream.peer_addr() {
            Ok(_) => {}
            Err(err) if err.kind() == io::ErrorKind::NotConnected => return Ok(false),
            Err(err) => return Err(err),
        }
        let _ = self.stream.set_nodelay(true);
        let request =
            format!("GET {EVENTS_PATH} HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n");
        // A fresh socket's send buffer takes a request this small whole.
        let written = self.stream.write(request.as_bytes())?;
        if written != request.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "request only partly written"));
        }
        Ok(true)
    }

    /// Collects the response head; once complete, checks it and returns where the body starts in
    /// `bytes` (the latest piece).
    fn take_head(&mut self, bytes: &[u8]) -> Result<Option<usize>, String> {
        let before = self.head.len();
        self.head.extend_from_slice(bytes);
        let Some(end) = memchr::memmem::find(&self.head, b"\r\n\r\n") else {
            if self.head.len() > MAX_HEAD {
                return Err("response head too large".into());
            }
            return Ok(None);
        };
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&self.head[..end + 4]) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err("unreadable response head".into()),
        }
        if response.code != Some(200) {
            return Err(format!("GET {EVENTS_PATH} answered {:?}", response.code));
        }
        let chunked = response.headers.iter().any(|header| {
            header.name.eq_ignore_ascii_case("transfer-encoding")
                && String::from_utf8_lossy(header.value).to_ascii_lowercase().contains("chunked")
        });
        self.parser = StreamParser::new(chunked);
        self.head = Vec::new();
        Ok(Some(end + 4 - before))
    }

    fn close(&mut self, mut change: Change, why: String) -> Change {
        if self.phase != Phase::Closed {
            self.phase = Phase::Closed;
            change.ended = Some(why);
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sequence(plan: &[u32]) -> Sequence {
        Sequence::new(plan.iter().copied().collect())
    }

    #[test]
    fn a_burst_in_order_is_clean() {
        let mut seq = sequence(&[3]);
        for (id, sent) in [(0, 10), (1, 11), (2, 11)] {
            seq.record(Some(id), sent);
        }
        assert_eq!((seq.received, seq.out_of_order), (3, 0));
        seq.record(Some(3), 12);
        assert_eq!(seq.out_of_order, 1, "an event beyond the plan is out of order");
    }

    #[test]
    fn gaps_duplicates_and_time_going_back_are_counted() {
        let mut seq = sequence(&[5]);
        seq.record(Some(0), 10);
        seq.record(Some(2), 12); // gap
        seq.record(Some(3), 13);
        seq.record(Some(3), 13); // duplicate
        assert_eq!(seq.out_of_order, 2);
        let mut seq = sequence(&[1, 1]);
        seq.record(Some(0), 20);
        seq.record(Some(0), 19); // an older publish after a newer one
        assert_eq!(seq.out_of_order, 1);
    }

    #[test]
    fn single_event_publishes_each_start_at_id_zero() {
        let mut seq = sequence(&[1, 1, 1]);
        for sent in [5, 6, 7] {
            seq.record(Some(0), sent);
        }
        assert_eq!((seq.received, seq.out_of_order), (3, 0));
    }
}
