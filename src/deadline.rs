//! Socket writes bounded by one deadline per `write_all`, rather than a timeout per system call.
//!
//! A socket's send timeout (`SO_SNDTIMEO`) starts afresh at every system call. A reader that takes a
//! few bytes now and then lets each call make a little progress before its timeout, so a plain
//! `write_all` under a 30 s send timeout can last many times that. [`DeadlineWriter`] fixes one
//! deadline for the whole `write_all`, sets the socket's timeout to the time left before every system
//! call, hands the kernel at most [`MAX_WRITE`] bytes per call, and fails with
//! [`io::ErrorKind::TimedOut`] once the deadline has passed.
//!
//! It changes the socket's write timeout as it goes and leaves it at whatever it set last: whoever
//! writes to the socket next without it sets their own.

use std::io::{self, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The most bytes handed to the kernel in one system call.
pub(crate) const MAX_WRITE: usize = 64 * 1024;

/// A writer over a borrowed socket whose every `write_all` (and every single `write`) ends within
/// `timeout` of its start.
#[derive(Debug)]
pub(crate) struct DeadlineWriter<'a> {
    stream: &'a TcpStream,
    timeout: Duration,
}

impl<'a> DeadlineWriter<'a> {
    /// A writer to `stream` that gives each `write_all` `timeout` in all.
    pub(crate) fn new(stream: &'a TcpStream, timeout: Duration) -> DeadlineWriter<'a> {
        DeadlineWriter { stream, timeout }
    }

    /// One system call of at most [`MAX_WRITE`] bytes, with the socket's timeout set to the time left.
    fn write_before(&self, bytes: &[u8], deadline: Instant) -> io::Result<usize> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.stream.set_write_timeout(Some(left))?;
            let mut stream = self.stream;
            match stream.write(&bytes[..bytes.len().min(MAX_WRITE)]) {
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                // Platforms differ in which of these a send timeout gives.
                Err(err) if matches!(err.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                result => return result,
            }
        }
    }
}

impl Write for DeadlineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.write_before(bytes, Instant::now() + self.timeout)
    }

    fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        let deadline = Instant::now() + self.timeout;
        while !bytes.is_empty() {
            match self.write_before(bytes, deadline)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                written => bytes = &bytes[written..],
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        // A TcpStream buffers nothing of its own.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::thread;

    use super::*;

    /// A connected pair with small socket buffers, so that a writer soon waits on its reader.
    fn small_buffered_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // Set on the listener, so the accepted socket advertises a small window from the start.
        socket2::SockRef::from(&listener).set_recv_buffer_size(4096).unwrap();
        let writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        socket2::SockRef::from(&writer).set_send_buffer_size(4096).unwrap();
        let (reader, _) = listener.accept().unwrap();
        reader.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        (writer, reader)
    }

    #[test]
    fn a_trickling_reader_is_cut_off_at_the_deadline() {
        let (writer, mut reader) = small_buffered_pair();
        let reads = Arc::new(AtomicUsize::new(0));
        let writing = Arc::new(AtomicBool::new(true));
        let trickle = {
            let (reads, writing) = (Arc::clone(&reads), Arc::clone(&writing));
            // 256 bytes every 5 ms: every system call of the writer's gets a little room well within
            // its timeout, so a timeout per call never fires. At most 3000 reads (about 15 s).
            thread::spawn(move || {
                let mut chunk = [0u8; 256];
                while writing.load(Ordering::SeqCst) && reads.load(Ordering::SeqCst) < 3000 {
                    match reader.read(&mut chunk) {
                        Ok(1..) => reads.fetch_add(1, Ordering::SeqCst),
                        _ => break,
                    };
                    thread::sleep(Duration::from_millis(5));
                }
            })
        };
        let timeout = Duration::from_millis(300);
        let result = DeadlineWriter::new(&writer, timeout).write_all(&vec![b'x'; 16 << 20]);
        let reads_while_writing = reads.load(Ordering::SeqCst);
        writing.store(false, Ordering::SeqCst);
        trickle.join().unwrap();
        assert_eq!(result.map_err(|err| err.kind()), Err(io::ErrorKind::TimedOut));
        // About 60 reads fit in 300 ms; a timeout per system call would have lasted all 3000.
        assert!(reads_while_writing < 1000, "the write lasted {reads_while_writing} trickled reads");
    }

    #[test]
    fn a_reader_that_stops_reading_times_out() {
        let (writer, _reader) = small_buffered_pair();
        let result = DeadlineWriter::new(&writer, Duration::from_millis(100)).write_all(&vec![0; 16 << 20]);
        assert_eq!(result.map_err(|err| err.kind()), Err(io::ErrorKind::TimedOut));
    }

    #[test]
    fn a_reader_that_keeps_up_gets_every_byte_and_each_call_is_bounded() {
        let (writer, mut reader) = small_buffered_pair();
        let sent: Vec<u8> = (0..1_000_003u32).map(|i| (i % 251) as u8).collect();
        let receiving = thread::spawn(move || {
            let mut received = Vec::new();
            reader.read_to_end(&mut received).map(|_| received)
        });
        let mut out = DeadlineWriter::new(&writer, Duration::from_secs(10));
        let first = out.write(&sent).unwrap();
        assert!((1..=MAX_WRITE).contains(&first), "one call took {first} bytes");
        out.write_all(&sent[first..]).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(receiving.join().unwrap().unwrap() == sent, "the bytes arrive whole and in order");
    }
}
