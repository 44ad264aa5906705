//! Addresses refused at accept, on every listener, whether or not the firewall is
//! managed: timed bans (too many failed logins) and the admin's blocks and block lists
//! (the same ones the firewall's ipsets hold). Also the daily failed-login count that
//! leads to a ban.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;

/// What is refused.
#[derive(Debug, Default)]
struct Entries {
    /// Banned addresses and when each ban ends.
    bans: HashMap<IpAddr, SystemTime>,
    /// Blocked networks: the manual blocks and every block list.
    nets: Vec<IpNet>,
}

/// The deny list shared by the accept loops and the login checker.
#[derive(Debug)]
pub struct DenyList {
    entries: RwLock<Entries>,
    failures: std::sync::Mutex<HashMap<IpAddr, (SystemTime, u32)>>,
    ban_after: u32,
    ban_for: Duration,
    exempt: Vec<IpNet>,
}

/// How long failed logins are counted: a day.
const WINDOW: Duration = Duration::from_secs(86_400);

/// Most addresses whose failures are counted at once (memory stays bounded).
const MAX_COUNTED: usize = 100_000;

impl DenyList {
    /// A list that bans an address after `ban_after` failed logins within a day, for
    /// `ban_for`, never an address in `exempt` (the trusted networks). `ban_after` 0:
    /// no automatic bans.
    pub fn new(ban_after: u32, ban_for: Duration, exempt: Vec<IpNet>) -> Self {
        DenyList {
            entries: RwLock::default(),
            failures: std::sync::Mutex::default(),
            ban_after,
            ban_for,
            exempt,
        }
    }

    /// An empty list that never bans (tests, tools).
    pub fn disabled() -> Self {
        Self::new(0, Duration::ZERO, Vec::new())
    }

    /// Whether connections from `ip` are refused now.
    pub fn denies(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        if entries
            .bans
            .get(&ip)
            .is_some_and(|until| *until > SystemTime::now())
        {
            return true;
        }
        entries.nets.iter().any(|n| n.contains(&ip))
    }

    /// Counts a failed login from `ip`. Returns when the new ban ends if this failure
    /// crossed the threshold (the caller records and announces it).
    pub fn record_failure(&self, ip: IpAddr) -> Option<SystemTime> {
        self.record_failure_at(ip, SystemTime::now())
    }

    fn record_failure_at(&self, ip: IpAddr, now: SystemTime) -> Option<SystemTime> {
        let ip = ip.to_canonical();
        if self.ban_after == 0 || self.exempt.iter().any(|n| n.contains(&ip)) {
            return None;
        }
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_COUNTED {
            failures
                .retain(|_, (start, _)| now.duration_since(*start).unwrap_or_default() < WINDOW);
        }
        let (start, count) = failures.entry(ip).or_insert((now, 0));
        if now.duration_since(*start).unwrap_or_default() >= WINDOW {
            *start = now;
            *count = 0;
        }
        *count += 1;
        if *count < self.ban_after {
            return None;
        }
        failures.remove(&ip);
        drop(failures);
        let until = now + self.ban_for;
        self.ban(ip, until);
        Some(until)
    }

    /// Bans `ip` until `until` (a restart restores bans from the store this way).
    pub fn ban(&self, ip: IpAddr, until: SystemTime) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        entries.bans.insert(ip.to_canonical(), until);
        let now = SystemTime::now();
        entries.bans.retain(|_, until| *until > now);
    }

    /// Lifts a ban on `ip`; whether there was one.
    pub fn unban(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ip);
        self.entries
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .bans
            .remove(&ip)
            .is_some()
    }

    /// Replaces the blocked networks (manual blocks and block lists).
    pub fn set_blocked(&self, nets: Vec<IpNet>) {
        self.entries.write().unwrap_or_else(|e| e.into_inner()).nets = nets;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_threshold_bans_for_the_duration_and_trusted_networks_never() {
        let list = DenyList::new(
            3,
            Duration::from_secs(60),
            vec!["10.0.0.0/8".parse().unwrap_or_else(|e| panic!("{e}"))],
        );
        let now = SystemTime::now();
        assert_eq!(list.record_failure_at(ip("192.0.2.1"), now), None);
        assert_eq!(list.record_failure_at(ip("192.0.2.1"), now), None);
        assert!(!list.denies(ip("192.0.2.1")));
        let until = list.record_failure_at(ip("192.0.2.1"), now);
        assert_eq!(until, Some(now + Duration::from_secs(60)));
        assert!(list.denies(ip("192.0.2.1")));
        assert!(list.denies(ip("::ffff:192.0.2.1")));
        assert!(!list.denies(ip("192.0.2.2")));
        for _ in 0..10 {
            assert_eq!(list.record_failure_at(ip("10.1.2.3"), now), None);
        }
        assert!(!list.denies(ip("10.1.2.3")));
        assert!(list.unban(ip("192.0.2.1")));
        assert!(!list.denies(ip("192.0.2.1")));
        // An expired ban no longer denies.
        list.ban(ip("192.0.2.9"), SystemTime::now() - Duration::from_secs(1));
        assert!(!list.denies(ip("192.0.2.9")));
    }

    #[test]
    fn failures_older_than_a_day_are_forgotten() {
        let list = DenyList::new(2, Duration::from_secs(60), Vec::new());
        let then = SystemTime::now() - Duration::from_secs(2 * 86_400);
        assert_eq!(list.record_failure_at(ip("192.0.2.1"), then), None);
        assert_eq!(
            list.record_failure_at(ip("192.0.2.1"), SystemTime::now()),
            None
        );
    }

    #[test]
    fn blocked_networks_are_denied() {
        let list = DenyList::disabled();
        list.set_blocked(vec![
            "198.51.100.0/24".parse().unwrap_or_else(|e| panic!("{e}")),
            "2001:db8::/32".parse().unwrap_or_else(|e| panic!("{e}")),
        ]);
        assert!(list.denies(ip("198.51.100.77")));
        assert!(list.denies(ip("2001:db8::1")));
        assert!(!list.denies(ip("198.51.101.1")));
        assert_eq!(list.record_failure(ip("203.0.113.1")), None);
    }
}
