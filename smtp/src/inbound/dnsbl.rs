//! DNS block lists (RFC 5782): is the connecting client listed? Spamhaus Zen by default.
//! Fails open: a lookup that fails or times out does not refuse mail.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;
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

/// Most client addresses remembered; past it the oldest entry goes.
const MAX_CACHE: usize = 100_000;
/// Shortest time an answer is remembered, whatever its TTL.
const MIN_TTL: Duration = Duration::from_secs(60);
/// Longest time an answer is remembered, whatever its TTL.
const MAX_TTL: Duration = Duration::from_secs(3600);
/// How long an NXDOMAIN is remembered when the answer carries no SOA.
const NEGATIVE_TTL: Duration = Duration::from_secs(300);

/// Block list checks with a per-IP cache.
#[derive(Debug)]
pub struct Dnsbl {
    resolver: TokioResolver,
    zones: Vec<String>,
    trusted: Vec<ipnet::IpNet>,
    cache: Mutex<Cache>,
    /// Zones we already warned about for answering 127.255.255.x.
    warned: Mutex<HashSet<String>>,
}

/// Verdicts by client address, with their expiry, and the order they came in.
#[derive(Debug, Default)]
struct Cache {
    entries: HashMap<IpAddr, (Listing, Instant)>,
    order: VecDeque<IpAddr>,
}

/// The name to query for `ip` in `zone` (RFC 5782 §2.1 for IPv4: reversed octets;
/// §2.4 for IPv6: the 32 nibbles reversed). Fully qualified, with the final dot.
pub fn reverse_name(ip: IpAddr, zone: &str) -> String {
    let zone = zone.trim_end_matches('.');
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.{zone}.")
        }
        IpAddr::V6(v6) => {
            let mut labels = String::with_capacity(64 + zone.len() + 1);
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
    /// 127.0.0.2 - 127.0.0.11: listed (RFC 5782 §2.1, Spamhaus's codes).
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

/// One zone's answer: the verdict, and how long it may be remembered (`None`: the
/// lookup failed, so it is not remembered at all).
#[derive(Debug, Clone)]
struct ZoneAnswer {
    listing: Listing,
    ttl: Option<Duration>,
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

    /// Checks `ip` against every zone (concurrently); the first listing wins, in the
    /// order the zones were given. Failures count as not listed.
    pub async fn check(&self, ip: IpAddr) -> Listing {
        // An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        if self.zones.is_empty() || self.trusted.iter().any(|net| net.contains(&ip)) {
            return Listing::NotListed;
        }
        if let Some(hit) = self.cached(ip) {
            return hit;
        }
        let answers = self.query_all(ip).await;
        let listed = answers
            .iter()
            .find(|a| matches!(a.listing, Listing::Listed { .. }));
        let (listing, ttl) = match listed {
            Some(answer) => (answer.listing.clone(), answer.ttl),
            // Not listed is only known if every zone answered.
            None => (
                Listing::NotListed,
                answers
                    .iter()
                    .try_fold(MAX_TTL, |min, a| a.ttl.map(|ttl| min.min(ttl))),
            ),
        };
        if let Some(ttl) = ttl {
            self.remember(ip, listing.clone(), ttl.clamp(MIN_TTL, MAX_TTL));
        }
        listing
    }

    /// Queries every zone at once. Returns the answers in zone order, up to and
    /// including the first listing (later zones are not waited for), or all of them.
    async fn query_all(&self, ip: IpAddr) -> Vec<ZoneAnswer> {
        let mut pending: Vec<Option<Pin<Box<_>>>> = self
            .zones
            .iter()
            .map(|zone| Some(Box::pin(self.query(ip, zone))))
            .collect();
        let mut answers: Vec<Option<ZoneAnswer>> = vec![None; pending.len()];
        std::future::poll_fn(|cx| {
            for (slot, answer) in pending.iter_mut().zip(answers.iter_mut()) {
                if let Some(query) = slot
                    && let Poll::Ready(done) = query.as_mut().poll(cx)
                {
                    *answer = Some(done);
                    *slot = None;
                }
            }
            let mut decided = Vec::with_capacity(answers.len());
            for answer in &answers {
                match answer {
                    // An earlier zone is still pending (and was polled: woken later).
                    None => return Poll::Pending,
                    Some(a) => {
                        decided.push(a.clone());
                        if matches!(a.listing, Listing::Listed { .. }) {
                            break;
                        }
                    }
                }
            }
            Poll::Ready(decided)
        })
        .await
    }

    /// One zone: the A query, then the TXT for the reason when listed.
    async fn query(&self, ip: IpAddr, zone: &str) -> ZoneAnswer {
        let name = reverse_name(ip, zone);
        let lookup = match self.resolver.ipv4_lookup(name.as_str()).await {
            Ok(lookup) => lookup,
            // NXDOMAIN (or an empty answer): not listed, for the negative TTL
            // (RFC 2308 §5: the SOA's minimum).
            Err(NetError::Dns(DnsError::NoRecordsFound(no)))
                if no.response_code == ResponseCode::NXDomain
                    || no.response_code == ResponseCode::NoError =>
            {
                let ttl = no
                    .negative_ttl
                    .map_or(NEGATIVE_TTL, |t| Duration::from_secs(u64::from(t)));
                return ZoneAnswer {
                    listing: Listing::NotListed,
                    ttl: Some(ttl),
                };
            }
            Err(e) => {
                tracing::warn!(%ip, zone, error = %e, "DNSBL lookup failed: accepting (fail open)");
                return ZoneAnswer {
                    listing: Listing::NotListed,
                    ttl: None,
                };
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
            return ZoneAnswer {
                listing: Listing::Listed {
                    zone: zone.trim_end_matches('.').to_string(),
                    code,
                    reason,
                },
                ttl: Some(ttl),
            };
        }
        if let Some(code) = codes.iter().find(|c| classify(**c) == Answer::Refused) {
            if self.first_refusal(zone) {
                tracing::warn!(
                    zone,
                    %code,
                    "the block list refuses our queries (127.255.255.x: public resolver or over \
                     quota); its answers are ignored: use a local resolver in [dns] nameservers"
                );
            }
        } else if !codes.is_empty() {
            tracing::debug!(zone, ?codes, "DNSBL answer not understood: not listed");
        }
        ZoneAnswer {
            listing: Listing::NotListed,
            ttl: Some(ttl),
        }
    }

    /// True the first time `zone` answers with an error code (127.255.255.x) in this
    /// process: we warn once per zone, not once per query.
    fn first_refusal(&self, zone: &str) -> bool {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        warned.insert(zone.trim_end_matches('.').to_ascii_lowercase())
    }

    /// The TXT record next to a listing (RFC 5782 §2.1), best effort.
    async fn reason(&self, name: &str) -> Option<String> {
        let lookup = self.resolver.txt_lookup(name).await.ok()?;
        lookup.answers().iter().find_map(|r| match &r.data {
            RData::TXT(txt) => Some(
                txt.txt_data
                    .iter()
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect::<String>()
                    // It ends up in a reply line: no control characters.
                    .replace(|c: char| c.is_control(), " "),
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

    fn dnsbl() -> Dnsbl {
        let config = common::dns::Config {
            nameservers: vec!["127.0.0.1:9".parse().unwrap()],
            ..common::dns::Config::default()
        };
        Dnsbl::new(
            common::dns::resolver(&config).unwrap(),
            vec!["dnsbl.test".into()],
            Vec::new(),
        )
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("192.0.2.99".parse().unwrap(), "zen.spamhaus.org"),
            "99.2.0.192.zen.spamhaus.org."
        );
        assert_eq!(
            reverse_name("127.0.0.2".parse().unwrap(), "dnsbl.test."),
            "2.0.0.127.dnsbl.test."
        );
        // RFC 5782 §2.4's example.
        assert_eq!(
            reverse_name("2001:db8:1:2:3:4:567:89ab".parse().unwrap(), "ugly.example"),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example."
        );
        assert_eq!(
            reverse_name("::1".parse().unwrap(), "dnsbl.test"),
            format!("1.{}dnsbl.test.", "0.".repeat(31))
        );
    }

    #[test]
    fn return_codes() {
        assert_eq!(classify(Ipv4Addr::new(127, 0, 0, 2)), Answer::Listed);
        assert_eq!(classify(Ipv4Addr::new(127, 0, 0, 11)), Answer::Listed);
        assert_eq!(classify(Ipv4Addr::new(127, 0, 0, 1)), Answer::Other);
        assert_eq!(classify(Ipv4Addr::new(127, 0, 0, 12)), Answer::Other);
        assert_eq!(classify(Ipv4Addr::new(127, 255, 255, 254)), Answer::Refused);
        assert_eq!(classify(Ipv4Addr::new(127, 255, 255, 252)), Answer::Refused);
        assert_eq!(classify(Ipv4Addr::new(10, 0, 0, 2)), Answer::Other);
    }

    #[tokio::test]
    async fn refusals_are_warned_about_once_per_zone() {
        let dnsbl = dnsbl();
        assert!(dnsbl.first_refusal("zen.spamhaus.org"));
        assert!(!dnsbl.first_refusal("zen.spamhaus.org"));
        assert!(!dnsbl.first_refusal("ZEN.spamhaus.org."));
        assert!(dnsbl.first_refusal("dnsbl.test"));
    }

    #[tokio::test]
    async fn the_cache_is_bounded_and_expires() {
        let dnsbl = dnsbl();
        let ip = |n: u32| IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
        for n in 0..(MAX_CACHE as u32 + 10) {
            dnsbl.remember(ip(n), Listing::NotListed, MIN_TTL);
        }
        assert_eq!(
            dnsbl.cache.lock().unwrap().entries.len(),
            MAX_CACHE,
            "bounded"
        );
        assert_eq!(dnsbl.cached(ip(0)), None, "the oldest went first");
        assert_eq!(dnsbl.cached(ip(10)), Some(Listing::NotListed));
        dnsbl.remember(ip(1), Listing::NotListed, Duration::ZERO);
        assert_eq!(dnsbl.cached(ip(1)), None, "expired");
    }

    #[tokio::test]
    async fn trusted_and_mapped_clients_are_not_queried() {
        let dnsbl = Dnsbl::new(
            dnsbl().resolver,
            vec!["dnsbl.test".into()],
            vec!["127.0.0.0/8".parse().unwrap()],
        );
        let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
        assert_eq!(dnsbl.check(mapped).await, Listing::NotListed);
        assert!(dnsbl.cache.lock().unwrap().entries.is_empty());
    }
}
