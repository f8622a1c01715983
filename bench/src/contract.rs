//! The server contract every benchmarked server implements, and the pieces of it they share.
//!
//! - `GET /events`: `200`, `Content-Type: text/event-stream`, sent once the client is registered.
//! - `POST /publish?count=M&size=B`: broadcasts M events, then answers `200`. Event `i` (from 0) is
//!   `id: <i>\ndata: <send time, ns since the Unix epoch> <padding to B bytes>\n\n`, the time taken just
//!   before the event is handed to the server's broadcast.

use std::time::{SystemTime, UNIX_EPOCH};

/// Path of the event stream.
pub const EVENTS_PATH: &str = "/events";
/// Path of the publish endpoint.
pub const PUBLISH_PATH: &str = "/publish";
/// The most events one publish may ask for.
pub const MAX_COUNT: usize = 10_000_000;
/// The largest event data one publish may ask for, in bytes.
pub const MAX_SIZE: usize = 1024 * 1024;

/// Nanoseconds since the Unix epoch (`CLOCK_REALTIME`), the clock both sides of a run read.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// One parsed `POST /publish` query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    /// How many events to broadcast.
    pub count: usize,
    /// The length of each event's data in bytes (at least the timestamp and a space).
    pub size: usize,
}

impl Publish {
    /// Reads `count=M&size=B` (in any order; other parameters are ignored). `size` defaults to 64.
    ///
    /// # Errors
    /// A message fit for a `400` answer when a value is missing, not a number or out of range.
    pub fn from_query(query: &str) -> Result<Publish, String> {
        let mut count = None;
        let mut size = 64;
        for pair in query.split('&') {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = || value.parse::<usize>().map_err(|_| format!("{name} must be a whole number"));
            match name {
                "count" => count = Some(number()?),
                "size" => size = number()?,
                _ => {}
            }
        }
        let count = count.ok_or("count is required")?;
        if count > MAX_COUNT {
            return Err(format!("count must be at most {MAX_COUNT}"));
        }
        if size > MAX_SIZE {
            return Err(format!("size must be at most {MAX_SIZE}"));
        }
        Ok(Publish { count, size })
    }

    /// The request target that asks for this publish.
    pub fn target(&self) -> String {
        format!("{PUBLISH_PATH}?count={}&size={}", self.count, self.size)
    }
}

/// The `data` of one event: the send time in decimal, a space, and `x` padding up to `size` bytes
/// (never shorter than the timestamp and the space).
pub fn event_data(sent_ns: u64, size: usize) -> String {
    const PADDING: &str = "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
    let mut data = String::with_capacity(size.max(24));
    data.push_str(&sent_ns.to_string());
    data.push(' ');
    // Whole slices rather than a char at a time: every server pays this per event.
    let mut left = size.saturating_sub(data.len());
    while left > 0 {
        let take = left.min(PADDING.len());
        data.push_str(&PADDING[..take]);
        left -= take;
    }
    data
}

/// The whole wire form of event `id`, for servers that encode events themselves.
pub fn encode_event(out: &mut Vec<u8>, id: usize, data: &str) {
    out.extend_from_slice(b"id: ");
    out.extend_from_slice(id.to_string().as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_queries_are_read_and_checked() {
        assert_eq!(Publish::from_query("count=5&size=100"), Ok(Publish { count: 5, size: 100 }));
        assert_eq!(Publish::from_query("size=8&count=2&x=1"), Ok(Publish { count: 2, size: 8 }));
        assert_eq!(Publish::from_query("count=3"), Ok(Publish { count: 3, size: 64 }));
        assert!(Publish::from_query("size=8").is_err());
        assert!(Publish::from_query("count=ten").is_err());
        assert!(Publish::from_query("count=1&size=99999999").is_err());
        let publish = Publish { count: 7, size: 9 };
        assert_eq!(publish.target(), "/publish?count=7&size=9");
    }

    #[test]
    fn event_data_is_padded_to_size() {
        let data = event_data(1_700_000_000_123_456_789, 64);
        assert_eq!(data.len(), 64);
        assert!(data.starts_with("1700000000123456789 xx"));
        assert_eq!(event_data(42, 0), "42 ");
        let long = event_data(7, 1000);
        assert_eq!(long.len(), 1000);
        assert!(long[2..].bytes().all(|b| b == b'x'));
    }

    #[test]
    fn events_encode_to_the_contract() {
        let mut out = Vec::new();
        encode_event(&mut out, 3, "12 xx");
        assert_eq!(out, b"id: 3\ndata: 12 xx\n\n");
    }
}
