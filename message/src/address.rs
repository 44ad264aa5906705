//! Who a message is from: the one parser of From: and Sender: (RFC 5322 §3.6.2) that
//! submission's identity check, DMARC, Sieve and the replies Postern writes all use.
//! Addresses inside a field are parsed by mail-parser's address parser (display
//! names, comments, quoted strings, groups); which fields there are comes from
//! [`crate::header`].

use mail_parser::parsers::MessageStream;
use mail_parser::{Address, HeaderValue};

use crate::header;

/// One mailbox of an address field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    /// The display name, decoded.
    pub name: Option<String>,
    /// The address as written (`local@domain`); empty when the field gave none.
    pub address: String,
}

impl Mailbox {
    /// The domain of the address, lower case.
    pub fn domain(&self) -> Option<String> {
        self.address
            .rsplit_once('@')
            .map(|(_, d)| d.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|d| !d.is_empty())
    }
}

/// The originator fields of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Author {
    /// How many From: fields the header has (RFC 5322 §3.6: exactly one).
    pub from_fields: usize,
    /// The mailboxes of every From: field, in order.
    pub from: Vec<Mailbox>,
    /// How many Sender: fields the header has (at most one).
    pub sender_fields: usize,
    /// The mailboxes of every Sender: field.
    pub sender: Vec<Mailbox>,
}

impl Author {
    /// The distinct domains of the From: mailboxes, lower case, in order.
    pub fn from_domains(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for d in self.from.iter().filter_map(Mailbox::domain) {
            if !out.contains(&d) {
                out.push(d);
            }
        }
        out
    }

    /// The From: address when the message has exactly one From: field holding exactly
    /// one mailbox (the only shape whose author is unambiguous).
    pub fn single_from(&self) -> Option<&Mailbox> {
        match (self.from_fields, self.from.as_slice()) {
            (1, [one]) if !one.address.is_empty() => Some(one),
            _ => None,
        }
    }
}

/// Reads a message's From: and Sender: fields.
pub fn author(message: &[u8]) -> Author {
    let mut author = Author::default();
    for field in header::fields(message) {
        if field.is("From") {
            author.from_fields += 1;
            author.from.extend(mailboxes(field.value));
        } else if field.is("Sender") {
            author.sender_fields += 1;
            author.sender.extend(mailboxes(field.value));
        }
    }
    author
}

/// The mailboxes of an address field's raw value (group members included).
pub fn mailboxes(value: &[u8]) -> Vec<Mailbox> {
    let mut input = value.to_vec();
    input.extend_from_slice(b"\r\n");
    let parsed = MessageStream::new(&input).parse_address();
    let mut out = Vec::new();
    let mut push = |a: &mail_parser::Addr<'_>| {
        out.push(Mailbox {
            name: a.name.as_deref().map(str::to_string),
            address: a.address.as_deref().unwrap_or_default().trim().to_string(),
        });
    };
    if let HeaderValue::Address(address) = parsed {
        match address {
            Address::List(list) => list.iter().for_each(&mut push),
            Address::Group(groups) => groups
                .iter()
                .flat_map(|g| g.addresses.iter())
                .for_each(&mut push),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn addresses(value: &str) -> Vec<String> {
        mailboxes(value.as_bytes())
            .into_iter()
            .map(|m| m.address)
            .collect()
    }

    #[test]
    fn every_from_field_counts() {
        let m = b"From: CEO <ceo@bank.test>\r\nFrom: admin@example.test\r\nSubject: x\r\n\r\n";
        let a = author(m);
        assert_eq!(a.from_fields, 2);
        assert_eq!(a.from_domains(), ["bank.test", "example.test"]);
        assert_eq!(a.single_from(), None);
        let a = author(b"from : \"Bob, B.\" <bob@Example.TEST.>\r\n\r\n");
        assert_eq!(a.single_from().unwrap().address, "bob@Example.TEST.");
        assert_eq!(a.from_domains(), ["example.test"]);
        assert_eq!(author(b"Subject: no from\r\n\r\n").from_fields, 0);
    }

    #[test]
    fn address_forms() {
        assert_eq!(
            addresses("a@x.test, B <b@y.test>"),
            ["a@x.test", "b@y.test"]
        );
        assert_eq!(
            addresses("admin@example.test <ceo@bank.test>"),
            ["ceo@bank.test"]
        );
        assert_eq!(
            addresses("ceo@bank.test (admin@example.test)"),
            ["ceo@bank.test"]
        );
        assert_eq!(
            addresses("Team: a@x.test, b@y.test;"),
            ["a@x.test", "b@y.test"]
        );
        assert_eq!(
            addresses("\"admin@example.test\" <ceo@bank.test>"),
            ["ceo@bank.test"]
        );
        assert_eq!(
            addresses("a@x.test,\r\n b@y.test"),
            ["a@x.test", "b@y.test"]
        );
        let sender = author(b"From: a@x.test, b@y.test\r\nSender: a@x.test\r\n\r\n");
        assert_eq!(sender.sender_fields, 1);
        assert_eq!(sender.sender[0].address, "a@x.test");
        assert_eq!(sender.from.len(), 2);
    }
}
