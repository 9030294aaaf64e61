//! One connection: hyper (HTTP/1 or HTTP/2, chosen by the client's first bytes) driven with
//! Chopin's per-connection timeouts around it.
//!
//! hyper enforces the head size and HTTP/2's own limits. The rest is done here, with one
//! timer per connection that is re-armed only when it fires: the header timeout, the
//! keep-alive idle timeout, the maximum connection age, and the server's drain / abort
//! signals.
//!
//! The HTTP/1 header timeout is Chopin's, not hyper's: hyper's arms a boxed timer for every
//! request head and makes one more read attempt after every response, which a keep-alive
//! connection pays on each request. Here a head is due `header_timeout` after the connection
//! opened or after the previous response's head was produced: HTTP/1 has no other idle state
//! (a connection between requests is one whose next head has not arrived), so its idle limit
//! is the shorter of `header_timeout` and `keep_alive_timeout`; HTTP/2 connections idle for
//! `keep_alive_timeout`. The timer is looked at only when it fires: a head that starts
//! trickling in while a request is still in flight is cut within twice the limit, and a
//! response body that streams for longer than the limit is finished, after which the
//! connection closes instead of being reused.
//!
//! A connection that never completed a head is dropped when it is due, when it reaches its
//! maximum age and when the server drains (hyper calls the service in the same poll that
//! completes a head, so no response can be in progress, and a graceful close would wait for
//! that head). Any other is closed gracefully (`graceful_shutdown`: HTTP/1 closes at once
//! between requests, otherwise when the current response is done; HTTP/2 sends GOAWAY and
//! lets open streams finish), except on abort after the shutdown deadline.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use pin_project_lite::pin_project;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio::time::Instant;
use tower::Service;

#[cfg(feature = "metrics")]
use super::write_timeout::Fired;
use super::write_timeout::WriteTimeout;
use super::{ABORT, DRAIN};
use crate::config::{MIN_MAX_HEADER_SIZE, ServerConfig};

/// How far ahead a deadline too large for the clock is put: 30 years, as tokio does.
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 60 * 60);

/// `start + after`, or far in the future when that is beyond the clock: a `Duration::MAX`
/// timeout in a hand-built `ServerConfig` means no deadline rather than a panic.
fn deadline(start: Instant, after: Duration) -> Instant {
    start
        .checked_add(after)
        .or_else(|| start.checked_add(FAR_FUTURE))
        .unwrap_or(start)
}

/// What every connection of one server shares: the configured hyper builder and the
/// timeouts Chopin enforces itself.
pub(super) struct ConnSettings {
    builder: auto::Builder<TokioExecutor>,
    header_timeout: Duration,
    keep_alive_timeout: Duration,
    max_age: Option<Duration>,
    write_timeout: Duration,
}

impl ConnSettings {
    pub(super) fn new(config: &ServerConfig) -> ConnSettings {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            // The header timeout is enforced around the connection (see the module docs).
            .header_read_timeout(None)
            .keep_alive(true)
            // The head must fit in the read buffer: a larger one is answered 431. hyper panics
            // below its smallest buffer (8 KiB), which a hand-built `ServerConfig` may ask for.
            .max_buf_size(config.max_header_size.max(MIN_MAX_HEADER_SIZE));
        builder
            .http2()
            .timer(TokioTimer::new())
            // hyper adds its timeouts to the clock unchecked: cap them at the far future.
            .max_concurrent_streams(config.http2_max_concurrent_streams)
            .keep_alive_interval(config.http2_keep_alive_interval.map(|d| d.min(FAR_FUTURE)))
            .keep_alive_timeout(config.http2_keep_alive_timeout.min(FAR_FUTURE))
            .max_header_list_size(u32::try_from(config.max_header_size).unwrap_or(u32::MAX))
            .max_pending_accept_reset_streams(config.http2_max_pending_accept_reset_streams)
            .max_local_error_reset_streams(config.http2_max_local_error_reset_streams);
        ConnSettings {
            builder,
            header_timeout: config.header_timeout,
            keep_alive_timeout: config.keep_alive_timeout,
            max_age: config.max_connection_age,
            write_timeout: config.write_timeout,
        }
    }
}

/// Requests in flight on one connection and when the last one finished, for the idle timer.
struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Requests started so far (0: still waiting for the first head).
    started: AtomicU64,
    /// Whether the connection speaks HTTP/2 (known from its first request).
    http2: AtomicBool,
    /// Milliseconds after `start` at which `in_flight` last fell to zero.
    idle_since_ms: AtomicU64,
}

impl Activity {
    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.started.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// When the connection has been idle long enough to close, or `None` while a request is
    /// in flight.
    fn idle_deadline(&self, header_timeout: Duration, keep_alive: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self.started.load(Ordering::Relaxed) == 0 {
            // Nothing received yet: the first request head is due within the header timeout.
            return Some(deadline(self.start, header_timeout.min(keep_alive)));
        }
        let since = Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed));
        Some(deadline(
            self.start,
            since.saturating_add(self.idle_limit(header_timeout, keep_alive)),
        ))
    }

    /// How long the connection may go without a request in flight: for HTTP/1 the next head
    /// is due within the header timeout (see the module docs).
    fn idle_limit(&self, header_timeout: Duration, keep_alive: Duration) -> Duration {
        if self.http2.load(Ordering::Relaxed) {
            keep_alive
        } else {
            header_timeout.min(keep_alive)
        }
    }

    /// Whether no request head has completed yet: no response can be in progress (hyper
    /// calls the service in the same poll that completes a head), so the connection can be
    /// dropped rather than closed gracefully, which would wait for that first head.
    fn never_started(&self) -> bool {
        self.started.load(Ordering::Relaxed) == 0
    }
}

/// A request in flight; dropping it (response head produced, or the request cancelled)
/// marks the connection idle if it was the last.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let ms = u64::try_from(activity.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        activity.idle_since_ms.store(ms, Ordering::Relaxed);
        activity.in_flight.fetch_sub(1, Ordering::Release);
    }
}

pin_project! {
    /// The router's response future, holding the connection's in-flight mark.
    struct Tracked<F> {
        #[pin]
        inner: F,
        _in_flight: InFlight,
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().inner.poll(cx)
    }
}

/// The hyper service of one connection: the router, with `ConnectInfo<SocketAddr>` inserted
/// into every request (what `into_make_service_with_connect_info` gives with `axum::serve`).
struct ConnService {
    router: Router,
    remote: SocketAddr,
    activity: Arc<Activity>,
}

impl hyper::service::Service<http::Request<Incoming>> for ConnService {
    type Response = Response;
    type Error = Infallible;
    type Future = Tracked<axum::routing::future::RouteFuture<Infallible>>;

    #[inline]
    fn call(&self, mut req: http::Request<Incoming>) -> Self::Future {
        if req.version() == http::Version::HTTP_2 {
            self.activity.http2.store(true, Ordering::Relaxed);
        }
        req.extensions_mut().insert(ConnectInfo(self.remote));
        let in_flight = self.activity.begin();
        Tracked {
            inner: self.router.clone().call(req),
            _in_flight: in_flight,
        }
    }
}

/// A connection's place in `chopin_server_connections_open` (feature `metrics`), and the
/// timeout that closed it, counted once when the connection ends, however it ends.
#[cfg(feature = "metrics")]
struct Counted {
    timeout: Option<&'static str>,
    write: Fired,
}

#[cfg(feature = "metrics")]
impl Counted {
    fn new() -> Counted {
        crate::metrics::global().server.open.inc();
        Counted {
            timeout: None,
            write: Fired::default(),
        }
    }

    /// The connection is being closed by the `kind` timeout (the first reason given wins).
    fn timed_out(&mut self, kind: &'static str) {
        self.timeout.get_or_insert(kind);
    }
}

#[cfg(feature = "metrics")]
impl Drop for Counted {
    fn drop(&mut self) {
        let server = &crate::metrics::global().server;
        server.open.dec();
        if self.write.load(Ordering::Relaxed) {
            self.timed_out("write");
        }
        if let Some(kind) = self.timeout {
            server.timeout(kind);
        }
    }
}

/// What woke the connection's loop.
enum Event {
    /// hyper's connection future finished.
    Closed(Result<(), Box<dyn std::error::Error + Send + Sync>>),
    /// The server's state changed (`true`), or the server is gone (`false`).
    State(bool),
    /// The connection's timer fired.
    Timer,
}

/// Wakes the connection's task for its control futures (the server's state, the timer) and
/// notes that they are what woke it: the task's many wake-ups for I/O then poll hyper's
/// connection alone, where `select!` would poll all three futures every time.
#[derive(Default)]
struct ControlWake {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for ControlWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Serve one accepted connection until it closes, the server aborts, or it is closed for
/// being idle or too old. `_permit` (the connection cap) and `_open` (the drain tracker) are
/// released when this returns.
pub(super) async fn serve(
    stream: TcpStream,
    remote: SocketAddr,
    router: Router,
    settings: Arc<ConnSettings>,
    mut state: watch::Receiver<u8>,
    _permit: OwnedSemaphorePermit,
    _open: mpsc::Sender<()>,
) {
    #[cfg(feature = "metrics")]
    let mut counted = Counted::new();
    let activity = Arc::new(Activity {
        start: Instant::now(),
        in_flight: AtomicUsize::new(0),
        started: AtomicU64::new(0),
        http2: AtomicBool::new(false),
        idle_since_ms: AtomicU64::new(0),
    });
    let service = ConnService {
        router,
        remote,
        activity: activity.clone(),
    };
    #[cfg(feature = "metrics")]
    let fired = counted.write.clone();
    #[cfg(not(feature = "metrics"))]
    let fired = ();
    let io = TokioIo::new(WriteTimeout::new(stream, settings.write_timeout, fired));
    let conn = settings.builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    // An age too large for the clock is no age limit.
    let age_deadline = settings
        .max_age
        .and_then(|age| activity.start.checked_add(age));
    let first = deadline(
        activity.start,
        settings.header_timeout.min(settings.keep_alive_timeout),
    );
    let timer = tokio::time::sleep_until(age_deadline.map_or(first, |age| age.min(first)));
    tokio::pin!(timer);
    let mut closing = false;
    let control = Arc::new(ControlWake::default());
    let control_waker = Waker::from(control.clone());
    loop {
        let event = {
            let changed = state.changed();
            tokio::pin!(changed);
            // New futures to poll: look at them on the first poll.
            control.woken.store(true, Ordering::Relaxed);
            std::future::poll_fn(|cx| {
                if let Poll::Ready(result) = conn.as_mut().poll(cx) {
                    return Poll::Ready(Event::Closed(result));
                }
                control.task.register(cx.waker());
                if control.woken.swap(false, Ordering::Acquire) {
                    let mut cx = Context::from_waker(&control_waker);
                    if let Poll::Ready(changed) = changed.as_mut().poll(&mut cx) {
                        return Poll::Ready(Event::State(changed.is_ok()));
                    }
                    if !closing && timer.as_mut().poll(&mut cx).is_ready() {
                        return Poll::Ready(Event::Timer);
                    }
                }
                Poll::Pending
            })
            .await
        };
        match event {
            Event::Closed(result) => {
                if let Err(err) = result {
                    tracing::debug!(%remote, error = %err, "connection closed with an error");
                }
                return;
            }
            Event::State(changed) => {
                let now = match changed {
                    true => *state.borrow_and_update(),
                    // The server is gone (its future was dropped): abandon the connection.
                    false => ABORT,
                };
                if now >= ABORT {
                    // Only the server's own abort (its shutdown deadline), not a dropped server.
                    #[cfg(feature = "metrics")]
                    if changed {
                        counted.timed_out("shutdown");
                    }
                    return;
                }
                if now >= DRAIN && !closing {
                    if activity.never_started() {
                        return;
                    }
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
            Event::Timer => {
                let now = Instant::now();
                if age_deadline.is_some_and(|age| now >= age) {
                    tracing::debug!(%remote, "closing the connection: maximum age reached");
                    closing = true;
                    #[cfg(feature = "metrics")]
                    counted.timed_out("age");
                } else {
                    match activity
                        .idle_deadline(settings.header_timeout, settings.keep_alive_timeout)
                    {
                        Some(idle) if now >= idle => {
                            tracing::debug!(%remote, "closing the connection: idle timeout");
                            // An HTTP/1 head was due (when the header timeout is the shorter
                            // of the two); otherwise the connection was idle.
                            #[cfg(feature = "metrics")]
                            counted.timed_out(
                                if !activity.http2.load(Ordering::Relaxed)
                                    && settings.header_timeout <= settings.keep_alive_timeout
                                {
                                    "header"
                                } else {
                                    "idle"
                                },
                            );
                            closing = true;
                        }
                        Some(idle) => timer
                            .as_mut()
                            .reset(age_deadline.map_or(idle, |a| a.min(idle))),
                        None => {
                            // A request in flight: look again within the idle limit, so a
                            // head that trickles in after it is cut at most twice that late.
                            let next = deadline(
                                now,
                                activity.idle_limit(
                                    settings.header_timeout,
                                    settings.keep_alive_timeout,
                                ),
                            );
                            timer
                                .as_mut()
                                .reset(age_deadline.map_or(next, |a| a.min(next)));
                        }
                    }
                }
                if closing {
                    if activity.never_started() {
                        return;
                    }
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
