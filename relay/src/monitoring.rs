//! The operator's endpoints: `GET /healthz` for load balancers and `GET /metrics` for Prometheus.

use sse_handler::{Authenticator, BearerToken, Rejection, Request, Response, SseHandler};

/// `200 ok` while the relay can publish; `503` and the reason when it cannot. Open to anyone, since
/// load balancers carry no token; it says nothing but that.
pub(crate) fn healthz(handler: &SseHandler) -> Response {
    let health = handler.health();
    let status = if health.is_ready() { 200 } else { 503 };
    plain(status, format!("{health}\n"))
}

/// The metrics page, behind `guard` when publishing has a token.
pub(crate) fn metrics(handler: &SseHandler, guard: Option<&BearerToken>, request: &Request) -> Response {
    match guard.map(|token| token.authenticate(request)) {
        Some(Err(rejection)) => refused(&rejection),
        _ => handler.metrics_response(),
    }
}

fn refused(rejection: &Rejection) -> Response {
    let mut response = plain(rejection.status(), format!("{}\n", rejection.message()));
    for (name, value) in rejection.headers() {
        response = response.with_header(name.as_str(), value.as_str());
    }
    response
}

fn plain(status: u16, body: String) -> Response {
    Response::new(status)
        .with_header("Content-Type", "text/plain; charset=utf-8")
        .with_header("Cache-Control", "no-store")
        .with_body(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sse_handler::Config;

    #[test]
    fn health_is_ok_until_shutdown_starts() {
        let handler = SseHandler::new(Config::default()).unwrap();
        let ready = healthz(&handler);
        assert_eq!((ready.status(), ready.body()), (200, &b"ok\n"[..]));
        handler.shutdown();
        let stopping = healthz(&handler);
        assert_eq!((stopping.status(), stopping.body()), (503, &b"shutting down\n"[..]));
    }

    #[test]
    fn the_metrics_guard_answers_like_the_publish_endpoint() {
        let handler = SseHandler::new(Config::default()).unwrap();
        let guard = BearerToken::new("s3cret");
        let anonymous = metrics(&handler, Some(&guard), &Request::new("GET", "/metrics"));
        assert_eq!(anonymous.status(), 401);
        assert!(anonymous.headers().contains(&("WWW-Authenticate".into(), "Bearer".into())));
        let bearer = Request::new("GET", "/metrics").with_header("Authorization", "Bearer s3cret");
        assert_eq!(metrics(&handler, Some(&guard), &bearer).status(), 200);
        assert_eq!(metrics(&handler, None, &Request::new("GET", "/metrics")).status(), 200);
    }
}
