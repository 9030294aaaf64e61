//! Server-sent events: a response that stays open and sends one event at a time.
//!
//! The types are axum's ([`Sse`], [`Event`], [`KeepAlive`]), re-exported so a handler needs one
//! import. On top of them, [`json_event`] and [`json_events`] write each item's `data` with
//! Chopin's JSON engine ([`crate::json`]), the same bytes a JSON response would carry:
//!
//! ```
//! use axum::{Router, routing::get};
//! use chopin_core::sse::{self, Event, KeepAlive, Sse, Stream};
//! use futures_util::stream;
//! use std::convert::Infallible;
//!
//! #[derive(serde::Serialize)]
//! struct Tick {
//!     n: u32,
//! }
//!
//! async fn ticks() -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
//!     let items = stream::iter((1..=3).map(|n| Tick { n }));
//!     Sse::new(sse::json_events(items)).keep_alive(KeepAlive::default())
//! }
//!
//! let app: Router = Router::new().route("/ticks", get(ticks));
//! ```
//!
//! Under Chopin's default layers an event stream is sent as it is produced:
//!
//! * compression leaves `text/event-stream` alone (tower-http's default predicate), so nothing
//!   waits in a compressor's buffer;
//! * the request timeout (`CHOPIN_REQUEST_TIMEOUT`) bounds the time until the response
//!   *starts*, not how long its body runs, so a stream outlives it;
//! * [`ETagLayer`](crate::cache::http::ETagLayer) and
//!   [`ResponseCacheLayer`](crate::cache::http::ResponseCacheLayer) only read bodies whose size
//!   is known, so they pass a stream through untouched.
//!
//! A stream ends when the client goes away (the body is dropped, and with it the stream), or
//! when the stream itself ends. Graceful shutdown waits for open streams for up to
//! `CHOPIN_SHUTDOWN_TIMEOUT`; a stream that never ends holds shutdown that long. See
//! `docs/streaming.md`.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use serde::Serialize;

pub use axum::response::sse::{Event, KeepAlive, KeepAliveStream, Sse};
/// The stream trait an [`Sse`] response takes (`futures`' `Stream`), for handler signatures.
pub use futures_util::Stream;

use crate::context::{self, REQUEST_CONTEXT, RequestContext};
use crate::error::{ChopinError, FALLBACK_ENVELOPE};
use crate::json::{self, EncodeError};

/// An event whose `data` is `value` as compact JSON, written by Chopin's JSON engine.
///
/// Fails only when `value`'s `Serialize` implementation fails (or a map has non-string keys).
/// Compact JSON has no raw line breaks, so the data is always a single `data:` line.
///
/// ```
/// use chopin_core::sse::json_event;
///
/// #[derive(serde::Serialize)]
/// struct Post {
///     id: i64,
///     title: String,
/// }
///
/// let event = json_event(&Post { id: 7, title: "Hello\nworld".into() })?
///     .event("post")
///     .id("7");
/// # let _ = event;
/// # Ok::<(), chopin_core::json::EncodeError>(())
/// ```
pub fn json_event<T: Serialize + ?Sized>(value: &T) -> Result<Event, EncodeError> {
    Ok(Event::default().data(json::to_string(value)?))
}

/// An `error` event carrying `error`'s envelope, the body an HTTP error response would have
/// (`{"success":false,"error":{"code":…,"message":…,"request_id":…}}`).
///
/// Once an event stream has started, its status is sent and cannot change: use this to tell
/// the client that one item, or the rest of the stream, failed. Called while the request is
/// being handled, the envelope carries its request id; called later (from inside the stream),
/// `request_id` is `null`.
///
/// Browsers' `EventSource` delivers it to `addEventListener("error", …)` listeners as a
/// `MessageEvent` with `data`, and `onerror` / those same listeners also receive
/// `EventSource`'s own connection errors (a plain `Event` with no `data`, also sent before
/// each reconnection). A client must tell them apart, e.g. by checking `event.data`:
///
/// ```js
/// source.addEventListener("error", (event) => {
///   if (event.data) showError(JSON.parse(event.data).error); // sent by the server
///   else showReconnecting();                                  // the connection failed
/// });
/// ```
///
/// ```
/// use chopin_core::ChopinError;
/// use chopin_core::sse::error_event;
///
/// let event = error_event(&ChopinError::NotFound("the feed was closed".into()));
/// # let _ = event;
/// ```
pub fn error_event(error: &ChopinError) -> Event {
    render_error(error, context::current())
}

fn render_error(error: &ChopinError, ctx: Option<RequestContext>) -> Event {
    let envelope = match ctx {
        Some(ctx) => REQUEST_CONTEXT.sync_scope(ctx, || error.to_envelope()),
        None => error.to_envelope(),
    };
    let data = json::to_string(&envelope).unwrap_or_else(|_| FALLBACK_ENVELOPE.to_string());
    Event::default().event("error").data(data)
}

/// Turn a stream of serialisable items into a stream of events, one per item, each item's
/// `data` written by Chopin's JSON engine ([`json_event`]). Put it in an [`Sse`] response.
///
/// An item that fails to serialise does not end the stream and does not panic: it is logged
/// (with the request id and trace id) and replaced by an [`error_event`] with code `INTERNAL_ERROR`, and the
/// next item is sent as usual. The stream itself never fails, so the connection is never cut
/// for it.
///
/// Call it inside the handler, so that error events carry the request's id.
///
/// ```
/// use chopin_core::sse::{self, Event, KeepAlive, KeepAliveStream, JsonEvents, Sse};
/// use futures_util::stream::{self, Iter};
///
/// type Numbers = Iter<std::vec::IntoIter<u64>>;
///
/// async fn numbers() -> Sse<KeepAliveStream<JsonEvents<Numbers>>> {
///     Sse::new(sse::json_events(stream::iter(vec![1, 2, 3])))
///         .keep_alive(KeepAlive::default())
/// }
/// # let _ = axum::Router::<()>::new().route("/n", axum::routing::get(numbers));
/// ```
pub fn json_events<S>(items: S) -> JsonEvents<S>
where
    S: Stream,
    S::Item: Serialize,
{
    JsonEvents {
        items,
        ctx: context::current(),
    }
}

pin_project! {
    /// The stream [`json_events`] returns: one [`Event`] per item of `S`, never an error.
    #[must_use = "streams do nothing unless polled (put it in an `Sse` response)"]
    pub struct JsonEvents<S> {
        #[pin]
        items: S,
        ctx: Option<RequestContext>,
    }
}

impl<S> std::fmt::Debug for JsonEvents<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonEvents")
            .field("items", &std::any::type_name::<S>())
            .finish()
    }
}

impl<S> Stream for JsonEvents<S>
where
    S: Stream,
    S::Item: Serialize,
{
    type Item = Result<Event, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.project();
        let Some(item) = std::task::ready!(this.items.poll_next(cx)) else {
            return Poll::Ready(None);
        };
        let event = match json_event(&item) {
            Ok(event) => event,
            Err(err) => {
                let request_id = this.ctx.as_ref().map(|c| c.id().to_string());
                let trace_id = this
                    .ctx
                    .as_ref()
                    .map(|c| tracing::field::display(c.trace.trace_id()));
                tracing::error!(
                    error = %err,
                    request_id = request_id.as_deref(),
                    trace_id,
                    "server-sent event dropped: its item could not be serialised"
                );
                render_error(&ChopinError::internal(err), this.ctx.clone())
            }
        };
        Poll::Ready(Some(Ok(event)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.items.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A value whose serialisation always fails.
    struct Unserialisable;

    impl Serialize for Unserialisable {
        fn serialize<Ser: serde::Serializer>(&self, _: Ser) -> Result<Ser::Ok, Ser::Error> {
            Err(serde::ser::Error::custom("refuses to be serialised"))
        }
    }

    #[derive(Serialize)]
    #[serde(untagged)]
    enum Item {
        Good(BTreeMap<&'static str, &'static str>),
        Bad(Unserialisable),
    }

    /// The bytes an `Sse` response sends for `events`.
    async fn wire<St>(events: St) -> String
    where
        St: Stream<Item = Result<Event, Infallible>> + Send + 'static,
    {
        use axum::response::IntoResponse;
        use http_body_util::BodyExt;
        let body = Sse::new(events).into_response().into_body();
        let bytes = body.collect().await.expect("body").to_bytes();
        String::from_utf8(bytes.to_vec()).expect("utf-8")
    }

    #[tokio::test]
    async fn a_failing_item_becomes_an_error_event_and_the_stream_goes_on() {
        let items = futures_util::stream::iter(vec![
            Item::Good(BTreeMap::from([("title", "first")])),
            Item::Bad(Unserialisable),
            Item::Good(BTreeMap::from([("title", "third")])),
        ]);
        let wire = wire(json_events(items)).await;
        let events: Vec<&str> = wire.split_terminator("\n\n").collect();
        assert_eq!(events.len(), 3, "{wire}");
        assert_eq!(events[0], r#"data: {"title":"first"}"#);
        assert!(
            events[1].starts_with("event: error\ndata: {\"success\":false,"),
            "{wire}"
        );
        assert!(events[1].contains(r#""code":"INTERNAL_ERROR""#), "{wire}");
        assert!(
            !events[1].contains("refuses"),
            "no internal detail outside a request in development: {wire}"
        );
        assert_eq!(events[2], r#"data: {"title":"third"}"#);
    }
}
