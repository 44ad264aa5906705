//! The DNS records a domain served by Postern publishes, in zone-file syntax: one
//! record per line, fully qualified owner with a trailing dot, TTL, class, type and
//! data; TXT data as quoted strings of at most 255 bytes (RFC 1035 §3.3.14) on the
//! same line.

use std::fmt;

use crate::keys::Algorithm;

/// TTL of every record we suggest.
pub const TTL: u32 = 3600;

/// A published DKIM key.
#[derive(Debug, Clone)]
pub struct DkimRecordKey {
    /// The selector (`<selector>._domainkey.<domain>`).
    pub selector: String,
    /// The algorithm.
    pub algorithm: Algorithm,
    /// Base64 public key, the `p=` value.
    pub public_key_b64: String,
}

/// Ports the client-facing services listen on, for the RFC 6186 SRV records.
/// `None`: the service is not offered (published as target `.`).
#[derive(Debug, Clone, Copy)]
pub struct ServicePorts {
    /// Submission with STARTTLS (587).
    pub submission: Option<u16>,
    /// Submission with implicit TLS (465, RFC 8314).
    pub submissions: Option<u16>,
    /// IMAP with implicit TLS (993).
    pub imaps: Option<u16>,
    /// IMAP with STARTTLS (143).
    pub imap: Option<u16>,
}

/// What the records describe.
#[derive(Debug, Clone)]
pub struct DomainSetup {
    /// The mail domain.
    pub domain: String,
    /// The host name of the Postern server (the MX target).
    pub hostname: String,
    /// The DKIM keys to publish.
    pub dkim: Vec<DkimRecordKey>,
    /// The service ports.
    pub ports: ServicePorts,
    /// The MTA-STS policy id (changes whenever the policy does).
    pub mta_sts_id: String,
}

/// One resource record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Fully qualified owner name with the trailing dot.
    pub name: String,
    /// The type (`MX`, `TXT`...).
    pub rtype: &'static str,
    /// The data in presentation format.
    pub data: String,
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} IN {} {}", self.name, TTL, self.rtype, self.data)
    }
}

fn fqdn(name: &str) -> String {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    format!("{name}.")
}

/// TXT data as quoted character-strings of at most 255 bytes each. The text we put in
/// TXT records is ASCII without quotes or backslashes, so no escaping is needed; any
/// `"` or `\` is escaped all the same.
pub fn txt_data(text: &str) -> String {
    text.as_bytes()
        .chunks(255)
        .map(|chunk| {
            let s = String::from_utf8_lossy(chunk);
            format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The DKIM record text for a key (RFC 6376 §3.6.1, RFC 8463 §4.2).
pub fn dkim_text(key: &DkimRecordKey) -> String {
    format!(
        "v=DKIM1; k={}; p={}",
        key.algorithm.key_type(),
        key.public_key_b64
    )
}

/// Every record the domain needs, in a stable order.
pub fn records(setup: &DomainSetup) -> Vec<Record> {
    let domain = fqdn(&setup.domain);
    let host = fqdn(&setup.hostname);
    let bare = setup.domain.trim_end_matches('.').to_ascii_lowercase();
    let txt = |name: String, text: String| Record {
        name,
        rtype: "TXT",
        data: txt_data(&text),
    };
    let mut out = vec![
        Record {
            name: domain.clone(),
            rtype: "MX",
            data: format!("10 {host}"),
        },
        txt(domain.clone(), "v=spf1 mx -all".into()),
    ];
    for key in &setup.dkim {
        out.push(txt(
            format!("{}._domainkey.{domain}", key.selector),
            dkim_text(key),
        ));
    }
    out.push(txt(
        format!("_dmarc.{domain}"),
        format!("v=DMARC1; p=reject; rua=mailto:postmaster@{bare}"),
    ));
    // RFC 8461 §3.1 and RFC 8460 §3.
    out.push(txt(
        format!("_mta-sts.{domain}"),
        format!("v=STSv1; id={}", setup.mta_sts_id),
    ));
    out.push(txt(
        format!("_smtp._tls.{domain}"),
        format!("v=TLSRPTv1; rua=mailto:postmaster@{bare}"),
    ));
    // Web names served by the HTTPS front (MTA-STS policy, client autoconfiguration,
    // the admin UI) all point at the server.
    for label in ["mta-sts", "autoconfig", "autodiscover", "my"] {
        let name = format!("{label}.{domain}");
        if name != host {
            out.push(Record {
                name,
                rtype: "CNAME",
                data: host.clone(),
            });
        }
    }
    // RFC 6186 §3: SRV records for client configuration; "0 0 0 ." says "not offered".
    let srv = |service: &str, port: Option<u16>| Record {
        name: format!("_{service}._tcp.{domain}"),
        rtype: "SRV",
        data: match port {
            Some(port) => format!("0 1 {port} {host}"),
            None => "0 0 0 .".into(),
        },
    };
    out.push(srv("submissions", setup.ports.submissions));
    out.push(srv("submission", setup.ports.submission));
    out.push(srv("imaps", setup.ports.imaps));
    out.push(srv("imap", setup.ports.imap));
    out.push(srv("pop3s", None));
    out.push(srv("pop3", None));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> DomainSetup {
        DomainSetup {
            domain: "Example.TEST".into(),
            hostname: "mail.example.test".into(),
            dkim: vec![DkimRecordKey {
                selector: "rsa-1".into(),
                algorithm: Algorithm::Rsa2048,
                public_key_b64: "A".repeat(392),
            }],
            ports: ServicePorts {
                submission: Some(587),
                submissions: Some(465),
                imaps: Some(993),
                imap: None,
            },
            mta_sts_id: "20261127".into(),
        }
    }

    #[test]
    fn long_txt_is_split_into_255_byte_strings_on_one_line() {
        let recs = records(&setup());
        let dkim = recs
            .iter()
            .find(|r| r.name.starts_with("rsa-1._domainkey."))
            .unwrap();
        let line = dkim.to_string();
        assert!(
            line.starts_with("rsa-1._domainkey.example.test. 3600 IN TXT \"v=DKIM1; k=rsa; p=AAA")
        );
        let strings: Vec<&str> = dkim.data.split("\" \"").collect();
        assert_eq!(strings.len(), 2);
        assert!(!line.contains('\n') && !line.contains('('));
        let joined: String = dkim.data.replace("\" \"", "").trim_matches('"').to_string();
        assert_eq!(joined, dkim_text(&setup().dkim[0]));
        assert_eq!(dkim.data.split("\" \"").next().unwrap().len(), 256); // quote + 255
    }

    #[test]
    fn every_record_is_fully_qualified() {
        let lines: Vec<String> = records(&setup()).iter().map(|r| r.to_string()).collect();
        for l in &lines {
            let owner = l.split(' ').next().unwrap();
            assert!(
                owner.ends_with(".example.test.") || owner == "example.test.",
                "{l}"
            );
        }
        assert!(lines.contains(&"example.test. 3600 IN MX 10 mail.example.test.".to_string()));
        assert!(lines.contains(&"example.test. 3600 IN TXT \"v=spf1 mx -all\"".to_string()));
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("_dmarc.example.test. 3600 IN TXT \"v=DMARC1; p=reject"))
        );
        assert!(lines.contains(&"_imap._tcp.example.test. 3600 IN SRV 0 0 0 .".to_string()));
        assert!(lines.contains(
            &"_submissions._tcp.example.test. 3600 IN SRV 0 1 465 mail.example.test.".to_string()
        ));
    }
}
