//! Per-key token buckets: the per-client-IP connection rate and failed-login limits.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A bucket of `capacity` tokens refilled at `per_second` tokens a second, one per key.
///
/// Memory stays bounded: once the map holds more than `max_keys` entries, buckets that
/// have refilled completely (and so carry no state) are dropped.
#[derive(Debug)]
pub struct KeyedBuckets<K> {
    capacity: f64,
    per_second: f64,
    max_keys: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl<K: Hash + Eq + Clone> KeyedBuckets<K> {
    /// Buckets holding `capacity` tokens, refilled at `per_second` a second.
    pub fn new(capacity: u32, per_second: u32) -> Self {
        KeyedBuckets {
            capacity: f64::from(capacity.max(1)),
            per_second: f64::from(per_second),
            max_keys: 100_000,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Buckets holding `capacity` tokens, refilled evenly over `period` (e.g. 500 an
    /// hour).
    pub fn per_period(capacity: u32, period: Duration) -> Self {
        let mut buckets = Self::new(capacity, 0);
        buckets.per_second = f64::from(capacity.max(1)) / period.as_secs_f64().max(1.0);
        buckets
    }

    /// Takes one token for `key`. `Err` carries how long until a token is available.
    pub fn acquire(&self, key: &K) -> Result<(), Duration> {
        self.acquire_at(key, Instant::now())
    }

    /// Whether `key` has a token, without taking it.
    pub fn has_token(&self, key: &K) -> bool {
        let now = Instant::now();
        let mut map = self.lock();
        match map.get_mut(key) {
            Some(bucket) => {
                self.refill(bucket, now);
                bucket.tokens >= 1.0
            }
            None => true,
        }
    }

    fn acquire_at(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut map = self.lock();
        if map.len() >= self.max_keys {
            let full = self.capacity;
            let rate = self.per_second;
            map.retain(|_, b| {
                let elapsed = now.saturating_duration_since(b.updated).as_secs_f64();
                b.tokens + elapsed * rate < full
            });
        }
        let bucket = map.entry(key.clone()).or_insert(Bucket {
            tokens: self.capacity,
            updated: now,
        });
        self.refill(bucket, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else if self.per_second > 0.0 {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / self.per_second,
            ))
        } else {
            Err(Duration::MAX)
        }
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.capacity);
        bucket.updated = now;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Bucket>> {
        // A panic while holding this lock cannot leave a bucket half-updated in a way
        // that matters (worst case one token too many), so poisoning is ignored.
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Remembers when something was last said about a key, so an event that repeats per
/// connection is logged once per key per period.
#[derive(Debug)]
pub struct LogOnce<K> {
    period: Duration,
    last: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> LogOnce<K> {
    /// Allows one report per key per `period`.
    pub fn new(period: Duration) -> Self {
        LogOnce {
            period,
            last: Mutex::new(HashMap::new()),
        }
    }

    /// True when nothing was reported for `key` within the period; records this report.
    pub fn should_log(&self, key: &K) -> bool {
        let now = Instant::now();
        let mut map = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            let period = self.period;
            map.retain(|_, t| now.saturating_duration_since(*t) < period);
        }
        match map.get(key) {
            Some(t) if now.saturating_duration_since(*t) < self.period => false,
            _ => {
                map.insert(key.clone(), now);
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_period_spreads_the_refill_over_the_period() {
        let b = KeyedBuckets::per_period(500, Duration::from_secs(3600));
        let t0 = Instant::now();
        for _ in 0..500 {
            assert!(b.acquire_at(&1, t0).is_ok());
        }
        let wait = b.acquire_at(&1, t0).unwrap_err();
        // One message every 7.2 s.
        assert!(wait > Duration::from_secs(7) && wait <= Duration::from_millis(7200));
        assert!(b.acquire_at(&1, t0 + Duration::from_millis(7300)).is_ok());
        assert!(b.acquire_at(&1, t0 + Duration::from_millis(7300)).is_err());
    }

    #[test]
    fn bucket_allows_capacity_then_refuses_then_refills() {
        let b = KeyedBuckets::new(3, 10);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.acquire_at(&1, t0).is_ok());
        }
        let wait = b.acquire_at(&1, t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100));
        // Another key is independent.
        assert!(b.acquire_at(&2, t0).is_ok());
        // 100 ms later one token is back.
        assert!(b.acquire_at(&1, t0 + Duration::from_millis(101)).is_ok());
        assert!(b.acquire_at(&1, t0 + Duration::from_millis(101)).is_err());
    }

    #[test]
    fn log_once_per_period() {
        let l = LogOnce::new(Duration::from_secs(60));
        assert!(l.should_log(&"a"));
        assert!(!l.should_log(&"a"));
        assert!(l.should_log(&"b"));
    }
}
