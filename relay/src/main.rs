//! `sse-relay`: turns standard input lines and HTTP POSTs into a Server-Sent Events stream, with a
//! live page. See `sse-relay --help`.

mod cli;
mod input;
mod monitoring;
mod origin;
mod page;
mod relay;
#[cfg(feature = "redis")]
mod shared_log;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    init_logging(args.log_level);
    match relay::run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log::error!("{err}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to standard error, at `level`, unless `RUST_LOG` says otherwise.
fn init_logging(level: log::LevelFilter) {
    let mut logger = env_logger::Builder::new();
    logger.filter_level(level).target(env_logger::Target::Stderr);
    if let Ok(filters) = std::env::var("RUST_LOG") {
        logger.parse_filters(&filters);
    }
    logger.init();
}
