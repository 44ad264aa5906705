//! DNS block lists (RFC 5782): is the connecting client listed? Spamhaus Zen by default.
//! Fails open: a lookup that fails or times out does not refuse mail.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;

/// The verdict for one client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// Listed by `zone` with return code `code`; `reason` from its TXT record.
    Listed {
        /// The block list zone.
        zone: String,
        /// The A record returned (127.0.0.2 - 127.0.0.11).
        code: Ipv4Addr,
        /// The zone's explanation, if it published one.
        reason: Option<String>,
    },
    /// Not listed anywhere (or unknown: we fail open).
    NotListed,
}

const MAX_CACHE: usize = 100_000;
const MIN_TTL: Duration = Duration::from_secs(60);
const MAX_TTL: Duration = Duration::from_secs(3600);
const NEGATIVE_TTL: Duration = Duration::from_secs(300);

/// Block list checks with a per-IP cache.
#[derive(Debug)]
pub struct Dnsbl {
    resolver: TokioResolver,
    zones: Vec<String>,
    trusted: Vec<ipnet::IpNet>,
    cache: Mutex<Cache>,
    warned: Mutex<HashSet<String>>,
}

#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<IpAddr, (Listing, Instant)>,
    order: VecDeque<IpAddr>,
}

/// The name to query for `ip` in `zone` (RFC 5782 §2.1 for IPv4: reversed octets;
/// §2.4 for IPv6: the 32 nibbles reversed).
pub fn reverse_name(ip: IpAddr, zone: &str) -> String {
    let zone = zone.trim_end_matches('.');
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.{zone}.")
        }
        IpAddr::V6(v6) => {
            let mut labels = String::new();
            for byte in v6.octets().iter().rev() {
                labels.push_str(&format!("{:x}.{:x}.", byte & 0xf, byte >> 4));
            }
            format!("{labels}{zone}.")
        }
    }
}

/// What an A answer from a block list means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// 127.0.0.2 - 127.0.0.11: listed.
    Listed,
    /// 127.255.255.x: Spamhaus's error codes (refused, open resolver, over quota).
    Refused,
    /// Anything else: not a listing we understand.
    Other,
}

fn classify(code: Ipv4Addr) -> Answer {
    match code.octets() {
        [127, 0, 0, 2..=11] => Answer::Listed,
        [127, 255, 255, _] => Answer::Refused,
        _ => Answer::Other,
    }
}

impl Dnsbl {
    /// Checks against `zones` with `resolver`; clients in `trusted` are never queried.
    pub fn new(resolver: TokioResolver, zones: Vec<String>, trusted: Vec<ipnet::IpNet>) -> Dnsbl {
        Dnsbl {
            resolver,
            zones,
            trusted,
            cache: Mutex::new(Cache::default()),
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// Checks `ip` against every zone in order; the first listing wins. (Usually one
    /// zone: Zen combines Spamhaus's lists.)
    pub async fn check(&self, ip: IpAddr) -> Listing {
        if self.zones.is_empty() || self.trusted.iter().any(|net| net.contains(&ip)) {
            return Listing::NotListed;
        }
        if let Some(hit) = self.cached(ip) {
            return hit;
        }
        let mut ttl = MAX_TTL;
        let mut listing = Listing::NotListed;
        for zone in &self.zones {
            let (answer, zone_ttl) = self.query(ip, zone).await;
            ttl = ttl.min(zone_ttl);
            if matches!(answer, Listing::Listed { .. }) {
                listing = answer;
                break;
            }
        }
        self.remember(ip, listing.clone(), ttl.clamp(MIN_TTL, MAX_TTL));
        listing
    }

    async fn query(&self, ip: IpAddr, zone: &str) -> (Listing, Duration) {
        let name = reverse_name(ip, zone);
        let lookup = match self.resolver.ipv4_lookup(name.as_str()).await {
            Ok(lookup) => lookup,
            Err(NetError::Dns(DnsError::NoRecordsFound(no)))
                if no.response_code == ResponseCode::NXDomain
                    || no.response_code == ResponseCode::NoError =>
            {
                let ttl = no
                    .negative_ttl
                    .map_or(NEGATIVE_TTL, |t| Duration::from_secs(u64::from(t)));
                return (Listing::NotListed, ttl);
            }
            Err(e) => {
                tracing::warn!(%ip, zone, error = %e, "DNSBL lookup failed: accepting (fail open)");
                return (Listing::NotListed, MIN_TTL);
            }
        };
        let ttl = lookup
            .valid_until()
            .saturating_duration_since(Instant::now());
        let codes: Vec<Ipv4Addr> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        if let Some(code) = codes
            .iter()
            .copied()
            .find(|c| classify(*c) == Answer::Listed)
        {
            let reason = self.reason(&name).await;
            return (
                Listing::Listed {
                    zone: zone.to_string(),
                    code,
                    reason,
                },
                ttl,
            );
        }
        if let Some(code) = codes.iter().find(|c| classify(**c) == Answer::Refused) {
            let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
            if warned.insert(zone.to_string()) {
                tracing::warn!(
                    zone,
                    %code,
                    "the block list refuses our queries (127.255.255.x: public resolver or over quota); \
                     its answers are ignored: use a local resolver in [dns] nameservers"
                );
            }
        } else if !codes.is_empty() {
            tracing::debug!(zone, ?codes, "DNSBL answer not understood: not listed");
        }
        (Listing::NotListed, ttl)
    }

    async fn reason(&self, name: &str) -> Option<String> {
        let lookup = self.resolver.txt_lookup(name).await.ok()?;
        lookup.answers().iter().find_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>(),
            ),
            _ => None,
        })
    }

    fn cached(&self, ip: IpAddr) -> Option<Listing> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        match cache.entries.get(&ip) {
            Some((listing, expires)) if *expires > Instant::now() => Some(listing.clone()),
            _ => None,
        }
    }

    fn remember(&self, ip: IpAddr, listing: Listing, ttl: Duration) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache
            .entries
            .insert(ip, (listing, Instant::now() + ttl))
            .is_none()
        {
            cache.order.push_back(ip);
        }
        while cache.entries.len() > MAX_CACHE {
            match cache.order.pop_front() {
                Some(old) => {
                    cache.entries.remove(&old);
                }
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.0.2.99".parse().unwrap(), "zen.spamhaus.org"),
            "99.2.0.192.zen.spamhaus.org."
        );
        assert_eq!(
            reverse_name("2001:db8:1:2:3:4:567:89ab".parse().unwrap(), "dnsbl.test."),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.dnsbl.test."
        );
    }

    #[test]
    fn return_codes() {
        assert_eq!(classify(Ipv4Addr::new(127, 0, 0, 2)), Answer::Listed);
        assert_eq!(classify(Ipv4Addr::new(127, 0, 0, 11)), Answer::Listed);
        assert_eq!(classify(Ipv4Addr::new(127, 0, 0, 12)), Answer::Other);
        assert_eq!(classify(Ipv4Addr::new(127, 255, 255, 254)), Answer::Refused);
        assert_eq!(classify(Ipv4Addr::new(10, 0, 0, 2)), Answer::Other);
    }
}
