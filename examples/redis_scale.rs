//! Measures several instances on one Redis Stream (`RedisLog`) against a local `redis-server`:
//! latency from a publish on instance A to delivery on instance B at 1,000 events/s, publish
//! throughput of one and of 8 concurrent publishers, the replay of 1,000 events from Redis, and the
//! Redis connections of an instance with 1,000 SSE clients.
//!
//! ```sh
//! cargo run --release --features redis --example redis_scale            # starts its own redis-server
//! cargo run --release --features redis --example redis_scale -- redis://127.0.0.1:6379/
//! ```
//!
//! Everything runs on loopback; the redis-server it starts is ended by its PID.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sse_handler::{Config, Event, RedisLog, RedisOptions, Server, ServerHandle, SseHandler};

const LATENCY_EVENTS: usize = 3_000;
const SINGLE_PUBLISHES: usize = 5_000;
const PUBLISHERS: usize = 8;
const EACH_PUBLISHER: usize = 2_000;
const REPLAYED: usize = 1_000;
const REPLAY_RUNS: usize = 5;
const CLIENTS: usize = 1_000;
const READ_TIMEOUT: Duration = Duration::from_secs(10);

type Outcome<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Outcome<()> {
    sse_handler::raise_fd_limit()?;
    let (url, _redis) = match std::env::args().nth(1) {
        Some(url) => (url, None),
        None => {
            let redis = OwnRedis::start()?;
            (redis.url(), Some(redis))
        }
    };
    let key = format!("sse:bench:{}", std::process::id());
    let a = Instance::start(&url, &key, RedisOptions::default())?;
    let mut admin = Admin::connect(&url)?;
    let alone = admin.settled_clients()?;
    let b = Instance::start(&url, &key, RedisOptions::default())?;

    let (p50, p99) = latency_a_to_b(&a, &b)?;
    println!("publish on A to delivery on B, {LATENCY_EVENTS} events at 1k/s: p50 {p50:?}, p99 {p99:?}");

    let (rate, trips) = throughput(&a, 1, SINGLE_PUBLISHES);
    println!("1 publisher: {rate:.0} events/s ({trips} round trips for {SINGLE_PUBLISHES} appends)");
    let (rate, trips) = throughput(&a, PUBLISHERS, EACH_PUBLISHER);
    let appends = PUBLISHERS * EACH_PUBLISHER;
    println!("{PUBLISHERS} publishers: {rate:.0} events/s ({trips} round trips for {appends} appends)");

    // An instance that keeps 10 events in memory: a resume 1,000 back reads them from Redis.
    let c = Instance::start(&url, &key, RedisOptions::default().local_capacity(10))?;
    let replay = replay_from_redis(&a, &c)?;
    println!("replay of {REPLAYED} events from Redis to a resuming client: median {replay:?}");
    b.stop();
    c.stop();

    let with_clients = connections_with_clients(&mut admin, &a)?;
    println!(
        "Redis connections of one instance: {alone} at start, {with_clients} with {CLIENTS} SSE clients"
    );
    Ok(())
}

/// A `redis-server` of this run's own on a free loopback port, without persistence.
struct OwnRedis {
    port: u16,
    child: Child,
}

impl OwnRedis {
    fn start() -> Outcome<OwnRedis> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let port_text = port.to_string();
        let child = Command::new("redis-server")
            .args(["--port", &port_text, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| format!("cannot start redis-server: {err}"))?;
        let redis = OwnRedis { port, child };
        let deadline = Instant::now() + READ_TIMEOUT;
        while redis::Client::open(redis.url())?.get_connection_with_timeout(Duration::from_secs(1)).is_err() {
            if Instant::now() > deadline {
                return Err("redis-server did not start".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(redis)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A handler on the shared stream, served on a loopback port.
struct Instance {
    handler: SseHandler,
    log: Arc<RedisLog>,
    server: ServerHandle,
}

impl Instance {
    fn start(url: &str, key: &str, options: RedisOptions) -> Outcome<Instance> {
        let log = Arc::new(RedisLog::connect(url, key, options)?);
        let handler = SseHandler::builder(Config::default()).log(Arc::clone(&log)).build()?;
        let server = Server::bind("127.0.0.1:0")?.stream("/events", &handler).spawn()?;
        Ok(Instance { handler, log, server })
    }

    /// Ends its server and its streams; its Redis connections close with its log.
    fn stop(self) {
        self.server.shutdown();
    }

    fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

/// A client of `/events` read line by line over a plain socket.
struct Subscriber {
    lines: BufReader<TcpStream>,
}

impl Subscriber {
    fn connect(addr: SocketAddr, last_event_id: Option<&str>) -> Outcome<Subscriber> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        let resume = last_event_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
        write!(stream, "GET /events HTTP/1.1\r\nHost: bench\r\nAccept: text/event-stream\r\n{resume}\r\n")?;
        let mut subscriber = Subscriber { lines: BufReader::new(stream) };
        // The head, then the stream's opening comment.
        while subscriber.line()? != ": open" {}
        Ok(subscriber)
    }

    fn line(&mut self) -> Outcome<String> {
        let mut line = String::new();
        if self.lines.read_line(&mut line)? == 0 {
            return Err("the stream ended".into());
        }
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    }

    /// The data of the next event.
    fn next_data(&mut self) -> Outcome<String> {
        loop {
            if let Some(data) = self.line()?.strip_prefix("data: ") {
                return Ok(data.to_owned());
            }
        }
    }
}

/// Publishes on A at 1,000 events/s, each carrying its send time; B's subscriber notes the delay.
fn latency_a_to_b(a: &Instance, b: &Instance) -> Outcome<(Duration, Duration)> {
    let mut subscriber = Subscriber::connect(b.addr(), None)?;
    let start = Instant::now();
    let publisher = {
        let handler = a.handler.clone();
        std::thread::spawn(move || -> Result<(), String> {
            for n in 0..LATENCY_EVENTS {
                let due = start + Duration::from_millis(n as u64);
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                let sent = start.elapsed().as_nanos();
                handler.send_all(Event::data(sent.to_string())).map_err(|err| err.to_string())?;
            }
            Ok(())
        })
    };
    let mut delays = Vec::with_capacity(LATENCY_EVENTS);
    for _ in 0..LATENCY_EVENTS {
        let sent: u64 = subscriber.next_data()?.parse()?;
        delays.push(start.elapsed().saturating_sub(Duration::from_nanos(sent)));
    }
    publisher.join().map_err(|_| "the publisher panicked")??;
    delays.sort_unstable();
    Ok((delays[delays.len() / 2], delays[delays.len() * 99 / 100]))
}

/// Events/s of `publishers` threads each publishing `each` events on `instance`, and the round
/// trips their appends took.
fn throughput(instance: &Instance, publishers: usize, each: usize) -> (f64, u64) {
    let trips_before = instance.log.append_round_trips();
    let start = Instant::now();
    let threads: Vec<_> = (0..publishers)
        .map(|p| {
            let handler = instance.handler.clone();
            std::thread::spawn(move || {
                for n in 0..each {
                    handler.send_all(Event::data(format!("{p}:{n}"))).expect("redis is up");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a publisher panicked");
    }
    let rate = (publishers * each) as f64 / start.elapsed().as_secs_f64();
    (rate, instance.log.append_round_trips() - trips_before)
}

/// Publishes 1,001 events on A, then times a client resuming on C from the first of them: C holds
/// only the last 10 in memory, so the rest come from Redis.
fn replay_from_redis(a: &Instance, c: &Instance) -> Outcome<Duration> {
    let mut runs = Vec::with_capacity(REPLAY_RUNS);
    for _ in 0..REPLAY_RUNS {
        let first = a.handler.send_all(Event::data("resume point"))?.id.ok_or("an entry id")?;
        for n in 0..REPLAYED {
            a.handler.send_all(Event::data(n.to_string()))?;
        }
        let start = Instant::now();
        let mut client = Subscriber::connect(c.addr(), Some(&first))?;
        for n in 0..REPLAYED {
            let data = client.next_data()?;
            if data != n.to_string() {
                return Err(format!("replayed {data:?} where {n} was due").into());
            }
        }
        runs.push(start.elapsed());
    }
    runs.sort_unstable();
    Ok(runs[runs.len() / 2])
}

/// A connection that asks Redis who is connected.
struct Admin {
    connection: redis::Connection,
}

impl Admin {
    fn connect(url: &str) -> Outcome<Admin> {
        let connection = redis::Client::open(url)?.get_connection_with_timeout(READ_TIMEOUT)?;
        connection.set_read_timeout(Some(READ_TIMEOUT))?;
        Ok(Admin { connection })
    }

    /// Redis clients other than this one.
    fn others(&mut self) -> Outcome<usize> {
        let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut self.connection)?;
        Ok(list.lines().count() - 1)
    }

    /// The count once it has held still for over a second (instances stopped before may still be
    /// closing theirs); bounded.
    fn settled_clients(&mut self) -> Outcome<usize> {
        let mut count = self.others()?;
        let mut still = 0;
        for _ in 0..100 {
            std::thread::sleep(Duration::from_millis(200));
            let now = self.others()?;
            still = if now == count { still + 1 } else { 0 };
            count = now;
            if still == 6 {
                break;
            }
        }
        Ok(count)
    }
}

/// Redis clients with 1,000 SSE clients on `instance`, after a burst of publishing (its pool is
/// then as full as it gets). Only `instance` is connected then.
fn connections_with_clients(admin: &mut Admin, instance: &Instance) -> Outcome<usize> {
    let clients: Vec<Subscriber> =
        (0..CLIENTS).map(|_| Subscriber::connect(instance.addr(), None)).collect::<Outcome<_>>()?;
    throughput(instance, PUBLISHERS, 100);
    let count = admin.settled_clients()?;
    drop(clients);
    Ok(count)
}
