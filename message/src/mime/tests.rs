#![allow(clippy::unwrap_used)]

use super::*;

const MIXED: &[u8] = b"From: a@example.org\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
preamble\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
J=C3=B6rg,\r\n\
two lines.\r\n\
--b1\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
Subject: inner\r\n\
Content-Type: multipart/alternative; boundary=b2\r\n\
\r\n\
--b2\r\n\
\r\n\
plain\r\n\
--b2\r\n\
Content-Type: text/html\r\n\
\r\n\
<p>html</p>\r\n\
--b2--\r\n\
--b1--\r\n\
epilogue\r\n";

fn text(mime: &Mime<'_>, id: PartId) -> String {
    String::from_utf8(mime.body(id).to_vec()).unwrap()
}

#[test]
fn parts_and_their_octets() {
    let mime = Mime::parse(MIXED);
    assert!(!mime.too_deep());
    let root = mime.part(0);
    assert_eq!(root.media_type, "multipart");
    assert_eq!(mime.children(0).len(), 2);
    let first = mime.resolve(&[1]).unwrap();
    assert_eq!(text(&mime, first), "J=C3=B6rg,\r\ntwo lines.");
    assert_eq!(mime.part(first).lines, 2);
    assert_eq!(mime.part(first).transfer_encoding, "quoted-printable");
    assert_eq!(mime.text(first).unwrap(), "Jörg,\r\ntwo lines.");
    let message = mime.resolve(&[2]).unwrap();
    assert!(mime.part(message).is_message());
    let inner = mime.embedded(message).unwrap();
    assert!(mime.header(inner).starts_with(b"Subject: inner\r\n"));
    assert_eq!(
        mime.body(message),
        &mime.source(inner)[mime.part(inner).header.start..mime.part(inner).body.end]
    );
    assert_eq!(text(&mime, mime.resolve(&[2, 1]).unwrap()), "plain");
    let html = mime.resolve(&[2, 2]).unwrap();
    assert_eq!(text(&mime, html), "<p>html</p>");
    assert_eq!(mime.part(html).media_subtype, "html");
    assert_eq!(mime.resolve(&[2, 3]), None);
    assert_eq!(mime.resolve(&[3]), None);
    assert_eq!(mime.resolve(&[1, 1]), None);
    assert_eq!(mime.resolve(&[0]), None);
    // The top body runs from the preamble to the epilogue.
    assert!(text(&mime, 0).starts_with("preamble\r\n--b1\r\n"));
    assert!(text(&mime, 0).ends_with("epilogue\r\n"));
}

#[test]
fn a_single_part_message_is_its_own_part_one() {
    let raw = b"Subject: x\r\n\r\nline one\r\nline two";
    let mime = Mime::parse(raw);
    assert_eq!(mime.resolve(&[1]), Some(0));
    assert_eq!(mime.resolve(&[2]), None);
    assert_eq!(text(&mime, 0), "line one\r\nline two");
    assert_eq!(mime.part(0).lines, 2);
    assert_eq!(mime.part(0).media_type, "text");
    // Only a header, no blank line: all header, empty body.
    let mime = Mime::parse(b"Subject: x\r\n");
    assert_eq!(mime.header(0), b"Subject: x\r\n");
    assert_eq!(mime.body(0), b"");
    // Empty input.
    let mime = Mime::parse(b"");
    assert_eq!(mime.parts().len(), 1);
    assert_eq!(mime.body(0), b"");
}

#[test]
fn empty_parts_and_parts_without_a_blank_line() {
    let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--b\r\nContent-Type: text/plain\r\n--b\r\nX: y\r\n\r\nz\r\n--b--\r\n";
    let mime = Mime::parse(raw);
    let ids = mime.children(0).to_vec();
    assert_eq!(ids.len(), 3);
    assert_eq!(mime.body(ids[0]), b"");
    assert_eq!(mime.part(ids[0]).lines, 0);
    assert_eq!(mime.header(ids[1]), b"Content-Type: text/plain");
    assert_eq!(mime.body(ids[1]), b"");
    assert_eq!(mime.body(ids[2]), b"z");
}

#[test]
fn an_outer_boundary_ends_the_inner_parts() {
    let raw = b"Content-Type: multipart/mixed; boundary=out\r\n\r\n--out\r\n\
Content-Type: multipart/mixed; boundary=in\r\n\r\n--in\r\n\r\nunclosed\r\n--out\r\n\r\nsecond\r\n--out--\r\n";
    let mime = Mime::parse(raw);
    assert_eq!(mime.children(0).len(), 2);
    assert_eq!(text(&mime, mime.resolve(&[1, 1]).unwrap()), "unclosed");
    assert_eq!(text(&mime, mime.resolve(&[2]).unwrap()), "second");
    // A boundary that is a prefix of a longer one does not match it.
    let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--bb\r\n--b--\r\n";
    let mime = Mime::parse(raw);
    assert_eq!(text(&mime, mime.resolve(&[1]).unwrap()), "--bb");
}

#[test]
fn digest_parts_default_to_messages() {
    let raw = b"Content-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nSubject: one\r\n\r\nbody\r\n--d--\r\n";
    let mime = Mime::parse(raw);
    let part = mime.resolve(&[1]).unwrap();
    assert!(mime.part(part).is_message());
    let inner = mime.embedded(part).unwrap();
    assert_eq!(mime.header(inner), b"Subject: one\r\n\r\n");
    assert_eq!(text(&mime, inner), "body");
}

#[test]
fn an_encoded_embedded_message_is_walked_from_a_decoded_copy() {
    // "Subject: hi\r\n\r\nyo\r\n" in base64.
    let raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogaGkNCg0KeW8NCg==\r\n--b--\r\n";
    let mime = Mime::parse(raw);
    let part = mime.resolve(&[1]).unwrap();
    assert_eq!(mime.body(part), b"U3ViamVjdDogaGkNCg0KeW8NCg==");
    let inner = mime.embedded(part).unwrap();
    assert_eq!(mime.part(inner).source, 1);
    assert_eq!(mime.header(inner), b"Subject: hi\r\n\r\n");
    assert_eq!(mime.body(inner), b"yo\r\n");
    assert_eq!(mime.resolve(&[1, 1]), Some(inner));
}

fn nested_messages(n: usize) -> Vec<u8> {
    let mut raw = b"Subject: bomb\r\nContent-Type: message/rfc822\r\n\r\n".to_vec();
    for _ in 0..n {
        raw.extend_from_slice(b"Content-Type:message/rfc822\r\n\r\n");
    }
    raw.extend_from_slice(b"innermost\r\n");
    raw
}

fn nested_multiparts(n: usize) -> Vec<u8> {
    let mut raw = b"Subject: bomb\r\n".to_vec();
    for i in 0..n {
        raw.extend_from_slice(
            format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n").as_bytes(),
        );
    }
    raw.extend_from_slice(b"Content-Type: text/plain\r\n\r\ninnermost\r\n");
    for i in (0..n).rev() {
        raw.extend_from_slice(format!("--b{i}--\r\n").as_bytes());
    }
    raw
}

/// Runs `f` on a thread with a small stack: a walk that recursed per level would
/// overflow it.
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .stack_size(128 * 1024)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap();
}

#[test]
fn deep_nesting_is_cut_at_the_depth_limit() {
    on_small_stack(|| {
        for raw in [nested_messages(20_000), nested_multiparts(30_000)] {
            let mime = Mime::parse(&raw);
            let limits = Limits::default();
            assert!(mime.parts().iter().all(|p| p.depth <= limits.max_depth));
            assert!(mime.too_deep());
            let deepest = mime.parts().iter().max_by_key(|p| p.depth).unwrap();
            assert_eq!(deepest.depth, limits.max_depth);
            assert!(deepest.opaque, "{deepest:?}");
            assert!(
                mime.body(deepest_id(&mime)).ends_with(b"innermost\r\n")
                    || mime
                        .body(deepest_id(&mime))
                        .windows(9)
                        .any(|w| w == b"innermost")
            );
            // Every level's line count agrees with a direct count of its body.
            for (id, p) in mime.parts().iter().enumerate() {
                let body = mime.body(id);
                let lf = body.iter().filter(|&&b| b == b'\n').count();
                let expected = lf + usize::from(body.last().is_some_and(|&b| b != b'\n'));
                assert_eq!(p.lines, expected, "part {id}");
            }
        }
    });
}

fn deepest_id(mime: &Mime<'_>) -> PartId {
    (0..mime.parts().len())
        .max_by_key(|&id| mime.part(id).depth)
        .unwrap()
}

#[test]
fn part_counts_are_capped() {
    let mut raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n".to_vec();
    for _ in 0..20_000 {
        raw.extend_from_slice(b"--b\r\n\r\nx\r\n");
    }
    raw.extend_from_slice(b"--b--\r\n");
    let mime = Mime::parse(&raw);
    assert_eq!(mime.parts().len(), Limits::default().max_parts);
    assert_eq!(mime.children(0).len(), Limits::default().max_parts - 1);
    // The last listed part ends where the next (unlisted) one would have started.
    let last = *mime.children(0).last().unwrap();
    assert_eq!(mime.body(last), b"x");
}

#[test]
fn a_multipart_without_a_boundary_is_opaque() {
    let mime = Mime::parse(b"Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\ny\r\n");
    assert!(mime.part(0).opaque);
    assert_eq!(mime.part(0).kind, Kind::Leaf);
    assert_eq!(mime.resolve(&[1]), Some(0));
}
