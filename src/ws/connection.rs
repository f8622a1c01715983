//! One connection after the handshake: a reader and a writer over two handles of the same socket.
//!
//! The reader (the connection's own thread) blocks in `read` and hands what arrives to the application
//! (messages) or to the writer (pings to answer, close frames, protocol errors). The writer (a thread of
//! its own) blocks on two queues at once: the outbound queue that `send_one`/`send_all` push into, and
//! the reader's control queue. Every byte sent goes through the writer, so frames never interleave, and
//! the writer wakes the moment something is queued: no polling tick anywhere. The one timer is the
//! writer's wait itself, whose deadline is the next heartbeat, pong or close timeout.
//!
//! The writer owns the closing handshake and decides how the connection ended; when it is done it
//! shuts the socket down, which ends the reader's blocking read.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, never, select_biased};
use parking_lot::Mutex;

use super::close::{CloseCause, Closed, NO_STATUS};
use super::frame::{self, OpCode, ReadError, Violation};
use super::message::{CloseFrame, Incoming, Message, MessageReader, close_payload};
use crate::http;
use crate::registry::{CloseReason, Connection, Queued};

/// What the application queues for one connection (the registry's message type).
#[derive(Debug, Clone)]
pub(crate) enum Outbound {
    /// A data message, already encoded as a frame (shared by every connection a broadcast reaches).
    Frame(Arc<[u8]>),
    /// Start the closing handshake.
    Close { frame: CloseFrame, cause: CloseCause },
}

impl Queued for Outbound {
    fn queued_size(&self) -> usize {
        match self {
            Outbound::Frame(bytes) => bytes.len(),
            Outbound::Close { .. } => 0,
        }
    }
}

/// What the reader tells the writer. At most one of each kind is ever waiting: a ping to answer (its
/// payload waits in [`Liveness`], where a newer one replaces it), the answer to our ping, and the
/// reader's last word; so the queue stays this short however fast the client sends.
#[derive(Debug)]
pub(crate) enum Control {
    /// Answer the latest ping (its payload waits in [`Liveness`]).
    Pong,
    /// The client answered our ping: the writer, asleep until the pong deadline, recomputes it.
    PongReceived,
    /// The client sent a close frame (with its code and reason, if any); the reader has stopped.
    PeerClosed(Option<CloseFrame>),
    /// The client broke the protocol; the reader has stopped.
    Violation(Violation),
    /// The message hook panicked; the reader has stopped.
    HookPanicked,
    /// The read side ended (end of stream or a read error); the reader has stopped.
    ReadEnded,
}

/// The room the control queue needs: one of each kind of [`Control`] that can wait at once. It is
/// bounded all the same, so that a mistake in that count would slow a reader down, not grow memory.
pub(crate) const CONTROL_CAPACITY: usize = 4;

/// The pings and pongs between the reader and the writer: when the client was last heard from (the
/// writer's heartbeat depends on it), whether our ping awaits its pong, and the client's latest ping
/// that the writer has not answered yet.
#[derive(Debug)]
pub(crate) struct Liveness {
    started: Instant,
    heard_nanos: AtomicU64,
    ping_unanswered: AtomicBool,
    latest_ping: Mutex<Option<Vec<u8>>>,
}

impl Liveness {
    pub(crate) fn new() -> Liveness {
        Liveness {
            started: Instant::now(),
            heard_nanos: AtomicU64::new(0),
            ping_unanswered: AtomicBool::new(false),
            latest_ping: Mutex::new(None),
        }
    }

    /// Keeps the payload of a ping to answer, in place of an older one still unanswered: only the
    /// latest is answered (RFC 6455 §5.5.3). True when none was waiting, so the writer is to be told.
    fn ping_to_answer(&self, payload: Vec<u8>) -> bool {
        self.latest_ping.lock().replace(payload).is_none()
    }

    /// The payload of the latest ping, for its pong.
    fn take_ping(&self) -> Option<Vec<u8>> {
        self.latest_ping.lock().take()
    }

    /// The writer is sending a ping: the next pong answers it.
    fn ping_sent(&self) {
        self.ping_unanswered.store(true, Ordering::Release);
    }

    /// A pong came: whether it answers our ping (false for an unsolicited one, or a second answer).
    fn pong_answers_ping(&self) -> bool {
        self.ping_unanswered.swap(false, Ordering::AcqRel)
    }

    fn heard(&self) {
        let nanos = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.heard_nanos.store(nanos, Ordering::Release);
    }

    fn last_heard(&self) -> Instant {
        self.started + Duration::from_nanos(self.heard_nanos.load(Ordering::Acquire))
    }
}

/// The reader's loop: runs until the client closes, breaks the protocol or goes away, or until the
/// writer shuts the socket down. `deliver` hands a message to the application and says whether it
/// returned normally (false: it panicked).
pub(crate) fn read_loop<R: Read>(
    mut reader: MessageReader<R>,
    control: &Sender<Control>,
    liveness: &Liveness,
    mut deliver: impl FnMut(Message) -> bool,
) {
    // A failed send only means the writer has already finished; the reader then stops too.
    let end = loop {
        let incoming = match reader.next() {
            Ok(incoming) => incoming,
            Err(ReadError::Violation(violation)) => break Control::Violation(violation),
            Err(ReadError::Io(_)) => break Control::ReadEnded,
        };
        liveness.heard();
        match incoming {
            Incoming::Message(message) => {
                if !deliver(message) {
                    break Control::HookPanicked;
                }
            }
            // A client that pings faster than the pongs can be written (one that never reads, say)
            // costs one waiting payload, not a queue of pongs.
            Incoming::Ping(payload) => {
                if liveness.ping_to_answer(payload) && control.send(Control::Pong).is_err() {
                    return;
                }
            }
            Incoming::Pong(_) => {
                if liveness.pong_answers_ping() && control.send(Control::PongReceived).is_err() {
                    return;
                }
            }
            Incoming::Close(frame) => break Control::PeerClosed(frame),
        }
    };
    let _ = control.send(end);
}

/// The timing rules the writer keeps.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub(crate) heartbeat: Duration,
    pub(crate) pong_timeout: Duration,
    pub(crate) close_timeout: Duration,
}

/// What the writer's next deadline is for.
enum Due {
    Ping,
    PongTimeout,
    CloseTimeout,
}

/// The most frames taken from the queue in one go.
const MAX_BATCH: usize = 64;

/// The most bytes of frames taken from the queue in one go, and gathered into one write. What the
/// writer has taken no longer counts against the queue's byte bound, so it takes no more than this
/// (plus one frame): a client that stops reading then holds at most this much in a blocked write
/// besides its queue. A frame this large or larger is written from its shared bytes, never copied.
const MAX_GATHER: usize = 64 * 1024;

/// The writer: every byte that goes to the client, and the decision of how the connection ended.
pub(crate) struct Writer {
    pub(crate) socket: TcpStream,
    /// The `101 Switching Protocols` head, written before anything else.
    pub(crate) opening: Vec<u8>,
    pub(crate) data: Receiver<Outbound>,
    pub(crate) control: Receiver<Control>,
    pub(crate) connection: Arc<Connection>,
    pub(crate) liveness: Arc<Liveness>,
    pub(crate) timing: Timing,
}

/// Whether the writer keeps going or the connection has ended (and how).
type Step = Result<(), Closed>;

impl Writer {
    /// Runs until the connection ends, then shuts the socket down (which ends the reader) and says how
    /// it ended.
    pub(crate) fn run(mut self) -> Closed {
        let opening = std::mem::take(&mut self.opening);
        let closed = match self.write(&opening) {
            Ok(()) => self.exchange(),
            Err(closed) => closed,
        };
        let _ = self.socket.shutdown(Shutdown::Both);
        closed
    }

    fn exchange(&mut self) -> Closed {
        let mut data = self.data.clone();
        let control = self.control.clone();
        let mut ping_sent: Option<Instant> = None;
        // Set once we have sent a close frame: the deadline for the client's answer, and how the
        // connection ends when it comes.
        let mut closing: Option<(Instant, Closed)> = None;
        loop {
            let (deadline, _) = self.due(&closing, &mut ping_sent);
            // Control first: a pong or a close answer goes before data queued at the same moment.
            let step = select_biased! {
                recv(control) -> message => match message {
                    Ok(Control::Pong) => match (self.liveness.take_ping(), &closing) {
                        (Some(payload), None) => self.send_frame(OpCode::Pong, &payload),
                        _ => Ok(()),
                    },
                    Ok(Control::PongReceived) => Ok(()),
                    Ok(Control::PeerClosed(frame)) => Err(self.peer_closed(frame, closing.take())),
                    Ok(Control::Violation(violation)) => Err(self.fail(violation, closing.take())),
                    Ok(Control::HookPanicked) => Err(self.hook_panicked(closing.take())),
                    Ok(Control::ReadEnded) | Err(_) => Err(self.read_side_ended(closing.take())),
                },
                recv(data) -> item => match item {
                    Ok(item) => self.outbound(item, &mut closing),
                    Err(_) => {
                        // The registry let go of this connection without a close frame: a slow client.
                        data = never();
                        match self.connection.close_reason() {
                            Some(CloseReason::SlowClient) => Err(Closed::abnormal(CloseCause::SlowClient)),
                            _ => Ok(()),
                        }
                    }
                },
                default(deadline.saturating_duration_since(Instant::now())) => {
                    self.timer(&mut closing, &mut ping_sent)
                }
            };
            if let Err(closed) = step {
                return closed;
            }
        }
    }

    /// The next deadline: the close timeout while closing, else the pong timeout while a ping is
    /// unanswered, else the heartbeat after the client was last heard from.
    fn due(&self, closing: &Option<(Instant, Closed)>, ping_sent: &mut Option<Instant>) -> (Instant, Due) {
        if let Some((deadline, _)) = closing {
            return (*deadline, Due::CloseTimeout);
        }
        let heard = self.liveness.last_heard();
        match *ping_sent {
            Some(at) if heard < at => (at + self.timing.pong_timeout, Due::PongTimeout),
            _ => {
                *ping_sent = None;
                (heard + self.timing.heartbeat, Due::Ping)
            }
        }
    }

    fn timer(&mut self, closing: &mut Option<(Instant, Closed)>, ping_sent: &mut Option<Instant>) -> Step {
        // The client may have been heard from since the deadline was computed: recompute it.
        let (deadline, due) = self.due(closing, ping_sent);
        if Instant::now() < deadline {
            return Ok(());
        }
        match due {
            // Our close frame went unanswered: end as we meant to.
            Due::CloseTimeout => {
                Err(closing.take().map_or_else(|| Closed::abnormal(CloseCause::ClientGone), |c| c.1))
            }
            Due::PongTimeout => {
                log::debug!("websocket {}: no answer to a ping", self.connection.info.id);
                let frame = CloseFrame { code: 1011, reason: "ping timeout".into() };
                Err(self.close_now(frame, CloseCause::PingTimeout, None))
            }
            Due::Ping => {
                // Taken before the write: a quick pong may be read before the write even returns.
                let sent_at = Instant::now();
                self.liveness.ping_sent();
                self.send_frame(OpCode::Ping, b"")?;
                *ping_sent = Some(sent_at);
                Ok(())
            }
        }
    }

    /// Writes what the application queued: consecutive messages, up to [`MAX_GATHER`] bytes of them
    /// (see [`write_frames`]), then a close frame if one follows them.
    fn outbound(&mut self, item: Outbound, closing: &mut Option<(Instant, Closed)>) -> Step {
        let mut frames = Vec::new();
        let mut bytes = 0;
        let mut close = None;
        let mut next = Some(item);
        while let Some(item) = next.take() {
            match item {
                Outbound::Frame(frame) => {
                    bytes += frame.len();
                    frames.push(frame);
                }
                Outbound::Close { frame, cause } => close = Some((frame, cause)),
            }
            if close.is_none() && bytes < MAX_GATHER && frames.len() < MAX_BATCH {
                next = self.data.try_recv().ok();
            }
        }
        self.connection.taken_many(frames.len() + usize::from(close.is_some()), bytes);
        if self.connection.close_reason() == Some(&CloseReason::SlowClient) {
            // No point writing a backlog to a client that cannot keep up.
            return Err(Closed::abnormal(CloseCause::SlowClient));
        }
        if closing.is_some() {
            // Nothing goes out after our close frame (RFC 6455 §5.5.1).
            return Ok(());
        }
        let written = write_frames(&mut self.socket, &frames);
        self.check_written(written)?;
        if let Some((frame, cause)) = close {
            self.send_close(Some(&frame))?;
            let closed = Closed::new(cause, frame.code, frame.reason);
            *closing = Some((Instant::now() + self.timing.close_timeout, closed));
        }
        Ok(())
    }

    /// Before the last frames of a connection the reader ended, writes the messages already queued:
    /// replies the application queued while handling the client's earlier messages go out before
    /// the close frame, as they would have without the race between the two queues. Close items and
    /// anything queued after this call are left; nothing is written after our own close frame.
    fn flush_queued(&mut self) -> Step {
        for _ in 0..self.data.len() {
            let Ok(item) = self.data.try_recv() else { break };
            self.connection.taken(item.queued_size());
            if let Outbound::Frame(bytes) = item {
                self.write(&bytes)?;
            }
        }
        Ok(())
    }

    /// The client closed: answer with its code (unless we had closed first), and end.
    fn peer_closed(&mut self, frame: Option<CloseFrame>, closing: Option<(Instant, Closed)>) -> Closed {
        if let Some((_, closed)) = closing {
            return closed;
        }
        if let Err(closed) = self.flush_queued() {
            return closed;
        }
        let echo = frame.as_ref().map(|f| CloseFrame { code: f.code, reason: String::new() });
        if let Err(closed) = self.send_close(echo.as_ref()) {
            return closed;
        }
        match frame {
            Some(frame) => Closed::new(CloseCause::ClientClosed, frame.code, frame.reason),
            None => Closed::new(CloseCause::ClientClosed, NO_STATUS, ""),
        }
    }

    /// The client broke the protocol: send the code that says how, and close without waiting for an
    /// answer (the client is not following the protocol anyway).
    fn fail(&mut self, violation: Violation, closing: Option<(Instant, Closed)>) -> Closed {
        log::debug!("websocket {}: protocol error: {}", self.connection.info.id, violation.reason);
        let frame = CloseFrame { code: violation.code, reason: violation.reason.into() };
        let flushed = if closing.is_none() { self.flush_queued() } else { Ok(()) };
        let closed = match flushed {
            Err(closed) => closed,
            Ok(()) => self.close_now(frame, CloseCause::ProtocolError, closing),
        };
        // Unread input makes the kernel answer our close with a reset, which can destroy the close
        // frame before the client reads it: read and discard for a moment first.
        http::linger_close(&self.socket);
        closed
    }

    /// A hook panicked: the replies it queued before go out, then 1011.
    fn hook_panicked(&mut self, closing: Option<(Instant, Closed)>) -> Closed {
        let flushed = if closing.is_none() { self.flush_queued() } else { Ok(()) };
        let frame = CloseFrame { code: 1011, reason: "internal error".into() };
        match flushed {
            Err(closed) => closed,
            Ok(()) => self.close_now(frame, CloseCause::HookPanicked, closing),
        }
    }

    /// Sends a close frame (unless one was sent already) and ends without waiting for the answer.
    fn close_now(
        &mut self,
        frame: CloseFrame,
        cause: CloseCause,
        closing: Option<(Instant, Closed)>,
    ) -> Closed {
        if let Some((_, closed)) = closing {
            return closed;
        }
        match self.send_close(Some(&frame)) {
            Ok(()) => Closed::new(cause, frame.code, frame.reason),
            Err(closed) => closed,
        }
    }

    /// The client stopped sending (or the server ended our reads at shutdown). What was queued before
    /// still goes out, up to and including a close frame: that is how a shutdown's 1001 reaches the
    /// client even when its read side was ended first.
    fn read_side_ended(&mut self, closing: Option<(Instant, Closed)>) -> Closed {
        if let Some((_, closed)) = closing {
            return closed;
        }
        // Only what is queued now: a busy broadcaster must not keep this going.
        for _ in 0..self.data.len() {
            let Ok(item) = self.data.try_recv() else { break };
            self.connection.taken(item.queued_size());
            let written = match item {
                Outbound::Frame(bytes) => self.write(&bytes),
                Outbound::Close { frame, cause } => {
                    return self.close_now(frame, cause, None);
                }
            };
            if let Err(closed) = written {
                return closed;
            }
        }
        Closed::abnormal(CloseCause::ClientGone)
    }

    fn send_close(&mut self, frame: Option<&CloseFrame>) -> Step {
        self.send_frame(OpCode::Close, &close_payload(frame))
    }

    fn send_frame(&mut self, opcode: OpCode, payload: &[u8]) -> Step {
        self.write(&frame::encode(true, opcode, payload, None))
    }

    fn write(&mut self, bytes: &[u8]) -> Step {
        let written = self.socket.write_all(bytes);
        self.check_written(written)
    }

    fn check_written(&self, written: io::Result<()>) -> Step {
        written.map_err(|err| {
            // A write blocked on a client already dropped as slow fails when the client goes: it
            // ended as a slow client all the same.
            match self.connection.close_reason() {
                Some(CloseReason::SlowClient) => Closed::abnormal(CloseCause::SlowClient),
                _ => Closed::write_failed(&err),
            }
        })
    }
}

/// Writes `frames` in order, never copying a large one: frames smaller than [`MAX_GATHER`] are
/// gathered into writes of at most that many bytes, a larger one is written from its shared bytes.
fn write_frames(out: &mut impl Write, frames: &[Arc<[u8]>]) -> io::Result<()> {
    if let [one] = frames {
        return out.write_all(one);
    }
    let mut gathered = Vec::new();
    for frame in frames {
        if !gathered.is_empty() && gathered.len() + frame.len() > MAX_GATHER {
            out.write_all(&gathered)?;
            gathered.clear();
        }
        if frame.len() >= MAX_GATHER {
            out.write_all(frame)?;
        } else {
            gathered.extend_from_slice(frame);
        }
    }
    if gathered.is_empty() { Ok(()) } else { out.write_all(&gathered) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::frame::Role;
    use crate::ws::message::Limits;

    /// The reader's loop over `input` (masked client frames, then the end of the input); returns what
    /// it left on the control queue for the writer.
    fn read_all(input: &[u8], liveness: &Liveness) -> Vec<Control> {
        let limits = Limits { max_frame: 1024, max_message: 1024 };
        let (control, queued) = crossbeam_channel::unbounded();
        read_loop(MessageReader::new(input, Role::Server, limits), &control, liveness, |_| true);
        queued.try_iter().collect()
    }

    fn client_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        frame::encode(true, opcode, payload, Some([1, 2, 3, 4]))
    }

    /// Records each write: where its bytes were, how many, and all bytes in order.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<(*const u8, usize)>,
        bytes: Vec<u8>,
    }

    impl Write for Recorder {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.writes.push((buf.as_ptr(), buf.len()));
            self.bytes.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn frames_are_written_in_bounded_pieces_and_a_large_one_is_not_copied() {
        let small: Vec<Arc<[u8]>> = (0..60u8).map(|i| vec![i; 3000].into()).collect();
        let large: Arc<[u8]> = vec![0xAB; 200_000].into();
        let mut frames = small[..30].to_vec();
        frames.push(Arc::clone(&large));
        frames.extend_from_slice(&small[30..]);
        let mut out = Recorder::default();
        write_frames(&mut out, &frames).unwrap();
        assert_eq!(out.bytes, frames.concat());
        assert!(
            out.writes.contains(&(large.as_ptr(), large.len())),
            "the large frame is written from its own bytes"
        );
        let gathered: Vec<usize> = out.writes.iter().map(|w| w.1).filter(|&len| len != large.len()).collect();
        assert!(gathered.iter().all(|&len| len <= MAX_GATHER), "{gathered:?}");
        assert!(gathered.len() <= 4, "small frames are gathered: {gathered:?}");
    }

    #[test]
    fn a_ping_flood_leaves_one_pong_to_write_for_the_latest_ping() {
        let pings: Vec<u8> =
            (0..10_000u32).flat_map(|i| client_frame(OpCode::Ping, &i.to_be_bytes())).collect();
        let liveness = Liveness::new();
        let queued = read_all(&pings, &liveness);
        assert!(matches!(queued.as_slice(), [Control::Pong, Control::ReadEnded]), "{queued:?}");
        assert_eq!(liveness.take_ping(), Some(9_999u32.to_be_bytes().to_vec()));
    }

    #[test]
    fn only_a_pong_that_answers_our_ping_wakes_the_writer() {
        let pongs = client_frame(OpCode::Pong, b"unsolicited").repeat(1000);
        let liveness = Liveness::new();
        assert!(matches!(read_all(&pongs, &liveness).as_slice(), [Control::ReadEnded]));
        liveness.ping_sent();
        let queued = read_all(&pongs, &liveness);
        assert!(matches!(queued.as_slice(), [Control::PongReceived, Control::ReadEnded]), "{queued:?}");
    }
}
