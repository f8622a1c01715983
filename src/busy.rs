//! Answers the connections over the server's limits: one thread, a bounded waiting room, and no
//! waiting on any one client.
//!
//! The answer depends on what was asked (a stream request gets a `200` with only a `retry:` hint,
//! since any other status makes a browser's EventSource give up for good; anything else gets `503`),
//! so the request head is read, but never with a blocking read: each connection waits in the room
//! until its head has come, its time is up, or the room needs its place, and the thread looks at
//! every one of them each [`VISIT_INTERVAL`]. A client that sends its head is answered at once,
//! however many idle ones wait beside it. An answered connection stays a little longer, its input
//! read and thrown away, so that closing it does not reset the connection before the client has
//! read the answer.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::error::Error;
use crate::http::{HeadScan, Request, Response};

/// Connections in the room at most; a newcomer beyond this turns out the one that came first.
pub(crate) const ROOM_SIZE: usize = 128;
/// How often the thread looks at the connections in the room while any are there.
const VISIT_INTERVAL: Duration = Duration::from_millis(10);
/// How long an answered connection stays, and how much of its input is thrown away at most.
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 64 * 1024;

/// A connection over a limit, as the accept loop hands it over, with the limit it reached.
#[derive(Debug)]
pub(crate) struct TurnedAway {
    pub(crate) stream: TcpStream,
    pub(crate) limit: usize,
}

/// Writes the answer for a request (`None` when its head did not come in time, or was not valid)
/// over `limit` into the given buffer.
pub(crate) type Answer<'a> = dyn Fn(Option<&Request>, usize, &mut Vec<u8>) + 'a;

/// Queues a connection for the room. When the queue is full (the room's thread is behind), the one
/// queued longest makes way, with a `503` written without reading its request: the newest are the
/// likeliest to be clients whose request is on its way, the oldest to be idle.
pub(crate) fn hand_over(sender: &Sender<TurnedAway>, queue: &Receiver<TurnedAway>, turned_away: TurnedAway) {
    if let Err(TrySendError::Full(turned_away)) = sender.try_send(turned_away) {
        if let Ok(oldest) = queue.try_recv() {
            answer_unread(&oldest);
        }
        // Still full only if the room's thread is gone or others raced for the space: close it then.
        let _ = sender.try_send(turned_away);
    }
}

/// Writes the answer for no request, without waiting (the socket's buffer takes it whole).
fn answer_unread(turned_away: &TurnedAway) {
    let Some(response) = Response::for_error(&Error::TooManyConnections { limit: turned_away.limit }) else {
        return;
    };
    let mut bytes = Vec::new();
    if turned_away.stream.set_nonblocking(true).is_ok() && response.write_to(&mut bytes, false).is_ok() {
        let _ = (&turned_away.stream).write(&bytes);
    }
}

/// Serves the room until the queue's sender is dropped; then answers whoever is still waiting.
pub(crate) fn serve(
    queue: &Receiver<TurnedAway>,
    max_head_bytes: usize,
    head_wait: Duration,
    answer: &Answer<'_>,
) {
    let mut room = Room { waiting: VecDeque::new(), max_head_bytes, head_wait, answer };
    loop {
        let arrived = if room.waiting.is_empty() {
            queue.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            queue.recv_timeout(VISIT_INTERVAL)
        };
        match arrived {
            Ok(turned_away) => {
                room.admit(turned_away);
                queue.try_iter().for_each(|turned_away| room.admit(turned_away));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        room.visit(Instant::now());
    }
    while let Some(waiting) = room.waiting.pop_front() {
        room.turn_out(waiting);
    }
}

struct Room<'a> {
    waiting: VecDeque<Waiting>,
    max_head_bytes: usize,
    head_wait: Duration,
    answer: &'a Answer<'a>,
}

struct Waiting {
    stream: TcpStream,
    state: State,
    /// When its head is given up on, or (answered) when it is closed.
    until: Instant,
}

enum State {
    ReadingHead { head: Vec<u8>, scan: HeadScan, limit: usize },
    Answered { discarded: usize },
}

impl Room<'_> {
    fn admit(&mut self, turned_away: TurnedAway) {
        if turned_away.stream.set_nonblocking(true).is_err() {
            return;
        }
        if self.waiting.len() >= ROOM_SIZE {
            if let Some(first) = self.waiting.pop_front() {
                self.turn_out(first);
            }
        }
        let state =
            State::ReadingHead { head: Vec::new(), scan: HeadScan::default(), limit: turned_away.limit };
        self.waiting.push_back(Waiting {
            stream: turned_away.stream,
            state,
            until: Instant::now() + self.head_wait,
        });
    }

    /// Reads what has come on every connection, answers those whose head is complete (or whose time
    /// is up), and lets go of those that are done.
    fn visit(&mut self, now: Instant) {
        let mut waiting = std::mem::take(&mut self.waiting);
        waiting.retain_mut(|one| self.step(one, now));
        self.waiting = waiting;
    }

    /// Moves one connection on; false once it is done with.
    fn step(&self, one: &mut Waiting, now: Instant) -> bool {
        match &mut one.state {
            State::ReadingHead { head, scan, limit } => {
                let limit = *limit;
                let before = head.len();
                let Ok(open) = read_available(&one.stream, head, self.max_head_bytes) else { return false };
                let request =
                    if head.len() > before { scan.advance(head, self.max_head_bytes) } else { Ok(None) };
                match request {
                    Ok(Some(parsed)) => self.answer(one, Some(&parsed.request), limit, now),
                    Ok(None) if open && now < one.until => {}
                    Ok(None) if !open => return false,
                    Ok(None) | Err(_) => self.answer(one, None, limit, now),
                }
                true
            }
            State::Answered { discarded } => {
                let mut sink = [0u8; 4096];
                loop {
                    match (&one.stream).read(&mut sink) {
                        Ok(0) => return false,
                        Ok(n) => *discarded += n,
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                        Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => return false,
                    }
                    if *discarded > LINGER_BYTES {
                        return false;
                    }
                }
                now < one.until
            }
        }
    }

    /// Writes the answer (the socket's buffer takes it whole: nothing else was written to it), ends
    /// our side, and keeps the connection a little longer.
    fn answer(&self, one: &mut Waiting, request: Option<&Request>, limit: usize, now: Instant) {
        let mut bytes = Vec::new();
        // The answer logs; a logger that panics costs this answer, not the room.
        if catch_unwind(AssertUnwindSafe(|| (self.answer)(request, limit, &mut bytes))).is_ok() {
            let _ = (&one.stream).write(&bytes);
        }
        let _ = one.stream.shutdown(Shutdown::Write);
        one.state = State::Answered { discarded: 0 };
        one.until = now + LINGER;
    }

    /// Lets go of a connection before its turn: one still waiting for its head gets the answer for
    /// no request.
    fn turn_out(&self, mut one: Waiting) {
        if let State::ReadingHead { limit, .. } = one.state {
            self.answer(&mut one, None, limit, Instant::now());
        }
    }
}

/// Reads whatever has arrived, up to `max` bytes in all, without waiting; false once the client has
/// closed its end.
fn read_available(mut stream: &TcpStream, buf: &mut Vec<u8>, max: usize) -> io::Result<bool> {
    let mut chunk = [0u8; 1024];
    while buf.len() < max {
        let room = (max - buf.len()).min(chunk.len());
        match stream.read(&mut chunk[..room]) {
            Ok(0) => return Ok(false),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(true)
}
