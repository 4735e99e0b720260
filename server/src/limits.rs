//! The file-descriptor limit: each stream holds one descriptor, so the hub raises its soft limit
//! to the hard one at start-up and refuses streams (503) before the limit is reached, keeping
//! room for publishers, `/healthz` and `/metrics`.

/// Descriptors kept back from streams for listeners, publishers, files and operations.
pub const RESERVE: u64 = 100;

/// Connections that are not streams, by default: within [`RESERVE`], leaving the rest for the
/// listener, the store's files and Redis connections.
pub const REQUEST_CONNECTIONS: usize = 64;

/// Raises the soft descriptor limit as far as allowed and returns it.
pub fn raise_fd_limit() -> Option<u64> {
    rlimit::increase_nofile_limit(u64::MAX).ok()
}

/// The stream ceiling: the configured one, or what the descriptor limit allows less the reserve.
pub fn max_connections(configured: Option<usize>) -> usize {
    configured.unwrap_or_else(|| {
        let limit = raise_fd_limit().unwrap_or(1024);
        usize::try_from(limit.saturating_sub(RESERVE)).unwrap_or(usize::MAX).max(1)
    })
}
