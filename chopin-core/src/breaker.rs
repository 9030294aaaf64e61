//! The circuit breaker's state machine, shared by the database's (`db::breaker`) and each
//! Redis connection's (`redis_conn::RedisBreaker`); what a probe does is theirs ([`Probe`]).
//!
//! * **Closed**: calls run. The user reports each call's outcome: a [`success`] resets the
//!   count of consecutive failures, a [`failure`] counts one and starts a probe.
//! * **Open**: after `threshold` failures in a row, or when a probe fails. The user fails its
//!   calls at once ([`is_open`]); the probe repeats every `interval`.
//! * The first probe that succeeds closes it.
//!
//! The state is three atomics; the probe is one tokio task at most, claimed by a
//! compare-and-swap on `probing` and released by a guard however the task ends (finished, or
//! dropped unpolled with its runtime). The task holds the breaker weakly: dropping the last
//! handle ends it. After closing, the task hands the claim back and takes it over again when a
//! failure arrived meanwhile (that failure found the claim held and started no probe), so an
//! open breaker is never left without a probe.
//!
//! [`success`]: Breaker::success
//! [`failure`]: Breaker::failure
//! [`is_open`]: Breaker::is_open

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

/// What a breaker's user supplies: how to probe the dependency, and what to do (log, count)
/// when the breaker opens or closes.
pub(crate) trait Probe: Send + Sync + 'static {
    /// Probe the dependency once (`open`: whether the breaker is open now). `Ok` closes the
    /// breaker; `Err(reason)` opens it.
    fn probe(&self, open: bool) -> impl Future<Output = Result<(), &'static str>> + Send;

    /// The breaker has just opened, for `why`.
    fn opened(&self, why: &'static str);

    /// The breaker has just closed.
    fn closed(&self);

    /// The breaker is dropped while open.
    fn dropped_open(&self) {}

    /// `true` once there is nothing left to probe (the pool was closed): the probe task ends.
    fn gone(&self) -> bool {
        false
    }

    /// `true` when something the user noted since the last probe began asks for another
    /// probe after a close (as a failure does).
    fn pending(&self) -> bool {
        false
    }
}

struct Inner<P: Probe> {
    probe: P,
    /// Consecutive failures that open the breaker.
    threshold: u32,
    /// Time between probes while the dependency is down.
    interval: Duration,
    open: AtomicBool,
    /// Woken when the breaker opens.
    opened: tokio::sync::Notify,
    failures: AtomicU32,
    probing: AtomicBool,
}

impl<P: Probe> Drop for Inner<P> {
    fn drop(&mut self) {
        if *self.open.get_mut() {
            self.probe.dropped_open();
        }
    }
}

/// A circuit breaker probing with `P` (a cheap clone; clones share the state).
pub(crate) struct Breaker<P: Probe>(Arc<Inner<P>>);

impl<P: Probe> Clone for Breaker<P> {
    fn clone(&self) -> Self {
        Breaker(Arc::clone(&self.0))
    }
}

impl<P: Probe> std::fmt::Debug for Breaker<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breaker")
            .field("open", &self.is_open())
            .field("failures", &self.0.failures.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<P: Probe> Breaker<P> {
    /// A closed breaker: `threshold` failures in a row open it (at least 1), an open one is
    /// probed every `interval`.
    pub(crate) fn new(probe: P, threshold: u32, interval: Duration) -> Self {
        Breaker(Arc::new(Inner {
            probe,
            threshold: threshold.max(1),
            interval,
            open: AtomicBool::new(false),
            opened: tokio::sync::Notify::new(),
            failures: AtomicU32::new(0),
            probing: AtomicBool::new(false),
        }))
    }

    /// The user's probe.
    pub(crate) fn probe(&self) -> &P {
        &self.0.probe
    }

    /// `true` while the dependency is known to be down.
    pub(crate) fn is_open(&self) -> bool {
        self.0.open.load(Ordering::Acquire)
    }

    /// Whether a probe task holds the claim now.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn is_probing(&self) -> bool {
        self.0.probing.load(Ordering::Acquire)
    }

    /// A future that completes when the breaker opens next: create (and `enable`) it before
    /// checking [`Breaker::is_open`] to miss no opening.
    #[cfg_attr(not(chopin_db), allow(dead_code))]
    pub(crate) fn opened(&self) -> tokio::sync::futures::Notified<'_> {
        self.0.opened.notified()
    }

    /// A call succeeded: the failure count starts again.
    pub(crate) fn success(&self) {
        if self.0.failures.load(Ordering::Relaxed) != 0 {
            self.0.failures.store(0, Ordering::Relaxed);
        }
    }

    /// A call failed because the dependency could not be reached: count it (opening the
    /// breaker at the threshold) and start a probe.
    pub(crate) fn failure(&self) {
        let failures = self
            .0
            .failures
            .fetch_add(1, Ordering::AcqRel)
            .saturating_add(1);
        if failures >= self.0.threshold {
            self.open("connection failures");
        }
        self.start_probe();
    }

    fn open(&self, why: &'static str) {
        if !self.0.open.swap(true, Ordering::AcqRel) {
            self.0.opened.notify_waiters();
            self.0.probe.opened(why);
        }
    }

    fn close(&self) {
        self.0.failures.store(0, Ordering::Release);
        if self.0.open.swap(false, Ordering::AcqRel) {
            self.0.probe.closed();
        }
    }

    /// Start the probe task unless one runs (or there is no runtime to run it on).
    pub(crate) fn start_probe(&self) {
        if self
            .0
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let probing = Probing {
            inner: Arc::downgrade(&self.0),
            held: true,
        };
        match tokio::runtime::Handle::try_current() {
            // The task owns `probing` from here: dropped unpolled (its runtime shutting
            // down) or finished, the claim is released.
            Ok(handle) => drop(handle.spawn(probe_loop(probing))),
            Err(_) => drop(probing),
        }
    }

    /// Whether the probe task should hand over to itself after closing: something failed
    /// (or the user noted something) while it was closing.
    fn pending(&self) -> bool {
        self.is_open() || self.0.failures.load(Ordering::Acquire) > 0 || self.0.probe.pending()
    }

    /// The state, held weakly (tests).
    #[cfg(test)]
    pub(crate) fn downgrade(&self) -> Weak<impl Sized + use<P>> {
        Arc::downgrade(&self.0)
    }
}

/// The probe task's claim on `probing`, released when dropped while `held`: however the task
/// ends (finished, or dropped with its runtime), the next failure can start a probe again.
struct Probing<P: Probe> {
    inner: Weak<Inner<P>>,
    held: bool,
}

impl<P: Probe> Probing<P> {
    /// The breaker, unless every handle to it is gone.
    fn breaker(&self) -> Option<Breaker<P>> {
        self.inner.upgrade().map(Breaker)
    }
}

impl<P: Probe> Drop for Probing<P> {
    fn drop(&mut self) {
        if self.held
            && let Some(inner) = self.inner.upgrade()
        {
            inner.probing.store(false, Ordering::Release);
        }
    }
}

/// The probe task: probe every `interval` until the dependency answers (closing the
/// breaker). It holds the breaker only while probing, so dropping the last handle ends it.
async fn probe_loop<P: Probe>(mut probing: Probing<P>) {
    loop {
        let Some(breaker) = probing.breaker() else {
            return;
        };
        if breaker.0.probe.gone() {
            return;
        }
        let interval = breaker.0.interval;
        match breaker.0.probe.probe(breaker.is_open()).await {
            Ok(()) => {
                breaker.close();
                // Hand the claim back. A failure reported while this task was closing found
                // `probing` set and started no probe (and may have opened the breaker
                // again): take the probe over rather than leave it unattended.
                probing.held = false;
                breaker.0.probing.store(false, Ordering::Release);
                if !breaker.pending()
                    || breaker
                        .0
                        .probing
                        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                        .is_err()
                {
                    return;
                }
                probing.held = true;
            }
            Err(why) => breaker.open(why),
        }
        drop(breaker);
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    /// A probe whose answer the test sets, recording what the breaker told it.
    #[derive(Default)]
    struct Scripted {
        up: AtomicBool,
        probes: AtomicUsize,
        events: Mutex<Vec<&'static str>>,
    }

    impl Probe for Arc<Scripted> {
        async fn probe(&self, _open: bool) -> Result<(), &'static str> {
            self.probes.fetch_add(1, Ordering::SeqCst);
            if self.up.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err("probe failed")
            }
        }
        fn opened(&self, why: &'static str) {
            self.events.lock().unwrap().push(why);
        }
        fn closed(&self) {
            self.events.lock().unwrap().push("closed");
        }
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{what}");
    }

    #[tokio::test]
    async fn threshold_failures_open_it_a_probe_closes_it() {
        let probe = Arc::new(Scripted::default());
        let b = Breaker::new(Arc::clone(&probe), 3, Duration::from_millis(5));
        b.failure();
        b.success();
        b.failure();
        b.failure();
        assert!(!b.is_open(), "a success resets the count");
        b.failure();
        assert!(b.is_open(), "three failures in a row open it");
        probe.up.store(true, Ordering::SeqCst);
        until("a probe closes it", || !b.is_open()).await;
        until("the probe task ends", || !b.is_probing()).await;
        let events = probe.events.lock().unwrap().clone();
        assert_eq!(events.last(), Some(&"closed"));
        assert!(events.contains(&"connection failures"));
    }

    #[tokio::test]
    async fn one_probe_task_at_most() {
        let probe = Arc::new(Scripted::default());
        let b = Breaker::new(Arc::clone(&probe), 1, Duration::from_millis(20));
        for _ in 0..100 {
            b.failure();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // One task probing every 20 ms: about 3 probes in 50 ms, not 100 tasks' worth.
        let probes = probe.probes.load(Ordering::SeqCst);
        assert!((1..=5).contains(&probes), "{probes} probes");
    }

    #[test]
    fn a_probe_dropped_with_its_runtime_releases_the_claim() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let probe = Arc::new(Scripted::default());
        let b = Breaker::new(probe, 1, Duration::from_millis(5));
        runtime.block_on(async {
            b.failure();
            assert!(b.is_probing());
        });
        drop(runtime);
        assert!(
            !b.is_probing(),
            "a new failure must be able to start a probe"
        );
    }

    #[tokio::test]
    async fn the_probe_task_does_not_keep_a_dropped_breaker_alive() {
        let b = Breaker::new(Arc::new(Scripted::default()), 1, Duration::from_millis(5));
        b.failure();
        let weak = b.downgrade();
        drop(b);
        until("the probe task still holds the breaker", || {
            weak.strong_count() == 0
        })
        .await;
    }
}
