//! The SMTP session driven without sockets against a real store in a temp dir.
#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::sync::Arc;

use common::net::{Action, ConnInfo, Protocol, Session as _};
use smtp::session::{Context, Mode, Session, Smtp};
use store::Store;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    smtp: Smtp,
    context: Arc<Context>,
}

fn fixture(max_recipients: usize, max_size: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    store.add_domain("example.test").unwrap();
    let hash = common::auth::hash_password("Secret-Pass-1").unwrap();
    for user in ["alice", "bob"] {
        store
            .add_account(&format!("{user}@example.test"), &hash)
            .unwrap();
    }
    add_signing_key(&store, "example.test");
    store
        .add_alias(
            "team@example.test",
            &["alice@example.test".into(), "bob@example.test".into()],
        )
        .unwrap();
    let config = smtp::Config {
        max_recipients,
        max_message_size: max_size,
        ..smtp::Config::default()
    };
    let context = Arc::new(Context {
        hostname: "mx.example.test".into(),
        config,
        store: store.clone(),
        stats: Default::default(),
        auth: Arc::new(store::login::Authenticator::new(
            store.clone(),
            &Default::default(),
        )),
        dnsbl: None,
        verifier: None,
        milter: None,
        queue: None,
        limits: Default::default(),
        sieve: Arc::new(sieve::Engine::new(&Default::default(), "mx.example.test")),
        srs: smtp::srs::Srs::new(&store.secret("srs", 32).unwrap()),
        spool_dir: dir.path().to_path_buf(),
    });
    Fixture {
        _dir: dir,
        store,
        smtp: Smtp::new(context.clone(), Mode::Mx),
        context,
    }
}

/// An active Ed25519 DKIM key for `domain` (submission refuses to send unsigned).
fn add_signing_key(store: &Store, domain: &str) {
    let key = dkim::keys::generate(dkim::keys::Algorithm::Ed25519).unwrap();
    store
        .add_dkim_key(&store::DkimKey {
            domain: domain.into(),
            selector: "s1".into(),
            algorithm: key.algorithm.key_type().into(),
            private_key_pem: key.private_key_pem,
            public_key_b64: key.public_key_b64,
            active: true,
            created: std::time::SystemTime::now(),
        })
        .unwrap();
}

impl Fixture {
    /// (accepted, rejected) message counters.
    fn stats(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let st = &self.context.stats;
        (st.accepted.load(Relaxed), st.rejected.load(Relaxed))
    }

    fn session(&self) -> Session {
        self.session_on(&self.smtp, false)
    }

    /// A submission session, already under TLS (port 465) or not yet (587).
    fn submission(&self, tls: bool) -> Session {
        self.session_on(&Smtp::new(self.context.clone(), Mode::Submission), tls)
    }

    fn session_on(&self, smtp: &Smtp, tls: bool) -> Session {
        let info = ConnInfo {
            peer: "192.0.2.1:1234".parse().unwrap(),
            local: "192.0.2.2:25".parse().unwrap(),
            listener: "smtp",
            tls,
            starttls: !tls,
        };
        let mut s = smtp.open(&info);
        assert!(
            String::from_utf8(s.greeting())
                .unwrap()
                .starts_with("220 mx.example.test")
        );
        s
    }

    fn inbox(&self, user: &str) -> Vec<Vec<u8>> {
        let account = self
            .store
            .account(&format!("{user}@example.test"))
            .unwrap()
            .unwrap();
        let inbox = self.store.mailbox(account.id, "INBOX").unwrap().unwrap();
        self.store
            .messages(inbox.id)
            .unwrap()
            .iter()
            .map(|m| self.store.read_body(m).unwrap())
            .collect()
    }
}

async fn say(s: &mut Session, input: &[u8]) -> (String, Action) {
    let out = s.receive(input).await;
    (String::from_utf8(out.reply).unwrap(), out.action)
}

/// Every reply line carries an enhanced status code (RFC 2034), except 220/250 EHLO lines.
fn codes(replies: &str) -> Vec<&str> {
    replies
        .lines()
        .map(|l| &l[..l.find(' ').unwrap_or(l.len()).min(l.len())])
        .collect()
}

#[tokio::test]
async fn a_message_is_delivered_with_received_and_dot_unstuffed() {
    let f = fixture(100, 1 << 20);
    let mut s = f.session();
    let (r, _) = say(&mut s, b"EHLO client.test\r\n").await;
    for ext in [
        "PIPELINING",
        "SIZE 1048576",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "STARTTLS",
    ] {
        assert!(r.contains(ext), "{ext} missing: {r}");
    }
    let (r, _) = say(
        &mut s,
        b"MAIL FROM:<sender@remote.test> SIZE=100\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n",
    )
    .await;
    assert_eq!(codes(&r), ["250", "250", "354"], "{r}");
    let (r, _) = say(
        &mut s,
        b"Subject: hi\r\nFrom: sender@remote.test\r\n\r\n..leading dot\r\nbody\r\n.\r\n",
    )
    .await;
    assert!(r.starts_with("250 2.0.0 Message accepted as "), "{r}");
    assert_eq!(f.stats(), (1, 0));
    let inbox = f.inbox("alice");
    assert_eq!(inbox.len(), 1);
    let msg = String::from_utf8(inbox[0].clone()).unwrap();
    assert!(msg.starts_with("Received: from client.test ([192.0.2.1])\r\n\tby mx.example.test (Postern) with ESMTP id "), "{msg}");
    assert!(msg.contains("\tfor <alice@example.test>;"), "{msg}");
    assert!(
        msg.ends_with("Subject: hi\r\nFrom: sender@remote.test\r\n\r\n.leading dot\r\nbody\r\n"),
        "{msg:?}"
    );
    // The session goes on: a second transaction with pipelining.
    let (r, _) = say(&mut s, b"MAIL FROM:<>\r\nRCPT TO:<bob+tag@example.test>\r\nRCPT TO:<team@example.test>\r\nDATA\r\n").await;
    assert_eq!(codes(&r), ["250", "250", "250", "354"], "{r}");
    let (r, _) = say(&mut s, b"Subject: two\r\n\r\nx\r\n.\r\n").await;
    assert!(r.starts_with("250 2.0.0"), "{r}");
    assert_eq!(f.inbox("bob").len(), 1, "bob once, though reached twice");
    assert_eq!(f.inbox("alice").len(), 2);
    let (r, a) = say(&mut s, b"QUIT\r\n").await;
    assert_eq!((r.as_str(), a), ("221 2.0.0 Bye\r\n", Action::Close));
}

#[tokio::test]
async fn recipients_unknown_remote_over_quota_and_too_many() {
    let f = fixture(2, 1 << 20);
    let mut s = f.session();
    say(&mut s, b"EHLO c\r\nMAIL FROM:<a@remote.test>\r\n").await;
    let (r, _) = say(&mut s, b"RCPT TO:<nobody@example.test>\r\n").await;
    assert!(r.starts_with("550 5.1.1 "), "{r}");
    let (r, _) = say(&mut s, b"RCPT TO:<victim@elsewhere.test>\r\n").await;
    assert!(r.starts_with("554 5.7.1 Relay access denied"), "{r}");
    assert_eq!(f.stats(), (0, 1));
    let events = f.store.events(None, 10).unwrap();
    let relay = events
        .iter()
        .find(|e| e.event.action == "smtp-relay-denied")
        .unwrap();
    assert_eq!(relay.event.ip, Some("192.0.2.1".parse().unwrap()));
    assert_eq!(relay.event.actor, "<a@remote.test>");
    assert_eq!(relay.event.detail, "to <victim@elsewhere.test>");
    f.store.set_quota("bob@example.test", 1).unwrap();
    let (r, _) = say(&mut s, b"RCPT TO:<alice@example.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<alice@example.test>\r\n").await;
    assert_eq!(codes(&r), ["250", "250", "452"], "{r}");
    assert!(r.contains("452 4.5.3 Too many recipients"), "{r}");
    say(&mut s, b"RSET\r\n").await;
    // Bob has a 1-byte quota: fill it, then he is over it.
    let b = f.store.account("bob@example.test").unwrap().unwrap();
    let inbox = f.store.mailbox(b.id, "INBOX").unwrap().unwrap();
    f.store.set_quota("bob@example.test", 0).unwrap();
    f.store
        .append(inbox.id, b"x", &[], std::time::SystemTime::now())
        .unwrap();
    f.store.set_quota("bob@example.test", 1).unwrap();
    let (r, _) = say(
        &mut s,
        b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<bob@example.test>\r\n",
    )
    .await;
    assert!(
        r.ends_with("452 4.2.2 Mailbox full, try again later\r\n"),
        "{r}"
    );
    // A catch-all takes unknown users of its domain.
    f.store
        .add_alias("@example.test", &["alice@example.test".into()])
        .unwrap();
    let (r, _) = say(&mut s, b"RCPT TO:<whoever@example.test>\r\n").await;
    assert!(r.starts_with("250 2.1.5"), "{r}");
}

#[tokio::test]
async fn order_and_syntax_errors() {
    let f = fixture(100, 1 << 20);
    let mut s = f.session();
    let (r, _) = say(&mut s, b"MAIL FROM:<a@b.test>\r\n").await;
    assert!(r.starts_with("503 5.5.1"), "{r}");
    let (r, _) = say(
        &mut s,
        b"EHLO c\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n",
    )
    .await;
    assert_eq!(codes(&r)[codes(&r).len() - 2..], ["503", "503"], "{r}");
    let (r, _) = say(&mut s, b"MAIL FROM:<a@b.test>\r\nMAIL FROM:<a@b.test>\r\n").await;
    assert!(r.ends_with("503 5.5.1 Nested MAIL command\r\n"), "{r}");
    let (r, _) = say(&mut s, b"DATA\r\n").await;
    assert!(r.starts_with("554 5.5.1 No valid recipients"), "{r}");
    let (r, _) = say(&mut s, b"MAIL\0 FROM:<x>\r\n").await;
    assert!(r.starts_with("500 5.5.2"), "{r}");
    let (r, _) = say(&mut s, b"MAIL FROM:<bad address>\r\n").await;
    assert!(r.starts_with("5"), "{r}");
    let (r, _) = say(
        &mut s,
        "RSET\r\nMAIL FROM:<j\u{f6}rg@b.test>\r\n".as_bytes(),
    )
    .await;
    assert!(
        r.ends_with("553 5.6.7 Non-ASCII address without SMTPUTF8\r\n"),
        "{r}"
    );
    let (r, _) = say(
        &mut s,
        "MAIL FROM:<j\u{f6}rg@b.test> SMTPUTF8\r\n".as_bytes(),
    )
    .await;
    assert!(r.starts_with("250"), "{r}");
    let (r, _) = say(&mut s, b"VRFY alice\r\n").await;
    assert!(r.starts_with("252 2.5.0"), "{r}");
}

#[tokio::test]
async fn size_limits_at_mail_and_during_data() {
    let f = fixture(100, 1000);
    let mut s = f.session();
    let (r, _) = say(&mut s, b"EHLO c\r\nMAIL FROM:<a@b.test> SIZE=5000\r\n").await;
    assert!(
        r.ends_with("552 5.3.4 Message size exceeds the limit of 1000 bytes\r\n"),
        "{r}"
    );
    say(
        &mut s,
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n",
    )
    .await;
    let big = vec![b'x'; 700];
    for _ in 0..3 {
        let (r, _) = say(&mut s, &[&big[..], b"\r\n"].concat()).await;
        assert_eq!(r, "");
    }
    let (r, _) = say(&mut s, b".\r\n").await;
    assert!(r.starts_with("552 5.3.4"), "{r}");
    assert!(f.inbox("alice").is_empty());
    let (r, _) = say(&mut s, b"NOOP\r\n").await;
    assert!(r.starts_with("250"), "the session goes on: {r}");
}

#[tokio::test]
async fn bare_lf_is_refused_and_cannot_end_data() {
    let f = fixture(100, 1 << 20);
    let mut s = f.session();
    say(
        &mut s,
        b"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n",
    )
    .await;
    // "\n.\n" (and "\r\n.\n") must not end the data: a smuggled second message stays data.
    let (r, _) = say(
        &mut s,
        b"Subject: a\r\n\r\nx\n.\nMAIL FROM:<evil@b.test>\r\n",
    )
    .await;
    assert_eq!(r, "", "no end of data yet");
    let (r, _) = say(&mut s, b"\r\n.\r\n").await;
    assert!(
        r.starts_with("554 5.6.0 Message contains a bare CR or LF"),
        "{r}"
    );
    assert!(f.inbox("alice").is_empty());
}

#[tokio::test]
async fn bdat_chunks_and_refused_bdat_consumes_its_chunk() {
    let f = fixture(100, 1 << 20);
    let mut s = f.session();
    // BDAT without MAIL: the 5 octets are read as data, not as a command.
    let (r, _) = say(&mut s, b"EHLO c\r\nBDAT 6 LAST\r\nQUIT\r\n").await;
    assert!(r.ends_with("503 5.5.1 Send MAIL first\r\n"), "{r}");
    let (r, _) = say(
        &mut s,
        b"MAIL FROM:<a@b.test>\r\nRCPT TO:<alice@example.test>\r\nBDAT 14\r\nSubject: x\r\n\r\n",
    )
    .await;
    assert!(r.ends_with("250 2.0.0 14 octets received\r\n"), "{r}");
    let (r, _) = say(&mut s, b"BDAT 9 LAST\r\nbody\r\n.\r\n").await;
    assert!(r.starts_with("250 2.0.0 Message accepted"), "{r}");
    let msg = String::from_utf8(f.inbox("alice")[0].clone()).unwrap();
    // BDAT content is not dot-unstuffed (RFC 3030 §2).
    assert!(msg.ends_with("Subject: x\r\n\r\nbody\r\n.\r\n"), "{msg:?}");
}

#[tokio::test]
async fn garbage_is_bounded() {
    let f = fixture(100, 1 << 20);
    let mut s = f.session();
    let garbage = vec![b'A'; 10 * 1024 * 1024];
    let mut closed = false;
    for chunk in garbage.chunks(16 * 1024) {
        let (r, a) = say(&mut s, chunk).await;
        if a == Action::Close {
            assert!(r.starts_with("500 5.5.6 Line too long"), "{r}");
            closed = true;
            break;
        }
    }
    assert!(closed, "10 MB without a line end must close the session");
    // A long line that does end is answered, and the session goes on.
    let mut s = f.session();
    let (r, a) = say(
        &mut s,
        &[&b"NOOP "[..], &vec![b'A'; 5000], b"\r\n"].concat(),
    )
    .await;
    assert_eq!(
        (r.as_str(), a),
        ("500 5.5.6 Line too long\r\n", Action::Continue)
    );
    for chunk in [vec![b'B'; 3000], vec![b'B'; 3000], b"\r\nNOOP\r\n".to_vec()] {
        let (r, _) = say(&mut s, &chunk).await;
        if chunk.ends_with(b"NOOP\r\n") {
            assert_eq!(r, "500 5.5.6 Line too long\r\n250 2.0.0 OK\r\n");
        }
    }
    let (r, _) = say(
        &mut s,
        b"EHLO a\r\nMAIL FROM:<\xff\xfe@b.test> SMTPUTF8\r\n",
    )
    .await;
    assert!(r.ends_with("501 5.5.2 Invalid UTF-8 in command\r\n"), "{r}");
    let mut s = f.session();
    let (r, a) = say(&mut s, &b"JUNK\r\n".repeat(25)).await;
    assert_eq!(a, Action::Close);
    assert!(
        r.ends_with("421 4.7.0 Too many errors, closing connection\r\n"),
        "{r}"
    );
}

fn plain(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"))
}

#[tokio::test]
async fn submission_needs_tls_then_auth_and_nobody_sends_as_anybody_else() {
    let f = fixture(100, 1 << 20);
    // Before TLS: no AUTH offered, AUTH and MAIL refused.
    let mut s = f.submission(false);
    let (r, _) = say(&mut s, b"EHLO c\r\n").await;
    assert!(!r.contains("AUTH"), "{r}");
    let (r, _) = say(
        &mut s,
        format!(
            "AUTH PLAIN {}\r\n",
            plain("alice@example.test", "Secret-Pass-1")
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r, "530 5.7.0 Must issue a STARTTLS command first\r\n");
    let (r, _) = say(&mut s, b"MAIL FROM:<alice@example.test>\r\n").await;
    assert_eq!(r, "530 5.7.0 Authentication required\r\n");

    let mut s = f.submission(true);
    let (r, _) = say(&mut s, b"EHLO c\r\n").await;
    assert!(
        r.contains("250-AUTH PLAIN LOGIN\r\n") || r.contains("250 AUTH PLAIN LOGIN\r\n"),
        "{r}"
    );
    let (r, _) = say(&mut s, b"MAIL FROM:<alice@example.test>\r\n").await;
    assert_eq!(r, "530 5.7.0 Authentication required\r\n");
    let (r, _) = say(
        &mut s,
        format!(
            "AUTH PLAIN {}\r\n",
            plain("alice@example.test", "Wrong-Pass-1")
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(r, "535 5.7.8 Authentication credentials invalid\r\n");
    // LOGIN with continuations, then cancelled; then PLAIN without an initial response.
    let (r, _) = say(&mut s, b"AUTH LOGIN\r\n").await;
    assert_eq!(r, "334 VXNlcm5hbWU6\r\n");
    let (r, _) = say(&mut s, b"*\r\n").await;
    assert_eq!(r, "501 5.0.0 Authentication cancelled\r\n");
    let (r, _) = say(&mut s, b"AUTH PLAIN\r\n").await;
    assert_eq!(r, "334 \r\n");
    let (r, _) = say(
        &mut s,
        format!("{}\r\n", plain("Alice@Example.test", "Secret-Pass-1")).as_bytes(),
    )
    .await;
    assert_eq!(r, "235 2.7.0 Authentication successful\r\n");

    let (r, _) = say(&mut s, b"MAIL FROM:<bob@example.test>\r\n").await;
    assert_eq!(
        r,
        "550 5.7.1 Sender address <bob@example.test> is not yours\r\n"
    );
    let (r, _) = say(&mut s, b"MAIL FROM:<>\r\n").await;
    assert!(r.starts_with("550 5.7.1"), "{r}");
    let (r, _) = say(&mut s, b"MAIL FROM:<alice+lists@example.test>\r\nRCPT TO:<someone@remote.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n").await;
    assert_eq!(codes(&r), ["250", "250", "250", "354"], "{r}");
    let (r, _) = say(
        &mut s,
        b"From: Bob <bob@example.test>\r\nSubject: forged\r\n\r\nx\r\n.\r\n",
    )
    .await;
    assert_eq!(
        r,
        "550 5.7.1 From: address <bob@example.test> is not yours\r\n"
    );
    assert!(f.inbox("bob").is_empty());
    assert!(
        f.store.queued().unwrap().is_empty(),
        "a refused message is not queued"
    );
    // A remote recipient with DSN parameters: queued, with them, before the 250.
    let (r, _) = say(&mut s, b"MAIL FROM:<alice@example.test> RET=HDRS ENVID=QQ+2B1\r\nRCPT TO:<someone@remote.test> NOTIFY=FAILURE,DELAY ORCPT=rfc822;someone@remote.test\r\nDATA\r\nFrom: Alice <alice@example.test>\r\nSubject: out\r\n\r\nx\r\n.\r\n").await;
    assert!(r.contains("250 2.0.0 Message accepted as "), "{r}");
    let queued = f.store.queued().unwrap();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].sender, "alice@example.test");
    assert_eq!(queued[0].env_id.as_deref(), Some("QQ+1"));
    assert!(!queued[0].ret_full);
    assert_eq!(queued[0].recipients[0].address, "someone@remote.test");
    assert_eq!(
        queued[0].recipients[0].notify.as_deref(),
        Some("FAILURE,DELAY")
    );
    let body = f.store.read_queued_body(&queued[0]).unwrap();
    assert!(body.starts_with(b"Received: "), "trace header first");
    let (r, _) = say(&mut s, b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nFrom: Alice <alice@example.test>\r\nSubject: real\r\n\r\nx\r\n.\r\n").await;
    assert!(
        r.ends_with("250 2.0.0 Message accepted as ")
            || r.contains("\r\n250 2.0.0 Message accepted as "),
        "{r}"
    );
    assert_eq!(f.inbox("bob").len(), 1);
    // An alias that delivers to alice is hers to send as.
    f.store
        .add_alias("sales@example.test", &["alice@example.test".into()])
        .unwrap();
    let (r, _) = say(&mut s, b"MAIL FROM:<sales@example.test>\r\n").await;
    assert!(r.starts_with("250"), "{r}");
    let actions: Vec<String> = f
        .store
        .events(None, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.event.action)
        .collect();
    assert!(
        actions.contains(&"login-failed".to_string()) && actions.contains(&"login".to_string()),
        "{actions:?}"
    );
}

#[tokio::test]
async fn a_long_pipeline_is_answered_a_chunk_at_a_time() {
    let f = fixture(100, 1 << 20);
    let mut s = f.session();
    s.greeting();
    // 20,000 pipelined NOOPs: their replies are far more than one chunk.
    let pipeline = "NOOP\r\n".repeat(20_000);
    let mut out = s.receive(pipeline.as_bytes()).await;
    assert!(out.reply.len() < 2 * common::net::OUTPUT_CHUNK);
    let mut total = out.reply.len();
    let mut parts = 1;
    while out.action == Action::More {
        out = s.resume().await;
        total += out.reply.len();
        parts += 1;
    }
    assert_eq!(out.action, Action::Continue);
    assert!(parts > 1, "{parts} parts");
    let one = {
        let mut t = f.session();
        t.greeting();
        t.receive(b"NOOP\r\n").await.reply.len()
    };
    assert_eq!(total, 20_000 * one);
}

#[tokio::test]
async fn a_domain_without_an_active_dkim_key_gets_a_temporary_refusal_not_unsigned_mail() {
    let f = fixture(100, 1 << 20);
    f.store.add_domain("nokeys.test").unwrap();
    f.store
        .add_alias("alice@nokeys.test", &["alice@example.test".into()])
        .unwrap();
    let mut s = f.submission(true);
    say(&mut s, b"EHLO c\r\n").await;
    let login = format!(
        "AUTH PLAIN {}\r\n",
        plain("alice@example.test", "Secret-Pass-1")
    );
    let (r, _) = say(&mut s, login.as_bytes()).await;
    assert!(r.starts_with("235"), "{r}");
    let (r, _) = say(&mut s, b"MAIL FROM:<alice@nokeys.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nFrom: alice@nokeys.test\r\nSubject: x\r\n\r\nx\r\n.\r\n").await;
    assert!(
        r.ends_with("451 4.7.0 No DKIM key is active for nokeys.test: the administrator must activate one\r\n"),
        "{r}"
    );
    assert!(f.inbox("bob").is_empty());
    let events = f.store.events(None, 10).unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.event.action == "submission-unsigned"
                && e.event.actor == "alice@example.test"
                && e.event.detail.contains("nokeys.test")),
        "{events:?}"
    );
    // With a key active, the same message goes.
    add_signing_key(&f.store, "nokeys.test");
    let (r, _) = say(&mut s, b"MAIL FROM:<alice@nokeys.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nFrom: alice@nokeys.test\r\nSubject: x\r\n\r\nx\r\n.\r\n").await;
    assert!(r.contains("250 2.0.0 Message accepted"), "{r}");
    let got = f.inbox("bob");
    assert_eq!(got.len(), 1);
    assert!(String::from_utf8_lossy(&got[0]).contains("d=nokeys.test"));
}
