//! Fan-out benchmark for `sse-handler`: the server contract, the three servers' shared pieces, an
//! epoll load generator, the cases, and the report and chart of a run. See `README.md` beside this
//! crate for the command and how to read its output.

pub mod args;
pub mod cases;
pub mod chart;
pub mod contract;
pub mod loadgen;
pub mod measure;
pub mod report;
pub mod servers;
pub mod stats;
pub mod system;
