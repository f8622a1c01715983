//! What one hostile or unlucky client can take from the server: idle sockets over the limit, a
//! panicking authenticator or logger, an open-file limit below `max_connections`, a client that waits
//! for `100 Continue`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use common::*;
use sse_handler::client::{self, Item};
use sse_handler::{
    BearerToken, Config, Rejection, Request, RequestLimits, Response, Server, ServerConfig, SseHandler,
};

/// A request for this path makes the test logger panic (the path shows up in a `debug` line).
const PANIC_MARKER: &str = "/panic-in-logger";

static ACCEPT_WARNINGS: AtomicUsize = AtomicUsize::new(0);
static OPEN_FILES_WARNINGS: AtomicUsize = AtomicUsize::new(0);

/// A logger that panics on [`PANIC_MARKER`] and counts the warnings the tests look for.
struct TestLogger;

impl log::Log for TestLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let message = record.args().to_string();
        if message.contains(PANIC_MARKER) {
            panic!("the test logger panics on {message:?}");
        }
        if message.starts_with("accept failed") {
            ACCEPT_WARNINGS.fetch_add(1, Ordering::SeqCst);
        }
        if message.contains("open-file limit") {
            OPEN_FILES_WARNINGS.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn flush(&self) {}
}

fn install_logger() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&TestLogger).expect("the only logger of this test binary");
        log::set_max_level(log::LevelFilter::Debug);
    });
}

#[test]
fn idle_sockets_over_the_limit_do_not_delay_the_answer_to_a_request_over_it() {
    let handler = SseHandler::new(Config::default().reconnect_after(Duration::from_millis(1500))).unwrap();
    let handle = Server::bind("127.0.0.1:0")
        .unwrap()
        .config(ServerConfig::default().max_connections(1))
        .stream("/events", &handler)
        .get("/page", |_| Response::text("page"))
        .spawn()
        .unwrap();
    let addr = handle.local_addr();
    let _held = subscribe(addr, "/events", &[]);
    // Over the limit, and silent: each used to hold the one answering thread for 1.5 s, and past
    // 64 of them the rest were closed without an answer.
    let idle: Vec<TcpStream> = (0..100).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let page = raw_exchange(addr, b"GET /page HTTP/1.1\r\n\r\n");
    assert_eq!(status_of(&page), 503, "{page}");
    let mut stream = connect_stream(addr, "/events", &[]);
    assert_eq!(next_item(stream.events()), Item::Retry(Duration::from_millis(1500)));
    assert!(stream.events().next_item().unwrap().is_none(), "closed after the hint");
    drop(idle);
    handle.shutdown();
}

#[test]
fn a_panicking_publish_authenticator_is_answered_500_and_gives_its_slot_back() {
    let handler = SseHandler::new(Config::default()).unwrap();
    let panicking = |request: &Request| -> Result<Option<String>, Rejection> {
        if request.query_value("panic").is_some() {
            panic!("the authenticator panics");
        }
        Ok(None)
    };
    let handle = Server::bind("127.0.0.1:0")
        .unwrap()
        .config(ServerConfig::default().max_connections(1))
        .publish_with("/publish", &handler, panicking)
        .spawn()
        .unwrap();
    let addr = handle.local_addr();
    let answer = raw_exchange(addr, b"POST /publish?panic=1&data=x HTTP/1.1\r\n\r\n");
    assert_eq!(status_of(&answer), 500, "{answer}");
    wait_until("the slot is given back", || handle.connection_count() == 0);
    // With a leaked slot, this would be over the limit of one connection.
    let answer = raw_exchange(addr, b"POST /publish?data=x HTTP/1.1\r\n\r\n");
    assert_eq!(status_of(&answer), 200, "{answer}");
    handle.shutdown();
}

#[test]
fn a_panicking_logger_costs_only_its_request_on_every_route() {
    install_logger();
    // The authenticator names a user that the stream's `debug` line then shows.
    let panicking_user =
        |request: &Request| -> Result<Option<String>, Rejection> { Ok(request.query_value("user")) };
    let handler = SseHandler::builder(Config::default()).authenticator(panicking_user).build().unwrap();
    let handle = Server::bind("127.0.0.1:0")
        .unwrap()
        .config(ServerConfig::default().max_connections(1))
        .stream("/events", &handler)
        .publish("/publish", &handler)
        .get("/page", |_| Response::text("page"))
        .spawn()
        .unwrap();
    let addr = handle.local_addr();

    // Refused (404), which is logged before anything is written: the client gets 500.
    let answer = raw_exchange(addr, format!("GET {PANIC_MARKER} HTTP/1.1\r\n\r\n").as_bytes());
    assert_eq!(status_of(&answer), 500, "{answer}");
    wait_until("the refused request's slot is given back", || handle.connection_count() == 0);

    // A stream whose opening is logged: the handler may have written by then, so no 500, but the
    // connection closes and both the server's slot and the handler's registration are given back.
    let request = format!("GET /events?user={PANIC_MARKER} HTTP/1.1\r\n\r\n");
    let answer = raw_exchange(addr, request.as_bytes());
    assert!(!answer.contains("200 OK"), "{answer}");
    wait_until("the stream's slot is given back", || handle.connection_count() == 0);
    assert_eq!(handler.connection_count(), 0);

    // Every route still serves.
    assert_eq!(status_of(&raw_exchange(addr, b"GET /page HTTP/1.1\r\n\r\n")), 200);
    assert_eq!(status_of(&raw_exchange(addr, b"POST /publish?data=x HTTP/1.1\r\n\r\n")), 200);
    let _stream = subscribe(addr, "/events", &[]);
    handle.shutdown();
}

fn small_body_server() -> TestServer {
    let limits = RequestLimits::default().max_body_bytes(100);
    let builder = SseHandler::builder(Config::default());
    start_with(builder, ServerConfig::default().request_limits(limits))
}

#[test]
fn a_client_that_expects_100_continue_gets_it_before_it_sends_the_body() {
    let server = small_body_server();
    let mut client = TcpStream::connect(server.addr).unwrap();
    client.write_all(b"POST /publish HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n").unwrap();
    let interim = read_until(&mut client, b"\r\n\r\n");
    assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    client.write_all(b"hello").unwrap();
    let answer = read_until_close(&mut client);
    assert_eq!(status_of(&answer), 200, "{answer}");
}

#[test]
fn no_100_continue_for_a_body_refused_before_it_is_read() {
    let server = small_body_server();
    for (request, status) in [
        (&b"POST /publish HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 101\r\n\r\n"[..], 413),
        (b"POST /publish?data=x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n", 200),
        (b"POST /publish HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", 200),
        (b"POST /publish HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi", 200),
    ] {
        let answer = raw_exchange(server.addr, request);
        assert_eq!(status_of(&answer), status, "{answer}");
        assert!(!answer.contains("100 Continue"), "{answer}");
    }
    let guarded = Server::bind("127.0.0.1:0")
        .unwrap()
        .publish_with("/publish", &server.handler, BearerToken::new("secret"))
        .spawn()
        .unwrap();
    let request = b"POST /publish HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    let answer = raw_exchange(guarded.local_addr(), request);
    assert!(answer.starts_with("HTTP/1.1 401 "), "refused before the body: {answer}");
    guarded.shutdown();
}

/// The environment variable that makes a test of this binary run as the child of another.
const CHILD: &str = "SSE_HANDLER_TEST_CHILD";

/// Runs this binary's test `name`, which does its work only when it is such a child.
fn spawn_child(name: &str) -> (Child, Receiver<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env(CHILD, name)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start this test binary again");
    let (lines, received) = channel();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            // The test harness may print its own words ahead of the first line on the same line.
            if let Some((_, line)) = line.split_once("child: ") {
                let _ = lines.send(line.to_owned());
            }
        }
    });
    (child, received)
}

fn next_line(lines: &Receiver<String>) -> String {
    lines.recv_timeout(TIMEOUT).expect("the child says what it did, within the timeout")
}

#[test]
fn max_connections_is_kept_within_the_open_file_limit() {
    let (mut child, lines) = spawn_child("child_with_a_low_open_file_limit");
    let raised = next_line(&lines);
    let (to, hard) = raised.strip_prefix("raised to ").and_then(|rest| rest.split_once(" of ")).unwrap();
    assert_eq!(to, hard, "raise_fd_limit lifts the soft limit to the hard one");
    let addr: SocketAddr = next_line(&lines).strip_prefix("listening on ").unwrap().parse().unwrap();

    // Under a soft limit of 128 and `max_connections` 10 000, streams used to be served until
    // `accept` ran out of descriptors; the next client then waited without an answer.
    let mut served = Vec::new();
    let turned_away_at = loop {
        assert!(served.len() < 200, "never turned away");
        let mut response = client::connect(addr, "/events", &[], TIMEOUT).expect("an answer");
        match next_item(response.events()) {
            Item::Retry(after) if after == Duration::from_millis(1234) => served.push(response),
            Item::Retry(after) if after == Duration::from_millis(5678) => break served.len(),
            other => panic!("{other:?}"),
        }
    };
    assert!((1..128).contains(&turned_away_at), "turned away after {turned_away_at} streams");
    for _ in 0..20 {
        assert_eq!(status_of(&raw_exchange(addr, b"GET /page HTTP/1.1\r\n\r\n")), 503);
    }
    drop(child.stdin.take());
    assert_eq!(next_line(&lines), "accept warnings 0, open-file limit warnings 1");
    assert!(child.wait().unwrap().success());
}

/// Runs only as the child of `max_connections_is_kept_within_the_open_file_limit`.
#[test]
fn child_with_a_low_open_file_limit() {
    if std::env::var(CHILD).as_deref() != Ok("child_with_a_low_open_file_limit") {
        return;
    }
    install_logger();
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    rlimit::setrlimit(rlimit::Resource::NOFILE, 100.min(hard), hard).unwrap();
    let raised = sse_handler::raise_fd_limit().unwrap().unwrap();
    println!("child: raised to {raised} of {}", rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap().1);
    rlimit::setrlimit(rlimit::Resource::NOFILE, 128, hard).unwrap();

    let config =
        Config::default().retry(Duration::from_millis(1234)).reconnect_after(Duration::from_millis(5678));
    let handler = SseHandler::new(config).unwrap();
    let handle = Server::bind("127.0.0.1:0")
        .unwrap()
        .stream("/events", &handler)
        .get("/page", |_| Response::text("page"))
        .spawn()
        .unwrap();
    println!("child: listening on {}", handle.local_addr());
    // Serves until the parent closes standard input.
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    println!(
        "child: accept warnings {}, open-file limit warnings {}",
        ACCEPT_WARNINGS.load(Ordering::SeqCst),
        OPEN_FILES_WARNINGS.load(Ordering::SeqCst)
    );
    handle.shutdown_within(Duration::from_secs(2));
}
