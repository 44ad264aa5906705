#![allow(clippy::unwrap_used)]

use super::*;
use crate::fetch::section::section_bytes;
use message::Mime;

fn parse(raw: &[u8]) -> Mime<'_> {
    Mime::parse(raw)
}

const MULTIPART: &[u8] = b"Date: Fri, 27 Nov 2026 04:17:22 +0000\r\n\
From: =?utf-8?q?J=C3=B6rg?= <jorg@example.org>\r\n\
To: alice@example.org, \"Bob B.\" <bob@example.org>\r\n\
Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= and a file\r\n\
Message-ID: <m1@example.org>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
preamble\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Hallo J=C3=B6rg,\r\n\
two lines.\r\n\
--b1\r\n\
Content-Type: application/pdf; name=\"a.pdf\"\r\n\
Content-Disposition: attachment; filename=\"a.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--b1\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: carol@example.org\r\n\
Subject: inner\r\n\
\r\n\
inner body\r\n\
--b1--\r\n";

#[test]
fn bodystructure_of_a_multipart_with_an_attachment_and_a_message() {
    let msg = parse(MULTIPART);
    let mut out = Vec::new();
    structure(&msg, 0, true, &mut out);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 28 2 NIL NIL NIL NIL)\
(\"application\" \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"base64\" 12 NIL (\"attachment\" (\"filename\" \"a.pdf\")) NIL NIL)\
(\"message\" \"rfc822\" NIL NIL NIL \"7bit\" 53 (NIL \"inner\" ((NIL NIL \"carol\" \"example.org\")) ((NIL NIL \"carol\" \"example.org\")) ((NIL NIL \"carol\" \"example.org\")) NIL NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\" 10 1 NIL NIL NIL NIL) 4 NIL NIL NIL NIL) \
\"mixed\" (\"boundary\" \"b1\") NIL NIL NIL)"
    );
    let mut out = Vec::new();
    structure(&msg, 0, false, &mut out);
    let body = String::from_utf8(out).unwrap();
    assert!(
        body.starts_with(
            "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 28 2)"
        ),
        "{body}"
    );
    assert!(body.ends_with(" \"mixed\")"), "{body}");
}

#[test]
fn envelope_keeps_encoded_words_and_splits_addresses() {
    let msg = parse(MULTIPART);
    let mut out = Vec::new();
    envelope(msg.header(0), &mut out);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(
        text,
        "(\"Fri, 27 Nov 2026 04:17:22 +0000\" \"=?utf-8?q?Gr=C3=BC=C3=9Fe?= and a file\" \
((\"=?utf-8?q?J=C3=B6rg?=\" NIL \"jorg\" \"example.org\")) \
((\"=?utf-8?q?J=C3=B6rg?=\" NIL \"jorg\" \"example.org\")) \
((\"=?utf-8?q?J=C3=B6rg?=\" NIL \"jorg\" \"example.org\")) \
((NIL NIL \"alice\" \"example.org\")(\"Bob B.\" NIL \"bob\" \"example.org\")) NIL NIL NIL \"<m1@example.org>\")"
    );
}

#[test]
fn sections_by_part_number() {
    use imap_codec::CommandCodec;
    use imap_codec::decode::Decoder;
    use imap_types::command::CommandBody;
    use imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItemName};
    let msg = parse(MULTIPART);
    let section = |spec: &str| -> Option<String> {
        let line = format!("a FETCH 1 BODY.PEEK[{spec}]\r\n");
        let (_, cmd) = CommandCodec::default().decode(line.as_bytes()).unwrap();
        let CommandBody::Fetch {
            macro_or_item_names: MacroOrMessageDataItemNames::MessageDataItemNames(items),
            ..
        } = cmd.body
        else {
            unreachable!()
        };
        let MessageDataItemName::BodyExt { section, .. } = &items[0] else {
            unreachable!()
        };
        section_bytes(&msg, section.as_ref())
            .map(|b| String::from_utf8(b.bytes().to_vec()).unwrap())
    };
    assert_eq!(section("").unwrap().len(), MULTIPART.len());
    assert_eq!(section("1").unwrap(), "Hallo J=C3=B6rg,\r\ntwo lines.");
    assert_eq!(section("2").unwrap(), "JVBERi0xLjQK");
    assert_eq!(
        section("2.MIME").unwrap(),
        "Content-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment; filename=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    );
    assert_eq!(
        section("3.HEADER").unwrap(),
        "From: carol@example.org\r\nSubject: inner\r\n\r\n"
    );
    assert_eq!(section("3.TEXT").unwrap(), "inner body");
    assert_eq!(section("3.1").unwrap(), "inner body");
    assert_eq!(
        section("HEADER.FIELDS (SUBJECT message-id)").unwrap(),
        "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= and a file\r\nMessage-ID: <m1@example.org>\r\n\r\n"
    );
    assert!(
        section("HEADER.FIELDS.NOT (Subject)")
            .unwrap()
            .starts_with("Date: ")
    );
    assert!(section("TEXT").unwrap().starts_with("preamble\r\n--b1\r\n"));
    assert_eq!(section("4"), None);
    assert_eq!(section("1.2"), None);
    // A single-part message: its body is part 1.
    let single = parse(b"Subject: x\r\n\r\nbody\r\n");
    let bytes = section_bytes(&single, None).unwrap().bytes().to_vec();
    assert_eq!(bytes.len(), 20);
    assert_eq!(single.body(single.resolve(&[1]).unwrap()), b"body\r\n");
}
