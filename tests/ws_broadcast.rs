//! Broadcasts on real sockets: `send_all` appends to the handler's broadcast log once, and each
//! connection's writer reads the log from its own cursor. A client that reads slowly gets every
//! message of a burst, in order, as long as the log still holds what it has not read; one that falls
//! further behind is closed as a slow client, not skipped ahead.
#![cfg(feature = "websocket")]

mod ws_support;

use std::io::{self, Read, Write};
use std::thread;
use std::time::Duration;

use sse_handler::ws::{CloseCause, Message, WsConfig, client};
use ws_support::*;

/// A reader that pauses for a millisecond after every 16 KiB: a client that keeps reading, but at
/// 16 MB/s at most, slower than a publisher in a loop.
struct Paced<R> {
    inner: R,
    since_pause: usize,
}

impl<R: Read> Read for Paced<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.since_pause >= 16 * 1024 {
            thread::sleep(Duration::from_millis(1));
            self.since_pause = 0;
        }
        let n = self.inner.read(buf)?;
        self.since_pause += n;
        Ok(n)
    }
}

#[test]
fn a_client_that_reads_slowly_gets_a_whole_burst_in_order() {
    // 8000 messages of 1 KiB: eight times the default queue_capacity (1024) of a design with a queue
    // per connection, and more than the socket buffers hold (the client's is fixed at 32 KiB, the
    // server's grows to 4 MiB at most), so most of the burst waits on the server while the client
    // reads; well within what the broadcast log holds by default (10,000 messages, 16 MiB).
    const BURST: usize = 8000;
    let server = start(WsConfig::default());
    let stream = open_with_receive_buffer(server.addr, 32 * 1024);
    wait_until("registered", || server.handler.connection_count() == 1);

    let reading = thread::spawn(move || {
        let mut stream = Paced { inner: stream, since_pause: 0 };
        for n in 0..BURST {
            let (fin, opcode, payload) = read_frame(&mut stream);
            assert!(fin, "message {n}: a whole message per frame");
            if opcode == CLOSE {
                let code = (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                panic!("closed with {code:?} after {n} of {BURST} messages");
            }
            assert_eq!(opcode, TEXT, "message {n}");
            let text = String::from_utf8(payload).unwrap();
            let number: usize = text.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(number, n, "in order, none skipped");
        }
        stream.inner
    });
    let padding = "p".repeat(1024);
    for n in 0..BURST {
        assert_eq!(server.handler.send_all(format!("{n} {padding}")).unwrap(), 1, "message {n}");
    }
    let mut stream = reading.join().expect("the client read the whole burst");
    assert_eq!(server.handler.slow_client_drops(), 0);
    assert_eq!(server.handler.connection_count(), 1);
    server.handler.send_all("after the burst").unwrap();
    assert_eq!(read_text(&mut stream), "after the burst");
}

#[test]
fn a_client_whose_unread_broadcasts_left_the_log_is_closed_as_slow_while_the_others_go_on() {
    // A long send timeout, so that only the log's bound can end the client that does not read.
    let server = start(WsConfig::default().broadcast_capacity(4).send_timeout(Duration::from_secs(120)));
    let mut behind = open_with_receive_buffer(server.addr, 32 * 1024);
    let mut healthy = client::connect(server.addr, "/ws", &[], TIMEOUT).unwrap();
    wait_until("both registered", || server.handler.connection_count() == 2);
    // 64 messages of 256 KiB, 16 MiB, far more than the socket buffers hold: the writer of the client
    // that does not read blocks in a write while the log moves on past what it has not written.
    const SENT: usize = 64;
    let payload = "x".repeat(256 * 1024);
    for n in 0..SENT {
        assert_eq!(server.handler.send_all(format!("{n} {payload}")).unwrap(), 2);
        let got = healthy.recv_message().unwrap().unwrap();
        assert!(got.as_text().unwrap().starts_with(&format!("{n} ")), "in order");
    }

    // Now it reads: the broadcasts from the first on, none skipped, until its writer finds the next
    // one gone from the log and closes with 1008.
    let (code, seen) = read_until_close(&mut behind);
    assert_eq!(code, Some(1008));
    assert!(
        seen.len() < SENT - 4,
        "it got {} of {SENT}: more than the log holds past a blocked write",
        seen.len()
    );
    for (n, (opcode, payload)) in seen.iter().enumerate() {
        assert_eq!(*opcode, TEXT);
        assert!(payload.starts_with(format!("{n} ").as_bytes()), "message {n} in order");
    }
    behind.write_all(&frame(CLOSE, &close_payload(1008, ""))).unwrap();
    expect_eof(&mut behind);
    let closed = server.next_close();
    assert_eq!((closed.cause, closed.code), (CloseCause::SlowClient, 1008), "{closed:?}");
    assert_eq!(server.handler.slow_client_drops(), 1);

    assert_eq!(server.handler.connection_count(), 1);
    assert_eq!(server.handler.send_all("after").unwrap(), 1);
    assert_eq!(healthy.recv_message().unwrap(), Some(Message::Text("after".into())));
}

#[test]
fn a_message_to_one_comes_after_the_broadcasts_sent_before_it_and_reaches_only_that_one() {
    const ROUNDS: usize = 2000;
    // Room for all of them, however far behind the writers are scheduled.
    let server = start(WsConfig::default().queue_capacity(2 * ROUNDS + 1));
    let mut target = open(server.addr);
    let mut other = open(server.addr);
    wait_until("both registered", || server.handler.connection_count() == 2);
    let id = server.handler.connection_ids()[0];
    for round in 0..ROUNDS {
        server.handler.send_all(format!("all {round}")).unwrap();
        server.handler.send_one(id, format!("one {round}")).unwrap();
    }
    server.handler.send_all("end").unwrap();
    for round in 0..ROUNDS {
        assert_eq!(read_text(&mut target), format!("all {round}"));
        assert_eq!(read_text(&mut target), format!("one {round}"));
    }
    assert_eq!(read_text(&mut target), "end");
    for round in 0..ROUNDS {
        assert_eq!(read_text(&mut other), format!("all {round}"), "only the broadcasts");
    }
    assert_eq!(read_text(&mut other), "end");
}

#[test]
fn a_ping_is_answered_before_a_backlog_of_broadcasts() {
    // 4000 broadcasts of 4 KiB (16 MiB, several times what the socket buffers hold) wait for a client
    // that does not read; then it pings. The pong goes out after the write in progress, not after the
    // backlog.
    const SENT: usize = 4000;
    let server = start(WsConfig::default().broadcast_max_bytes(32 << 20));
    let mut stream = open_with_receive_buffer(server.addr, 32 * 1024);
    wait_until("registered", || server.handler.connection_count() == 1);
    let payload = "b".repeat(4096);
    for n in 0..SENT {
        server.handler.send_all(format!("{n} {payload}")).unwrap();
    }
    stream.write_all(&frame(PING, b"now")).unwrap();
    let mut before = 0;
    loop {
        match read_frame(&mut stream) {
            (_, PONG, payload) => {
                assert_eq!(payload, b"now");
                break;
            }
            (_, TEXT, payload) => {
                assert!(payload.starts_with(format!("{before} ").as_bytes()), "in order");
                before += 1;
                assert!(before < SENT, "the pong came after the whole backlog");
            }
            (_, opcode, _) => panic!("opcode {opcode}"),
        }
    }
    // Nothing was skipped for it: the rest follows.
    for n in before..SENT {
        let (_, opcode, payload) = read_frame(&mut stream);
        assert_eq!(opcode, TEXT);
        assert!(payload.starts_with(format!("{n} ").as_bytes()), "message {n} in order");
    }
    assert_eq!(server.handler.slow_client_drops(), 0);
}

#[test]
fn a_client_closed_as_slow_is_counted_once_however_much_more_is_sent_to_it() {
    // Its writer finds broadcasts it had not written gone from the log and closes it with 1008; the
    // client does not answer, so it is still registered while the application goes on sending to it
    // alone until its queue is full. It is one slow client dropped, not two.
    let config =
        WsConfig::default().broadcast_capacity(4).queue_capacity(2).send_timeout(Duration::from_secs(120));
    let server = start(config);
    let mut behind = open_with_receive_buffer(server.addr, 32 * 1024);
    wait_until("registered", || server.handler.connection_count() == 1);
    let id = server.handler.connection_ids()[0];
    // 16 MiB, far more than the socket buffers hold: the writer blocks while the log moves on.
    let payload = "x".repeat(256 * 1024);
    for n in 0..64 {
        server.handler.send_all(format!("{n} {payload}")).unwrap();
    }
    let (code, _) = read_until_close(&mut behind);
    assert_eq!(code, Some(1008));
    assert_eq!(server.handler.slow_client_drops(), 1);

    // Its writer takes nothing more from its queue: the third message finds it full.
    let mut sent = 0;
    while server.handler.send_one(id, "more").is_ok() {
        sent += 1;
        assert!(sent <= 2, "a queue of two took {sent} messages");
    }
    assert_eq!(server.handler.slow_client_drops(), 1, "one slow client, counted once");
    behind.write_all(&frame(CLOSE, &close_payload(1008, ""))).unwrap();
    expect_eof(&mut behind);
    assert_eq!(server.next_close().cause, CloseCause::SlowClient);
}
