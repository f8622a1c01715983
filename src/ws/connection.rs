//! One connection after the handshake: a reader and a writer over two handles of the same socket.
//!
//! The reader (the connection's own thread) blocks in `read` and hands what arrives to the application
//! (messages) or to the writer (pings to answer, close frames, protocol errors), through the control
//! queue. The writer (a thread of its own) writes everything that goes out: the control frames, the
//! broadcasts it reads from the handler's log at its own cursor, and the messages of its connection's
//! own queue (see [`super::outbound`]). When it has nothing to do it parks, and whoever gives it
//! something unparks it: a publisher moving the log, the application queuing a message or a close,
//! the reader queuing a control message. No polling tick anywhere; the one timer is the park's own
//! timeout, the next heartbeat, pong or close timeout.
//!
//! The writer owns the closing handshake and decides how the connection ended; when it is done it
//! shuts the socket down, which ends the reader's blocking read.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use parking_lot::Mutex;

use super::close::{CloseCause, Closed, NO_STATUS};
use super::frame::{self, OpCode, ReadError, Violation};
use super::message::{CloseFrame, Incoming, Message, MessageReader, close_payload};
use super::outbound::{Batch, Bound, Outbox};
use crate::http;
use crate::log::FellBehind;
use crate::registry::{CloseReason, Connection};
use crate::wait::Waiter;

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

/// The reader's end of the control queue: every message is followed by an unpark of the writer, so a
/// writer that looked at the queue just before the message came, and parks, wakes at once.
#[derive(Debug)]
pub(crate) struct ControlSender {
    sender: Sender<Control>,
    writer: Thread,
}

impl ControlSender {
    /// The sending end of a queue that `writer` reads.
    pub(crate) fn new(sender: Sender<Control>, writer: Thread) -> ControlSender {
        ControlSender { sender, writer }
    }

    /// Queues `control` and wakes the writer; an error means the writer has finished.
    pub(crate) fn send(&self, control: Control) -> Result<(), ()> {
        self.sender.send(control).map_err(|_| ())?;
        self.writer.unpark();
        Ok(())
    }
}

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
    control: &ControlSender,
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

/// The writer: every byte that goes to the client, and the decision of how the connection ended.
pub(crate) struct Writer {
    pub(crate) socket: TcpStream,
    /// The `101 Switching Protocols` head, written before anything else.
    pub(crate) opening: Vec<u8>,
    /// Broadcasts and the connection's own messages, in order.
    pub(crate) outbox: Outbox,
    pub(crate) control: Receiver<Control>,
    pub(crate) connection: Arc<Connection>,
    pub(crate) liveness: Arc<Liveness>,
    pub(crate) timing: Timing,
}

/// Whether the writer keeps going or the connection has ended (and how).
type Step = Result<(), Closed>;

/// Once we have sent a close frame: the deadline for the client's answer, and how the connection
/// ends when it comes.
type Closing = Option<(Instant, Closed)>;

/// The close frame of a client that fell too far behind.
fn slow_client_frame() -> CloseFrame {
    CloseFrame { code: 1008, reason: "too slow: fell too far behind".into() }
}

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

    /// The writer's loop. Each turn does the first of these that has something to do, then looks again
    /// from the top: a control message from the reader; a timer that is due; the next batch of data.
    /// When none has anything, it parks until one may.
    fn exchange(&mut self) -> Closed {
        let waiter = Waiter::current();
        let mut batch = Batch::default();
        let mut ping_sent: Option<Instant> = None;
        let mut closing: Closing = None;
        loop {
            // Control first: a pong or a close answer goes before data ready at the same moment.
            match self.control.try_recv() {
                Ok(control) => match self.on_control(control, &mut closing, &mut batch) {
                    Ok(()) => continue,
                    Err(closed) => return closed,
                },
                // The reader always has a last word; without one, it is gone all the same.
                Err(TryRecvError::Disconnected) => return self.read_side_ended(closing.take(), &mut batch),
                Err(TryRecvError::Empty) => {}
            }

            // Then the timers: the heartbeat's ping, the pong timeout, the close timeout.
            let (deadline, _) = self.due(&closing, &mut ping_sent);
            if Instant::now() >= deadline {
                match self.timer(&mut closing, &mut ping_sent) {
                    Ok(()) => continue,
                    Err(closed) => return closed,
                }
            }

            // Then data, unless our close frame is out: nothing follows it (RFC 6455 §5.5.1).
            if closing.is_none() {
                match self.outbound(&mut batch, &mut closing) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(closed) => return closed,
                }
            }

            // Nothing to do: park until the log moves past what this writer has written, or the
            // application or the reader sends it something, or the deadline. Whoever sends unparks
            // this thread after sending, so a message that came after the looks above is not missed:
            // it leaves `park`'s token, and the park returns at once.
            let timeout = deadline.saturating_duration_since(Instant::now());
            if closing.is_some() {
                std::thread::park_timeout(timeout); // only the client's answer or the timeout matter now
            } else {
                batch.shrink();
                self.outbox.wait(&waiter, timeout);
            }
        }
    }

    /// Acts on what the reader said. Ends the connection for all but a ping to answer and a pong.
    fn on_control(&mut self, control: Control, closing: &mut Closing, batch: &mut Batch) -> Step {
        match control {
            Control::Pong => match (self.liveness.take_ping(), &closing) {
                (Some(payload), None) => self.send_frame(OpCode::Pong, &payload),
                _ => Ok(()),
            },
            // The pong deadline is computed afresh on the next turn.
            Control::PongReceived => Ok(()),
            Control::PeerClosed(frame) => Err(self.peer_closed(frame, closing.take(), batch)),
            Control::Violation(violation) => Err(self.fail(violation, closing.take(), batch)),
            Control::HookPanicked => Err(self.hook_panicked(closing.take(), batch)),
            Control::ReadEnded => Err(self.read_side_ended(closing.take(), batch)),
        }
    }

    /// The next deadline: the close timeout while closing, else the pong timeout while a ping is
    /// unanswered, else the heartbeat after the client was last heard from.
    fn due(&self, closing: &Closing, ping_sent: &mut Option<Instant>) -> (Instant, Due) {
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

    fn timer(&mut self, closing: &mut Closing, ping_sent: &mut Option<Instant>) -> Step {
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

    /// Writes the next batch of what the application sent (broadcasts and this connection's own
    /// messages, in order, up to [`MAX_GATHER`](super::outbound::MAX_GATHER) bytes of small frames
    /// and one large one), then starts the closing handshake if a close request follows them. Whether
    /// it wrote anything.
    fn outbound(&mut self, batch: &mut Batch, closing: &mut Closing) -> Result<bool, Closed> {
        if self.connection.close_reason() == Some(&CloseReason::SlowClient) {
            // A publisher found its queue full and dropped it: no point writing it a backlog.
            self.start_closing(slow_client_frame(), CloseCause::SlowClient, closing)?;
            return Ok(true);
        }
        let close = match self.outbox.gather(batch, &mut Bound::all()) {
            Ok(close) => close,
            Err(behind) => {
                batch.clear();
                self.fell_behind(behind);
                self.start_closing(slow_client_frame(), CloseCause::SlowClient, closing)?;
                return Ok(true);
            }
        };
        let wrote = !batch.is_empty();
        let written = batch.write_to(&mut self.socket);
        self.check_written(written)?;
        match close {
            Some((frame, cause)) => {
                self.start_closing(frame, cause, closing)?;
                Ok(true)
            }
            None => Ok(wrote),
        }
    }

    /// Counts and logs a client whose unwritten broadcasts left the log; it is then closed as slow.
    fn fell_behind(&self, FellBehind { missed, .. }: FellBehind) {
        let broadcasts = self.outbox.broadcasts();
        // A write that fails from now on (the close frame's) ends it as a slow client all the same.
        // Counted unless a publisher has just dropped it as slow (its queue was full) and counted it.
        if self.connection.close_reason.set(CloseReason::SlowClient).is_ok()
            || self.connection.close_reason() != Some(&CloseReason::SlowClient)
        {
            broadcasts.count_slow_client();
        }
        log::warn!(
            "websocket {} ({:?}) dropped: {missed} broadcasts it had not been sent left the log (at most {} \
             messages, {} bytes)",
            self.connection.info.id,
            self.connection.info.peer,
            broadcasts.capacity(),
            broadcasts.max_bytes()
        );
    }

    /// Sends our close frame and waits for the client's answer (up to the close timeout), writing
    /// nothing more meanwhile.
    fn start_closing(&mut self, frame: CloseFrame, cause: CloseCause, closing: &mut Closing) -> Step {
        self.send_close(Some(&frame))?;
        let closed = Closed::new(cause, frame.code, frame.reason);
        *closing = Some((Instant::now() + self.timing.close_timeout, closed));
        Ok(())
    }

    /// Before the last frames of a connection the reader ended, writes what the application had sent
    /// by then: broadcasts up to the log's head and the messages in the connection's queue, up to a
    /// close request, which it returns. Replies the application queued while handling the client's
    /// earlier messages thus go out before the close frame, as they would have without the race
    /// between the reader and the writer. Anything sent after this call is left.
    fn flush(&mut self, batch: &mut Batch) -> Result<Flushed, Closed> {
        if self.connection.close_reason() == Some(&CloseReason::SlowClient) {
            return Ok(Flushed::Dropped); // no backlog for a client dropped as slow
        }
        let mut bound = self.outbox.sent_so_far();
        loop {
            let close = match self.outbox.gather(batch, &mut bound) {
                Ok(close) => close,
                Err(behind) => {
                    batch.clear();
                    return Ok(Flushed::FellBehind(behind));
                }
            };
            let empty = batch.is_empty();
            let written = batch.write_to(&mut self.socket);
            self.check_written(written)?;
            if let Some((frame, cause)) = close {
                return Ok(Flushed::Close(frame, cause));
            }
            if empty {
                return Ok(Flushed::All);
            }
        }
    }

    /// The client closed: answer with its code (unless we had closed first, or it fell too far behind:
    /// then 1008), and end.
    fn peer_closed(&mut self, frame: Option<CloseFrame>, closing: Closing, batch: &mut Batch) -> Closed {
        if let Some((_, closed)) = closing {
            return closed;
        }
        match self.flush(batch) {
            Err(closed) => return closed,
            // What it had not been sent is gone: it is told so, not answered as if it had it all.
            Ok(Flushed::FellBehind(behind)) => {
                self.fell_behind(behind);
                return self.close_now(slow_client_frame(), CloseCause::SlowClient, None);
            }
            Ok(Flushed::Dropped) => return self.close_now(slow_client_frame(), CloseCause::SlowClient, None),
            Ok(Flushed::All | Flushed::Close(..)) => {}
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
    fn fail(&mut self, violation: Violation, closing: Closing, batch: &mut Batch) -> Closed {
        log::debug!("websocket {}: protocol error: {}", self.connection.info.id, violation.reason);
        let frame = CloseFrame { code: violation.code, reason: violation.reason.into() };
        let flushed = if closing.is_none() { self.flush(batch).map(drop) } else { Ok(()) };
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
    fn hook_panicked(&mut self, closing: Closing, batch: &mut Batch) -> Closed {
        let flushed = if closing.is_none() { self.flush(batch).map(drop) } else { Ok(()) };
        let frame = CloseFrame { code: 1011, reason: "internal error".into() };
        match flushed {
            Err(closed) => closed,
            Ok(()) => self.close_now(frame, CloseCause::HookPanicked, closing),
        }
    }

    /// Sends a close frame (unless one was sent already) and ends without waiting for the answer.
    fn close_now(&mut self, frame: CloseFrame, cause: CloseCause, closing: Closing) -> Closed {
        if let Some((_, closed)) = closing {
            return closed;
        }
        match self.send_close(Some(&frame)) {
            Ok(()) => Closed::new(cause, frame.code, frame.reason),
            Err(closed) => closed,
        }
    }

    /// The client stopped sending (or the server ended our reads at shutdown). What was sent before
    /// still goes out, up to and including a close frame: that is how a shutdown's 1001 reaches the
    /// client even when its read side was ended first.
    fn read_side_ended(&mut self, closing: Closing, batch: &mut Batch) -> Closed {
        if let Some((_, closed)) = closing {
            return closed;
        }
        // Only what was sent by now: a busy broadcaster must not keep this going.
        match self.flush(batch) {
            Err(closed) => closed,
            Ok(Flushed::Close(frame, cause)) => self.close_now(frame, cause, None),
            Ok(Flushed::FellBehind(behind)) => {
                self.fell_behind(behind);
                self.close_now(slow_client_frame(), CloseCause::SlowClient, None)
            }
            // Dropped by a publisher before the writer could say so: it ends as a slow client.
            Ok(Flushed::Dropped) => self.close_now(slow_client_frame(), CloseCause::SlowClient, None),
            Ok(Flushed::All) => Closed::abnormal(CloseCause::ClientGone),
        }
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

/// What [`Writer::flush`] got to.
enum Flushed {
    /// Everything sent by then is written.
    All,
    /// A close request, after what came before it.
    Close(CloseFrame, CloseCause),
    /// Broadcasts not written yet had left the log.
    FellBehind(FellBehind),
    /// Nothing: a publisher dropped the connection as a slow client (its queue was full).
    Dropped,
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread::JoinHandle;

    use super::*;
    use crate::registry::{ConnectionInfo, Queue, QueueLimits, Registry};
    use crate::ws::frame::Role;
    use crate::ws::message::Limits;
    use crate::ws::outbound::{Broadcasts, Outbound, Private};

    /// The reader's loop over `input` (masked client frames, then the end of the input); returns what
    /// it left on the control queue for the writer.
    fn read_all(input: &[u8], liveness: &Liveness) -> Vec<Control> {
        let limits = Limits { max_frame: 1024, max_message: 1024 };
        let (control, queued) = crossbeam_channel::unbounded();
        let control = ControlSender::new(control, std::thread::current());
        read_loop(MessageReader::new(input, Role::Server, limits), &control, liveness, |_| true);
        queued.try_iter().collect()
    }

    fn client_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
        frame::encode(true, opcode, payload, Some([1, 2, 3, 4]))
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

    /// A writer on one end of a loopback connection, started the way the handler starts one: its
    /// thread first, then the connection registered as served by it. The heartbeat is an hour away, so
    /// only a wake-up makes it write anything.
    struct Running {
        client: TcpStream,
        broadcasts: Arc<Broadcasts>,
        registry: Registry<Private>,
        control: ControlSender,
        liveness: Arc<Liveness>,
        writer: JoinHandle<Option<Closed>>,
    }

    /// Starts a writer; `before` runs once everything is set up but before the writer's loop starts.
    fn running(before: impl FnOnce(&Broadcasts, &Registry<Private>, &ControlSender, &Liveness)) -> Running {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (socket, _) = listener.accept().unwrap();
        let (start, started) = crossbeam_channel::bounded::<Writer>(1);
        let writer = std::thread::spawn(move || started.recv().ok().map(Writer::run));
        let info = ConnectionInfo::for_test(1, "/ws");
        let connection = Arc::new(Connection::served_by(info, None, writer.thread().clone()));
        let broadcasts = Arc::new(Broadcasts::new(1000, usize::MAX));
        let registry = Registry::default();
        let queue = registry.insert(Arc::clone(&connection), Queue::new());
        let (control_tx, control_rx) = crossbeam_channel::bounded(CONTROL_CAPACITY);
        let control = ControlSender::new(control_tx, writer.thread().clone());
        let liveness = Arc::new(Liveness::new());
        let outbox = Outbox::new(Arc::clone(&broadcasts), queue, Arc::clone(&connection), broadcasts.head());
        before(&broadcasts, &registry, &control, &liveness);
        let hour = Duration::from_secs(3600);
        start
            .send(Writer {
                socket,
                opening: b"OPEN".to_vec(),
                outbox,
                control: control_rx,
                connection,
                liveness: Arc::clone(&liveness),
                timing: Timing { heartbeat: hour, pong_timeout: hour, close_timeout: hour },
            })
            .unwrap();
        let mut client = client;
        let mut opening = [0u8; 4];
        client.read_exact(&mut opening).unwrap();
        assert_eq!(&opening, b"OPEN");
        Running { client, broadcasts, registry, control, liveness, writer }
    }

    /// The next frame the writer wrote: (opcode bits, payload). Server frames are short here.
    fn next_frame(client: &mut TcpStream) -> (u8, Vec<u8>) {
        let mut head = [0u8; 2];
        client.read_exact(&mut head).expect("written within the timeout");
        assert!(head[1] < 126, "a short frame");
        let mut payload = vec![0u8; usize::from(head[1])];
        client.read_exact(&mut payload).unwrap();
        (head[0] & 0x0F, payload)
    }

    fn data(text: &str) -> Arc<[u8]> {
        Message::Text(text.into()).encode()
    }

    #[test]
    fn a_parked_writer_wakes_for_the_log_its_own_queue_and_the_reader_every_time() {
        let mut run = running(|_, _, _, _| {});
        // Many rounds, each of the three kinds of wake-up, each waited for: a wake-up lost between the
        // writer's last look and its park would leave the writer asleep for the hour of its timeout.
        for round in 0..300 {
            run.broadcasts.publish(data(&format!("all {round}")));
            assert_eq!(next_frame(&mut run.client), (0x1, format!("all {round}").into_bytes()));
            let private = Private { after: run.broadcasts.head(), item: Outbound::Frame(data("you")) };
            run.registry.push_one(1.into(), &private, &QueueLimits::UNBOUNDED);
            assert_eq!(next_frame(&mut run.client), (0x1, b"you".to_vec()));
            assert!(run.liveness.ping_to_answer(format!("ping {round}").into_bytes()));
            run.control.send(Control::Pong).unwrap();
            assert_eq!(next_frame(&mut run.client), (0xA, format!("ping {round}").into_bytes()));
        }
        run.control.send(Control::ReadEnded).unwrap();
        let closed = run.writer.join().unwrap().unwrap();
        assert_eq!(closed.cause, CloseCause::ClientGone);
    }

    #[test]
    fn a_pong_goes_out_before_data_that_was_ready_at_the_same_moment() {
        let mut run = running(|broadcasts, registry, control, liveness| {
            for n in 0..100 {
                broadcasts.publish(data(&format!("all {n}")));
            }
            let private = Private { after: broadcasts.head(), item: Outbound::Frame(data("you")) };
            registry.push_one(1.into(), &private, &QueueLimits::UNBOUNDED);
            assert!(liveness.ping_to_answer(b"first".to_vec()));
            control.send(Control::Pong).unwrap();
        });
        assert_eq!(next_frame(&mut run.client), (0xA, b"first".to_vec()), "the pong first");
        assert_eq!(next_frame(&mut run.client), (0x1, b"all 0".to_vec()));
        for n in 1..100 {
            assert_eq!(next_frame(&mut run.client), (0x1, format!("all {n}").into_bytes()));
        }
        assert_eq!(next_frame(&mut run.client), (0x1, b"you".to_vec()));
        run.control
            .send(Control::PeerClosed(Some(CloseFrame { code: 1000, reason: String::new() })))
            .unwrap();
        assert_eq!(next_frame(&mut run.client), (0x8, 1000u16.to_be_bytes().to_vec()));
        assert_eq!(run.writer.join().unwrap().unwrap().cause, CloseCause::ClientClosed);
    }

    #[test]
    fn a_client_that_closes_after_its_unwritten_broadcasts_left_the_log_is_told_it_was_too_slow() {
        // Its writer meets the client's close before it has looked at the log again: broadcasts it had
        // not written are gone, so it is answered 1008 and counted, not answered as if it had them all.
        let mut run = running(|broadcasts, _, control, _| {
            for n in 0..=broadcasts.capacity() {
                broadcasts.publish(data(&format!("all {n}")));
            }
            let close = CloseFrame { code: 1000, reason: String::new() };
            control.send(Control::PeerClosed(Some(close))).unwrap();
        });
        let (opcode, payload) = next_frame(&mut run.client);
        assert_eq!((opcode, &payload[..2]), (0x8, &1008u16.to_be_bytes()[..]), "{payload:?}");
        assert_eq!(run.writer.join().unwrap().unwrap().cause, CloseCause::SlowClient);
        assert_eq!(run.broadcasts.slow_client_drops(), 1);
    }
}
