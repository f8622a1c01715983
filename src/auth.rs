//! Deciding who may open a stream or publish: the [`Authenticator`] trait and two ready-made ones.

use crate::http::Request;

/// Decides whether a request may go ahead, and who made it.
///
/// It sees the whole request head (headers, path, query, peer address) before anything is written.
/// `Ok(Some(user))` lets the request in and names its user, which hooks read from
/// [`ConnectionInfo::user`](crate::ConnectionInfo::user); `Ok(None)` lets it in anonymously;
/// `Err(rejection)` answers with the rejection's status and closes the connection.
///
/// Any `Fn(&Request) -> Result<Option<String>, Rejection>` closure is an authenticator:
///
/// ```
/// use sse_handler::{Rejection, Request};
///
/// let only_local = |request: &Request| match request.peer() {
///     Some(peer) if peer.ip().is_loopback() => Ok(None),
///     _ => Err(Rejection::forbidden("local clients only")),
/// };
/// # let _ = sse_handler::SseHandler::builder(Default::default()).authenticator(only_local);
/// ```
///
/// It runs on the connection's own thread, so a slow check delays only that client.
pub trait Authenticator: Send + Sync + 'static {
    /// Lets the request in (naming its user, if known) or refuses it.
    fn authenticate(&self, request: &Request) -> Result<Option<String>, Rejection>;
}

impl<F> Authenticator for F
where
    F: Fn(&Request) -> Result<Option<String>, Rejection> + Send + Sync + 'static,
{
    fn authenticate(&self, request: &Request) -> Result<Option<String>, Rejection> {
        self(request)
    }
}

/// Lets everyone in, anonymously. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct AllowAll;

impl Authenticator for AllowAll {
    fn authenticate(&self, _request: &Request) -> Result<Option<String>, Rejection> {
        Ok(None)
    }
}

/// Requires `Authorization: Bearer <token>` with one of the configured tokens, and names the user
/// that token belongs to. A missing or wrong token gets `401` with `WWW-Authenticate: Bearer`.
///
/// ```
/// use sse_handler::BearerToken;
///
/// let auth = BearerToken::new("s3cret").with_token("other-token", "alice");
/// # let _ = auth;
/// ```
#[derive(Clone)]
pub struct BearerToken {
    tokens: Vec<(String, Option<String>)>,
}

impl BearerToken {
    /// Accepts one token, for an anonymous user.
    pub fn new(token: impl Into<String>) -> BearerToken {
        BearerToken { tokens: vec![(token.into(), None)] }
    }

    /// Also accepts `token`, naming its bearer `user`.
    pub fn with_token(mut self, token: impl Into<String>, user: impl Into<String>) -> BearerToken {
        self.tokens.push((token.into(), Some(user.into())));
        self
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the tokens themselves.
        f.debug_struct("BearerToken").field("tokens", &self.tokens.len()).finish()
    }
}

impl Authenticator for BearerToken {
    fn authenticate(&self, request: &Request) -> Result<Option<String>, Rejection> {
        let presented = request
            .header("authorization")
            .and_then(|value| value.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let Some(presented) = presented else {
            return Err(Rejection::unauthorized("a bearer token is required"));
        };
        // Compare every token in full, so the time taken does not say how much of a guess was right.
        let mut user = None;
        let mut found = false;
        for (token, name) in &self.tokens {
            if constant_time_eq(token.as_bytes(), presented.as_bytes()) {
                found = true;
                user = name.clone();
            }
        }
        if found { Ok(user) } else { Err(Rejection::unauthorized("the bearer token is not valid")) }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An authenticator's refusal: the status and message the client gets, and any extra headers
/// (such as `WWW-Authenticate`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    status: u16,
    message: String,
    headers: Vec<(String, String)>,
}

impl Rejection {
    /// A refusal with any status (it should be a 4xx or 5xx) and a short message for the response body.
    pub fn new(status: u16, message: impl Into<String>) -> Rejection {
        Rejection { status, message: message.into(), headers: Vec::new() }
    }

    /// `401 Unauthorized` with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(message: impl Into<String>) -> Rejection {
        Rejection::new(401, message).with_header("WWW-Authenticate", "Bearer")
    }

    /// `403 Forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Rejection {
        Rejection::new(403, message)
    }

    /// Adds a response header. Header names and values with CR or LF are dropped when the answer is
    /// written, since they would split the response.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Rejection {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The status the client gets.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The message the client gets in the response body.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The extra response headers.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_auth(value: &str) -> Request {
        Request::new("GET", "/events").with_header("Authorization", value)
    }

    #[test]
    fn bearer_token_names_the_user() {
        let auth = BearerToken::new("anon-token").with_token("alice-token", "alice");
        assert_eq!(auth.authenticate(&with_auth("Bearer anon-token")), Ok(None));
        assert_eq!(auth.authenticate(&with_auth("bearer alice-token")), Ok(Some("alice".into())));
    }

    #[test]
    fn bearer_token_refuses_missing_and_wrong_tokens() {
        let auth = BearerToken::new("t0ken");
        for request in [
            Request::new("GET", "/"),
            with_auth("Bearer t0ke"),
            with_auth("Bearer t0ken2"),
            with_auth("Basic t0ken"),
            with_auth("t0ken"),
        ] {
            let rejection = auth.authenticate(&request).expect_err("must refuse");
            assert_eq!(rejection.status(), 401);
            assert_eq!(rejection.headers(), [("WWW-Authenticate".into(), "Bearer".into())]);
        }
    }
}
