//! The accept loop and the connection cap.
//!
//! A connection is accepted only with a permit from the cap (`max_connections`): at the cap the
//! loop stops calling `accept`, so new clients wait in the listen backlog (then in the
//! kernel's SYN queue) until a connection closes, and the server says so in the log once
//! a minute at most. An accept error never ends the loop: errors that concern one
//! connection (reset, aborted) are skipped; others (`EMFILE`, `ENFILE`, `ENOMEM`, …) back off
//! from 10 ms doubling to 1 s, so the loop never spins on them.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use super::DRAIN;
use super::connection::{self, ConnSettings};

/// How often, at most, reaching the connection cap is logged.
const CAP_LOG_INTERVAL: Duration = Duration::from_secs(60);
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Errors that concern only the connection being accepted.
fn is_connection_error(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Everything the accept loop of one listener needs.
pub(super) struct Acceptor {
    pub(super) listener: TcpListener,
    pub(super) router: Router,
    pub(super) settings: Arc<ConnSettings>,
    pub(super) cap: Arc<Semaphore>,
    pub(super) max_connections: usize,
    pub(super) tcp_nodelay: bool,
    pub(super) state: watch::Receiver<u8>,
    pub(super) open: mpsc::Sender<()>,
}

impl Acceptor {
    /// Accept and spawn connections until the server starts draining; the listener is
    /// dropped (closed) on return.
    pub(super) async fn run(self) {
        let Acceptor {
            listener,
            router,
            settings,
            cap,
            max_connections,
            tcp_nodelay,
            state,
            open,
        } = self;
        let mut stop_rx = state.clone();
        let stop = async move {
            // A dropped sender means the server is gone: stop too.
            let _ = stop_rx.wait_for(|s| *s >= DRAIN).await;
        };
        tokio::pin!(stop);
        let mut last_cap_log: Option<Instant> = None;
        let mut backoff = BACKOFF_FIRST;
        loop {
            let permit = match cap.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    #[cfg(feature = "metrics")]
                    crate::metrics::global().server.accept_paused.inc();
                    if last_cap_log.is_none_or(|at| at.elapsed() >= CAP_LOG_INTERVAL) {
                        tracing::warn!(
                            max_connections,
                            "connection limit reached; not accepting until a connection closes \
                             (CHOPIN_MAX_CONNECTIONS)"
                        );
                        last_cap_log = Some(Instant::now());
                    }
                    tokio::select! {
                        permit = cap.clone().acquire_owned() => match permit {
                            Ok(permit) => permit,
                            Err(_) => return,
                        },
                        () = &mut stop => return,
                    }
                }
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut stop => return,
            };
            match accepted {
                Ok((stream, remote)) => {
                    backoff = BACKOFF_FIRST;
                    #[cfg(feature = "metrics")]
                    crate::metrics::global().server.accepted.inc();
                    if tcp_nodelay && let Err(err) = stream.set_nodelay(true) {
                        tracing::debug!(%remote, error = %err, "cannot set TCP_NODELAY");
                    }
                    tokio::spawn(connection::serve(
                        stream,
                        remote,
                        router.clone(),
                        settings.clone(),
                        state.clone(),
                        permit,
                        open.clone(),
                    ));
                }
                Err(err) if is_connection_error(&err) => {
                    #[cfg(feature = "metrics")]
                    crate::metrics::global().server.accept_error("client");
                }
                Err(err) => {
                    #[cfg(feature = "metrics")]
                    crate::metrics::global().server.accept_error("system");
                    tracing::error!(error = %err, retry_in = ?backoff, "accept failed; backing off");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = &mut stop => return,
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}
