//! Who may publish without a token: anyone who can reach the relay, except web pages of other
//! origins.
//!
//! A browser sends a page's `POST` with `Content-Type: text/plain` to any address without asking
//! first (it is a "simple" request, with no CORS preflight), so without this check every page a
//! visitor of the relay opens could publish through the visitor's browser. Such a request carries
//! the page's `Origin`; requests from scripts and `curl` carry none and stay open.

use sse_handler::{Authenticator, Rejection, Request};

/// Lets in publishes without an `Origin`, or from the relay's own page, or from `--allow-origin`.
#[derive(Debug, Clone)]
pub(crate) struct SameOriginOnly {
    /// The origin let in besides the relay's own (`*`: every origin).
    pub(crate) allowed: Option<String>,
}

impl Authenticator for SameOriginOnly {
    fn authenticate(&self, request: &Request) -> Result<Option<String>, Rejection> {
        let Some(origin) = request.header("origin") else { return Ok(None) };
        let allowed = self.allowed.as_deref().is_some_and(|allowed| allowed == "*" || same(allowed, origin));
        if allowed || is_own_origin(origin, request.header("host")) {
            Ok(None)
        } else {
            Err(Rejection::forbidden(
                "publishing from a page of another origin is refused (see --token and --allow-origin)",
            ))
        }
    }
}

/// Whether `origin` is the relay's own: what its page's requests carry, `http://` (or `https://`,
/// behind a proxy that adds TLS) and the `Host` the browser reached it by.
fn is_own_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host.filter(|host| !host.is_empty()) else { return false };
    ["http://", "https://"].iter().any(|scheme| {
        origin.get(..scheme.len()).is_some_and(|s| same(s, scheme)) && same(&origin[scheme.len()..], host)
    })
}

/// Origins and hosts are compared without regard to ASCII case.
fn same(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publish(origin: Option<&str>, host: &str) -> Request {
        let request = Request::new("POST", "/publish").with_header("Host", host);
        match origin {
            Some(origin) => request.with_header("Origin", origin),
            None => request,
        }
    }

    #[test]
    fn only_pages_of_other_origins_are_refused() {
        let check = SameOriginOnly { allowed: None };
        for (origin, host) in [
            (None, "127.0.0.1:8080"),
            (Some("http://127.0.0.1:8080"), "127.0.0.1:8080"),
            (Some("http://Relay.example:8080"), "relay.example:8080"),
            (Some("https://relay.example"), "relay.example"),
        ] {
            assert_eq!(check.authenticate(&publish(origin, host)), Ok(None), "{origin:?} {host}");
        }
        for (origin, host) in [
            ("http://evil.example", "127.0.0.1:8080"),
            ("http://127.0.0.1:8081", "127.0.0.1:8080"),
            ("null", "127.0.0.1:8080"),
            ("http://127.0.0.1:8080", ""),
            ("ftp://127.0.0.1:8080", "127.0.0.1:8080"),
            ("http://127.0.0.1:8080.evil.example", "127.0.0.1:8080"),
        ] {
            let refused = check.authenticate(&publish(Some(origin), host)).unwrap_err();
            assert_eq!(refused.status(), 403, "{origin} {host}");
        }
    }

    #[test]
    fn allow_origin_lets_that_origin_publish_too() {
        let app = SameOriginOnly { allowed: Some("http://app.example".into()) };
        assert_eq!(app.authenticate(&publish(Some("http://app.example"), "relay:8080")), Ok(None));
        assert!(app.authenticate(&publish(Some("http://evil.example"), "relay:8080")).is_err());
        let any = SameOriginOnly { allowed: Some("*".into()) };
        assert_eq!(any.authenticate(&publish(Some("http://evil.example"), "relay:8080")), Ok(None));
    }
}
