//! The cases a run measures, and how they are written on the command line.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What a case measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaseKind {
    /// N clients, one publish of M events: delivered events/s and backlog latency.
    Burst,
    /// N clients, M single-event publishes one every I ms: fan-out latency and server CPU.
    Light,
    /// N clients, no events: memory per connection.
    Idle,
}

impl CaseKind {
    /// Every kind, in the order a run takes them.
    pub const ALL: [CaseKind; 3] = [CaseKind::Burst, CaseKind::Light, CaseKind::Idle];

    /// The kind's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            CaseKind::Burst => "burst",
            CaseKind::Light => "light",
            CaseKind::Idle => "idle",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<CaseKind> {
        CaseKind::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

/// One case: its kind, N clients, M events and (light load) the interval between publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Case {
    /// What it measures.
    pub kind: CaseKind,
    /// N: clients held.
    pub clients: usize,
    /// M: events published (0 for idle).
    pub events: usize,
    /// I: milliseconds between single-event publishes (light load only, else 0).
    pub interval_ms: u64,
}

impl Case {
    /// N clients, one publish of M events.
    pub fn burst(clients: usize, events: usize) -> Case {
        Case { kind: CaseKind::Burst, clients, events, interval_ms: 0 }
    }

    /// N clients, M single-event publishes one every `interval_ms`.
    pub fn light(clients: usize, events: usize, interval_ms: u64) -> Case {
        Case { kind: CaseKind::Light, clients, events, interval_ms }
    }

    /// N idle clients.
    pub fn idle(clients: usize) -> Case {
        Case { kind: CaseKind::Idle, clients, events: 0, interval_ms: 0 }
    }

    /// The event count of each publish the case makes, in order.
    pub fn plan(&self) -> Vec<u32> {
        let events = u32::try_from(self.events).unwrap_or(u32::MAX);
        match self.kind {
            CaseKind::Burst => vec![events],
            CaseKind::Light => vec![1; self.events],
            CaseKind::Idle => Vec::new(),
        }
    }

    /// Events every client should receive.
    pub fn events_per_client(&self) -> u64 {
        self.plan().iter().map(|&count| u64::from(count)).sum()
    }

    /// Parses a comma-separated list of `N:M` (burst), `N:M:I` (light) or `N` (idle).
    ///
    /// # Errors
    /// A message naming the item that is not of that form.
    pub fn parse_list(kind: CaseKind, list: &str) -> Result<Vec<Case>, String> {
        list.split(',').filter(|item| !item.is_empty()).map(|item| Case::parse(kind, item)).collect()
    }

    fn parse(kind: CaseKind, item: &str) -> Result<Case, String> {
        let numbers: Result<Vec<u64>, _> = item.split(':').map(str::parse::<u64>).collect();
        let to_usize = |n: u64| usize::try_from(n).map_err(|_| format!("{item:?}: number too large"));
        let case = match (kind, numbers.as_deref()) {
            (CaseKind::Burst, Ok(&[n, m])) => Case::burst(to_usize(n)?, to_usize(m)?),
            (CaseKind::Light, Ok(&[n, m, i])) => Case::light(to_usize(n)?, to_usize(m)?, i),
            (CaseKind::Idle, Ok(&[n])) => Case::idle(to_usize(n)?),
            _ => {
                let form = match kind {
                    CaseKind::Burst => "N:M",
                    CaseKind::Light => "N:M:I",
                    CaseKind::Idle => "N",
                };
                return Err(format!("{} case {item:?} is not of the form {form}", kind.name()));
            }
        };
        if case.clients == 0 || (kind != CaseKind::Idle && case.events == 0) {
            return Err(format!("{} case {item:?} needs at least one client and one event", kind.name()));
        }
        Ok(case)
    }

    /// The column heading of the case in reports (`N=10 M=10000`).
    pub fn heading(&self) -> String {
        match self.kind {
            CaseKind::Burst => format!("N={} M={}", self.clients, self.events),
            CaseKind::Light => {
                format!("N={}, {} x 1 every {} ms", self.clients, self.events, self.interval_ms)
            }
            CaseKind::Idle => format!("N={}", self.clients),
        }
    }
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.name(), self.heading())
    }
}

/// The full default run: bursts of about 100k-200k deliveries, light load with one event at a time
/// (N up to 10,000 for both),
/// and 10,000 idle connections.
pub fn default_cases() -> Vec<Case> {
    vec![
        Case::burst(10, 10_000),
        Case::burst(100, 2_000),
        Case::burst(1_000, 200),
        Case::burst(5_000, 20),
        Case::burst(10_000, 10),
        Case::light(10, 200, 5),
        Case::light(100, 200, 5),
        Case::light(1_000, 50, 50),
        Case::light(5_000, 20, 200),
        Case::light(10_000, 10, 400),
        Case::idle(10_000),
    ]
}

/// A short run (under a minute) at N = 10 and 100, for trying a change.
pub fn quick_cases() -> Vec<Case> {
    vec![
        Case::burst(10, 5_000),
        Case::burst(100, 1_000),
        Case::light(10, 50, 5),
        Case::light(100, 50, 5),
        Case::idle(1_000),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_lists_are_parsed_per_kind() {
        assert_eq!(
            Case::parse_list(CaseKind::Burst, "10:100,2:5"),
            Ok(vec![Case::burst(10, 100), Case::burst(2, 5)])
        );
        assert_eq!(Case::parse_list(CaseKind::Light, "3:4:5"), Ok(vec![Case::light(3, 4, 5)]));
        assert_eq!(Case::parse_list(CaseKind::Idle, "7"), Ok(vec![Case::idle(7)]));
        assert!(Case::parse_list(CaseKind::Burst, "10").is_err());
        assert!(Case::parse_list(CaseKind::Light, "10:1").is_err());
        assert!(Case::parse_list(CaseKind::Burst, "0:5").is_err());
        assert!(Case::parse_list(CaseKind::Idle, "x").is_err());
    }

    #[test]
    fn plans_say_what_each_client_expects() {
        assert_eq!(Case::burst(2, 5).plan(), vec![5]);
        assert_eq!(Case::light(2, 3, 5).plan(), vec![1, 1, 1]);
        assert_eq!(Case::idle(2).events_per_client(), 0);
        assert_eq!(Case::light(2, 3, 5).events_per_client(), 3);
    }

    #[test]
    fn names_round_trip() {
        for kind in CaseKind::ALL {
            assert_eq!(CaseKind::parse(kind.name()), Some(kind));
        }
        assert_eq!(Case::burst(10, 20).to_string(), "burst N=10 M=20");
    }
}
