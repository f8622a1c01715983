//! A real browser: Debian's chromium, driven by `tests/browser/drive.mjs` (playwright-core), opens
//! the relay's own page and a page from another origin, and checks that both show live events in
//! order and resume after the relay ends their streams, and that the relay's page shows an event of
//! a type it was never told about, with its type.
//!
//! It needs chromium, node and `npm ci --prefix relay/tests/browser`, so plain `cargo test` leaves
//! it out; `.ci/run` installs them and runs it with `--ignored`, where anything missing fails it.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use common::*;

/// How long the whole browser run may take before it is killed.
const BROWSER_DEADLINE: Duration = Duration::from_secs(90);

#[test]
#[ignore = "needs chromium, node and playwright-core; .ci/run installs them and runs it"]
fn pages_on_both_origins_show_live_events_and_resume_after_the_relay_ends_their_streams() {
    let chromium = find_chromium();
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        driver.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run `npm ci --prefix {}`",
        driver.display()
    );

    let other_site = OtherSite::start();
    let origin = format!("http://{}", other_site.addr);
    // Streams end after 4 s and browsers come back 3 s later: long enough that both pages are away
    // at the same time, short enough for a quick test.
    let relay = Relay::start(&["--allow-origin", &origin, "--max-stream-secs", "4", "--retry", "3000"]);
    let relay_url = format!("http://{}", relay.addr);
    let other_page = format!("{origin}/?relay={relay_url}");

    let node = Command::new("node")
        .arg(driver.join("drive.mjs"))
        .args([&relay_url, &other_page])
        .env("CHROMIUM", &chromium)
        .current_dir(&driver)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is required for the browser test (apt-get install nodejs npm)");
    let mut node = KillOnDrop(node);
    let stdout = drain(node.0.stdout.take().unwrap());
    let stderr = drain(node.0.stderr.take().unwrap());
    let status = wait_bounded(&mut node.0, BROWSER_DEADLINE);
    drop(node);
    let output = format!("{}{}", stdout.join().unwrap(), stderr.join().unwrap());
    println!("{output}");
    assert!(status.is_some_and(|s| s.success()), "the browser run failed ({status:?}):\n{output}");
}

/// `$CHROMIUM`, or Debian's `/usr/bin/chromium`; a missing browser fails the test.
fn find_chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(path.is_file(), "chromium not found at {} (apt-get install chromium)", path.display());
    path
}

/// Waits for `child` at most `limit`; `None` if it was still running (it is then killed on drop).
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("poll node") {
            return Some(status);
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Reads a pipe to its end on a thread of its own, so a chatty child never blocks on a full pipe.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut text = Vec::new();
        let _ = pipe.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    })
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A page on another origin (another loopback port) whose EventSource subscribes to the relay named
/// in its `?relay=` parameter, and lists what arrives.
const OTHER_PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>another origin</title>
<link rel="icon" href="data:,">
<body data-state="connecting" data-drops="0">
<ol id="events"></ol>
<script>
  const relay = new URLSearchParams(location.search).get('relay');
  const source = new EventSource(relay + '/events');
  const body = document.body;
  source.onopen = () => { body.dataset.state = 'open'; };
  source.onerror = () => {
    if (body.dataset.state === 'open') body.dataset.drops = Number(body.dataset.drops) + 1;
    body.dataset.state = source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting';
  };
  source.onmessage = (event) => {
    const item = document.createElement('li');
    item.dataset.id = event.lastEventId;
    item.dataset.type = event.type;
    item.textContent = event.data;
    document.getElementById('events').append(item);
  };
</script>
"#;

/// A tiny server for [`OTHER_PAGE`] on its own port; it stops when dropped.
struct OtherSite {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl OtherSite {
    fn start() -> OtherSite {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    answer(stream);
                }
            }
        });
        OtherSite { addr, stop, thread: Some(thread) }
    }
}

/// Reads one request head (bounded) and answers with the page, or 404 for anything but `/`.
fn answer(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match stream.read(&mut chunk) {
            Ok(n @ 1..) => head.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    }
    let request_line = String::from_utf8_lossy(&head).lines().next().unwrap_or_default().to_owned();
    let is_page = request_line.starts_with("GET /?") || request_line.starts_with("GET / ");
    let (status, body) = if is_page { ("200 OK", OTHER_PAGE) } else { ("404 Not Found", "") };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
}

impl Drop for OtherSite {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocked accept so the thread sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
