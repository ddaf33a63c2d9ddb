//! Login throttling. After [`FREE_FAILURES`] wrong passwords for one username, or
//! [`FREE_FAILURES_PER_ADDRESS`] from one client address, further attempts are refused for a
//! delay that doubles with each failure (30 s, 1 min, 2 min ... capped at 15 min). A success
//! clears the username's count.
//!
//! Counts live in memory: a restart forgives everyone, which is acceptable for a household
//! server and avoids a database write per failed attempt. The address limit is higher because a
//! family shares one address behind its router.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const FREE_FAILURES: u32 = 5;
pub const FREE_FAILURES_PER_ADDRESS: u32 = 20;
const FIRST_DELAY: Duration = Duration::from_secs(30);
const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// Failures older than this are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Bound on tracked keys, so a flood of made-up usernames cannot exhaust memory.
const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct LoginThrottle {
    by_username: Mutex<HashMap<String, Failures>>,
    by_address: Mutex<HashMap<IpAddr, Failures>>,
}

impl LoginThrottle {
    /// `Err(wait)` when this attempt must be refused without checking the password.
    pub fn check(&self, username: &str, address: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let user_wait = remaining(
            self.by_username
                .lock()
                .expect("throttle lock")
                .get(&normalize(username)),
            now,
        );
        let address_wait = remaining(
            self.by_address.lock().expect("throttle lock").get(&address),
            now,
        );
        match user_wait.max(address_wait) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    pub fn record_failure(&self, username: &str, address: IpAddr) {
        let now = Instant::now();
        bump(
            &mut self.by_username.lock().expect("throttle lock"),
            normalize(username),
            FREE_FAILURES,
            now,
        );
        bump(
            &mut self.by_address.lock().expect("throttle lock"),
            address,
            FREE_FAILURES_PER_ADDRESS,
            now,
        );
    }

    pub fn record_success(&self, username: &str) {
        self.by_username
            .lock()
            .expect("throttle lock")
            .remove(&normalize(username));
    }
}

fn normalize(username: &str) -> String {
    username.trim().to_lowercase()
}

fn remaining(entry: Option<&Failures>, now: Instant) -> Option<Duration> {
    let until = entry?.locked_until?;
    (until > now).then(|| until - now)
}

fn bump<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Failures>, key: K, free: u32, now: Instant) {
    if map.len() >= MAX_TRACKED {
        map.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
    }
    let entry = map.entry(key).or_insert(Failures {
        count: 0,
        last: now,
        locked_until: None,
    });
    if now.duration_since(entry.last) >= FORGET_AFTER {
        entry.count = 0;
    }
    entry.count += 1;
    entry.last = now;
    if entry.count >= free {
        let doublings = (entry.count - free).min(10);
        let delay = (FIRST_DELAY * 2u32.pow(doublings)).min(MAX_DELAY);
        entry.locked_until = Some(now + delay);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));

    #[test]
    fn five_failures_lock_the_username_with_a_growing_delay() {
        let throttle = LoginThrottle::default();
        for _ in 0..FREE_FAILURES - 1 {
            throttle.record_failure("Anna", HOME);
            assert!(throttle.check("anna", HOME).is_ok());
        }
        throttle.record_failure("anna", HOME);
        let first = throttle.check("ANNA", HOME).unwrap_err();
        assert!(first > Duration::from_secs(25) && first <= FIRST_DELAY);
        throttle.record_failure("anna", HOME);
        let second = throttle.check("anna", HOME).unwrap_err();
        assert!(second > first, "{second:?} should exceed {first:?}");
        // Another member at the same address is unaffected.
        assert!(throttle.check("ben", HOME).is_ok());
    }

    #[test]
    fn one_address_trying_many_usernames_is_locked() {
        let throttle = LoginThrottle::default();
        for i in 0..FREE_FAILURES_PER_ADDRESS {
            throttle.record_failure(&format!("guess{i}"), HOME);
        }
        assert!(throttle.check("anyone", HOME).is_err());
        let elsewhere: IpAddr = "198.51.100.7".parse().unwrap();
        assert!(throttle.check("anyone", elsewhere).is_ok());
    }

    #[test]
    fn success_clears_the_username() {
        let throttle = LoginThrottle::default();
        for _ in 0..FREE_FAILURES - 1 {
            throttle.record_failure("anna", HOME);
        }
        throttle.record_success("anna");
        throttle.record_failure("anna", HOME);
        assert!(throttle.check("anna", HOME).is_ok());
    }
}
