//! Where mail for a domain goes (RFC 5321 §5.1): its MX hosts in preference order, the
//! domain itself when it has no MX (the implicit MX), nowhere for a null MX (RFC 7505).

use std::net::IpAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::RData;

/// The hosts to try for a domain, or why there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// Host names in the order to try them.
    Hosts(Vec<String>),
    /// An address literal (`user@[192.0.2.1]`).
    Literal(IpAddr),
    /// The domain says it takes no mail (RFC 7505 null MX), or does not exist:
    /// status and text for the DSN.
    Refused(&'static str, String),
    /// The lookup failed for now.
    Failed(String),
}

fn no_records(e: &NetError) -> Option<ResponseCode> {
    match e {
        NetError::Dns(DnsError::NoRecordsFound(no)) => Some(no.response_code),
        _ => None,
    }
}

/// Looks up where mail for `domain` goes.
pub async fn destination(resolver: &TokioResolver, domain: &str) -> Destination {
    if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        let literal = literal.strip_prefix("IPv6:").unwrap_or(literal);
        return match literal.parse() {
            Ok(ip) => Destination::Literal(ip),
            Err(_) => Destination::Refused("5.1.2", format!("invalid address literal [{literal}]")),
        };
    }
    let fqdn = format!("{}.", domain.trim_end_matches('.'));
    match resolver.mx_lookup(fqdn.as_str()).await {
        Ok(lookup) => {
            let mut mx: Vec<(u16, String)> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                    _ => None,
                })
                .collect();
            // RFC 7505 §3: one MX with an empty exchange (".") means no mail.
            if mx.iter().any(|(_, host)| host == "." || host.is_empty()) {
                return Destination::Refused(
                    "5.1.10",
                    format!("{domain} does not accept mail (null MX, RFC 7505)"),
                );
            }
            if mx.is_empty() {
                return implicit(domain);
            }
            // Lowest preference first; a stable sort keeps the DNS order among equals.
            mx.sort_by_key(|(preference, _)| *preference);
            Destination::Hosts(
                mx.into_iter()
                    .map(|(_, host)| host.trim_end_matches('.').to_string())
                    .collect(),
            )
        }
        Err(e) => match no_records(&e) {
            Some(ResponseCode::NXDomain) => {
                Destination::Refused("5.1.2", format!("the domain {domain} does not exist"))
            }
            // No MX records: the domain itself is the implicit MX (RFC 5321 §5.1).
            Some(ResponseCode::NoError) => implicit(domain),
            _ => Destination::Failed(format!("MX lookup for {domain} failed: {e}")),
        },
    }
}

fn implicit(domain: &str) -> Destination {
    Destination::Hosts(vec![domain.trim_end_matches('.').to_string()])
}

/// The addresses of a host (A and AAAA); an error text when there are none.
pub async fn addresses(resolver: &TokioResolver, host: &str) -> Result<Vec<IpAddr>, String> {
    let fqdn = format!("{}.", host.trim_end_matches('.'));
    match resolver.lookup_ip(fqdn.as_str()).await {
        Ok(lookup) => {
            let ips: Vec<IpAddr> = lookup.iter().collect();
            if ips.is_empty() {
                Err(format!("{host} has no address"))
            } else {
                Ok(ips)
            }
        }
        Err(e) => Err(format!("address lookup for {host} failed: {e}")),
    }
}
