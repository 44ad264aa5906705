//! The mail the admins get when a certificate could not be renewed.

use std::time::Duration;

use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::raw::Raw;

use crate::certs::CertInfo;

/// The notice to `admins` that the certificate for `name` could not be had.
pub fn failure(
    hostname: &str,
    admins: &[String],
    name: &str,
    error: &str,
    current: Option<&CertInfo>,
    retry_in: Duration,
) -> Vec<u8> {
    let serving = match current {
        Some(c) if c.self_signed => format!(
            "It keeps serving its self-signed certificate, which mail clients and browsers\r\ndo not trust (it expires {}).",
            super::rfc3339(c.not_after)
        ),
        Some(c) => format!(
            "It keeps serving its current certificate, from {},\r\nwhich expires {}.",
            c.issuer,
            super::rfc3339(c.not_after)
        ),
        None => "It has no certificate of its own for that name yet.".to_string(),
    };
    let text = format!(
        "Postern on {hostname} could not get a certificate for\r\n\r\n    {name}\r\n\r\n\
         The certificate authority said:\r\n\r\n    {error}\r\n\r\n\
         {serving}\r\n\r\n\
         It tries again in {retry}. Check that {name} resolves to this server and\r\n\
         that port 80 (http-01) or 443 (tls-alpn-01) reaches it; `postern acme status`\r\n\
         shows each name, and `postern acme renew {name}` tries again now.\r\n",
        retry = humantime::format_duration(retry_in),
    );
    let from = format!("postmaster@{hostname}");
    let to: Vec<Address<'_>> = admins
        .iter()
        .map(|a| Address::new_address(None::<&str>, a.as_str()))
        .collect();
    MessageBuilder::new()
        .from(("Postern", from.as_str()))
        .to(to)
        .subject(format!("Certificate for {name} could not be renewed"))
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .text_body(text)
        .write_to_vec()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_host_the_error_and_every_admin() {
        let message = failure(
            "mail.example.test",
            &["a@example.test".into(), "b@example.test".into()],
            "my.example.test",
            "validation failed: connection refused",
            None,
            Duration::from_secs(600),
        );
        let parsed = mail_parser::MessageParser::default()
            .parse(&message)
            .unwrap();
        assert_eq!(
            parsed.subject(),
            Some("Certificate for my.example.test could not be renewed")
        );
        assert_eq!(parsed.to().unwrap().iter().count(), 2);
        let body = parsed.body_text(0).unwrap();
        assert!(body.contains("my.example.test"), "{body}");
        assert!(body.contains("connection refused"), "{body}");
        assert!(body.contains("10m"), "{body}");
    }
}
