//! The notice a Sieve `reject` sends when the message cannot be refused in the SMTP
//! dialogue (RFC 5429 §2.1.1): a message disposition notification (RFC 8098) saying
//! the message was deleted, with the script's reason and the original headers.

use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::MimePart;

/// The notice to `sender` that `account` refused `original` for `reason`; None when
/// none may be sent: to the null sender, or about an automatic message (RFC 3834 §2).
pub fn rejection(
    hostname: &str,
    sender: &str,
    account: &str,
    reason: &str,
    original: &[u8],
) -> Option<Vec<u8>> {
    if sender.is_empty() || is_automatic(original) {
        return None;
    }
    let headers_end = original
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(original.len(), |p| p + 2);
    let parsed = mail_parser::MessageParser::default().parse_headers(original);
    let subject = parsed
        .as_ref()
        .and_then(|m| m.subject())
        .unwrap_or("your message")
        .to_string();
    let message_id = parsed
        .as_ref()
        .and_then(|m| m.message_id())
        .map(str::to_string);
    let text = format!(
        "Your message to <{account}> was refused by the recipient's filter, with this reason:\r\n\r\n{}\r\n",
        reason.replace('\n', "\r\n").replace("\r\r\n", "\r\n")
    );
    let mut disposition =
        format!("Reporting-UA: {hostname}; Postern\r\nFinal-Recipient: rfc822; {account}\r\n");
    if let Some(id) = &message_id {
        disposition.push_str(&format!("Original-Message-ID: <{id}>\r\n"));
    }
    disposition.push_str("Disposition: automatic-action/MDN-sent-automatically; deleted\r\n");
    let report = MimePart::new(
        ContentType::new("multipart/report").attribute("report-type", "disposition-notification"),
        vec![
            MimePart::new("text/plain", text),
            MimePart::new("message/disposition-notification", disposition),
            MimePart::new("text/rfc822-headers", original[..headers_end].to_vec())
                .transfer_encoding(if original[..headers_end].is_ascii() {
                    "7bit"
                } else {
                    "8bit"
                }),
        ],
    );
    let daemon = format!("MAILER-DAEMON@{hostname}");
    let mut builder = MessageBuilder::new()
        .from(("Mail Delivery System", daemon.as_str()))
        .to(sender.to_string())
        .subject(format!("Rejected: {subject}"))
        .header("Auto-Submitted", Raw::new("auto-replied"));
    if let Some(id) = message_id {
        builder = builder.in_reply_to(id);
    }
    builder.body(report).write_to_vec().ok()
}

/// Whether the message says it was sent automatically (`Auto-Submitted` other than
/// `no`, RFC 3834 §5).
pub fn is_automatic(message: &[u8]) -> bool {
    let Some(parsed) = mail_parser::MessageParser::default().parse_headers(message) else {
        return false;
    };
    parsed
        .header_values("Auto-Submitted")
        .filter_map(|v| v.as_text())
        .any(|v| !v.trim().eq_ignore_ascii_case("no"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &[u8] =
        b"From: ann@remote.test\r\nTo: bob@example.org\r\nSubject: offer\r\nMessage-ID: <m1@remote.test>\r\n\r\nbuy\r\n";

    #[test]
    fn notice_names_reason_and_original() {
        let notice = rejection(
            "mx.example.org",
            "ann@remote.test",
            "bob@example.org",
            "No offers, thanks",
            ORIGINAL,
        )
        .map(|n| String::from_utf8_lossy(&n).to_string())
        .unwrap_or_default();
        assert!(
            notice.contains("report-type=\"disposition-notification\"")
                || notice.contains("report-type=disposition-notification"),
            "{notice}"
        );
        assert!(notice.contains("No offers, thanks"), "{notice}");
        assert!(notice.contains("Disposition: automatic-action/MDN-sent-automatically; deleted"));
        assert!(notice.contains("Original-Message-ID: <m1@remote.test>"));
        assert!(notice.contains("Subject: Rejected: offer"));
        assert!(notice.contains("Auto-Submitted: auto-replied"));
    }

    #[test]
    fn no_notice_to_null_sender_or_about_automatic_mail() {
        assert!(rejection("h", "", "bob@example.org", "x", ORIGINAL).is_none());
        let auto = b"Auto-Submitted: auto-replied\r\nFrom: a@b.test\r\n\r\nx\r\n";
        assert!(rejection("h", "a@b.test", "bob@example.org", "x", auto).is_none());
        assert!(is_automatic(auto));
        assert!(!is_automatic(b"Auto-Submitted: no\r\n\r\n"));
    }
}
