//! What the benchmark asks of the operating system: the open-file limit, and process and machine
//! readings from `/proc` (RSS, CPU time, kernel stacks).

use std::fs;
use std::io;

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (children inherit it) and returns
/// the soft limit now in force.
///
/// # Errors
/// When the limit cannot be read or set.
pub fn raise_open_file_limit() -> io::Result<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid, writable rlimit for the duration of the call.
    #[allow(unsafe_code)]
    let got = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if got != 0 {
        return Err(io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: `raised` is a valid rlimit; the call only reads it.
        #[allow(unsafe_code)]
        let set = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
        if set != 0 {
            return Err(io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

/// Clock ticks per second, the unit of the CPU times in `/proc/<pid>/stat` and `/proc/stat`.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// Resident set size of a process, in KiB (`VmRSS` of `/proc/<pid>/status`).
///
/// # Errors
/// When the process is gone or the field is missing.
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    kib_field(&status, "VmRSS:")
}

/// Memory the kernel uses for thread stacks machine-wide, in KiB (`KernelStack` of `/proc/meminfo`):
/// each thread of a thread-per-connection server pins one, and RSS does not show it.
///
/// # Errors
/// When `/proc/meminfo` cannot be read.
pub fn kernel_stack_kib() -> io::Result<u64> {
    kib_field(&fs::read_to_string("/proc/meminfo")?, "KernelStack:")
}

fn kib_field(text: &str, name: &str) -> io::Result<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("no {name} field")))
}

/// CPU time (user + system) a process has used, all its threads together, dead ones included, in
/// clock ticks.
///
/// # Errors
/// When the process is gone or its stat line cannot be read.
pub fn process_cpu_ticks(pid: u32) -> io::Result<u64> {
    parse_stat_cpu(&fs::read_to_string(format!("/proc/{pid}/stat"))?)
}

/// CPU time (user + system) of this process so far, in clock ticks.
///
/// # Errors
/// As [`process_cpu_ticks`].
pub fn own_cpu_ticks() -> io::Result<u64> {
    parse_stat_cpu(&fs::read_to_string("/proc/self/stat")?)
}

/// utime + stime from a `/proc/<pid>/stat` line. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from its closing parenthesis.
fn parse_stat_cpu(stat: &str) -> io::Result<u64> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "unreadable stat line");
    let after_name = &stat[stat.rfind(')').ok_or_else(bad)? + 1..];
    // After the name: state is field 3, utime field 14, stime field 15.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok()).ok_or_else(bad);
    Ok(field(14)? + field(15)?)
}

/// The kernel's id of the calling thread (from the `/proc/thread-self` link), if it can be read.
pub fn current_thread_id() -> Option<u32> {
    let link = fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Time a thread of this process has spent on a CPU, in ns (first field of its `schedstat`).
///
/// # Errors
/// When the thread is gone or the file cannot be read.
pub fn thread_cpu_ns(thread_id: u32) -> io::Result<u64> {
    let text = fs::read_to_string(format!("/proc/self/task/{thread_id}/schedstat"))?;
    text.split_whitespace()
        .next()
        .and_then(|ns| ns.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable schedstat"))
}

/// Busy and total CPU time of the whole machine, in clock ticks (the `cpu` line of `/proc/stat`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MachineCpu {
    /// Ticks spent on anything but idle and I/O wait.
    pub busy: u64,
    /// All ticks, idle included.
    pub total: u64,
}

impl MachineCpu {
    /// Reads the machine's CPU counters now.
    ///
    /// # Errors
    /// When `/proc/stat` cannot be read or has no `cpu` line.
    pub fn now() -> io::Result<MachineCpu> {
        MachineCpu::parse(&fs::read_to_string("/proc/stat")?)
    }

    fn parse(text: &str) -> io::Result<MachineCpu> {
        let line = text
            .lines()
            .find(|line| line.starts_with("cpu "))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no cpu line in /proc/stat"))?;
        // user nice system idle iowait irq softirq steal (guest time is already in user).
        let values: Vec<u64> =
            line.split_whitespace().skip(1).take(8).filter_map(|v| v.parse().ok()).collect();
        let total: u64 = values.iter().sum();
        let idle = values.get(3).copied().unwrap_or(0) + values.get(4).copied().unwrap_or(0);
        Ok(MachineCpu { busy: total - idle, total })
    }
}

/// Open file descriptors a side needs to hold `clients` connections: one each, plus room for the
/// listener, epoll instances, pipes and the publish connection.
pub fn files_needed(clients: usize) -> u64 {
    clients as u64 + 64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_cpu_is_read_after_the_command_name() {
        let line = "1234 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 250 70 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_stat_cpu(line).unwrap(), 320);
        assert!(parse_stat_cpu("garbage").is_err());
    }

    #[test]
    fn memory_fields_are_read_in_kib() {
        assert_eq!(kib_field("Name:\tx\nVmRSS:\t  2048 kB\n", "VmRSS:").unwrap(), 2048);
        assert!(kib_field("Name:\tx\n", "VmRSS:").is_err());
    }

    #[test]
    fn machine_cpu_counts_idle_and_iowait_as_not_busy() {
        let cpu = MachineCpu::parse("cpu  10 1 5 100 4 1 1 2 0 0\ncpu0 5 0 2 50 2 0 0 1 0 0\n").unwrap();
        assert_eq!(cpu, MachineCpu { busy: 20, total: 124 });
    }

    #[test]
    fn this_process_can_be_measured() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        own_cpu_ticks().unwrap();
        let thread = current_thread_id().unwrap();
        thread_cpu_ns(thread).unwrap();
        assert!(clock_ticks_per_second() > 0);
        assert!(raise_open_file_limit().unwrap() >= 64);
    }
}
