//! The memory floor of a thread per connection: the resident memory of a bare `std` thread that
//! allocates once and parks, with the same stack size as the library's connection threads. No
//! server can hold an idle connection on its own thread for less than this.
//!
//! `cargo run --release -p sse-bench --bin sse-bench-thread-floor -- [THREADS]` (default 5000).

use std::sync::{Arc, Barrier};

fn main() {
    let threads: u64 = std::env::args().nth(1).and_then(|arg| arg.parse().ok()).unwrap_or(5000);
    let before = sse_bench::system::rss_kib(std::process::id()).expect("read own RSS");
    let count = usize::try_from(threads).expect("thread count");
    let ready = Arc::new(Barrier::new(count + 1));
    let handles: Vec<_> = (0..threads)
        .map(|n| {
            let ready = Arc::clone(&ready);
            std::thread::Builder::new()
                .name(format!("floor-{n}"))
                .stack_size(256 * 1024)
                .spawn(move || {
                    // One small allocation, as any connection thread makes (it sets up the
                    // thread's malloc cache), then sleep until told to finish.
                    drop(std::hint::black_box(vec![0u8; 32]));
                    ready.wait();
                    std::thread::park();
                })
                .expect("spawn")
        })
        .collect();
    ready.wait();
    let after = sse_bench::system::rss_kib(std::process::id()).expect("read own RSS");
    println!(
        "{threads} parked threads (256 KiB stacks): {:.1} KiB RSS per thread",
        after.saturating_sub(before) as f64 / threads as f64
    );
    for handle in handles {
        handle.thread().unpark();
        handle.join().expect("join");
    }
}
