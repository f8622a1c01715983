//! Several instances on one Redis Stream (`RedisLog`), against a real `redis-server` each test
//! starts on a free loopback port. Ignored in a plain `cargo test`; `.ci/run` installs Redis and runs
//! them with `--ignored`.
#![cfg(feature = "redis")]

mod common;
mod redis_server;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TIMEOUT, TestServer, connect_stream, next_event, next_item, start_with};
use redis_server::Redis;
use sse_handler::client::{Item, ReceivedEvent, ReceivedResponse};
use sse_handler::{Config, Error, Event, RedisLog, RedisOptions, ServerConfig, SseHandler, UnknownIdPolicy};

/// An instance: a server whose handler's log is a `RedisLog` on `key`.
fn instance(redis: &Redis, key: &str, options: RedisOptions, config: Config) -> TestServer {
    let log = RedisLog::connect(&redis.url(), key, options).expect("connect to redis");
    start_with(SseHandler::builder(config).log(log), ServerConfig::default())
}

fn key(test: &str) -> String {
    format!("sse:test:{}:{test}", std::process::id())
}

fn subscribe(addr: SocketAddr, last_id: Option<&str>) -> ReceivedResponse {
    let headers: Vec<(&str, &str)> = last_id.map(|id| ("Last-Event-ID", id)).into_iter().collect();
    let mut response = connect_stream(addr, "/events", &headers);
    assert_eq!(next_item(response.events()), Item::Comment("open".into()));
    response
}

fn read_events(response: &mut ReceivedResponse, count: usize) -> Vec<ReceivedEvent> {
    (0..count).map(|_| next_event(response.events())).collect()
}

/// Publishes, retrying (bounded) while the log is unavailable.
fn publish_when_possible(handler: &SseHandler, data: &str) -> String {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match handler.send_all(Event::data(data)) {
            Ok(sent) => return sent.id.expect("the entry id"),
            Err(Error::LogUnavailable(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(err) => panic!("publish {data}: {err}"),
        }
    }
}

/// Waits (bounded) until `condition` holds.
fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within {TIMEOUT:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ids_increase(events: &[ReceivedEvent]) -> bool {
    let key = |e: &ReceivedEvent| {
        let (ms, seq) = e.last_event_id.split_once('-').expect("a stream id");
        (ms.parse::<u64>().unwrap(), seq.parse::<u64>().unwrap())
    };
    events.windows(2).all(|pair| key(&pair[0]) < key(&pair[1]))
}

#[test]
#[ignore = "needs redis-server; .ci/run installs it and runs it"]
fn two_instances_deliver_every_event_once_in_one_order() {
    let redis = Redis::start();
    let key = key("one-order");
    let servers: Vec<TestServer> =
        (0..2).map(|_| instance(&redis, &key, RedisOptions::default(), Config::default())).collect();
    let mut subscribers: Vec<ReceivedResponse> = servers
        .iter()
        .flat_map(|server| [subscribe(server.addr, None), subscribe(server.addr, None)])
        .collect();

    const PER_PUBLISHER: usize = 150;
    let publishers: Vec<_> = servers
        .iter()
        .enumerate()
        .flat_map(|(s, server)| (0..2).map(move |p| (format!("{s}.{p}"), server.handler.clone())))
        .map(|(name, handler)| {
            std::thread::spawn(move || {
                for n in 0..PER_PUBLISHER {
                    handler.send_all(Event::data(format!("{name}:{n}"))).expect("redis is up");
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.join().unwrap();
    }

    let total = 4 * PER_PUBLISHER;
    let seen: Vec<Vec<ReceivedEvent>> = subscribers.iter_mut().map(|s| read_events(s, total)).collect();
    for (n, events) in seen.iter().enumerate() {
        assert_eq!(events, &seen[0], "subscriber {n} saw another order");
    }
    let mut data: Vec<&str> = seen[0].iter().map(|e| e.data.as_str()).collect();
    assert!(ids_increase(&seen[0]), "ids are stream ids, increasing");
    data.sort_unstable();
    data.dedup();
    assert_eq!(data.len(), total, "every event once");
    // Every instance has read all of it: its reading is not behind the stream, and says so.
    for server in &servers {
        assert_eq!(server.handler.log().lag(), Some(std::time::Duration::ZERO));
        let page = server.handler.metrics_text();
        assert!(page.contains("\nsse_log_lag_seconds 0\n"), "{page}");
    }
}

#[test]
#[ignore = "needs redis-server; .ci/run installs it and runs it"]
fn a_client_hopping_between_instances_sees_what_a_client_that_stayed_sees() {
    let redis = Redis::start();
    let key = key("hopping");
    // B keeps few events in memory, so resuming there often reads from Redis.
    let a = instance(&redis, &key, RedisOptions::default(), Config::default());
    let b = instance(&redis, &key, RedisOptions::default().local_capacity(16).page(7), Config::default());
    let mut stayed = subscribe(a.addr, None);
    let mut hopper = subscribe(a.addr, None);

    const TOTAL: usize = 1500;
    let publisher = {
        let (a, b) = (a.handler.clone(), b.handler.clone());
        std::thread::spawn(move || {
            for n in 0..TOTAL {
                let via = if n % 3 == 0 { &b } else { &a };
                via.send_all(Event::data(n.to_string())).expect("redis is up");
            }
        })
    };

    let mut hopped = Vec::new();
    let mut hops = 0;
    let mut on_a = true;
    while hopped.len() < TOTAL {
        let take = (1 + hops * 7 % 40).min(TOTAL - hopped.len());
        hopped.extend(read_events(&mut hopper, take));
        hops += 1;
        on_a = !on_a;
        let last = hopped.last().expect("read some").last_event_id.clone();
        hopper = subscribe(if on_a { a.addr } else { b.addr }, Some(&last));
    }
    publisher.join().unwrap();
    let stayed = read_events(&mut stayed, TOTAL);
    assert!(hops > 20, "it hopped {hops} times");
    assert_eq!(hopped, stayed);
    let data: Vec<String> = stayed.iter().map(|e| e.data.clone()).collect();
    assert_eq!(data, (0..TOTAL).map(|n| n.to_string()).collect::<Vec<_>>());
}

#[test]
#[ignore = "needs redis-server; .ci/run installs it and runs it"]
fn an_id_trimmed_out_of_the_stream_is_unknown_and_a_kept_one_resumes_from_redis() {
    let redis = Redis::start();
    let key = key("trimmed");
    let options = RedisOptions::default().max_len(100).local_capacity(10);
    let config = Config::default().unknown_id_policy(UnknownIdPolicy::ReplayNone);
    let a = instance(&redis, &key, options.clone(), config.clone());
    let ids: Vec<String> = (0..1000).map(|n| publish_when_possible(&a.handler, &n.to_string())).collect();
    // A fresh instance holds nothing locally: both answers come from Redis.
    let b = instance(&redis, &key, options, config);
    for server in [&a, &b] {
        let mut stale = connect_stream(server.addr, "/events", &[("Last-Event-ID", &ids[0])]);
        assert_eq!(next_item(stale.events()), Item::Comment("open".into()));
        let note = next_item(stale.events());
        assert!(
            matches!(&note, Item::Comment(text) if text.starts_with("last event id not found")),
            "{note:?}"
        );

        let mut kept = subscribe(server.addr, Some(&ids[949]));
        let replayed = read_events(&mut kept, 50);
        let data: Vec<String> = replayed.iter().map(|e| e.data.clone()).collect();
        assert_eq!(data, (950..1000).map(|n| n.to_string()).collect::<Vec<_>>());
        assert_eq!(replayed.last().unwrap().last_event_id, ids[999]);
    }
    // The entry id is the event's id: one of the publisher's own is refused.
    let (status, body) = common::publish(a.addr, "?data=x&id=7", &[], None);
    assert_eq!(status, 400, "{body}");
    for garbage in ["1", "x-1", "99999999999999-0"] {
        assert!(b.handler.log().position_after(garbage).is_none(), "{garbage}");
    }
}

#[test]
#[ignore = "needs redis-server; .ci/run installs it and runs it"]
fn redis_killed_then_restarted_empty_delivers_what_was_acknowledged_and_resumes() {
    let mut redis = Redis::start();
    let key = key("restart");
    let options =
        RedisOptions::default().io_timeout(Duration::from_millis(500)).block(Duration::from_millis(200));
    let config = Config::default()
        .heartbeat(Duration::from_millis(100))
        .unknown_id_policy(UnknownIdPolicy::ReplayNone);
    let a = instance(&redis, &key, options.clone(), config.clone());
    let b = instance(&redis, &key, options, config);
    let mut on_a = subscribe(a.addr, None);
    let mut on_b = subscribe(b.addr, None);

    let acknowledged: Vec<String> =
        (0..50).map(|n| publish_when_possible(&a.handler, &format!("before {n}"))).collect();
    redis.kill();
    wait_until("A reports Redis unreachable", || !a.handler.health().is_ready());
    let err = a.handler.send_all(Event::data("while down")).expect_err("redis is down");
    assert!(matches!(err, Error::LogUnavailable(_)), "{err}");
    let (status, body) = common::publish(a.addr, "?data=x", &[], None);
    assert_eq!(status, 503, "{body}");

    let delivered = read_events(&mut on_b, 50);
    assert_eq!(delivered.iter().map(|e| e.last_event_id.clone()).collect::<Vec<_>>(), acknowledged);
    // The stream stays open while Redis is away: heartbeats keep coming.
    assert_eq!(next_item(on_b.events()), Item::Comment("heartbeat".into()));

    redis.restart();
    wait_until("A reports Redis reachable again", || a.handler.health().is_ready());
    let after = publish_when_possible(&a.handler, "after");
    assert_eq!(read_events(&mut on_a, 50), delivered, "A delivered the acknowledged events too");
    for stream in [&mut on_a, &mut on_b] {
        let event = loop {
            // Heartbeats may come first.
            match next_item(stream.events()) {
                Item::Event(event) => break event,
                Item::Comment(_) | Item::Retry(_) => {}
            }
        };
        assert_eq!((event.data.as_str(), event.last_event_id.as_str()), ("after", after.as_str()));
    }

    // The ids of the old stream are unknown now, on both instances.
    for server in [&a, &b] {
        let mut stale = connect_stream(server.addr, "/events", &[("Last-Event-ID", &acknowledged[10])]);
        assert_eq!(next_item(stale.events()), Item::Comment("open".into()));
        let note = next_item(stale.events());
        assert!(
            matches!(&note, Item::Comment(text) if text.starts_with("last event id not found")),
            "{note:?}"
        );
    }
    // And the new ones resume.
    let next = publish_when_possible(&b.handler, "next");
    let mut resumed = subscribe(a.addr, Some(&after));
    let event = next_event(resumed.events());
    assert_eq!((event.data.as_str(), event.last_event_id.as_str()), ("next", next.as_str()));
}

#[test]
#[ignore = "needs redis-server; .ci/run installs it and runs it"]
fn concurrent_publishers_share_round_trips() {
    let redis = Redis::start();
    let log =
        Arc::new(RedisLog::connect(&redis.url(), &key("group-commit"), RedisOptions::default()).unwrap());
    let server =
        start_with(SseHandler::builder(Config::default()).log(Arc::clone(&log)), ServerConfig::default());
    let mut subscriber = subscribe(server.addr, None);

    const THREADS: usize = 8;
    const EACH: usize = 100;
    let publishers: Vec<_> = (0..THREADS)
        .map(|t| {
            let handler = server.handler.clone();
            std::thread::spawn(move || {
                (0..EACH)
                    .map(|n| handler.send_all(Event::data(format!("{t}:{n}"))).unwrap().id.unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut ids: Vec<String> = publishers.into_iter().flat_map(|p| p.join().unwrap()).collect();
    let round_trips = log.append_round_trips();
    assert!(
        round_trips < (THREADS * EACH) as u64,
        "{round_trips} round trips for {} appends",
        THREADS * EACH
    );

    let delivered = read_events(&mut subscriber, THREADS * EACH);
    assert!(ids_increase(&delivered));
    let mut delivered_ids: Vec<String> = delivered.into_iter().map(|e| e.last_event_id).collect();
    ids.sort_unstable();
    delivered_ids.sort_unstable();
    assert_eq!(ids, delivered_ids, "each append got its own entry, delivered once");
}

/// A TCP proxy to Redis whose answers can be held back: an instance connected through it falls
/// behind the stream while they are held.
struct HoldingProxy {
    addr: SocketAddr,
    held: Arc<std::sync::atomic::AtomicBool>,
}

impl HoldingProxy {
    fn start(redis: &Redis) -> HoldingProxy {
        use std::io::Read;
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let held = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (port, hold) = (redis.port, Arc::clone(&held));
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = TcpStream::connect(("127.0.0.1", port)) else { continue };
                let (mut from_client, mut to_server) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || drop(std::io::copy(&mut from_client, &mut to_server)));
                let (mut from_server, mut to_client, hold) = (server, client, Arc::clone(&hold));
                std::thread::spawn(move || {
                    let mut chunk = [0u8; 16 * 1024];
                    while let Ok(n @ 1..) = from_server.read(&mut chunk) {
                        // Held at most the test's bound, then passed on in order.
                        let deadline = Instant::now() + TIMEOUT;
                        while hold.load(Ordering::SeqCst) && Instant::now() < deadline {
                            std::thread::sleep(Duration::from_millis(1));
                        }
                        if to_client.write_all(&chunk[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        HoldingProxy { addr, held }
    }

    fn url(&self) -> String {
        format!("redis://{}/", self.addr)
    }

    fn hold(&self, on: bool) {
        self.held.store(on, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
#[ignore = "needs redis-server; .ci/run installs it and runs it"]
fn a_tail_that_falls_behind_the_stream_never_hands_on_a_silent_gap() {
    let redis = Redis::start();
    let key = key("lagging-tail");
    let bounded = RedisOptions::default().max_len(100);
    let a = instance(&redis, &key, bounded.clone(), Config::default());
    // B reaches Redis through the proxy, with a read timeout longer than the hold, so that its tail
    // is not reconnecting but merely late when its answers come through.
    let proxy = HoldingProxy::start(&redis);
    let log = RedisLog::connect(
        &proxy.url(),
        &key,
        bounded.block(Duration::from_millis(200)).io_timeout(Duration::from_secs(8)),
    )
    .expect("connect through the proxy");
    let b = start_with(SseHandler::builder(Config::default()).log(log), ServerConfig::default());
    let mut on_b = subscribe(b.addr, None);

    let mut ids: Vec<String> =
        (0..10).map(|n| publish_when_possible(&a.handler, &format!("before {n}"))).collect();
    let first = read_events(&mut on_b, 10);
    assert_eq!(first.iter().map(|e| e.last_event_id.clone()).collect::<Vec<_>>(), ids);

    // B's tail is held while the stream moves far past its bound (MAXLEN ~ 100).
    proxy.hold(true);
    ids.extend((0..2000).map(|n| publish_when_possible(&a.handler, &format!("during {n}"))));
    proxy.hold(false);

    // B's client gets a gap-free continuation, then is told it fell behind (closed, by default),
    // never a jump over what was trimmed.
    let mut got: Vec<String> = first.into_iter().map(|e| e.last_event_id).collect();
    loop {
        match on_b.events().next_event() {
            Ok(Some(event)) => got.push(event.last_event_id),
            Ok(None) => break,
            Err(err) => panic!(
                "the stream did not end ({err}) after {} of {} events, which were {}a prefix of them",
                got.len(),
                ids.len(),
                if got == ids[..got.len()] { "" } else { "not " }
            ),
        }
    }
    assert!(got.len() < ids.len(), "the client cannot have had all of it");
    assert_eq!(got, ids[..got.len()], "a prefix of what was published: no gap");
    wait_until("B counts the client it closed", || b.handler.stats().slow_client_disconnects == 1);
    // Resuming on B, it is told its id is unknown, and delivery goes on.
    let mut back = subscribe(b.addr, Some(got.last().unwrap()));
    let Item::Comment(note) = next_item(back.events()) else { panic!("expected the unknown-id note") };
    assert!(note.starts_with("last event id not found"), "{note}");
    drop(proxy);
}
