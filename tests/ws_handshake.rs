//! The opening handshake: what is accepted, what each refusal is answered with, subprotocols, the
//! authenticator's user, bytes sent right after the head, and SSE and WebSocket on one server.
#![cfg(feature = "websocket")]

mod ws_support;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread;

use sse_handler::ws::{CloseCause, Message, OriginPolicy, WsConfig, WsHandler, client};
use sse_handler::{BearerToken, Config, Event, Rejection, Request, Server, SseHandler};
use ws_support::*;

fn refused(server: &WsServer, request: &str) -> String {
    let answer = raw_exchange(server.addr, request);
    assert_eq!(server.handler.connection_count(), 0);
    answer
}

#[test]
fn a_valid_handshake_is_answered_101_with_the_accept_key() {
    let server = start(WsConfig::default());
    let mut stream = open(server.addr);
    wait_until("registered", || server.handler.connection_count() == 1);
    stream.write_all(&frame(TEXT, b"hello")).unwrap();
    assert_eq!(server.next_message().1, Message::Text("hello".into()));
}

#[test]
fn a_malformed_handshake_is_400() {
    let server = start(WsConfig::default());
    let no_key = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let bad_key = handshake_request("/ws", "").replace(KEY, "c2hvcnQ=");
    let no_upgrade = "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n";
    let no_connection = handshake_request("/ws", "").replace("Connection: Upgrade\r\n", "");
    for request in [no_key, &bad_key, no_upgrade, &no_connection] {
        let answer = refused(&server, request);
        assert_eq!(status_of(&answer), 400, "{answer}");
    }
}

#[test]
fn a_wrong_version_is_426_naming_version_13() {
    let server = start(WsConfig::default());
    let request =
        handshake_request("/ws", "").replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    let answer = refused(&server, &request);
    assert_eq!(status_of(&answer), 426, "{answer}");
    assert!(answer.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{answer}");
}

#[test]
fn another_method_is_405() {
    let server = start(WsConfig::default());
    let answer = refused(&server, "POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status_of(&answer), 405, "{answer}");
}

#[test]
fn the_authenticator_answers_401_and_403_and_names_the_user() {
    let (user_tx, user_rx) = mpsc::channel();
    let server = start_with(
        |builder| {
            builder
                .authenticator(|request: &Request| match request.header("authorization") {
                    None => Err(Rejection::unauthorized("who are you?")),
                    Some("Bearer alice") => Ok(Some("alice".to_owned())),
                    Some(_) => Err(Rejection::forbidden("not you")),
                })
                .on_connect(move |conn| {
                    let _ = user_tx.send(conn.info().user().map(str::to_owned));
                })
        },
        WsConfig::default(),
    );
    let answer = refused(&server, &handshake_request("/ws", ""));
    assert_eq!(status_of(&answer), 401, "{answer}");
    assert!(answer.contains("WWW-Authenticate: Bearer"), "{answer}");
    let answer = refused(&server, &handshake_request("/ws", "Authorization: Bearer mallory\r\n"));
    assert_eq!(status_of(&answer), 403, "{answer}");

    let _stream = open_with(server.addr, "/ws", "Authorization: Bearer alice\r\n", b"");
    assert_eq!(user_rx.recv_timeout(TIMEOUT).unwrap().as_deref(), Some("alice"));
    let id = server.handler.connection_ids()[0];
    assert_eq!(server.handler.connection_info(id).unwrap().user(), Some("alice"));
}

#[test]
fn bearer_tokens_work_as_on_the_sse_side() {
    let server = start_with(|builder| builder.authenticator(BearerToken::new("t0ken")), WsConfig::default());
    let answer = refused(&server, &handshake_request("/ws", "Authorization: Bearer wrong\r\n"));
    assert_eq!(status_of(&answer), 401);
    let _ok = open_with(server.addr, "/ws", "Authorization: Bearer t0ken\r\n", b"");
}

#[test]
fn origins_are_checked_by_policy() {
    let server = start(WsConfig::default());
    // Same host: allowed. Another page: 403. No Origin (not a browser): allowed.
    let answer = refused(&server, &handshake_request("/ws", "Origin: http://evil.example\r\n"));
    let _same = open_with(server.addr, "/ws", "Origin: http://localhost\r\n", b"");
    assert_eq!(status_of(&answer), 403, "{answer}");
    let _none = open(server.addr);

    let only = start(WsConfig::default().origins(OriginPolicy::Only(vec!["https://app.example".into()])));
    let _app = open_with(only.addr, "/ws", "Origin: https://app.example\r\n", b"");
    let answer = raw_exchange(only.addr, &handshake_request("/ws", "Origin: http://localhost\r\n"));
    assert_eq!(status_of(&answer), 403, "{answer}");
}

/// The status a handshake from a page on `origin` gets, sent to the host the browser thinks it
/// reaches (`host`). The connection is dropped after the answer's head.
fn status_from_page(addr: std::net::SocketAddr, host: &str, origin: &str) -> u16 {
    let request = handshake_request("/ws", &format!("Origin: {origin}\r\n"))
        .replace("Host: localhost\r\n", &format!("Host: {host}\r\n"));
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    status_of(&read_head(&mut stream))
}

#[test]
fn an_origin_list_refuses_foreign_and_rebinding_pages() {
    let server =
        start(WsConfig::default().origins(OriginPolicy::Only(vec!["https://app.example:8443".into()])));
    let status = |host: &str, origin: &str| status_from_page(server.addr, host, origin);
    // Listed: accepted, whatever the case of its scheme and host.
    assert_eq!(status("localhost", "https://app.example:8443"), 101);
    assert_eq!(status("localhost", "HTTPS://App.Example:8443"), 101);
    // A foreign page, or the listed host with another scheme or port: 403.
    for origin in ["https://evil.example", "http://app.example:8443", "https://app.example", "null"] {
        assert_eq!(status("localhost", origin), 403, "{origin}");
    }
    // DNS rebinding: the attacker's name now resolves to this server, so the browser sends that name
    // as both Host and Origin. Comparing the two lets it through; the list does not.
    let rebinding = ("attacker.example:8080", "http://attacker.example:8080");
    assert_eq!(status(rebinding.0, rebinding.1), 403);
    let same_host = start(WsConfig::default());
    assert_eq!(status_from_page(same_host.addr, rebinding.0, rebinding.1), 101, "same-host cannot tell");
}

#[test]
fn the_same_host_default_checks_scheme_host_and_port() {
    let server = start(WsConfig::default());
    let status = |host: &str, origin: &str| status_from_page(server.addr, host, origin);
    for origin in ["http://localhost", "https://localhost", "HTTP://LocalHost"] {
        assert_eq!(status("localhost", origin), 101, "{origin}");
    }
    // A port that is the scheme's default is the same origin, written or not.
    assert_eq!(status("localhost:80", "http://localhost"), 101);
    assert_eq!(status("localhost", "https://localhost:443"), 101);
    assert_eq!(status("localhost:8080", "http://localhost:8080"), 101);
    // Not a web page's origin, not this host, or not this port: 403.
    for origin in [
        "ftp://localhost",
        "file://localhost",
        "localhost",
        "http://localhost/",
        "http://user@localhost",
        "http://localhost:8080",
        "http://localhost.evil.example",
        "null",
    ] {
        assert_eq!(status("localhost", origin), 403, "{origin}");
    }
    assert_eq!(status("localhost:8080", "http://localhost"), 403);
}

#[test]
fn listed_origins_are_checked_when_the_handler_is_built() {
    for bad in [
        "https://app.example/",
        "https://app.example/path",
        "app.example",
        "https://",
        "https://app.example:99999",
        "https://user@app.example",
        "null",
        "*",
    ] {
        let config = WsConfig::default().origins(OriginPolicy::Only(vec![bad.into()]));
        assert!(WsHandler::builder(config).build().is_err(), "{bad:?} was accepted");
    }
    // The scheme's default port is the same origin as none: browsers leave it out of `Origin`.
    let server =
        start(WsConfig::default().origins(OriginPolicy::Only(vec!["https://app.example:443".into()])));
    assert_eq!(status_from_page(server.addr, "localhost", "https://app.example"), 101);
}

#[test]
fn the_application_chooses_the_subprotocol() {
    let server = start_with(
        |builder| {
            builder
                .choose_protocol(|_request, offered| offered.iter().find(|p| p.starts_with("chat")).cloned())
        },
        WsConfig::default(),
    );
    let ws = client::connect(
        server.addr,
        "/ws",
        &[("Sec-WebSocket-Protocol", "v1.json, chat.v2, chat.v1")],
        TIMEOUT,
    )
    .unwrap();
    assert_eq!(ws.protocol(), Some("chat.v2"));
    let ws = client::connect(server.addr, "/ws", &[("Sec-WebSocket-Protocol", "v1.json")], TIMEOUT).unwrap();
    assert_eq!(ws.protocol(), None);
    let ws = client::connect(server.addr, "/ws", &[], TIMEOUT).unwrap();
    assert_eq!(ws.protocol(), None);
}

#[test]
fn a_protocol_choice_that_was_not_offered_is_not_sent() {
    let server =
        start_with(|builder| builder.choose_protocol(|_, _| Some("other".into())), WsConfig::default());
    let ws = client::connect(server.addr, "/ws", &[("Sec-WebSocket-Protocol", "mine")], TIMEOUT).unwrap();
    assert_eq!(ws.protocol(), None);
}

#[test]
fn frames_sent_with_the_handshake_are_not_lost() {
    let server = start(WsConfig::default());
    let mut after = frame(TEXT, b"right after the head");
    after.extend(fragment(BINARY, &[1, 2]));
    after.extend(frame(CONTINUATION, &[3]));
    let mut stream = open_with(server.addr, "/ws", "", &after);
    assert_eq!(server.next_message().1, Message::Text("right after the head".into()));
    assert_eq!(server.next_message().1, Message::Binary(vec![1, 2, 3]));
    stream.write_all(&frame(PING, b"x")).unwrap();
    assert_eq!(read_frame(&mut stream), (true, PONG, b"x".to_vec()));
}

#[test]
fn after_shutdown_handshakes_are_503() {
    let mut server = start(WsConfig::default());
    server.handler.shutdown();
    let answer = raw_exchange(server.addr, &handshake_request("/ws", ""));
    assert_eq!(status_of(&answer), 503, "{answer}");
    server.shutdown();
}

#[test]
fn sse_and_websocket_on_one_server() {
    let events = SseHandler::new(Config::default()).unwrap();
    let chat = WsHandler::builder(WsConfig::default())
        .on_message(|conn, message| {
            let _ = conn.handler().send_all(message);
        })
        .build()
        .unwrap();
    let handle = Server::bind("127.0.0.1:0")
        .unwrap()
        .stream("/events", &events)
        .websocket("/chat", &chat)
        .spawn()
        .unwrap();
    let addr = handle.local_addr();

    let mut sse = sse_handler::client::connect(addr, "/events", &[], TIMEOUT).unwrap();
    assert_eq!(sse.status(), 200);
    let mut ws = client::connect(addr, "/chat", &[], TIMEOUT).unwrap();
    ws.send("over websocket").unwrap();
    assert_eq!(ws.recv_message().unwrap(), Some(Message::Text("over websocket".into())));
    events.send_all(Event::data("over sse")).unwrap();
    assert_eq!(sse.events().next_event().unwrap().unwrap().data, "over sse");

    // A WebSocket handshake on the SSE path gets an event stream, not an upgrade, and vice versa.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(handshake_request("/events", "").as_bytes()).unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("text/event-stream"), "{head}");
    let answer = raw_exchange(addr, "GET /chat HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status_of(&answer), 400, "{answer}");
    drop(sse);
    handle.shutdown();
}

#[test]
fn embedding_serve_and_accept() {
    let (close_tx, close_rx) = mpsc::channel();
    let handler = WsHandler::builder(WsConfig::default())
        .on_message(|conn, message| {
            let _ = conn.send(message);
        })
        .on_close(move |_, closed| {
            let _ = close_tx.send(closed.clone());
        })
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();

    // 1. serve: the handler reads the head itself.
    let serving = handler.clone();
    let acceptor = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let closed = serving.serve(stream).expect("served");
        (listener, closed)
    });
    let mut ws = client::connect(addr, "/anywhere", &[], TIMEOUT).unwrap();
    ws.send("served").unwrap();
    assert_eq!(ws.recv_message().unwrap(), Some(Message::Text("served".into())));
    ws.close(1000, "").unwrap();
    let (listener, closed) = acceptor.join().unwrap();
    assert_eq!(closed.cause, CloseCause::ClientClosed);
    assert_eq!(close_rx.recv_timeout(TIMEOUT).unwrap().code, 1000);

    // 2. accept: the host parsed the request and read past its head.
    let accepting = handler.clone();
    let host = thread::spawn(move || {
        let (stream, peer) = listener.accept().unwrap();
        let mut request = Request::new("GET", "/chat").with_peer(peer);
        for line in ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"] {
            let (name, value) = line.split_once(": ").unwrap();
            request = request.with_header(name, value);
        }
        request = request.with_header("Sec-WebSocket-Key", KEY);
        let mut head = Vec::new();
        let mut reader = &stream;
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            std::io::Read::read_exact(&mut reader, &mut byte).unwrap();
            head.push(byte[0]);
        }
        // The host read one frame past the head: it is handed over as `leftover`.
        let mut leftover = vec![0u8; frame(TEXT, b"early").len()];
        std::io::Read::read_exact(&mut reader, &mut leftover).unwrap();
        accepting.accept(stream, &request, &leftover)
    });
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut bytes = handshake_request("/chat", "").into_bytes();
    bytes.extend(frame(TEXT, b"early"));
    stream.write_all(&bytes).unwrap();
    let head = read_head(&mut stream);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(read_text(&mut stream), "early");
    stream.write_all(&frame(CLOSE, &close_payload(1000, ""))).unwrap();
    expect_close(&mut stream, 1000);
    assert_eq!(host.join().unwrap().unwrap().cause, CloseCause::ClientClosed);
}
