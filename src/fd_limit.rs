//! The open-file limit, which caps connections before `max_connections` does: each connection holds
//! a file descriptor, and the usual soft limit is 1024.

use crate::error::Result;

/// Raises this process's soft limit on open files (`RLIMIT_NOFILE`) as far as its hard limit allows,
/// and returns the new soft limit (`None` on platforms without such a limit).
///
/// Every connection holds a file descriptor, and the usual soft limit, 1024, is far below
/// [`ServerConfig::max_connections`](crate::ServerConfig::max_connections)' default of 10 000; the
/// hard limit is usually much higher. A server started under a limit that cannot hold
/// `max_connections` serves fewer, and logs a warning that says how many. The limit is the whole
/// process's, so the library never changes it by itself: call this once at start.
///
/// ```no_run
/// if let Some(limit) = sse_handler::raise_fd_limit()? {
///     println!("up to {limit} open files");
/// }
/// # Ok::<(), sse_handler::Error>(())
/// ```
///
/// # Errors
/// [`Error::Io`](crate::Error::Io) if the limit cannot be read or set.
pub fn raise_fd_limit() -> Result<Option<u64>> {
    #[cfg(unix)]
    return Ok(Some(rlimit::increase_nofile_limit(u64::MAX)?));
    #[cfg(not(unix))]
    return Ok(None);
}

/// The soft limit on open files, if there is one and it can be read.
pub(crate) fn open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    return rlimit::getrlimit(rlimit::Resource::NOFILE).ok().map(|(soft, _hard)| soft);
    #[cfg(not(unix))]
    return None;
}

/// How many connections `open_files` file descriptors can serve, leaving a quarter of them, up to 256,
/// for the connections being turned away (up to 192 at once: the busy room and the queue to it), the
/// listener, and the application's own files.
pub(crate) fn connections_within(open_files: u64) -> usize {
    let reserved = (open_files / 4).min(256);
    usize::try_from(open_files - reserved).unwrap_or(usize::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_room_under_the_open_file_limit() {
        assert_eq!(connections_within(1024), 768);
        assert_eq!(connections_within(1 << 20), (1 << 20) - 256);
        assert_eq!(connections_within(64), 48);
        assert_eq!(connections_within(1), 1, "never none");
    }
}
