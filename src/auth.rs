//! Deciding who may open a stream or publish: the [`Authenticator`] trait and two ready-made ones.

use std::hash::{BuildHasher, RandomState};

use crate::error::Rejection;
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
/// A guess is compared with the tokens through keyed digests of one fixed length, so the time a
/// refusal takes says nothing about a token's content or length. The key is random, made with the
/// authenticator, so no digest can be worked out ahead.
///
/// ```
/// use sse_handler::BearerToken;
///
/// let auth = BearerToken::new("s3cret").with_token("other-token", "alice");
/// # let _ = auth;
/// ```
#[derive(Clone)]
pub struct BearerToken {
    tokens: Vec<AcceptedToken>,
    digest_key: RandomState,
}

#[derive(Clone)]
struct AcceptedToken {
    token: String,
    digest: u64,
    user: Option<String>,
}

impl BearerToken {
    /// Accepts one token, for an anonymous user.
    pub fn new(token: impl Into<String>) -> BearerToken {
        BearerToken { tokens: Vec::new(), digest_key: RandomState::new() }.accepting(token.into(), None)
    }

    /// Also accepts `token`, naming its bearer `user`.
    pub fn with_token(self, token: impl Into<String>, user: impl Into<String>) -> BearerToken {
        self.accepting(token.into(), Some(user.into()))
    }

    fn accepting(mut self, token: String, user: Option<String>) -> BearerToken {
        let digest = self.digest_key.hash_one(token.as_bytes());
        self.tokens.push(AcceptedToken { token, digest, user });
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
        // The guess's digest takes time that depends on the guess alone. Every token's digest is
        // compared, each in one step; only an equal digest, which a wrong guess has once in 2^64
        // tries, is confirmed against the token itself.
        let digest = self.digest_key.hash_one(presented.as_bytes());
        let mut user = None;
        let mut found = false;
        for accepted in &self.tokens {
            if std::hint::black_box(accepted.digest ^ digest) == 0 && confirm(&accepted.token, presented) {
                found = true;
                user = accepted.user.clone();
            }
        }
        if found { Ok(user) } else { Err(Rejection::unauthorized("the bearer token is not valid")) }
    }
}

/// The plain comparison of a token with a guess whose digest matched its own.
fn confirm(token: &str, presented: &str) -> bool {
    #[cfg(test)]
    tests::TOKEN_BYTES_COMPARED.with(|compared| compared.set(compared.get() + token.len()));
    token == presented
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// Bytes of accepted tokens that a check has compared with a guess, on this thread.
        pub(super) static TOKEN_BYTES_COMPARED: Cell<usize> = const { Cell::new(0) };
    }

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

    #[test]
    fn a_wrong_guess_is_never_compared_with_a_token_so_it_cannot_learn_its_length() {
        let token = "0123456789abcdef";
        let auth = BearerToken::new(token).with_token("x".repeat(40), "bob");
        for length in 0..=48 {
            let guess = "f".repeat(length);
            TOKEN_BYTES_COMPARED.with(|compared| compared.set(0));
            assert!(auth.authenticate(&with_auth(&format!("Bearer {guess}"))).is_err());
            // A comparison that stopped at a length mismatch and went through equal lengths byte by
            // byte did work here for the guesses of 16 and 40 bytes alone.
            assert_eq!(TOKEN_BYTES_COMPARED.with(Cell::get), 0, "a guess of {length} bytes");
        }
        assert_eq!(auth.authenticate(&with_auth(&format!("Bearer {token}"))), Ok(None));
        assert_eq!(TOKEN_BYTES_COMPARED.with(Cell::get), token.len(), "the right token is confirmed");
    }
}
