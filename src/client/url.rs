//! The URLs an event source needs: `http://` or `https://`, a host, an optional port, a path and a
//! query; and resolving a redirect's `Location` against one.

use std::fmt;

/// A parsed `http` or `https` URL, without credentials or fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Url {
    /// `"http"` or `"https"`.
    pub(super) scheme: &'static str,
    /// The host to connect to, without the brackets of an IPv6 address.
    pub(super) host: String,
    pub(super) port: u16,
    /// The host and port as written, brackets kept: the `Host` header's value.
    pub(super) authority: String,
    /// The path and query, starting with `/`, with spaces and non-ASCII bytes percent-encoded.
    pub(super) target: String,
}

impl Url {
    /// Parses an absolute `http://` or `https://` URL.
    pub(super) fn parse(text: &str) -> Result<Url, &'static str> {
        let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
        let (scheme, rest) = text.split_once("://").ok_or("not an absolute http:// or https:// URL")?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => "http",
            "https" => "https",
            _ => return Err("only http:// and https:// URLs are supported"),
        };
        let rest = strip_fragment(rest);
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, target) = rest.split_at(split);
        if authority.contains('@') {
            return Err("credentials in the URL are not supported: send them in a header");
        }
        let (host, port) = split_authority(authority, default_port(scheme))?;
        Ok(Url { scheme, host, port, authority: authority.to_owned(), target: encode_target(target)? })
    }

    /// Resolves the `Location` of a redirect: an absolute URL of the same scheme, `//host/path`,
    /// `/path`, `?query`, or a path relative to this one's directory.
    pub(super) fn join(&self, location: &str) -> Result<Url, &'static str> {
        let location = strip_fragment(location.trim_matches(|c: char| c.is_ascii_whitespace()));
        let next = if has_scheme(location) {
            Url::parse(location)?
        } else if location.starts_with("//") {
            Url::parse(&format!("{}:{location}", self.scheme))?
        } else {
            let target = if location.starts_with('/') {
                location.to_owned()
            } else if location.starts_with('?') {
                format!("{}{location}", self.path())
            } else {
                let path = self.path();
                format!("{}{location}", &path[..path.rfind('/').map_or(0, |i| i + 1)])
            };
            Url { target: encode_target(&target)?, ..self.clone() }
        };
        if next.scheme != self.scheme {
            return Err("a redirect to another scheme is not followed");
        }
        Ok(next)
    }

    /// The target without its query.
    fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("/")
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.target)
    }
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" { 443 } else { 80 }
}

fn strip_fragment(text: &str) -> &str {
    text.split('#').next().unwrap_or_default()
}

/// Whether `text` starts with a scheme (`letter *(letter / digit / "+" / "-" / ".") ":"`).
fn has_scheme(text: &str) -> bool {
    let Some(colon) = text.find(':') else { return false };
    let scheme = &text[..colon];
    scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Splits `host[:port]` or `[v6]:port` into the host to connect to and the port.
fn split_authority(authority: &str, default_port: u16) -> Result<(String, u16), &'static str> {
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed.split_once(']').ok_or("an IPv6 address without its closing ']'")?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("text after an IPv6 address that is not a port")?),
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("no host");
    }
    if !host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~:%".contains(&b)) {
        return Err("a host name with characters other than ASCII letters, digits, '-', '.' and '_'");
    }
    let port = match port {
        None | Some("") => default_port,
        Some(digits) if digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit()) => {
            digits.parse().ok().filter(|&port| port != 0).ok_or("a port outside 1-65535")?
        }
        Some(_) => return Err("a port that is not a number"),
    };
    Ok((host.to_owned(), port))
}

/// The request target: `/` when empty, spaces and non-ASCII bytes percent-encoded, controls refused.
fn encode_target(target: &str) -> Result<String, &'static str> {
    let mut encoded = String::with_capacity(target.len() + 1);
    if !target.starts_with('/') {
        encoded.push('/');
    }
    for byte in target.bytes() {
        match byte {
            b' ' | 0x80.. => encoded.push_str(&format!("%{byte:02X}")),
            0..0x20 | 0x7F => return Err("a control character in the path or query"),
            _ => encoded.push(char::from(byte)),
        }
    }
    Ok(encoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn parses_http_urls() {
        let cases = [
            ("http://127.0.0.1:8080/events?topic=a", "127.0.0.1", 8080, "127.0.0.1:8080", "/events?topic=a"),
            ("HTTP://Example.com", "Example.com", 80, "Example.com", "/"),
            ("https://example.com/s#frag", "example.com", 443, "example.com", "/s"),
            ("http://h:/x", "h", 80, "h:", "/x"),
            ("http://[::1]:9/e", "::1", 9, "[::1]:9", "/e"),
            ("http://[::1]", "::1", 80, "[::1]", "/"),
            ("http://h?q=1", "h", 80, "h", "/?q=1"),
            (" http://h/a b/é ", "h", 80, "h", "/a%20b/%C3%A9"),
        ];
        for (text, host, port, authority, target) in cases {
            let parsed = url(text);
            assert_eq!(
                (parsed.host.as_str(), parsed.port, parsed.authority.as_str(), parsed.target.as_str()),
                (host, port, authority, target),
                "{text}"
            );
        }
        assert_eq!(url("http://h:1/p?q").to_string(), "http://h:1/p?q");
    }

    #[test]
    fn refuses_what_it_cannot_use() {
        for text in [
            "",
            "/events",
            "127.0.0.1:8080/events",
            "ftp://h/",
            "ws://h/",
            "http:///path",
            "http://user:pw@h/",
            "http://h:0/",
            "http://h:65536/",
            "http://h:80x/",
            "http://h:1:2/",
            "http://[::1/",
            "http://[::1]x/",
            "http://hé/",
            "http://h/a\r\nX: y",
            "http://h/\0",
        ] {
            assert!(Url::parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn resolves_redirect_locations() {
        let base = url("http://h:1/a/b?q");
        let cases = [
            ("http://other:2/x", "http://other:2/x"),
            ("//other/y", "http://other/y"),
            ("/c", "http://h:1/c"),
            ("?r", "http://h:1/a/b?r"),
            ("c?d#e", "http://h:1/a/c?d"),
        ];
        for (location, expected) in cases {
            assert_eq!(base.join(location).unwrap().to_string(), expected, "{location}");
        }
        assert!(base.join("https://h/").is_err());
        assert!(base.join("mailto:x").is_err());
        assert!(base.join("/a\nb").is_err());
    }
}
