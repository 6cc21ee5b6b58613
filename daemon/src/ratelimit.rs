//! Per-API-key and per-tenant token buckets (GCRA, via governor), with the
//! IETF RateLimit header values, and bounded state: idle keys are trimmed.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

/// How often (in checks) idle limiter state is trimmed.
const TRIM_EVERY_CHECKS: u64 = 4096;

type Keyed<C> = RateLimiter<String, DashMapStateStore<String>, C, StateInformationMiddleware>;

/// The configured policy: `burst` requests, refilled over `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    pub burst: NonZeroU32,
    pub window: Duration,
}

impl Policy {
    fn quota(self) -> Quota {
        let per = self.window / self.burst.get();
        Quota::with_period(per.max(Duration::from_nanos(1))).expect("non-zero period").allow_burst(self.burst)
    }

    /// `RateLimit-Policy` header value for this policy.
    pub fn header(self, name: &str) -> String {
        format!("\"{name}\";q={};w={}", self.burst, self.window.as_secs().max(1))
    }
}

/// The outcome of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// `remaining` requests left in the bucket; it is full again in `reset_s`.
    Allowed { remaining: u32, reset_s: u64 },
    /// Denied by `bucket`; a request may succeed after `retry_after_s`.
    Denied { retry_after_s: u64, bucket: Bucket },
}

/// Which bucket refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bucket {
    Key,
    Tenant,
}

/// Two limiters: one per API key, one per tenant. A request must pass both.
pub struct Limiter<C: Clock = DefaultClock> {
    per_key: Keyed<C>,
    per_tenant: Keyed<C>,
    key_policy: Policy,
    /// `RateLimit-Policy` value of the key policy, rendered once: every
    /// allowed request carries it.
    key_policy_header: String,
    tenant_policy_header: String,
    checks: AtomicU64,
}

impl<C: Clock> core::fmt::Debug for Limiter<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Limiter").field("key_policy", &self.key_policy).finish_non_exhaustive()
    }
}

impl Limiter<DefaultClock> {
    pub fn new(per_key: Policy, per_tenant: Policy) -> Limiter<DefaultClock> {
        Limiter::with_clock(per_key, per_tenant, &DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limiter<C> {
    pub fn with_clock(per_key: Policy, per_tenant: Policy, clock: &C) -> Limiter<C> {
        Limiter {
            per_key: RateLimiter::dashmap_with_clock(per_key.quota(), clock.clone()).with_middleware(),
            per_tenant: RateLimiter::dashmap_with_clock(per_tenant.quota(), clock.clone()).with_middleware(),
            key_policy: per_key,
            key_policy_header: per_key.header("default"),
            tenant_policy_header: per_tenant.header("tenant"),
            checks: AtomicU64::new(0),
        }
    }

    /// `RateLimit-Policy` header value of the key policy, named "default".
    pub fn key_policy_header(&self) -> &str {
        &self.key_policy_header
    }

    /// `RateLimit-Policy` header value of the tenant policy, named "tenant".
    pub fn tenant_policy_header(&self) -> &str {
        &self.tenant_policy_header
    }

    /// Takes one token from the key's bucket, then the tenant's.
    pub fn check(&self, tenant: &str, key_id: &str) -> Decision {
        if self.checks.fetch_add(1, Ordering::Relaxed) % TRIM_EVERY_CHECKS == TRIM_EVERY_CHECKS - 1 {
            self.trim();
        }
        let now = self.per_key.clock().now();
        let denied = |not_until: governor::NotUntil<C::Instant>, bucket| {
            let wait = not_until.wait_time_from(now);
            Decision::Denied { retry_after_s: wait.as_secs() + u64::from(wait.subsec_nanos() > 0), bucket }
        };
        let snapshot = match self.per_key.check_key(&key_id.to_owned()) {
            Ok(s) => s,
            Err(e) => return denied(e, Bucket::Key),
        };
        if let Err(e) = self.per_tenant.check_key(&tenant.to_owned()) {
            return denied(e, Bucket::Tenant);
        }
        let remaining = snapshot.remaining_burst_capacity();
        // Time until the bucket is full again: one period per missing token.
        let missing = self.key_policy.burst.get() - remaining.min(self.key_policy.burst.get());
        let per = self.key_policy.window.as_secs_f64() / f64::from(self.key_policy.burst.get());
        Decision::Allowed { remaining, reset_s: (per * f64::from(missing)).ceil() as u64 }
    }

    /// Drops state for keys whose buckets are full again (idle keys).
    pub fn trim(&self) {
        self.per_key.retain_recent();
        self.per_key.shrink_to_fit();
        self.per_tenant.retain_recent();
        self.per_tenant.shrink_to_fit();
    }

    /// Keys currently holding state (for metrics and tests).
    pub fn tracked_keys(&self) -> usize {
        self.per_key.len() + self.per_tenant.len()
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn policy(burst: u32, window_s: u64) -> Policy {
        Policy { burst: NonZeroU32::new(burst).unwrap(), window: Duration::from_secs(window_s) }
    }

    #[test]
    fn bucket_drains_then_refills() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(policy(3, 60), policy(100, 60), &clock);
        assert_eq!(l.check("t", "k"), Decision::Allowed { remaining: 2, reset_s: 20 });
        assert_eq!(l.check("t", "k"), Decision::Allowed { remaining: 1, reset_s: 40 });
        assert_eq!(l.check("t", "k"), Decision::Allowed { remaining: 0, reset_s: 60 });
        assert_eq!(l.check("t", "k"), Decision::Denied { retry_after_s: 20, bucket: Bucket::Key });
        // Another key of the same tenant has its own bucket.
        assert!(matches!(l.check("t", "other"), Decision::Allowed { .. }));
        clock.advance(Duration::from_secs(20));
        assert!(matches!(l.check("t", "k"), Decision::Allowed { remaining: 0, .. }));
    }

    #[test]
    fn tenant_bucket_caps_all_its_keys() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(policy(10, 60), policy(2, 60), &clock);
        assert!(matches!(l.check("t", "a"), Decision::Allowed { .. }));
        assert!(matches!(l.check("t", "b"), Decision::Allowed { .. }));
        assert!(matches!(l.check("t", "c"), Decision::Denied { bucket: Bucket::Tenant, .. }));
        assert_eq!(l.tenant_policy_header(), "\"tenant\";q=2;w=60");
        assert!(matches!(l.check("u", "d"), Decision::Allowed { .. }));
    }

    #[test]
    fn idle_keys_are_trimmed() {
        let clock = FakeRelativeClock::default();
        let l = Limiter::with_clock(policy(5, 1), policy(1000, 1), &clock);
        for i in 0..100 {
            l.check("t", &format!("k{i}"));
        }
        assert_eq!(l.tracked_keys(), 101);
        clock.advance(Duration::from_secs(2));
        l.trim();
        assert_eq!(l.tracked_keys(), 0);
    }

    #[test]
    fn policy_header() {
        assert_eq!(policy(100, 60).header("default"), "\"default\";q=100;w=60");
    }
}
