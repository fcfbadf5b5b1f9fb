//! Failed credential attempts, per client address: a client that fails too often is refused
//! for a while (429 with `Retry-After`) without its credentials being checked at all.
//!
//! Guessing an admin token, a password or an API key then costs the guesser minutes per
//! handful of tries. The table is bounded: past its size, the entries whose window has ended
//! are dropped first, then the oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long failures are counted, and how long a client is then refused.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Clients remembered at most.
const MAX_CLIENTS: usize = 10_000;

#[derive(Clone, Copy, Debug)]
struct Entry {
    failures: u32,
    since: Instant,
    refused_until: Option<Instant>,
}

/// The failed attempts of recent clients.
pub struct Lockout {
    clients: Mutex<HashMap<IpAddr, Entry>>,
    /// Failures allowed per client within [`WINDOW`] before it is refused (0: never).
    max_failures: u32,
}

impl Lockout {
    pub fn new(max_failures: u32) -> Self {
        Self { clients: Mutex::default(), max_failures }
    }

    /// `Some(seconds to wait)` while `client` is refused.
    pub fn refused(&self, client: Option<IpAddr>, now: Instant) -> Option<u64> {
        let client = client?;
        let clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        let until = clients.get(&client)?.refused_until?;
        (until > now).then(|| until.duration_since(now).as_secs().max(1))
    }

    /// Counts a failed attempt of `client`; returns whether it is refused from now on.
    pub fn failed(&self, client: Option<IpAddr>, now: Instant) -> bool {
        let Some(client) = client.filter(|_| self.max_failures > 0) else { return false };
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            clients.retain(|_, e| now.duration_since(e.since) < WINDOW || e.refused_until.is_some_and(|u| u > now));
            if clients.len() >= MAX_CLIENTS
                && let Some(oldest) = clients.iter().min_by_key(|(_, e)| e.since).map(|(ip, _)| *ip)
            {
                clients.remove(&oldest);
            }
        }
        let entry = clients.entry(client).or_insert(Entry { failures: 0, since: now, refused_until: None });
        if now.duration_since(entry.since) >= WINDOW {
            *entry = Entry { failures: 0, since: now, refused_until: None };
        }
        entry.failures += 1;
        if entry.failures >= self.max_failures {
            entry.refused_until = Some(now + WINDOW);
            return true;
        }
        false
    }

    /// A client that got in forgets its failures.
    pub fn succeeded(&self, client: Option<IpAddr>) {
        if let Some(client) = client {
            self.clients.lock().unwrap_or_else(|e| e.into_inner()).remove(&client);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX_FAILURES: u32 = 10;

    #[test]
    fn zero_turns_the_lockout_off() {
        let lockout = Lockout::new(0);
        let a: IpAddr = "10.0.0.2".parse().unwrap();
        let now = Instant::now();
        assert!((0..100).all(|_| !lockout.failed(Some(a), now)));
        assert_eq!(lockout.refused(Some(a), now), None);
    }

    #[test]
    fn a_client_is_refused_after_too_many_failures_and_others_are_not() {
        let lockout = Lockout::new(MAX_FAILURES);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.2".parse().unwrap(), "127.0.0.1".parse().unwrap());
        let now = Instant::now();
        for _ in 1..MAX_FAILURES {
            assert!(!lockout.failed(Some(a), now));
        }
        assert_eq!(lockout.refused(Some(a), now), None);
        assert!(lockout.failed(Some(a), now));
        assert_eq!(lockout.refused(Some(a), now), Some(60));
        assert_eq!(lockout.refused(Some(b), now), None, "another client is not affected");
        assert_eq!(lockout.refused(Some(a), now + WINDOW), None, "refused for one window");
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let lockout = Lockout::new(MAX_FAILURES);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let start = Instant::now();
        for _ in 1..MAX_FAILURES {
            lockout.failed(Some(a), start);
        }
        assert!(!lockout.failed(Some(a), start + WINDOW), "a new window starts counting afresh");
    }
}
