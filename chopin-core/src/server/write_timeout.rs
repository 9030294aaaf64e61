//! The write (slow-read) timeout: a connection's socket, wrapped so that a write which makes no
//! progress for the configured time fails with `TimedOut` and the connection closes. hyper
//! has no such timeout: a client that stops reading would otherwise hold its connection (and
//! the response buffered for it) forever.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;

/// Set when the write timeout fires (feature `metrics`: the connection counts its close as a
/// `write` timeout); nothing without the feature.
#[cfg(feature = "metrics")]
pub(super) type Fired = std::sync::Arc<std::sync::atomic::AtomicBool>;
/// Set when the write timeout fires (feature `metrics`); nothing without the feature.
#[cfg(not(feature = "metrics"))]
pub(super) type Fired = ();
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

pin_project! {
    /// `inner` with a stall timer on its write side. Reads pass straight through.
    pub(super) struct WriteTimeout<T> {
        #[pin]
        inner: T,
        timeout: Duration,
        // Created on the first write that would block, then re-armed in place.
        stall: Option<Pin<Box<Sleep>>>,
        armed: bool,
        fired: Fired,
    }
}

impl<T> WriteTimeout<T> {
    pub(super) fn new(inner: T, timeout: Duration, fired: Fired) -> Self {
        WriteTimeout {
            inner,
            timeout,
            stall: None,
            armed: false,
            fired,
        }
    }
}

/// What a write poll becomes: progress disarms the timer; blocking arms it (once per
/// stall) and fails the write when it fires.
fn check<R>(
    stall: &mut Option<Pin<Box<Sleep>>>,
    armed: &mut bool,
    timeout: Duration,
    fired: &Fired,
    cx: &mut Context<'_>,
    result: Poll<io::Result<R>>,
) -> Poll<io::Result<R>> {
    if result.is_ready() {
        *armed = false;
        return result;
    }
    let Some(deadline) = Instant::now().checked_add(timeout) else {
        // A timeout too large for the clock: no deadline.
        return result;
    };
    let sleep = match stall {
        Some(sleep) => {
            if !*armed {
                sleep.as_mut().reset(deadline);
            }
            sleep
        }
        None => stall.insert(Box::pin(tokio::time::sleep_until(deadline))),
    };
    *armed = true;
    ready!(sleep.as_mut().poll(cx));
    #[cfg(feature = "metrics")]
    fired.store(true, std::sync::atomic::Ordering::Relaxed);
    #[cfg(not(feature = "metrics"))]
    let () = *fired;
    Poll::Ready(Err(io::Error::new(
        io::ErrorKind::TimedOut,
        "write timed out: the client stopped reading",
    )))
}

impl<T: AsyncRead> AsyncRead for WriteTimeout<T> {
    #[inline]
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl<T: AsyncWrite> AsyncWrite for WriteTimeout<T> {
    #[inline]
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write(cx, buf);
        check(
            this.stall,
            this.armed,
            *this.timeout,
            this.fired,
            cx,
            result,
        )
    }

    #[inline]
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        let result = this.inner.poll_write_vectored(cx, bufs);
        check(
            this.stall,
            this.armed,
            *this.timeout,
            this.fired,
            cx,
            result,
        )
    }

    #[inline]
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    #[inline]
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let result = this.inner.poll_flush(cx);
        check(
            this.stall,
            this.armed,
            *this.timeout,
            this.fired,
            cx,
            result,
        )
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.project();
        let result = this.inner.poll_shutdown(cx);
        check(
            this.stall,
            this.armed,
            *this.timeout,
            this.fired,
            cx,
            result,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use super::*;

    #[tokio::test]
    async fn a_timeout_too_large_for_the_clock_never_fires() {
        // A 1-byte pipe nobody reads: the second write blocks.
        let (writer, _reader) = tokio::io::duplex(1);
        let mut writer = Box::pin(WriteTimeout::new(writer, Duration::MAX, Fired::default()));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(
            writer.as_mut().poll_write(&mut cx, b"a"),
            Poll::Ready(Ok(1))
        ));
        assert!(writer.as_mut().poll_write(&mut cx, b"b").is_pending());
        assert!(writer.as_mut().poll_flush(&mut cx).is_ready());
    }
}
