//! Delivery status notifications (RFC 3464): a `multipart/report` telling the sender
//! which recipients failed and why, with the original headers (or the whole message
//! when RET=FULL was asked for).

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use mail_builder::MessageBuilder;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;
use store::{QueuedMessage, RecipientState};

/// The DSN for the failed recipients of `message`; `original` is the queued message.
/// None if no recipient failed or the sender is null (never a bounce to `<>`).
pub fn build(hostname: &str, message: &QueuedMessage, original: &[u8]) -> Option<Vec<u8>> {
    if message.sender.is_empty() {
        return None;
    }
    let failed: Vec<_> = message
        .recipients
        .iter()
        .filter_map(|r| match &r.state {
            RecipientState::Failed {
                status,
                reply,
                remote,
            } if !r
                .notify
                .as_deref()
                .is_some_and(|n| n.to_ascii_uppercase().contains("NEVER")) =>
            {
                Some((r, status, reply, remote))
            }
            _ => None,
        })
        .collect();
    if failed.is_empty() {
        return None;
    }

    let mut text = String::new();
    let _ = writeln!(
        text,
        "This is the mail system at {hostname}.\r\n\r\nYour message could not be delivered to the following recipients:\r\n"
    );
    for (r, _, reply, _) in &failed {
        let _ = write!(text, "<{}>:\r\n    {reply}\r\n\r\n", r.address);
    }
    let _ = write!(
        text,
        "The headers of your message are attached{}.\r\n",
        if message.ret_full {
            ", with the whole message"
        } else {
            ""
        }
    );

    // RFC 3464 §2.2: per-message fields, then one block per recipient.
    let mut status = format!("Reporting-MTA: dns; {hostname}\r\n");
    if let Some(id) = &message.env_id {
        let _ = write!(status, "Original-Envelope-Id: {id}\r\n");
    }
    let _ = write!(status, "Arrival-Date: {}\r\n", rfc822_date(message.created));
    for (r, code, reply, remote) in &failed {
        status.push_str("\r\n");
        if let Some(orcpt) = &r.orcpt {
            let _ = write!(status, "Original-Recipient: {orcpt}\r\n");
        }
        let _ = write!(status, "Final-Recipient: rfc822; {}\r\n", r.address);
        status.push_str("Action: failed\r\n");
        let _ = write!(status, "Status: {code}\r\n");
        if let Some(remote) = remote {
            let _ = write!(status, "Remote-MTA: dns; {remote}\r\n");
        }
        let _ = write!(
            status,
            "Diagnostic-Code: smtp; {}\r\n",
            reply.replace(['\r', '\n'], " ")
        );
        let _ = write!(
            status,
            "Last-Attempt-Date: {}\r\n",
            rfc822_date(SystemTime::now())
        );
    }

    let returned = if message.ret_full {
        MimePart::new("message/rfc822", original.to_vec())
    } else {
        let end = original
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(original.len(), |p| p + 2);
        MimePart::new("text/rfc822-headers", original[..end].to_vec())
    };
    let report = MimePart::new(
        mail_builder::headers::content_type::ContentType::new("multipart/report")
            .attribute("report-type", "delivery-status"),
        vec![
            MimePart::new("text/plain", text),
            MimePart::new("message/delivery-status", status)
                .transfer_encoding(if message.smtputf8 { "8bit" } else { "7bit" }),
            returned.transfer_encoding(if original.is_ascii() { "7bit" } else { "8bit" }),
        ],
    );
    let daemon = format!("MAILER-DAEMON@{hostname}");
    let built = MessageBuilder::new()
        .from(("Mail Delivery System", daemon.as_str()))
        .to(message.sender.clone())
        .subject("Undelivered Mail Returned to Sender")
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(report)
        .write_to_vec()
        .ok()?;
    Some(built)
}

fn rfc822_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(0))
        .unwrap_or(0);
    mail_parser::DateTime::from_timestamp(secs).to_rfc822()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mail_parser::MimeHeaders;
    use store::QueuedRecipient;

    fn queued(states: Vec<RecipientState>, sender: &str) -> QueuedMessage {
        QueuedMessage {
            id: 7,
            sender: sender.into(),
            account: None,
            recipients: states
                .into_iter()
                .enumerate()
                .map(|(i, state)| QueuedRecipient {
                    state,
                    ..QueuedRecipient::new(&format!("r{i}@remote.example"))
                })
                .collect(),
            blob: String::new(),
            size: 0,
            created: SystemTime::now(),
            next_attempt: SystemTime::now(),
            attempts: 1,
            require_tls: false,
            smtputf8: false,
            env_id: Some("QQ314159".into()),
            ret_full: false,
            no_reports: false,
        }
    }

    #[test]
    fn reports_the_failed_recipients_only() {
        let m = queued(
            vec![
                RecipientState::Delivered {
                    reply: "250 OK".into(),
                },
                RecipientState::Failed {
                    status: "5.1.1".into(),
                    reply: "mx.remote.example [192.0.2.1] said: 550 5.1.1 No such user".into(),
                    remote: Some("mx.remote.example".into()),
                },
            ],
            "alice@example.org",
        );
        let original = b"From: alice@example.org\r\nSubject: hi\r\n\r\nsecret body\r\n";
        let dsn = build("mail.example.org", &m, original).unwrap();
        let parsed = mail_parser::MessageParser::default().parse(&dsn).unwrap();
        assert!(parsed.root_part().is_content_type("multipart", "report"));
        assert_eq!(parsed.parts.len(), 4, "the report and its three parts");
        let text = String::from_utf8_lossy(&dsn);
        assert!(
            text.contains("report-type=\"delivery-status\"")
                || text.contains("report-type=delivery-status"),
            "{text}"
        );
        assert!(
            text.contains("Final-Recipient: rfc822; r1@remote.example"),
            "{text}"
        );
        assert!(!text.contains("r0@remote.example"), "{text}");
        assert!(text.contains("Status: 5.1.1"), "{text}");
        assert!(text.contains("Action: failed"), "{text}");
        assert!(text.contains("Original-Envelope-Id: QQ314159"), "{text}");
        assert!(text.contains("Subject: hi"), "{text}");
        assert!(!text.contains("secret body"), "{text}");
        assert!(text.contains("Auto-Submitted: auto-replied"), "{text}");
    }

    #[test]
    fn never_to_the_null_sender_nor_without_failures() {
        let failed = RecipientState::Failed {
            status: "5.0.0".into(),
            reply: "no".into(),
            remote: None,
        };
        assert!(build("h", &queued(vec![failed.clone()], ""), b"x\r\n\r\n").is_none());
        let delivered = RecipientState::Delivered { reply: "ok".into() };
        assert!(build("h", &queued(vec![delivered], "a@b.example"), b"x\r\n\r\n").is_none());
        let mut m = queued(vec![failed], "a@b.example");
        m.recipients[0].notify = Some("NEVER".into());
        assert!(build("h", &m, b"x\r\n\r\n").is_none());
    }
}
