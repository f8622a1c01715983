//! The opening handshake (RFC 6455 §4.2): checking an upgrade request, and the `101` that accepts it.
//! A request that fails a check becomes an [`Error`] whose HTTP answer the caller writes.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};

use super::config::OriginPolicy;
use crate::error::Rejection;
use crate::error::{Error, Result};
use crate::http::{self, Request};

/// The GUID every server appends to the client's key (RFC 6455 §1.3).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The only protocol version there is (RFC 6455 §4.4).
pub(crate) const VERSION: &str = "13";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
pub(crate) fn accept_key(key: &str) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(GUID.as_bytes());
    BASE64.encode(sha1.finalize())
}

/// A random `Sec-WebSocket-Key`, for the client side.
pub(crate) fn new_key(random: [u8; 16]) -> String {
    BASE64.encode(random)
}

/// What a valid upgrade request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Upgrade {
    pub(crate) key: String,
    /// The subprotocols the client offered, in its order of preference.
    pub(crate) protocols: Vec<String>,
}

/// Checks that `request` is a WebSocket opening handshake this server can take.
///
/// # Errors
/// [`Error::MethodNotAllowed`] for a method other than `GET`; [`Error::BadRequest`] without
/// `Upgrade: websocket`, `Connection: upgrade` or a valid `Sec-WebSocket-Key`;
/// [`Error::WebSocketVersion`] when `Sec-WebSocket-Version` is not 13.
pub(crate) fn check(request: &Request) -> Result<Upgrade> {
    if request.method() != "GET" {
        return Err(Error::MethodNotAllowed { allowed: "GET".into() });
    }
    if !has_token(request, "upgrade", "websocket") {
        return Err(Error::BadRequest("not a WebSocket handshake: no `Upgrade: websocket`"));
    }
    if !has_token(request, "connection", "upgrade") {
        return Err(Error::BadRequest("not a WebSocket handshake: no `Connection: upgrade`"));
    }
    if request.header("sec-websocket-version") != Some(VERSION) {
        return Err(Error::WebSocketVersion);
    }
    let key = request.header("sec-websocket-key").unwrap_or("");
    if BASE64.decode(key).map_or(true, |bytes| bytes.len() != 16) {
        return Err(Error::BadRequest("Sec-WebSocket-Key is not 16 bytes in base64"));
    }
    let protocols = header_tokens(request, "sec-websocket-protocol").map(str::to_owned).collect();
    Ok(Upgrade { key: key.to_owned(), protocols })
}

/// Refuses (403) a browser page from an origin the policy does not allow. Clients that send no
/// `Origin` (anything but a browser) are not judged by it.
pub(crate) fn check_origin(request: &Request, policy: &OriginPolicy) -> Result<()> {
    let Some(origin) = request.header("origin") else { return Ok(()) };
    let parsed = Origin::parse(origin);
    let allowed = match (policy, &parsed) {
        (OriginPolicy::Any, _) => true,
        (_, None) => false,
        (OriginPolicy::SameHost, Some(page)) => page.is_web() && page.is_host(request.header("host")),
        (OriginPolicy::Only(origins), Some(page)) => {
            origins.iter().any(|allowed| Origin::parse(allowed).as_ref() == Some(page))
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(Error::Rejected(Box::new(Rejection::forbidden(format!("origin {origin} is not allowed")))))
    }
}

/// An origin as browsers write it in `Origin` (RFC 6454 §6.2): `scheme://host[:port]` and nothing
/// else. Scheme and host are kept in lower case, and a port that is the scheme's default is dropped,
/// so that equal origins compare equal however they were written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

impl Origin {
    /// `None` for anything that is not `scheme://host[:port]`: `null`, a path or a trailing slash, user
    /// information, an empty host, a port that is not a number up to 65535.
    pub(crate) fn parse(text: &str) -> Option<Origin> {
        let (scheme, authority) = text.split_once("://")?;
        let mut chars = scheme.chars();
        let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        if !scheme_ok {
            return None;
        }
        let scheme = scheme.to_ascii_lowercase();
        let (host, port) = split_host_port(authority)?;
        let port = port.filter(|&port| Some(port) != default_port(&scheme));
        Some(Origin { host: host.to_ascii_lowercase(), scheme, port })
    }

    /// Whether this is the origin of a web page (`http` or `https`), not of a file, an extension or
    /// anything else.
    fn is_web(&self) -> bool {
        default_port(&self.scheme).is_some()
    }

    /// Whether the host and port are those of a `Host` header (whose port, when left out, is the
    /// scheme's default).
    fn is_host(&self, host_header: Option<&str>) -> bool {
        let Some((host, port)) = host_header.and_then(split_host_port) else { return false };
        let default = default_port(&self.scheme);
        host.eq_ignore_ascii_case(&self.host) && port.or(default) == self.port.or(default)
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// Splits `host[:port]` (a name, an IPv4 address or a bracketed IPv6 address; a port of one to five
/// digits up to 65535); `None` for anything else, such as a path or user information.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')? + 1;
        let (host, rest) = authority.split_at(end);
        let inner_ok = host[1..end - 1].bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !inner_ok || end == 2 {
            return None;
        }
        (host, if rest.is_empty() { None } else { Some(rest.strip_prefix(':')?) })
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        let host_ok = !host.is_empty()
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !host_ok {
            return None;
        }
        (host, port)
    };
    let port = match port {
        None => None,
        Some(digits) if (1..=5).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) => {
            Some(digits.parse().ok()?)
        }
        Some(_) => return None,
    };
    Some((host, port))
}

/// The `101 Switching Protocols` head that completes the handshake.
pub(crate) fn accept_head(upgrade: &Upgrade, protocol: Option<&str>, extra: &[(String, String)]) -> Vec<u8> {
    let mut head = Vec::with_capacity(256);
    http::write_status_line(&mut head, 101);
    http::push_header(&mut head, "Upgrade", "websocket");
    http::push_header(&mut head, "Connection", "Upgrade");
    http::push_header(&mut head, "Sec-WebSocket-Accept", &accept_key(&upgrade.key));
    if let Some(protocol) = protocol {
        http::push_header(&mut head, "Sec-WebSocket-Protocol", protocol);
    }
    for (name, value) in extra {
        http::push_header(&mut head, name, value);
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Every comma-separated token of every `name` header.
fn header_tokens<'a>(request: &'a Request, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    request
        .headers()
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .filter(|token| !token.is_empty())
}

fn has_token(request: &Request, name: &str, token: &str) -> bool {
    header_tokens(request, name).any(|t| t.eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handshake() -> Request {
        Request::new("GET", "/chat")
            .with_header("Host", "server.example.com")
            .with_header("Upgrade", "websocket")
            .with_header("Connection", "Upgrade")
            .with_header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .with_header("Sec-WebSocket-Version", "13")
    }

    #[test]
    fn rfc_accept_key() {
        // RFC 6455 §1.3.
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn accepts_a_valid_handshake_with_protocols() {
        let request = handshake()
            .with_header("Connection", "keep-alive")
            .with_header("Sec-WebSocket-Protocol", "chat, superchat")
            .with_header("Sec-WebSocket-Protocol", "v3");
        let upgrade = check(&request).unwrap();
        assert_eq!(upgrade.protocols, ["chat", "superchat", "v3"]);
        let head = String::from_utf8(accept_head(&upgrade, Some("chat"), &[])).unwrap();
        assert_eq!(
            head,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        );
        // Token lists and case do not matter.
        let request = Request::new("GET", "/")
            .with_header("upgrade", "WebSocket")
            .with_header("connection", "keep-alive, Upgrade")
            .with_header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .with_header("sec-websocket-version", "13");
        assert!(check(&request).is_ok());
    }

    #[test]
    fn refuses_what_is_not_a_handshake() {
        let without = |name: &str| {
            let mut request = Request::new("GET", "/chat");
            for (n, v) in handshake().headers() {
                if !n.eq_ignore_ascii_case(name) {
                    request = request.with_header(n.as_str(), v.as_str());
                }
            }
            check(&request).map(|_| ()).unwrap_err().http_status()
        };
        assert_eq!(without("upgrade"), Some(400));
        assert_eq!(without("connection"), Some(400));
        assert_eq!(without("sec-websocket-key"), Some(400));
        assert_eq!(without("sec-websocket-version"), Some(426));
        let wrong_version = handshake().with_header("X", "y");
        let mut request = Request::new("GET", "/chat");
        for (n, v) in wrong_version.headers() {
            let v = if n == "Sec-WebSocket-Version" { "8" } else { v.as_str() };
            request = request.with_header(n.as_str(), v);
        }
        assert!(matches!(check(&request), Err(Error::WebSocketVersion)));
        let post = Request::new("POST", "/chat");
        assert!(matches!(check(&post), Err(Error::MethodNotAllowed { .. })));
        for key in ["", "not base64!", "c2hvcnQ=", "dGhlIHNhbXBsZSBub25jZQ==dGhl"] {
            let request = Request::new("GET", "/")
                .with_header("Upgrade", "websocket")
                .with_header("Connection", "Upgrade")
                .with_header("Sec-WebSocket-Key", key)
                .with_header("Sec-WebSocket-Version", "13");
            assert!(matches!(check(&request), Err(Error::BadRequest(_))), "{key:?}");
        }
    }

    #[test]
    fn origin_policies() {
        let from = |origin: &str| handshake().with_header("Origin", origin);
        let same = OriginPolicy::SameHost;
        assert!(check_origin(&handshake(), &same).is_ok(), "no Origin: not a browser");
        assert!(check_origin(&from("http://server.example.com"), &same).is_ok());
        assert!(check_origin(&from("https://SERVER.example.com"), &same).is_ok());
        assert!(check_origin(&from("https://server.example.com:443"), &same).is_ok());
        for origin in [
            "http://evil.example",
            "null",
            "http://server.example.com:8080",
            "ws://server.example.com",
            "chrome-extension://server.example.com",
            "http://server.example.com/",
        ] {
            let err = check_origin(&from(origin), &same).unwrap_err();
            assert_eq!(err.http_status(), Some(403), "{origin}");
        }
        let only = OriginPolicy::Only(vec!["https://app.example".into()]);
        assert!(check_origin(&from("https://app.example"), &only).is_ok());
        assert!(check_origin(&from("http://server.example.com"), &only).is_err());
        assert!(check_origin(&from("http://anything"), &OriginPolicy::Any).is_ok());
        assert!(check_origin(&from("null"), &OriginPolicy::Any).is_ok());
    }

    #[test]
    fn origins_parse_as_browsers_write_them() {
        let origin = |text: &str| Origin::parse(text);
        assert_eq!(origin("HTTPS://App.Example"), origin("https://app.example:443"));
        assert_eq!(
            origin("http://[::1]:8080"),
            Some(Origin { scheme: "http".into(), host: "[::1]".into(), port: Some(8080) })
        );
        assert_eq!(origin("http://127.0.0.1:80"), origin("http://127.0.0.1"));
        assert_ne!(origin("http://app.example"), origin("https://app.example"));
        assert_ne!(origin("http://app.example:8080"), origin("http://app.example"));
        assert!(origin("chrome-extension://abcdef").is_some());
        for text in [
            "null",
            "app.example",
            "https://",
            "https://app.example/",
            "https://app.example/path",
            "https://app.example?query",
            "https://user@app.example",
            "https://app.example:",
            "https://app.example:99999",
            "https://app.example:+80",
            "https://app.example:80:80",
            "https://[::1",
            "https://[]",
            "https://app example",
            "1http://app.example",
            "*",
        ] {
            assert_eq!(origin(text), None, "{text:?}");
        }
    }
}
