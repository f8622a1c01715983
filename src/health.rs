//! [`Health`]: whether an instance can publish now, for health checks and load balancers.

/// Whether events can be published now: what [`SseHandler::health`](crate::SseHandler::health)
/// and [`EventLog::health`](crate::EventLog::health) answer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Health {
    /// Publishing works.
    Ready,
    /// Publishing does not work now, with a short reason for operators (`"shutting down"`, or
    /// what a log kept elsewhere says when it cannot be reached).
    Unavailable(String),
}

impl Health {
    /// Whether this is [`Health::Ready`].
    pub fn is_ready(&self) -> bool {
        matches!(self, Health::Ready)
    }
}

impl std::fmt::Display for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Health::Ready => f.write_str("ok"),
            Health::Unavailable(reason) => f.write_str(reason),
        }
    }
}
