//! The auth module's bounded background work: verification and reset mails (and, for a
//! reset, the account lookup and token issue before it) run on a fixed number of worker
//! tasks fed by a bounded queue, never one detached task per request.
//!
//! When the queue is full the work is dropped: the request still answers exactly as usual
//! (a reset request cannot tell a full queue from an unknown address), the drop is counted
//! ([`MailQueue::overflow`], and `chopin_auth_mail_queue_overflow_total` with the `metrics`
//! feature) and logged, at most once per [`LOG_EVERY`].
//!
//! At graceful shutdown ([`MailQueue::drain`], run by `App` for a module given to
//! [`App::auth_module`](crate::App::auth_module)) the queue stops taking jobs and gets a
//! bounded time to finish the ones it holds; what is left then is counted and logged.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

pub use crate::config::{DEFAULT_MAIL_QUEUE_CAPACITY, DEFAULT_MAIL_WORKERS};

/// Longest one job may run: past it the job is dropped (and logged), so a mailer that never
/// answers cannot hold a worker, and with it every later mail, for good.
const JOB_TIMEOUT: Duration = Duration::from_secs(60);

/// A full queue is logged at most this often (with the count of drops so far).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// One unit of background work.
pub(crate) type Job = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// A bounded queue and its workers (cheap to clone; clones share them). The workers start
/// with the first job, on the runtime the queue was made on (the application's, which
/// outlives the server's per-core workers; the first job's when it was made outside one),
/// and end once every clone is dropped and the queue is empty.
#[derive(Clone)]
pub(crate) struct MailQueue {
    inner: Arc<Inner>,
}

struct Inner {
    tx: mpsc::Sender<Job>,
    /// Taken by the first `submit`, which starts the workers with it.
    rx: Mutex<Option<mpsc::Receiver<Job>>>,
    capacity: usize,
    workers: usize,
    overflow: AtomicU64,
    /// When a full queue was last logged.
    logged: Mutex<Option<Instant>>,
    /// Jobs queued or running.
    pending: AtomicUsize,
    /// Woken when `pending` falls to 0.
    idle: tokio::sync::Notify,
    /// Set by [`MailQueue::drain`]: no job is taken any more.
    closed: AtomicBool,
    /// The runtime the queue was made on, where the workers run.
    runtime: Option<tokio::runtime::Handle>,
}

impl std::fmt::Debug for MailQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailQueue")
            .field("capacity", &self.inner.capacity)
            .field("workers", &self.inner.workers)
            .field("overflow", &self.overflow())
            .finish()
    }
}

impl MailQueue {
    /// A queue of `capacity` waiting jobs (at least 1) run by `workers` tasks (at least 1).
    pub(crate) fn new(capacity: usize, workers: usize) -> MailQueue {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        MailQueue {
            inner: Arc::new(Inner {
                tx,
                rx: Mutex::new(Some(rx)),
                capacity,
                workers: workers.max(1),
                overflow: AtomicU64::new(0),
                logged: Mutex::new(None),
                pending: AtomicUsize::new(0),
                idle: tokio::sync::Notify::new(),
                closed: AtomicBool::new(false),
                runtime: tokio::runtime::Handle::try_current().ok(),
            }),
        }
    }

    /// Jobs dropped because the queue was full, since it was made.
    pub(crate) fn overflow(&self) -> u64 {
        self.inner.overflow.load(Ordering::Relaxed)
    }

    /// The configured capacity and worker count.
    pub(crate) fn limits(&self) -> (usize, usize) {
        (self.inner.capacity, self.inner.workers)
    }

    /// Queue `job` without waiting: `false` (counted and logged) when the queue is full or
    /// no runtime can run the workers. Never blocks, never fails the caller.
    pub(crate) fn submit(&self, what: &'static str, job: Job) -> bool {
        // Counted before `closed` is read (both SeqCst, as in `drain`): either `drain` sees
        // this job pending and waits for it, or this job sees the queue closed.
        self.inner.pending.fetch_add(1, Ordering::SeqCst);
        if self.inner.closed.load(Ordering::SeqCst) {
            self.inner.done();
            tracing::warn!(
                job = what,
                "the auth mail queue is shutting down: background work dropped"
            );
            return false;
        }
        self.start_workers();
        match self.inner.tx.try_send(job) {
            Ok(()) => true,
            Err(_) => {
                self.inner.done();
                self.overflowed(what);
                false
            }
        }
    }

    /// Stop taking jobs, and wait up to `within` for the queued and running ones to finish.
    /// Returns how many were left (still queued or running at the deadline: they are lost
    /// when the process exits), logged at `warn` when there are any. Calling it again waits
    /// again.
    pub(crate) async fn drain(&self, within: Duration) -> usize {
        self.inner.closed.store(true, Ordering::SeqCst);
        let started = Instant::now();
        let idle = async {
            loop {
                let notified = self.inner.idle.notified();
                let mut notified = std::pin::pin!(notified);
                notified.as_mut().enable();
                if self.inner.pending.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(within, idle).await;
        let left = self.inner.pending.load(Ordering::Acquire);
        if left > 0 {
            tracing::warn!(
                left,
                waited = ?started.elapsed(),
                "shutdown: auth background jobs (reset and verification mails) not finished in \
                 time are dropped"
            );
        } else {
            tracing::debug!(waited = ?started.elapsed(), "shutdown: the auth mail queue is empty");
        }
        left
    }

    /// Jobs queued or running now.
    #[cfg(test)]
    fn pending(&self) -> usize {
        self.inner.pending.load(Ordering::Acquire)
    }

    fn overflowed(&self, what: &'static str) {
        let total = self.inner.overflow.fetch_add(1, Ordering::Relaxed) + 1;
        #[cfg(feature = "metrics")]
        crate::metrics::global().auth.mail_queue_overflow.inc();
        let now = Instant::now();
        let mut logged = self
            .inner
            .logged
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if logged.is_none_or(|at| now.duration_since(at) >= LOG_EVERY) {
            *logged = Some(now);
            tracing::warn!(
                job = what,
                capacity = self.inner.capacity,
                dropped_total = total,
                "the auth mail queue is full: background work dropped (the request answered as usual)"
            );
        }
    }

    /// Spawn the workers, once: on the queue's runtime, else on the current one.
    fn start_workers(&self) {
        let mut slot = self.inner.rx.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            return;
        }
        let Some(handle) = self
            .inner
            .runtime
            .clone()
            .or_else(|| tokio::runtime::Handle::try_current().ok())
        else {
            return;
        };
        let Some(rx) = slot.take() else {
            return;
        };
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..self.inner.workers {
            // Weakly: the workers end once every clone of the queue is gone.
            handle.spawn(worker(Arc::clone(&rx), Arc::downgrade(&self.inner)));
        }
    }
}

/// Run jobs until the queue is closed and empty. Each job runs in a task of its own, awaited
/// before the next, so a job that panics ends only itself; a job still running after
/// [`JOB_TIMEOUT`] is dropped.
async fn worker(rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>, queue: Weak<Inner>) {
    worker_with(rx, JOB_TIMEOUT, queue).await;
}

impl Inner {
    /// One job finished (or was not queued after all).
    fn done(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }
}

async fn worker_with(
    rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    job_timeout: Duration,
    queue: Weak<Inner>,
) {
    loop {
        let job = rx.lock().await.recv().await;
        let Some(job) = job else {
            return;
        };
        // Counted as done however this ends, a worker dropped mid-job (its runtime shut
        // down) included, so `drain` never waits for a job nobody runs.
        let _done = Done(queue.clone());
        let mut task = tokio::spawn(job);
        match tokio::time::timeout(job_timeout, &mut task).await {
            Ok(Err(err)) if err.is_panic() => {
                tracing::error!("an auth background job panicked");
            }
            Ok(_) => {}
            Err(_) => {
                task.abort();
                tracing::error!(
                    timeout = ?job_timeout,
                    "an auth background job (a mail) took too long and was stopped"
                );
            }
        }
    }
}

/// Marks one job done when dropped.
struct Done(Weak<Inner>);

impl Drop for Done {
    fn drop(&mut self) {
        if let Some(queue) = self.0.upgrade() {
            queue.done();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_and_the_rest_runs() {
        let queue = MailQueue::new(2, 1);
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let ran = Arc::new(AtomicUsize::new(0));
        let job = |gate: Arc<tokio::sync::Semaphore>, ran: Arc<AtomicUsize>| -> Job {
            Box::pin(async move {
                let _permit = gate.acquire().await;
                ran.fetch_add(1, Ordering::SeqCst);
            })
        };
        // One job taken by the worker (blocked on the gate), two waiting: the fourth and
        // fifth are dropped.
        assert!(queue.submit("test", job(gate.clone(), ran.clone())));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(queue.submit("test", job(gate.clone(), ran.clone())));
        assert!(queue.submit("test", job(gate.clone(), ran.clone())));
        assert!(!queue.submit("test", job(gate.clone(), ran.clone())));
        assert!(!queue.submit("test", job(gate.clone(), ran.clone())));
        assert_eq!(queue.overflow(), 2);
        gate.add_permits(10);
        for _ in 0..100 {
            if ran.load(Ordering::SeqCst) == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            ran.load(Ordering::SeqCst),
            3,
            "the queued jobs ran, the dropped did not"
        );
    }

    #[tokio::test]
    async fn a_hung_job_is_stopped_and_the_worker_goes_on() {
        struct Dropped(Arc<AtomicUsize>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let (tx, rx) = mpsc::channel::<Job>(4);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        let worker = tokio::spawn(worker_with(rx, Duration::from_millis(50), Weak::new()));
        let (dropped, ran) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let guard = Dropped(Arc::clone(&dropped));
        tx.send(Box::pin(async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        }))
        .await
        .unwrap();
        let counter = Arc::clone(&ran);
        tx.send(Box::pin(async move {
            counter.fetch_add(1, Ordering::SeqCst);
        }))
        .await
        .unwrap();
        drop(tx);
        tokio::time::timeout(Duration::from_secs(2), worker)
            .await
            .expect("the worker is not held by the hung job")
            .unwrap();
        assert_eq!(ran.load(Ordering::SeqCst), 1, "the next job ran");
        tokio::task::yield_now().await;
        assert_eq!(
            dropped.load(Ordering::SeqCst),
            1,
            "the hung job was stopped"
        );
    }

    #[tokio::test]
    async fn drain_waits_for_the_queued_jobs_and_then_takes_no_more() {
        let queue = MailQueue::new(8, 1);
        let ran = Arc::new(AtomicUsize::new(0));
        let job = |ran: Arc<AtomicUsize>| -> Job {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                ran.fetch_add(1, Ordering::SeqCst);
            })
        };
        for _ in 0..4 {
            assert!(queue.submit("test", job(ran.clone())));
        }
        let started = Instant::now();
        let left = queue.drain(Duration::from_secs(5)).await;
        assert_eq!(left, 0);
        assert_eq!(
            ran.load(Ordering::SeqCst),
            4,
            "every queued job ran before drain returned"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(
            !queue.submit("test", job(ran.clone())),
            "no job after the drain"
        );
        assert_eq!(queue.pending(), 0);
    }

    /// Per-core serving: the first job is submitted from a worker's own runtime, which is
    /// dropped when the server stops, before the application drains the queue.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_workers_run_on_the_queue_s_runtime_not_the_first_submitter_s() {
        let queue = MailQueue::new(8, 1);
        let ran = Arc::new(AtomicUsize::new(0));
        let submitter = queue.clone();
        let counter = ran.clone();
        std::thread::spawn(move || {
            let worker_runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            worker_runtime.block_on(async {
                for _ in 0..3 {
                    let counter = counter.clone();
                    assert!(submitter.submit(
                        "test",
                        Box::pin(async move {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            counter.fetch_add(1, Ordering::SeqCst);
                        })
                    ));
                }
            });
            // The per-core worker's runtime ends here, with the jobs still queued.
        })
        .join()
        .unwrap();
        let left = queue.drain(Duration::from_secs(5)).await;
        assert_eq!(left, 0, "the jobs outlived the submitter's runtime");
        assert_eq!(ran.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn drain_gives_up_at_its_deadline_and_counts_what_is_left() {
        let queue = MailQueue::new(8, 1);
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        for _ in 0..3 {
            let gate = gate.clone();
            assert!(queue.submit(
                "test",
                Box::pin(async move {
                    let _permit = gate.acquire().await;
                })
            ));
        }
        let started = Instant::now();
        let left = queue.drain(Duration::from_millis(200)).await;
        let waited = started.elapsed();
        assert_eq!(left, 3, "one running, two queued");
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn a_panicking_job_does_not_stop_its_worker() {
        let queue = MailQueue::new(4, 1);
        let ran = Arc::new(AtomicUsize::new(0));
        assert!(queue.submit("test", Box::pin(async { panic!("boom") })));
        let counter = ran.clone();
        assert!(queue.submit(
            "test",
            Box::pin(async move {
                counter.fetch_add(1, Ordering::SeqCst);
            })
        ));
        for _ in 0..100 {
            if ran.load(Ordering::SeqCst) == 1 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the worker stopped after a panicking job");
    }
}
