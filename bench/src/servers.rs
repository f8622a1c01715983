//! The three servers under comparison: which binary each is, and starting and stopping one as a
//! child process on a free loopback port.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A server the benchmark runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServerKind {
    /// `sse-handler`: a thread per connection, a queue per connection.
    SseHandler,
    /// axum + tokio: `axum::response::sse` over a `tokio::sync::broadcast` channel.
    Axum,
    /// One thread, epoll, events encoded once and appended to per-socket buffers: about the most
    /// this machine can do.
    Limit,
}

impl ServerKind {
    /// Every server, in report order.
    pub const ALL: [ServerKind; 3] = [ServerKind::SseHandler, ServerKind::Axum, ServerKind::Limit];

    /// The name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::SseHandler => "sse-handler",
            ServerKind::Axum => "axum",
            ServerKind::Limit => "limit",
        }
    }

    /// The server named `name`.
    pub fn parse(name: &str) -> Option<ServerKind> {
        ServerKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The binary of this crate that serves it.
    pub fn binary(self) -> &'static str {
        match self {
            ServerKind::SseHandler => "sse-bench-server",
            ServerKind::Axum => "sse-bench-axum",
            ServerKind::Limit => "sse-bench-limit",
        }
    }

    /// Command-line arguments sizing the server for bursts of up to `max_events` events (the
    /// event log, or the broadcast ring), so that a burst never drops a client.
    pub fn burst_args(self, max_events: usize) -> Vec<String> {
        let room = (max_events * 2).max(65_536).to_string();
        match self {
            ServerKind::SseHandler => vec!["--history".into(), room],
            ServerKind::Axum => vec!["--capacity".into(), room],
            ServerKind::Limit => Vec::new(),
        }
    }
}

/// The directory of this process's executable, where the server binaries are built beside it.
///
/// # Errors
/// When the executable's path cannot be found.
pub fn binary_dir() -> io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    exe.parent().map(Path::to_path_buf).ok_or_else(|| io::Error::other("the executable has no directory"))
}

/// A port on 127.0.0.1 that was free a moment ago.
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// A server running as a child process; killed by its PID when stopped or dropped.
#[derive(Debug)]
pub struct RunningServer {
    child: Child,
    addr: SocketAddr,
}

impl RunningServer {
    /// Starts `binary` with `--port` on a free port (and `args`), and waits up to `timeout` until it
    /// accepts connections.
    ///
    /// # Errors
    /// When the binary is missing, exits, or does not listen in time.
    pub fn start(binary: &Path, args: &[String], timeout: Duration) -> io::Result<RunningServer> {
        if !binary.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{} not found: build it first with `cargo build --release -p sse-bench`",
                    binary.display()
                ),
            ));
        }
        let port = free_port()?;
        let child = Command::new(binary)
            .arg("--port")
            .arg(port.to_string())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut server = RunningServer { child, addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)) };
        server.wait_listening(Instant::now() + timeout)?;
        Ok(server)
    }

    fn wait_listening(&mut self, deadline: Instant) -> io::Result<()> {
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(io::Error::other(format!("the server exited at start ({status})")));
            }
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "the server did not listen in time"));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the server (SIGKILL to its PID) and reaps it.
    pub fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.kill();
    }
}
