//! Rate limits: token buckets for the API (per client address and per account) and exponential
//! back-off for failed logins (per address and per username).
//!
//! Both live in the process: several server processes behind one balancer each keep their own,
//! so a client gets at most that many times the limit.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The limits, validated once at start.
#[derive(Debug, Clone, PartialEq)]
pub struct LimitConfig {
    /// Sustained API requests per second, per client address and per account.
    pub api_per_sec: f64,
    /// Requests a client may make at once above the sustained rate.
    pub api_burst: f64,
    /// Login attempts per minute per client address, successful or not.
    pub login_per_min: f64,
    /// Failed logins (per username, per address) before back-off starts.
    pub login_free_failures: u32,
    /// The longest back-off after failed logins.
    pub login_max_backoff: Duration,
}

impl Default for LimitConfig {
    fn default() -> Self {
        LimitConfig {
            api_per_sec: 50.0,
            api_burst: 100.0,
            login_per_min: 20.0,
            login_free_failures: 5,
            login_max_backoff: Duration::from_secs(15 * 60),
        }
    }
}

/// Keys kept at most; past it, full buckets (clients at rest) are forgotten.
const MAX_KEYS: usize = 100_000;

/// Token buckets by key.
#[derive(Debug)]
pub struct Buckets {
    rate: f64,
    burst: f64,
    map: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Buckets {
    /// `rate` tokens a second, `burst` at most.
    pub fn new(rate: f64, burst: f64) -> Self {
        Buckets {
            rate,
            burst: burst.max(1.0),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token of `key` at `now`, or says how many whole seconds until one is there.
    pub fn take(&self, key: &str, now: Instant) -> Result<(), u64> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = map.entry(key.to_owned()).or_insert((self.burst, now));
        let refilled = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.rate)
            .min(self.burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err(((1.0 - refilled) / self.rate).ceil().max(1.0) as u64)
        }
    }
}

/// Exponential back-off after failures, by key.
#[derive(Debug)]
pub struct Backoff {
    free: u32,
    max: Duration,
    map: Mutex<HashMap<String, (u32, Option<Instant>)>>,
}

impl Backoff {
    pub fn new(free: u32, max: Duration) -> Self {
        Backoff {
            free,
            max,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` may try at `now`; else the whole seconds to wait.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), u64> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some((_, Some(until))) if *until > now => {
                Err((*until - now).as_secs_f64().ceil().max(1.0) as u64)
            }
            _ => Ok(()),
        }
    }

    /// A failure of `key` at `now`: past the free ones, each doubles the wait (1 s, 2 s, 4 s,
    /// … up to the maximum).
    pub fn failed(&self, key: &str, now: Instant) {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            map.retain(|_, (_, until)| until.is_some_and(|u| u > now));
        }
        let (count, until) = map.entry(key.to_owned()).or_insert((0, None));
        *count = count.saturating_add(1);
        if *count >= self.free {
            let exp = (*count - self.free).min(30);
            let wait = Duration::from_secs(1u64 << exp).min(self.max);
            *until = Some(now + wait);
        }
    }

    /// A success of `key`: its failures are forgotten.
    pub fn succeeded(&self, key: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let b = Buckets::new(2.0, 3.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(b.take("ip", t0), Ok(()));
        }
        assert_eq!(b.take("ip", t0), Err(1));
        // Another key has its own bucket.
        assert_eq!(b.take("other", t0), Ok(()));
        // Half a second later one token (2/s) is back, and only one.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(b.take("ip", t1), Ok(()));
        assert!(b.take("ip", t1).is_err());
        // Long after, the bucket is full again but no fuller than the burst.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(b.take("ip", t2), Ok(()));
        }
        assert!(b.take("ip", t2).is_err());
    }

    #[test]
    fn back_off_doubles_past_the_free_failures_and_a_success_clears_it() {
        let b = Backoff::new(3, Duration::from_secs(5));
        let t0 = Instant::now();
        b.failed("ann", t0);
        b.failed("ann", t0);
        assert_eq!(b.check("ann", t0), Ok(()));
        b.failed("ann", t0); // third: 1 s
        assert_eq!(b.check("ann", t0), Err(1));
        assert_eq!(b.check("ann", t0 + Duration::from_secs(1)), Ok(()));
        b.failed("ann", t0); // 2 s
        assert_eq!(b.check("ann", t0), Err(2));
        b.failed("ann", t0); // 4 s
        b.failed("ann", t0); // 8 s, capped at 5
        assert_eq!(b.check("ann", t0), Err(5));
        assert_eq!(b.check("bob", t0), Ok(()));
        b.succeeded("ann");
        assert_eq!(b.check("ann", t0), Ok(()));
    }
}
