//! `--redis`: the event log on a Redis Stream that several relays share.

use sse_handler::{Config, RedisLog, RedisOptions, SseHandler};

/// A handler whose log is the stream `key` on the Redis at `url`, keeping about `history` entries
/// there and the last `history` events in memory.
///
/// # Errors
/// Redis cannot be reached or refuses the URL; the message names the URL without its password.
pub(crate) fn handler(config: Config, url: &str, key: &str, history: usize) -> Result<SseHandler, String> {
    let options = RedisOptions::default().max_len(history).local_capacity(history);
    let log =
        RedisLog::connect(url, key, options).map_err(|err| format!("--redis {}: {err}", redacted(url)))?;
    let handler = SseHandler::builder(config).log(log).build().map_err(|err| err.to_string())?;
    log::info!("events go through the Redis stream `{key}` at {}; ids are its entry ids", redacted(url));
    Ok(handler)
}

/// The URL without the credentials it may carry (`redis://user:secret@host/`), for logs.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_kept_out_of_logs() {
        assert_eq!(redacted("redis://127.0.0.1:6379/"), "redis://127.0.0.1:6379/");
        assert_eq!(redacted("redis://:s3cret@10.0.0.5:6379/0"), "redis://***@10.0.0.5:6379/0");
        assert_eq!(redacted("rediss://app:p@ss@host/"), "rediss://***@host/");
        assert_eq!(redacted("not a url"), "not a url");
    }

    #[test]
    fn an_unreachable_redis_is_an_error_that_names_it() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("redis://:pw@127.0.0.1:{port}/");
        let err = handler(Config::default(), &url, "k", 10).expect_err("nothing listens there");
        assert!(err.starts_with(&format!("--redis redis://***@127.0.0.1:{port}/: ")), "{err}");
        assert!(!err.contains("pw"), "{err}");
    }
}
