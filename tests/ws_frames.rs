//! The frame rules of RFC 6455 on a real socket: hand-made frames, good and bad, over a plain
//! `TcpStream`, and the close code each bad one gets.
#![cfg(feature = "websocket")]

mod ws_support;

use std::io::Write;

use sse_handler::ws::{CloseCause, Message, WsConfig};
use ws_support::*;

/// Sends `frames` on a new connection and expects the server to fail it with `code`.
fn expect_failure(frames: &[Vec<u8>], code: u16) {
    let server = start(WsConfig::default().max_frame_size(1000).max_message_size(2500));
    let mut stream = open(server.addr);
    stream.write_all(&frames.concat()).unwrap();
    expect_close(&mut stream, code);
    // Closing our side ends the server's wait for unread input at once.
    drop(stream);
    let closed = server.next_close();
    assert_eq!((closed.cause, closed.code), (CloseCause::ProtocolError, code), "{closed:?}");
}

#[test]
fn an_unmasked_client_frame_is_1002() {
    expect_failure(&[raw_frame(0x81, b"hello", false)], 1002);
}

#[test]
fn reserved_bits_are_1002() {
    for rsv in [0x40, 0x20, 0x10] {
        expect_failure(&[raw_frame(0x80 | rsv | TEXT, b"x", true)], 1002);
    }
}

#[test]
fn unknown_opcodes_are_1002() {
    for opcode in [0x3, 0x7, 0xB, 0xF] {
        expect_failure(&[frame(opcode, b"")], 1002);
    }
}

#[test]
fn an_oversized_control_frame_is_1002() {
    expect_failure(&[frame(PING, &[b'p'; 126])], 1002);
    expect_failure(&[frame(CLOSE, &close_payload(1000, &"r".repeat(124)))], 1002);
}

#[test]
fn a_fragmented_control_frame_is_1002() {
    expect_failure(&[fragment(PING, b"a"), frame(CONTINUATION, b"b")], 1002);
}

#[test]
fn fragmentation_out_of_order_is_1002() {
    expect_failure(&[frame(CONTINUATION, b"nothing to continue")], 1002);
    expect_failure(&[fragment(TEXT, b"one"), frame(TEXT, b"two")], 1002);
}

#[test]
fn bad_utf8_split_across_fragments_is_1007() {
    // "ab" then a three-byte sequence whose last byte is broken, split across two fragments.
    expect_failure(&[fragment(TEXT, &[b'a', b'b', 0xE2, 0x82]), frame(CONTINUATION, &[0x41])], 1007);
    // A whole invalid message in one frame.
    expect_failure(&[frame(TEXT, &[0xCE, 0xBA, 0xFF])], 1007);
}

#[test]
fn bad_utf8_fails_at_its_fragment_before_the_message_ends() {
    let server = start(WsConfig::default());
    let mut stream = open(server.addr);
    // The message is never finished: the server must not wait for its end to refuse it.
    stream.write_all(&fragment(TEXT, &[b'o', b'k', 0xF8])).unwrap();
    expect_close(&mut stream, 1007);
}

#[test]
fn a_close_with_an_invalid_code_is_1002() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
        expect_failure(&[frame(CLOSE, &close_payload(code, ""))], 1002);
    }
    expect_failure(&[frame(CLOSE, &[0x03])], 1002);
}

#[test]
fn a_close_reason_that_is_not_utf8_is_1007() {
    let mut payload = close_payload(1000, "");
    payload.extend_from_slice(&[0xC0, 0xAF]);
    expect_failure(&[frame(CLOSE, &payload)], 1007);
}

#[test]
fn frames_and_messages_over_the_limits_are_1009() {
    // max_frame_size 1000, max_message_size 2500 (see expect_failure).
    expect_failure(&[frame(BINARY, &[0; 1001])], 1009);
    let chunk = [b'a'; 1000];
    expect_failure(
        &[fragment(TEXT, &chunk), fragment(CONTINUATION, &chunk), frame(CONTINUATION, &chunk)],
        1009,
    );
}

#[test]
fn a_frame_over_the_limit_is_refused_from_its_header_alone() {
    let server = start(WsConfig::default().max_frame_size(1000));
    let mut stream = open(server.addr);
    // Only the header of a 1 GiB frame: the server must not wait for the payload.
    stream.write_all(&[0x82, 0x80 | 127, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4]).unwrap();
    expect_close(&mut stream, 1009);
}

#[test]
fn ping_during_a_fragmented_message_is_answered_and_the_message_arrives() {
    let server = start(WsConfig::default());
    let mut stream = open(server.addr);
    stream.write_all(&fragment(TEXT, b"frag")).unwrap();
    stream.write_all(&frame(PING, b"are you there")).unwrap();
    // The pong comes before the message is finished.
    assert_eq!(read_frame(&mut stream), (true, PONG, b"are you there".to_vec()));
    stream.write_all(&fragment(CONTINUATION, "mented ".as_bytes())).unwrap();
    stream.write_all(&frame(PONG, b"unsolicited")).unwrap();
    stream.write_all(&frame(CONTINUATION, "κόσμε".as_bytes())).unwrap();
    assert_eq!(server.next_message().1, Message::Text("fragmented κόσμε".into()));
}

#[test]
fn text_split_inside_a_character_is_fine() {
    let server = start(WsConfig::default());
    let mut stream = open(server.addr);
    let word = "κόσμε".as_bytes();
    for (i, byte) in word.iter().enumerate() {
        let last = i == word.len() - 1;
        let opcode = if i == 0 { TEXT } else { CONTINUATION };
        let bytes = if last { frame(opcode, &[*byte]) } else { fragment(opcode, &[*byte]) };
        stream.write_all(&bytes).unwrap();
    }
    stream.write_all(&frame(BINARY, &[0xFF, 0])).unwrap();
    stream.write_all(&frame(TEXT, b"")).unwrap();
    assert_eq!(server.next_message().1, Message::Text("κόσμε".into()));
    assert_eq!(server.next_message().1, Message::Binary(vec![0xFF, 0]));
    assert_eq!(server.next_message().1, Message::Text(String::new()));
}

#[test]
fn the_client_closes_and_the_server_answers_with_its_code() {
    let server = start(WsConfig::default());
    let mut stream = open(server.addr);
    stream.write_all(&frame(CLOSE, &close_payload(4001, "bye now"))).unwrap();
    expect_close(&mut stream, 4001);
    let closed = server.next_close();
    assert_eq!(
        (closed.cause, closed.code, closed.reason.as_str()),
        (CloseCause::ClientClosed, 4001, "bye now")
    );
    assert_eq!(server.handler.connection_count(), 0);
}

#[test]
fn a_close_without_a_code_is_answered_without_one() {
    let server = start(WsConfig::default());
    let mut stream = open(server.addr);
    stream.write_all(&frame(CLOSE, b"")).unwrap();
    let (code, _) = read_until_close(&mut stream);
    assert_eq!(code, None);
    expect_eof(&mut stream);
    let closed = server.next_close();
    assert_eq!((closed.cause, closed.code), (CloseCause::ClientClosed, 1005));
}

#[test]
fn a_client_that_just_disconnects_is_gone_with_1006() {
    let server = start(WsConfig::default());
    let stream = open(server.addr);
    wait_until("registered", || server.handler.connection_count() == 1);
    drop(stream);
    let closed = server.next_close();
    assert_eq!((closed.cause, closed.code), (CloseCause::ClientGone, 1006));
    assert_eq!(server.handler.connection_count(), 0);
}
