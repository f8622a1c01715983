//! The relay behind a real nginx, configured with the `location` block of the README's "Behind a
//! reverse proxy" section: heartbeats pass, events arrive as they are published, and `Last-Event-ID`
//! reaches the relay when the client reconnects.
//!
//! Needs nginx (`NGINX=/path/to/nginx`, or `nginx` on the `PATH` or in `/usr/sbin`); `.ci/run`
//! installs it and runs this test with `--ignored`.

mod common;

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use sse_handler::client::{self, EventSource, ReceivedEvent, Update};

/// An nginx serving the README's `location /` block on a free loopback port, in front of `upstream`.
/// It runs in the foreground as one process, a child of the test, which dropping it kills by its PID.
struct Nginx {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Nginx {
    fn start(upstream: SocketAddr) -> Nginx {
        let dir = std::env::temp_dir().join(format!("sse-relay-nginx-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create the nginx directory");
        let addr = free_loopback_addr();
        let config = dir.join("nginx.conf");
        fs::write(&config, nginx_config(&dir, addr, upstream)).expect("write the nginx configuration");
        let error_log = dir.join("error.log");
        let child = Command::new(nginx_binary())
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&config)
            .arg("-e")
            .arg(&error_log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start nginx");
        let mut nginx = Nginx { child, dir, addr };
        nginx.wait_until_listening();
        nginx
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        while TcpStream::connect(self.addr).is_err() {
            let exited = self.child.try_wait().expect("poll nginx");
            assert!(exited.is_none(), "nginx exited ({exited:?}); it logged:\n{}", self.log());
            assert!(
                Instant::now() < deadline,
                "nginx does not listen on {}; it logged:\n{}",
                self.addr,
                self.log()
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!("--- nginx logged:\n{}", self.log());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn nginx_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NGINX") {
        return path.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
        .expect("nginx not found: install it (Debian: apt-get install nginx-light) or set NGINX")
}

/// A port that was free a moment ago (nginx cannot be told to pick one and say which).
fn free_loopback_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// A whole configuration for one foreground process, its files kept in `dir`, around the README's block.
fn nginx_config(dir: &Path, listen: SocketAddr, upstream: SocketAddr) -> String {
    let dir = dir.display();
    let location = readme_location_block();
    format!(
        "daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream sse_relay {{
        server {upstream};
    }}
    server {{
        listen {listen};
{location}
    }}
}}
"
    )
}

/// The `location / { ... }` block of the README's nginx example, braces matched.
fn readme_location_block() -> String {
    let readme =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("read README.md");
    let example = readme.split("```nginx\n").nth(1).expect("an nginx example in README.md");
    let example = example.split("```").next().unwrap();
    let start = example.find("location / {").expect("a `location /` block in the nginx example");
    let mut depth = 0;
    for (offset, c) in example[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 1 => return example[start..=start + offset].to_owned(),
            '}' => depth -= 1,
            _ => {}
        }
    }
    panic!("the `location /` block in README.md is not closed");
}

fn update(source: &mut EventSource) -> Update {
    source.next_update().expect("the connection does not fail").expect("the source is not closed")
}

/// The next update that is neither a comment nor a `retry:`: an event (or a lost stream, which fails).
fn next_event_on_this_stream(source: &mut EventSource) -> ReceivedEvent {
    loop {
        match update(source) {
            Update::Event(event) => return event,
            Update::Reconnecting { error, .. } => panic!("the stream was lost: {error:?}"),
            _ => {}
        }
    }
}

#[test]
#[ignore = "needs nginx; .ci/run installs it and runs it"]
fn the_readme_nginx_configuration_passes_streams_through() {
    let mut relay = Relay::start(&["--heartbeat", "0.3", "--max-stream-secs", "2", "--retry", "20"]);
    let nginx = Nginx::start(relay.addr);
    let mut source = EventSource::builder(format!("http://{}/events", nginx.addr))
        .connect_timeout(TIMEOUT)
        .idle_timeout(Duration::from_secs(3))
        .build()
        .unwrap();
    assert!(matches!(update(&mut source), Update::Open), "the stream opens through nginx");

    // A quiet stream: the heartbeat comes through, and nginx does not cut the stream before it.
    loop {
        match update(&mut source) {
            Update::Comment(text) if text == "heartbeat" => break,
            // What every stream opens with, right after its head.
            Update::Comment(text) if text == "open" => {}
            Update::Retry(_) => {}
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }

    // Each event must arrive before the next is published: nothing waits in a buffer.
    let mut events = Vec::new();
    for n in 1..=3 {
        relay.send_line(&format!("event {n}"));
        events.push(next_event_on_this_stream(&mut source));
    }

    // The relay ends the stream at --max-stream-secs and nginx ends the client's response; an event
    // published meanwhile (through nginx too) can only come back if Last-Event-ID reached the relay.
    loop {
        match update(&mut source) {
            Update::Reconnecting { error: None, .. } => break,
            Update::Event(event) => panic!("unexpected event {event:?}"),
            Update::Reconnecting { error: Some(error), .. } => panic!("the stream broke: {error}"),
            _ => {}
        }
    }
    let published = client::request(nginx.addr, "POST", "/publish?data=while%20away", &[], None, TIMEOUT)
        .expect("publish through nginx");
    assert_eq!(published.status(), 200);
    assert!(matches!(update(&mut source), Update::Open), "reconnected through nginx");
    events.push(next_event_on_this_stream(&mut source));

    let data: Vec<&str> = events.iter().map(|event| event.data.as_str()).collect();
    assert_eq!(data, ["event 1", "event 2", "event 3", "while away"]);
    let ids: Vec<u64> =
        events.iter().map(|event| event.last_event_id.parse().expect("numeric ids")).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "ids {ids:?}");
}
