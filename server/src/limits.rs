//! The file-descriptor budget: each connection holds one descriptor, so the hub raises its soft
//! limit to the hard one at start-up and splits it: streams (refused with 503 past their share),
//! connections that are not streams (capped, see `listener::gate`), and a few for itself. The
//! limit is never reached, so publishers, `/healthz` and `/metrics` always get in.

/// Descriptors the hub keeps for itself: listeners, the store's files, Redis connections.
const OWN: u64 = 36;

/// Connections that are not streams, by default: a sixteenth of the limit, between these. Room
/// for a reconnect storm's requests to wait their turn on the workers, and for publishers.
const REQUEST_CONNECTIONS: std::ops::RangeInclusive<u64> = 16..=1024;

/// How the descriptors are shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Streams the hub holds at once.
    pub streams: usize,
    /// Connections that are not streams, at once.
    pub request_connections: usize,
}

/// Raises the soft descriptor limit as far as allowed and returns it.
pub fn raise_fd_limit() -> Option<u64> {
    rlimit::increase_nofile_limit(u64::MAX).ok()
}

/// The budget: what is configured, the rest from the descriptor limit.
pub fn budget(streams: Option<usize>, request_connections: Option<usize>) -> Budget {
    let limit = raise_fd_limit().unwrap_or(1024);
    split(limit, streams, request_connections)
}

fn split(limit: u64, streams: Option<usize>, request_connections: Option<usize>) -> Budget {
    let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let requests = request_connections.map_or_else(
        || as_usize((limit / 16).clamp(*REQUEST_CONNECTIONS.start(), *REQUEST_CONNECTIONS.end())),
        |n| n.max(1),
    );
    let streams = streams.unwrap_or_else(|| {
        let kept = (requests as u64).saturating_add(OWN);
        as_usize(limit.saturating_sub(kept)).max(1)
    });
    Budget { streams, request_connections: requests }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without settings, the limit is shared out and never passed; a setting is kept as given.
    #[test]
    fn the_limit_is_shared_out() {
        assert_eq!(split(20_000, None, None), Budget { streams: 18_940, request_connections: 1024 });
        assert_eq!(split(1024, None, None), Budget { streams: 924, request_connections: 64 });
        assert_eq!(split(300, None, None), Budget { streams: 246, request_connections: 18 });
        assert_eq!(split(20_000, Some(5), Some(0)), Budget { streams: 5, request_connections: 1 });
        assert_eq!(split(300, None, Some(64)), Budget { streams: 200, request_connections: 64 });
    }
}
