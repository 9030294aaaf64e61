//! Who a request is charged to: its client address (always), and the buckets a
//! [`RateLimitKey`] names or else the address again, found behind trusted proxies only.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;

use http::HeaderMap;

use crate::config::IpNet;

/// What [`RateLimitKey::buckets`] returns: a boxed future, so that the trait stays usable as
/// `dyn RateLimitKey` and a key may look things up without blocking.
pub type KeyFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Names the client buckets a request is charged to, for
/// [`RateLimitLayer::key_by`](super::RateLimitLayer::key_by).
///
/// The layer always charges the request's address first, to the `ip` policy
/// (`CHOPIN_RATE_LIMIT_IP`), before it asks the key anything: a client over that limit is
/// refused without the key doing any work. The key then names buckets of the `client`
/// policy (`CHOPIN_RATE_LIMIT`); a request it charges to none is charged to its client
/// address there too (`ip:<addr>`). Buckets are charged in order: the first one over its limit
/// refuses the request (429); those before it stay charged, those after it are not.
///
/// With the `auth` feature, `Auth` implements it (installed by `RateLimitLayer::per_user`):
/// a request whose access token `Auth::verify` has already verified (and still remembers) is
/// charged to `user:<sub>`. It never verifies a signature itself.
///
/// ```
/// use chopin_core::rate_limit::{Buckets, KeyFuture, RateLimitKey, RateLimitRequest};
///
/// /// One budget per API key.
/// struct ApiKey;
///
/// impl RateLimitKey for ApiKey {
///     fn buckets<'a>(
///         &'a self,
///         request: RateLimitRequest<'a>,
///         buckets: &'a mut Buckets,
///     ) -> KeyFuture<'a> {
///         if let Some(key) = request.headers().get("x-api-key").and_then(|v| v.to_str().ok()) {
///             buckets.charge(format!("key:{key}"));
///         }
///         Box::pin(async {})
///     }
/// }
/// ```
///
/// The key is asked once per request, before the handler runs: it must be cheap, and must
/// trust only verified credentials (a key read from an unverified token lets a client spend
/// someone else's budget).
pub trait RateLimitKey: Send + Sync + 'static {
    /// Charge `request` to client buckets with [`Buckets::charge`]; charging none leaves it
    /// to its client address.
    fn buckets<'a>(
        &'a self,
        request: RateLimitRequest<'a>,
        buckets: &'a mut Buckets,
    ) -> KeyFuture<'a>;
}

/// A request as a [`RateLimitKey`] sees it: its headers and its client address.
#[derive(Debug, Clone, Copy)]
pub struct RateLimitRequest<'a> {
    headers: &'a HeaderMap,
    peer: Option<SocketAddr>,
    trusted: &'a [IpNet],
}

impl<'a> RateLimitRequest<'a> {
    pub(super) fn new(
        headers: &'a HeaderMap,
        peer: Option<SocketAddr>,
        trusted: &'a [IpNet],
    ) -> Self {
        Self {
            headers,
            peer,
            trusted,
        }
    }

    /// The request's headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The client's IP (see [`client_ip`]), or `None` without a peer address.
    pub fn client_ip(&self) -> Option<IpAddr> {
        client_ip(self.headers, self.peer.map(|p| p.ip()), self.trusted)
    }

    /// The client address's bucket: `ip:<IPv4>`, or `ip:<first 64 bits>::/64` for IPv6 (one
    /// host usually holds a whole /64, so a per-address key would hand it endless fresh
    /// budgets; IPv4-mapped IPv6 addresses count as the IPv4 address). `None` without a peer
    /// address.
    pub fn ip_key(&self) -> Option<String> {
        Some(format!("ip:{}", address_key(self.client_ip()?)))
    }
}

/// The key of a client address, as every per-address limit counts it: the IPv4 address, or
/// `<first 64 bits>::/64` for IPv6 (one host usually holds a whole /64, so a per-address key
/// would hand it endless fresh budgets). Pass it a [`client_ip`] (IPv4-mapped IPv6
/// addresses already turned into IPv4).
pub(crate) fn address_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            format!("{}/64", std::net::Ipv6Addr::from(prefix))
        }
    }
}

/// The buckets one request is charged to, in order. Holding one bucket costs no allocation
/// besides its key.
#[derive(Debug, Default)]
pub struct Buckets {
    first: Option<String>,
    rest: Vec<String>,
}

impl Buckets {
    /// Charge the request to the bucket `key` as well (keys are namespaced by the limiter;
    /// prefix them by kind, as in `user:42`, so kinds never collide).
    pub fn charge(&mut self, key: impl Into<String>) {
        match self.first {
            None => self.first = Some(key.into()),
            Some(_) => self.rest.push(key.into()),
        }
    }

    /// `true` when no bucket was charged.
    pub fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// The buckets, in the order they were charged.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.first.iter().chain(&self.rest).map(String::as_str)
    }

    pub(super) fn into_first(self) -> Option<String> {
        self.first
    }
}

/// One `X-Forwarded-For` entry as an address: a bare IPv4 or IPv6 address, `ip:port`,
/// `[ipv6]` or `[ipv6]:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

/// The client's IP: the peer, or — when the peer is a trusted proxy — the right-most
/// `X-Forwarded-For` entry that is not a trusted proxy. Entries may carry a port or
/// brackets (`1.2.3.4:5678`, `[2001:db8::1]:443`); IPv4-mapped IPv6 addresses are returned
/// as IPv4.
pub fn client_ip(headers: &HeaderMap, peer: Option<IpAddr>, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let mut client = peer;
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        match parse_hop(hop).map(|ip| ip.to_canonical()) {
            Some(ip) => {
                client = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
            // Garbage in the chain: stop at the last address we could trust.
            None => break,
        }
    }
    Some(client)
}
