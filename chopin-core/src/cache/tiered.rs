//! The two-tier backend: an in-process moka tier in front of Redis, kept coherent across
//! instances by pub/sub invalidation with acknowledgements.
//!
//! # The protocol
//!
//! Every instance has a random id and one background task holding its own pub/sub connection,
//! subscribed to `<ns>:invalidate` (everybody's invalidations) and `<ns>:ack:<id>` (answers
//! to its own). Writes and deletes change Redis first, then the local tier, and publish an
//! invalidation naming what changed (keys, a prefix, a tag with its keys, or everything).
//! Each receiver evicts those entries locally; for deletes it then answers on the sender's
//! ack channel. A delete returns `Ok` only when as many acks arrived as `PUBLISH` reported
//! receivers — so every instance subscribed at that moment has evicted — and
//! `Err(Unavailable)` when they do not all arrive within the timeout.
//!
//! # The fill race
//!
//! A read that misses locally fetches from Redis and then fills the local tier. If it
//! fetched just *before* a delete and fills just *after* the invalidation was applied, it
//! would put the deleted value back, and the instance would serve it until its local TTL ran
//! out. Two things rule that out:
//!
//! * **Epochs.** Invalidations bump a counter — a per-key-stripe counter for key
//!   invalidations, a global one for prefixes, tags and clears — and a read notes both
//!   counters *before* it goes to Redis. It fills only if neither moved, so a read that
//!   started before an invalidation is applied never fills.
//! * **A lock around the check.** Fills check-and-insert under a shared (read) lock;
//!   invalidations bump-and-evict under the exclusive (write) lock. A fill therefore lands
//!   either entirely before an invalidation (which then evicts it) or entirely after (and
//!   sees the bumped epoch). Reads never wait for the lock: when it is taken, the fill is
//!   skipped (the value is still returned), which only costs a later Redis read.
//!
//! While the subscription is down, the instance cannot hear invalidations, so its local
//! tier is emptied and bypassed (every read goes to Redis) until the subscription is back,
//! when it is emptied again (messages may have been missed in between). As a last line of
//! defence against changes that bypass the protocol (a `DEL` from `redis-cli`, another
//! program), no local entry lives longer than [`TIERED_LOCAL_TTL_MAX`].

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ::redis::aio::PubSub;
use ::redis::{Msg, Value, cmd};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{RwLock, watch};
use tokio::task::JoinHandle;

use super::memory::{Entry, MemoryTier};
use super::redis::{Failed, RedisTier};
use super::stats::{Counters, Event, Tier, bump, record, redis_error};
use super::{CacheError, Lookup, TIERED_LOCAL_TTL_MAX};
use crate::config::CacheConfig;
use crate::json;
use crate::redis_conn::background_timeout;

/// Key invalidations bump one of this many epoch stripes (by key hash), so an invalidation
/// of one key rarely stops fills of others.
const STRIPES: usize = 64;

/// A tag deletion whose keys outnumber this is sent as "clear everything" instead of a list.
const MAX_KEYS_PER_MESSAGE: usize = 10_000;

/// How often the subscription connection is pinged to detect a dead connection.
const PING_INTERVAL: Duration = Duration::from_secs(1);

/// Acks waiting to be sent, at most: beyond it an ack is dropped (and counted), which only
/// makes its sender wait out its timeout and report the delete as unconfirmed.
const ACK_QUEUE: usize = 1024;

/// Tasks sending acks (each one `PUBLISH` at a time, on the shared multiplexed connection).
const ACK_WORKERS: usize = 4;

/// Dropped acks are logged at `warn` at most this often.
const ACK_DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// Backoff between subscription attempts: doubles from the first to the second, jittered.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What an invalidation removes from every local tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Op {
    /// These keys.
    Keys(Vec<String>),
    /// Every key starting with this prefix.
    Prefix(String),
    /// Every local entry carrying this tag, and these keys (the tag set's members in Redis).
    Tag {
        /// The tag.
        tag: String,
        /// Its members, without the namespace.
        keys: Vec<String>,
    },
    /// Everything.
    All,
}

/// One message on `<ns>:invalidate`.
#[derive(Debug, Serialize, Deserialize)]
struct Message {
    /// The sending instance's id.
    from: String,
    /// Identifies the message in acks; 0 when `ack` is false.
    id: u64,
    /// Whether the sender waits for acknowledgements on `<ns>:ack:<from>`.
    ack: bool,
    /// What to evict.
    op: Op,
}

/// Encode an invalidation message (through [`crate::json`]).
pub(crate) fn encode(from: &str, id: u64, ack: bool, op: Op) -> Option<Vec<u8>> {
    let message = Message {
        from: from.to_string(),
        id,
        ack,
        op,
    };
    json::to_vec(&message).ok()
}

/// The invalidation for a deleted tag: its keys, or everything when there are too many to
/// list in one message.
pub(crate) fn tag_op(tag: &str, keys: Vec<String>) -> Op {
    if keys.len() > MAX_KEYS_PER_MESSAGE {
        return Op::All;
    }
    Op::Tag {
        tag: tag.to_string(),
        keys,
    }
}

/// A fresh instance id.
pub(crate) fn instance_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The epochs a read saw before it went to Redis.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    global: u64,
    stripe: usize,
    key: u64,
}

/// Aborts the subscriber task when the last `Cache` clone goes away.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The tiered backend.
pub(crate) struct Tiered {
    shared: Arc<Shared>,
    _subscriber: AbortOnDrop,
    _ack_workers: Vec<AbortOnDrop>,
}

/// State shared by the `Cache` and its subscriber task.
struct Shared {
    local: MemoryTier,
    remote: RedisTier,
    instance: String,
    /// `<ns>:ack:<instance>`.
    ack_channel: String,
    next_ack: AtomicU64,
    acks: Mutex<HashMap<u64, watch::Sender<u64>>>,
    /// Fills hold it shared, invalidations exclusively (see the module docs).
    lock: RwLock<()>,
    global_epoch: AtomicU64,
    key_epochs: Box<[AtomicU64]>,
    hasher: RandomState,
    /// Whether the invalidation subscription is live (the local tier is used only then).
    subscribed: AtomicBool,
    counters: Arc<Counters>,
    /// Acks to send, to the bounded set of ack workers.
    acks_out: AckQueue,
}

impl Tiered {
    /// Connect to Redis, subscribe, and start the subscriber task. Fails fast (within
    /// [`background_timeout`]) when Redis cannot be reached or the subscription fails.
    pub async fn connect(
        config: &CacheConfig,
        counters: Arc<Counters>,
    ) -> Result<Tiered, CacheError> {
        let remote = RedisTier::connect(config, Arc::clone(&counters)).await?;
        let local = MemoryTier::new(config.memory_bytes, Arc::clone(&counters));
        let instance = instance_id();
        let ack_channel = format!("{}ack:{instance}", remote.prefix());
        let (acks_out, ack_rx) = AckQueue::new(ACK_QUEUE);
        let ack_workers = {
            let (conn, timeout, counters) =
                (remote.connection(), remote.timeout(), Arc::clone(&counters));
            spawn_ack_workers(ack_rx, ACK_WORKERS, move |channel, id| {
                let (mut conn, counters) = (conn.clone(), Arc::clone(&counters));
                async move {
                    let mut publish = cmd("PUBLISH");
                    publish.arg(channel).arg(id.to_string());
                    let sent =
                        tokio::time::timeout(timeout, publish.query_async::<Value>(&mut conn))
                            .await;
                    if !matches!(sent, Ok(Ok(_))) {
                        redis_error(&counters);
                        tracing::debug!(id, "could not acknowledge a cache invalidation");
                    }
                }
            })
        };
        let shared = Arc::new(Shared {
            local,
            remote,
            instance,
            ack_channel,
            next_ack: AtomicU64::new(1),
            acks: Mutex::new(HashMap::new()),
            lock: RwLock::new(()),
            global_epoch: AtomicU64::new(0),
            key_epochs: (0..STRIPES).map(|_| AtomicU64::new(0)).collect(),
            hasher: RandomState::new(),
            subscribed: AtomicBool::new(false),
            counters,
            acks_out,
        });
        let pubsub = shared
            .subscribe()
            .await
            .map_err(|reason| CacheError::Connect {
                url: crate::config::redact_url(&config.redis_url),
                source: format!("cannot subscribe to invalidations: {reason}").into(),
            })?;
        // Deletes need a live subscription to be confirmed: be subscribed before returning.
        // (Before the task starts, so that a quick loss of the subscription is not undone.)
        shared.set_subscribed(true).await;
        let task = tokio::spawn(run_subscriber(Arc::clone(&shared), pubsub));
        Ok(Tiered {
            shared,
            _subscriber: AbortOnDrop(task),
            _ack_workers: ack_workers.into_iter().map(AbortOnDrop).collect(),
        })
    }

    /// The local tier (for stats and maintenance).
    pub fn local(&self) -> &MemoryTier {
        &self.shared.local
    }

    /// The Redis tier.
    pub fn remote(&self) -> &RedisTier {
        &self.shared.remote
    }

    /// Whether the invalidation subscription is live.
    pub fn is_subscribed(&self) -> bool {
        self.shared.subscribed.load(Ordering::SeqCst)
    }

    /// The value, and which tiers were asked: the local one first (only while subscribed),
    /// then Redis.
    pub async fn get(&self, key: &str) -> Lookup {
        let s = &self.shared;
        let local = s.subscribed.load(Ordering::SeqCst);
        if local && let Some(value) = s.local.get(key).await {
            return Lookup::found(value, Tier::Memory, false);
        }
        let stamp = s.stamp(key);
        match s.remote.get_with_ttl(key).await {
            Ok(Some((value, ttl))) => {
                if let Some(ttl) = ttl {
                    let entry = Entry::new(value.clone(), ttl.min(TIERED_LOCAL_TTL_MAX));
                    s.fill(key, entry, stamp).await;
                }
                Lookup::found(value, Tier::Redis, local)
            }
            Ok(None) | Err(Failed) => Lookup::missed(Tier::Redis, local),
        }
    }

    /// Write to Redis (telling other instances to drop their copy), then locally.
    pub async fn set(&self, key: &str, value: Bytes, ttl: Duration, tags: &[&str]) {
        let s = &self.shared;
        let stamp = s.stamp(key);
        let op = Op::Keys(vec![key.to_string()]);
        let message = encode(&s.instance, 0, false, op.clone());
        match s
            .remote
            .set(key, &value, ttl, tags, message.as_deref())
            .await
        {
            Ok(()) => {
                let entry = Entry::tagged(value, ttl.min(TIERED_LOCAL_TTL_MAX), tags);
                s.fill(key, entry, stamp).await;
            }
            // The write may still have reached Redis: never keep an older local copy.
            Err(Failed) => s.invalidate(&op).await,
        }
    }

    /// Delete in Redis and locally, publish, and wait for every subscriber's ack.
    pub async fn delete(&self, key: &str) -> Result<(), CacheError> {
        let s = &self.shared;
        let wait = s.register_ack();
        let op = Op::Keys(vec![key.to_string()]);
        let message = encode(&s.instance, wait.id, true, op.clone()).ok_or_else(|| s.codec())?;
        let published = s.remote.delete(key, Some(&message)).await;
        s.invalidate(&op).await;
        let receivers = published?;
        s.await_acks(wait, receivers).await
    }

    /// Delete a prefix in Redis (SCAN + UNLINK) and locally, publish, wait for the acks.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), CacheError> {
        let s = &self.shared;
        let wait = s.register_ack();
        let op = Op::Prefix(prefix.to_string());
        let deleted = s.remote.delete_prefix(prefix).await;
        s.invalidate(&op).await;
        // Even after a partial failure, tell the others about the keys already gone.
        let message = encode(&s.instance, wait.id, true, op).ok_or_else(|| s.codec())?;
        let published = s.remote.publish(&message).await;
        deleted?;
        s.await_acks(wait, published?).await
    }

    /// Delete a tag's keys in Redis (in batches) and locally, publish them, wait for the acks.
    pub async fn delete_tag(&self, tag: &str) -> Result<(), CacheError> {
        let s = &self.shared;
        let wait = s.register_ack();
        let (keys, deleted) = s.remote.delete_tag(tag).await;
        let op = tag_op(tag, keys);
        s.invalidate(&op).await;
        // Even after a partial failure (batches run one by one), tell the others about the
        // keys already gone.
        let message = encode(&s.instance, wait.id, true, op).ok_or_else(|| s.codec())?;
        let published = s.remote.publish(&message).await;
        deleted?;
        s.await_acks(wait, published?).await
    }
}

/// A registered wait for acks; unregisters when dropped.
struct AckWait<'a> {
    shared: &'a Shared,
    id: u64,
    received: watch::Receiver<u64>,
}

impl Drop for AckWait<'_> {
    fn drop(&mut self) {
        self.shared.acks().remove(&self.id);
    }
}

impl Shared {
    fn acks(&self) -> MutexGuard<'_, HashMap<u64, watch::Sender<u64>>> {
        self.acks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn codec(&self) -> CacheError {
        bump(&self.counters.codec_errors);
        CacheError::Unavailable
    }

    fn register_ack(&self) -> AckWait<'_> {
        let id = self.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(0);
        self.acks().insert(id, tx);
        AckWait {
            shared: self,
            id,
            received: rx,
        }
    }

    fn ack_received(&self, id: u64) {
        if let Some(tx) = self.acks().get(&id) {
            tx.send_modify(|n| *n += 1);
        }
    }

    /// Wait until `receivers` acks arrived for `wait`, within the call timeout.
    async fn await_acks(&self, mut wait: AckWait<'_>, receivers: u64) -> Result<(), CacheError> {
        if !self.subscribed.load(Ordering::SeqCst) {
            // Acks arrive through the subscription: without it nothing can be confirmed.
            redis_error(&self.counters);
            tracing::debug!("invalidation not confirmed: not subscribed");
            return Err(CacheError::Unavailable);
        }
        let timeout = self.remote.timeout();
        let confirmed = tokio::time::timeout(timeout, wait.received.wait_for(|n| *n >= receivers))
            .await
            .is_ok_and(|r| r.is_ok());
        if confirmed {
            return Ok(());
        }
        redis_error(&self.counters);
        let got = *wait.received.borrow();
        tracing::warn!(
            expected = receivers,
            received = got,
            ?timeout,
            "cache invalidation not confirmed by every instance in time"
        );
        Err(CacheError::Unavailable)
    }

    fn stripe(&self, key: &str) -> usize {
        (self.hasher.hash_one(key) % STRIPES as u64) as usize
    }

    fn stamp(&self, key: &str) -> Stamp {
        let stripe = self.stripe(key);
        Stamp {
            global: self.global_epoch.load(Ordering::SeqCst),
            stripe,
            key: self.key_epochs[stripe].load(Ordering::SeqCst),
        }
    }

    /// Insert into the local tier unless an invalidation happened since `stamp` was taken,
    /// the subscription is down, or an invalidation is running right now.
    async fn fill(&self, key: &str, entry: Entry, stamp: Stamp) {
        let Ok(_guard) = self.lock.try_read() else {
            return;
        };
        let unchanged = self.global_epoch.load(Ordering::SeqCst) == stamp.global
            && self.key_epochs[stamp.stripe].load(Ordering::SeqCst) == stamp.key;
        if unchanged && self.subscribed.load(Ordering::SeqCst) {
            self.local.insert(key, entry).await;
        }
    }

    /// Bump the epochs and evict, excluding fills.
    async fn invalidate(&self, op: &Op) {
        let _guard = self.lock.write().await;
        match op {
            Op::Keys(keys) => {
                for key in keys {
                    self.key_epochs[self.stripe(key)].fetch_add(1, Ordering::SeqCst);
                    self.local.remove(key).await;
                }
            }
            Op::Prefix(prefix) => {
                self.global_epoch.fetch_add(1, Ordering::SeqCst);
                self.local.remove_prefix(prefix).await;
            }
            Op::Tag { tag, keys } => {
                self.global_epoch.fetch_add(1, Ordering::SeqCst);
                self.local.remove_tag(tag).await;
                for key in keys {
                    self.local.remove(key).await;
                }
            }
            Op::All => {
                self.global_epoch.fetch_add(1, Ordering::SeqCst);
                self.local.clear();
            }
        }
    }

    /// Switch the local tier on or off; either way it starts empty.
    async fn set_subscribed(&self, subscribed: bool) {
        let _guard = self.lock.write().await;
        self.global_epoch.fetch_add(1, Ordering::SeqCst);
        self.local.clear();
        self.subscribed.store(subscribed, Ordering::SeqCst);
    }

    /// Open a pub/sub connection subscribed to both channels.
    async fn subscribe(&self) -> Result<PubSub, String> {
        let deadline = background_timeout(self.remote.timeout());
        let attempt = async {
            let mut pubsub = self.remote.client().get_async_pubsub().await?;
            pubsub
                .subscribe(&[self.remote.channel(), self.ack_channel.as_str()])
                .await?;
            Ok::<_, ::redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(deadline, attempt).await {
            Ok(Ok(pubsub)) => Ok(pubsub),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {deadline:?}")),
        }
    }

    /// Serve one subscription until it fails; returns why.
    async fn listen(&self, pubsub: PubSub) -> String {
        let (mut sink, mut stream) = pubsub.split();
        let deadline = background_timeout(self.remote.timeout());
        let messages = async {
            while let Some(msg) = stream.next().await {
                self.handle(&msg).await;
            }
            "connection closed".to_string()
        };
        let pings = async {
            loop {
                tokio::time::sleep(PING_INTERVAL).await;
                match tokio::time::timeout(deadline, sink.ping::<Value>()).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return format!("PING failed: {e}"),
                    Err(_) => return format!("PING not answered within {deadline:?}"),
                }
            }
        };
        tokio::select! {
            reason = messages => reason,
            reason = pings => reason,
        }
    }

    /// Apply one message from either channel.
    async fn handle(&self, msg: &Msg) {
        let payload = msg.get_payload_bytes();
        if msg.get_channel_name() == self.ack_channel {
            if let Some(id) = std::str::from_utf8(payload)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
            {
                self.ack_received(id);
            }
            return;
        }
        let message = match json::from_slice::<Message>(payload) {
            Ok(message) => message,
            Err(e) => {
                // Fail closed: an invalidation we cannot read may have been for anything.
                tracing::warn!(error = %e, "undecodable cache invalidation; clearing the local tier");
                bump(&self.counters.codec_errors);
                record(Tier::Redis, Event::Error);
                self.invalidate(&Op::All).await;
                return;
            }
        };
        if message.from != self.instance {
            self.invalidate(&message.op).await;
            bump(&self.counters.invalidations_received);
        }
        if message.ack {
            if message.from == self.instance {
                // Our own local tier was invalidated before we published.
                self.ack_received(message.id);
            } else {
                self.send_ack(&message.from, message.id);
            }
        }
    }

    /// Tell `to` that invalidation `id` is applied here: queued for the ack workers (so
    /// messages keep flowing), or dropped and counted when the queue is full.
    fn send_ack(&self, to: &str, id: u64) {
        let channel = format!("{}ack:{to}", self.remote.prefix());
        if !self.acks_out.push(channel, id) {
            redis_error(&self.counters);
        }
    }
}

/// The bounded queue of acks waiting for the ack workers: a flood of invalidations (or a
/// slow Redis) holds at most its capacity in memory and [`ACK_WORKERS`] tasks, never one task
/// per message.
struct AckQueue {
    tx: tokio::sync::mpsc::Sender<(String, u64)>,
    dropped: AtomicU64,
    /// When a drop was last logged at `warn`.
    logged: Mutex<Option<std::time::Instant>>,
}

impl AckQueue {
    fn new(capacity: usize) -> (AckQueue, tokio::sync::mpsc::Receiver<(String, u64)>) {
        let (tx, rx) = tokio::sync::mpsc::channel(capacity.max(1));
        let queue = AckQueue {
            tx,
            dropped: AtomicU64::new(0),
            logged: Mutex::new(None),
        };
        (queue, rx)
    }

    /// Queue an ack for `channel`; `false` (counted, logged at most once per
    /// [`ACK_DROP_LOG_EVERY`]) when the queue is full.
    fn push(&self, channel: String, id: u64) -> bool {
        if self.tx.try_send((channel, id)).is_ok() {
            return true;
        }
        let total = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let now = std::time::Instant::now();
        let due = match self.logged.try_lock() {
            Ok(mut last) if last.is_none_or(|at| now.duration_since(at) >= ACK_DROP_LOG_EVERY) => {
                *last = Some(now);
                true
            }
            _ => false,
        };
        if due {
            tracing::warn!(
                dropped_total = total,
                "cache invalidation acks are not sent as fast as they arrive: ack dropped (its \
                 sender reports the delete unconfirmed after its timeout)"
            );
        }
        false
    }

    /// Acks dropped because the queue was full.
    #[cfg(test)]
    fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// `workers` tasks sending the queued acks with `send`, one at a time each, until the queue
/// is closed (or they are aborted).
fn spawn_ack_workers<F, Fut>(
    rx: tokio::sync::mpsc::Receiver<(String, u64)>,
    workers: usize,
    send: F,
) -> Vec<JoinHandle<()>>
where
    F: Fn(String, u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    (0..workers.max(1))
        .map(|_| {
            let (rx, send) = (Arc::clone(&rx), send.clone());
            tokio::spawn(async move {
                loop {
                    let next = rx.lock().await.recv().await;
                    let Some((channel, id)) = next else {
                        return;
                    };
                    send(channel, id).await;
                }
            })
        })
        .collect()
}

/// A jittered delay in `[delay / 2, delay]`.
fn jitter(delay: Duration) -> Duration {
    let random = RandomState::new().hash_one(0u8);
    delay.mul_f64(0.5 + (random % 1000) as f64 / 2000.0)
}

/// The subscriber task: serve the subscription; when it fails, switch the local tier off and
/// resubscribe with backoff, forever (the task is aborted when the `Cache` is dropped).
async fn run_subscriber(shared: Arc<Shared>, first: PubSub) {
    let mut next = Some(first);
    let mut delay = MIN_BACKOFF;
    let mut lost = false;
    loop {
        let pubsub = match next.take() {
            Some(pubsub) => Some(pubsub),
            None => match shared.subscribe().await {
                Ok(pubsub) => Some(pubsub),
                Err(reason) => {
                    tracing::debug!(reason, "cache invalidation subscription attempt failed");
                    None
                }
            },
        };
        if let Some(pubsub) = pubsub {
            if lost {
                shared.set_subscribed(true).await;
                tracing::info!("cache invalidation subscription restored; local tier back on");
            }
            delay = MIN_BACKOFF;
            let reason = shared.listen(pubsub).await;
            shared.set_subscribed(false).await;
            lost = true;
            tracing::warn!(
                reason,
                "cache invalidation subscription lost; local tier off until it is back"
            );
        }
        tokio::time::sleep(jitter(delay)).await;
        delay = (delay * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let bytes = encode("a1", 7, true, Op::Keys(vec!["user:1".into()])).unwrap();
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            text,
            r#"{"from":"a1","id":7,"ack":true,"op":{"keys":["user:1"]}}"#
        );
        let back: Message = json::from_slice(&bytes).unwrap();
        assert_eq!(back.op, Op::Keys(vec!["user:1".into()]));
        for op in [
            Op::Prefix("p:".into()),
            Op::Tag {
                tag: "t".into(),
                keys: vec!["a".into()],
            },
            Op::All,
        ] {
            let bytes = encode("b", 0, false, op.clone()).unwrap();
            let back: Message = json::from_slice(&bytes).unwrap();
            assert_eq!(back.op, op);
        }
    }

    #[tokio::test]
    async fn acks_are_bounded_by_the_queue_and_the_workers() {
        // Workers whose `PUBLISH` hangs until the gate opens (a slow Redis), and a flood of
        // 10 000 invalidations: at most `capacity` acks wait and `workers` are in flight;
        // the rest are dropped and counted, not spawned.
        let (capacity, workers, flood) = (16, 2, 10_000u64);
        let (queue, rx) = AckQueue::new(capacity);
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let (started, sent) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let handles = {
            let (gate, started, sent) = (gate.clone(), started.clone(), sent.clone());
            spawn_ack_workers(rx, workers, move |_channel, _id| {
                let (gate, started, sent) = (gate.clone(), started.clone(), sent.clone());
                async move {
                    started.fetch_add(1, Ordering::SeqCst);
                    let _permit = gate.acquire().await;
                    sent.fetch_add(1, Ordering::SeqCst);
                }
            })
        };
        assert_eq!(handles.len(), workers);
        // Let the workers take their first acks.
        for id in 0..workers as u64 {
            assert!(queue.push("ch".into(), id));
        }
        for _ in 0..100 {
            if started.load(Ordering::SeqCst) == workers as u64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(started.load(Ordering::SeqCst), workers as u64);
        let accepted = (workers as u64..flood)
            .filter(|id| queue.push("ch".into(), *id))
            .count() as u64;
        assert_eq!(accepted, capacity as u64, "only the queue's capacity waits");
        assert_eq!(queue.dropped(), flood - workers as u64 - capacity as u64);
        assert_eq!(
            started.load(Ordering::SeqCst),
            workers as u64,
            "no more sends in flight than workers"
        );
        gate.add_permits(flood as usize);
        let want = workers as u64 + capacity as u64;
        for _ in 0..200 {
            if sent.load(Ordering::SeqCst) == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            sent.load(Ordering::SeqCst),
            want,
            "every queued ack is sent"
        );
        drop(queue);
        for handle in handles {
            tokio::time::timeout(Duration::from_secs(2), handle)
                .await
                .expect("the workers end with the queue")
                .unwrap();
        }
    }

    #[test]
    fn jitter_stays_within_half_and_full() {
        for _ in 0..100 {
            let d = jitter(Duration::from_millis(1000));
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(1000));
        }
    }
}
