//! Security settings: trusted proxies and response headers (`CHOPIN_TRUSTED_PROXIES`,
//! `CHOPIN_TRUSTED_PROXIES_ALLOW_ANY`, `CHOPIN_SECURITY_HEADERS`, `CHOPIN_HSTS`).

use std::str::FromStr;

use super::Environment;
use super::reader::{Reader, parse_bool};

/// Security settings: trusted proxies and response headers. See `docs/security.md`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityConfig {
    /// `CHOPIN_TRUSTED_PROXIES`: comma-separated IPs or CIDR blocks of reverse proxies whose
    /// `X-Forwarded-For` is believed (unset: none; the socket address is the client). A block
    /// with prefix length 0 (`0.0.0.0/0`, `::/0`) trusts every client to name its own
    /// address, which makes per-IP limits worthless: it is refused unless
    /// `CHOPIN_TRUSTED_PROXIES_ALLOW_ANY=true`.
    pub trusted_proxies: Vec<IpNet>,
    /// `CHOPIN_TRUSTED_PROXIES_ALLOW_ANY` (`false`): accept a block of every address in
    /// `CHOPIN_TRUSTED_PROXIES`, for a server that no client can reach except through the
    /// proxies.
    pub trusted_proxies_allow_any: bool,
    /// `CHOPIN_SECURITY_HEADERS` (`true`): `X-Content-Type-Options`, `X-Frame-Options`,
    /// `Referrer-Policy` and (in production) HSTS on every response.
    pub headers: bool,
    /// `CHOPIN_HSTS` (on in production): send `Strict-Transport-Security`.
    pub hsts: bool,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            trusted_proxies: Vec::new(),
            trusted_proxies_allow_any: false,
            headers: true,
            hsts: false,
        }
    }
}

/// An IP network (`10.0.0.0/8`, `::1/128`); a bare address is a one-address network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpNet {
    /// The network address.
    pub addr: std::net::IpAddr,
    /// Prefix length in bits.
    pub prefix: u8,
}

impl IpNet {
    /// `true` when `ip` lies in this network (IPv4-mapped IPv6 addresses match IPv4 networks).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("{s:?} has an invalid prefix length")),
            },
        };
        Ok(IpNet { addr, prefix })
    }
}

impl SecurityConfig {
    /// Read `CHOPIN_TRUSTED_PROXIES` (refusing a block that contains every address unless
    /// `CHOPIN_TRUSTED_PROXIES_ALLOW_ANY=true`), `CHOPIN_SECURITY_HEADERS` and `CHOPIN_HSTS`;
    /// HSTS is on by default in production.
    pub(super) fn from_reader(r: &mut Reader<'_>, environment: Environment) -> SecurityConfig {
        let allow_any = r
            .get("CHOPIN_TRUSTED_PROXIES_ALLOW_ANY", parse_bool)
            .unwrap_or(false);
        let mut trusted_proxies = Vec::new();
        if let Some(raw) = r.raw("CHOPIN_TRUSTED_PROXIES") {
            for net in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                match net.parse::<IpNet>() {
                    Ok(n) if n.prefix == 0 && !allow_any => r.problem(
                        "CHOPIN_TRUSTED_PROXIES",
                        &raw,
                        format!(
                            "{net:?} trusts every address as a proxy, so any client could \
                             choose its own address with X-Forwarded-For and escape per-IP \
                             rate limits; list your proxies' addresses, or set \
                             CHOPIN_TRUSTED_PROXIES_ALLOW_ANY=true if every connection really \
                             comes through a trusted proxy"
                        ),
                    ),
                    Ok(n) => trusted_proxies.push(n),
                    Err(problem) => r.problem("CHOPIN_TRUSTED_PROXIES", &raw, problem),
                }
            }
        }
        SecurityConfig {
            trusted_proxies,
            trusted_proxies_allow_any: allow_any,
            headers: r.get("CHOPIN_SECURITY_HEADERS", parse_bool).unwrap_or(true),
            hsts: r
                .get("CHOPIN_HSTS", parse_bool)
                .unwrap_or(environment.is_production()),
        }
    }
}
