//! Runs the built `sse-relay` binary as a user would: on 127.0.0.1:0, its address read from its
//! first line, standard input through a pipe, and a guard that kills it if a test fails.
#![allow(dead_code, unreachable_pub)] // each test file uses a different subset

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sse_handler::client::{self, Body, EventStream, Item, ReceivedEvent};

/// The longest any test waits for something it expects.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A running relay. Dropping it kills the process (by its PID) if it is still running, and, when the
/// test is failing, prints what the relay logged.
pub struct Relay {
    child: Child,
    pub addr: SocketAddr,
    stdin: Option<ChildStdin>,
    /// Standard output after the first line, one line at a time.
    stdout: Receiver<String>,
    stderr: Arc<Mutex<Vec<u8>>>,
    /// The id the relay gives its first event.
    first_id: u64,
}

impl Relay {
    /// Starts `sse-relay --listen 127.0.0.1:0 ARGS...` and waits for its `listening on` line.
    pub fn start(args: &[&str]) -> Relay {
        Relay::launch(Command::new(env!("CARGO_BIN_EXE_sse-relay")), "127.0.0.1:0", args, &[])
    }

    /// As [`Relay::start`], with these environment variables.
    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Relay {
        Relay::launch(Command::new(env!("CARGO_BIN_EXE_sse-relay")), "127.0.0.1:0", args, env)
    }

    /// Starts the relay on `listen` (an address a test has just freed, to restart on the same port).
    pub fn start_on(listen: &str, args: &[&str]) -> Relay {
        Relay::launch(Command::new(env!("CARGO_BIN_EXE_sse-relay")), listen, args, &[])
    }

    /// As [`Relay::start`], with the soft limit on open files lowered to `soft` (by the shell, which
    /// then becomes the relay).
    pub fn start_with_open_file_limit(soft: u64, args: &[&str]) -> Relay {
        let mut shell = Command::new("sh");
        shell.args([
            "-c",
            &format!("ulimit -Sn {soft} && exec \"$0\" \"$@\""),
            env!("CARGO_BIN_EXE_sse-relay"),
        ]);
        Relay::launch(shell, "127.0.0.1:0", args, &[])
    }

    fn launch(mut command: Command, listen: &str, args: &[&str], env: &[(&str, &str)]) -> Relay {
        // Everything is logged, unless the test chooses a level itself.
        let log_level: &[&str] = if args.contains(&"--log-level") { &[] } else { &["--log-level", "debug"] };
        let mut child = command
            .args(["--listen", listen])
            .args(log_level)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("SSE_RELAY_TOKEN")
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sse-relay");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = err_pipe.read(&mut chunk) {
                sink.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        let (lines, stdout) = channel();
        let out_pipe = BufReader::new(child.stdout.take().unwrap());
        thread::spawn(move || {
            for line in out_pipe.lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut relay =
            Relay { child, addr: "0.0.0.0:0".parse().unwrap(), stdin, stdout, stderr, first_id: 0 };
        let first = relay.stdout.recv_timeout(TIMEOUT).unwrap_or_else(|err| {
            panic!("no `listening on` line ({err:?}); the relay logged:\n{}", relay.stderr())
        });
        let addr =
            first.strip_prefix("listening on http://").unwrap_or_else(|| panic!("first line: {first:?}"));
        relay.addr = addr.parse().unwrap_or_else(|_| panic!("not an address: {addr:?}"));
        if args.contains(&"--redis") {
            // Ids are the stream's entry ids: there is no first number.
            return relay;
        }
        relay.wait_for_log("events are numbered from ");
        let log = relay.stderr();
        let first =
            log.split("events are numbered from ").nth(1).and_then(|rest| rest.split_whitespace().next());
        relay.first_id = first.and_then(|id| id.parse().ok()).expect("the first id in the log line");
        relay
    }

    /// The id of the `n`th event the relay publishes (1 for the first).
    pub fn id(&self, n: u64) -> String {
        (self.first_id + n - 1).to_string()
    }

    /// The next `n` events' (n-th, type, data), where n-th is the event's place in the relay's
    /// sequence, from its id ("1" for the first event published).
    pub fn take_events(&self, stream: &mut EventStream<Body>, n: usize) -> Vec<(String, String, String)> {
        (0..n)
            .map(|_| {
                let event = next_event(stream);
                let place = match event.last_event_id.parse::<u64>() {
                    Ok(id) if id >= self.first_id => (id + 1 - self.first_id).to_string(),
                    _ => event.last_event_id, // a publisher's own id
                };
                (place, event.event_type, event.data)
            })
            .collect()
    }

    /// Writes `line` and a newline to the relay's standard input.
    pub fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("standard input still open");
        stdin.write_all(format!("{line}\n").as_bytes()).expect("write to the relay's standard input");
        stdin.flush().unwrap();
    }

    /// Writes raw bytes to standard input.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("standard input still open");
        stdin.write_all(bytes).expect("write to the relay's standard input");
        stdin.flush().unwrap();
    }

    /// Closes standard input: the relay sees the end of its input.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Sends a signal to this relay (its own PID, nothing else).
    pub fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        kill(pid, signal).expect("signal the relay");
    }

    /// Waits (bounded) for the relay to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the relay") {
                return status;
            }
            assert!(Instant::now() < deadline, "the relay did not exit; it logged:\n{}", self.stderr());
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The relay's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("poll the relay").is_none()
    }

    /// The rest of standard output, once the relay has exited.
    pub fn remaining_stdout(&self) -> Vec<String> {
        let mut rest = Vec::new();
        loop {
            match self.stdout.recv_timeout(TIMEOUT) {
                Ok(line) => rest.push(line),
                Err(RecvTimeoutError::Disconnected) => return rest,
                Err(RecvTimeoutError::Timeout) => panic!("standard output still open: {rest:?}"),
            }
        }
    }

    /// Everything the relay has logged so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Waits (bounded) until the relay has logged `text`.
    pub fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.stderr().contains(text) {
            assert!(
                Instant::now() < deadline,
                "the relay never logged {text:?}; it logged:\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Opens a stream and checks it was accepted. The relay has registered it when this returns.
    pub fn subscribe(&self, path: &str, headers: &[(&str, &str)]) -> client::ReceivedResponse {
        let mut response = client::connect(self.addr, path, headers, TIMEOUT).expect("connect");
        assert_eq!(response.status(), 200, "{:?}", response.headers());
        // Every stream starts with bytes right after its head: a `retry:` hint, or a comment.
        let opening = next_item(response.events());
        assert!(matches!(&opening, Item::Retry(_)) || opening == Item::Comment("open".into()), "{opening:?}");
        response
    }

    /// Sends any request and returns (status, headers, body).
    pub fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> (u16, Vec<(String, String)>, String) {
        let response = client::request(self.addr, method, target, headers, body, TIMEOUT).expect("request");
        let (status, head) = (response.status(), response.headers().to_vec());
        let body = response.read_body().expect("read the answer");
        (status, head, String::from_utf8_lossy(&body).into_owned())
    }

    /// POSTs to `/publish` + `query`; returns (status, body).
    pub fn publish(&self, query: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> (u16, String) {
        let (status, _, body) = self.request("POST", &format!("/publish{query}"), headers, body);
        (status, body)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if self.is_running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("--- the relay logged:\n{}", self.stderr());
        }
    }
}

pub fn next_event(stream: &mut EventStream<Body>) -> ReceivedEvent {
    stream.next_event().expect("read within the timeout").expect("stream still open")
}

pub fn next_item(stream: &mut EventStream<Body>) -> Item {
    stream.next_item().expect("read within the timeout").expect("stream still open")
}

/// Every item until the relay ends the stream.
pub fn items_to_end(stream: &mut EventStream<Body>) -> Vec<Item> {
    let mut items = Vec::new();
    while let Some(item) = stream.next_item().expect("the stream ends within the timeout") {
        items.push(item);
    }
    items
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Shorthand for the expected (id, type, data) triples.
pub fn triples(expected: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    expected.iter().map(|&(id, t, data)| (id.to_owned(), t.to_owned(), data.to_owned())).collect()
}
