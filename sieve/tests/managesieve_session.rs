//! ManageSieve session tests: the sans-socket session driven with bytes, against a real
//! store in a temporary directory, with no network.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use common::net::{Action, ConnInfo, Protocol, Session as _};
use sieve::SieveConfig;
use sieve::managesieve::{ManageSieve, Session};

const USER: &str = "alice@example.org";
const PW: &str = "Alice-Pass-1";

struct Server {
    _dir: tempfile::TempDir,
    store: Arc<store::Store>,
    protocol: ManageSieve,
}

fn server_with(config: SieveConfig, attempts_per_second: u32) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(store::Store::open(&dir.path().join("data")).unwrap());
    store.add_domain("example.org").unwrap();
    let hash = common::auth::hash_password(PW).unwrap();
    store.add_account(USER, &hash).unwrap();
    let auth = Arc::new(store::login::Authenticator::new(
        store.clone(),
        &common::auth::Config {
            attempts_per_second,
            login_cache_seconds: 300,
        },
    ));
    let engine = Arc::new(sieve::Engine::new(&config, "mx.example.org"));
    Server {
        _dir: dir,
        store: store.clone(),
        protocol: ManageSieve::new(store, auth, engine),
    }
}

fn server() -> Server {
    server_with(
        SieveConfig {
            max_script_bytes: 200,
            max_scripts: 3,
            ..SieveConfig::default()
        },
        1000,
    )
}

fn open(server: &Server, tls: bool) -> Session {
    let addr: SocketAddr = "192.0.2.1:4190".parse().unwrap();
    server.protocol.open(&ConnInfo {
        peer: "192.0.2.9:50000".parse().unwrap(),
        local: addr,
        listener: "managesieve",
        tls,
        starttls: true,
    })
}

async fn send(s: &mut Session, input: &[u8]) -> (String, Action) {
    let out = s.receive(input).await;
    (String::from_utf8(out.reply).unwrap(), out.action)
}

async fn ok(s: &mut Session, input: &str) -> String {
    let (reply, action) = send(s, input.as_bytes()).await;
    assert_eq!(action, Action::Continue, "{input:?} -> {reply:?}");
    assert!(
        reply.lines().last().unwrap_or("").starts_with("OK"),
        "{input:?} -> {reply:?}"
    );
    reply
}

fn plain(authzid: &str, user: &str, pw: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{authzid}\0{user}\0{pw}"))
}

async fn logged_in(server: &Server) -> Session {
    let mut s = open(server, true);
    ok(
        &mut s,
        &format!("AUTHENTICATE \"PLAIN\" \"{}\"\r\n", plain("", USER, PW)),
    )
    .await;
    s
}

#[tokio::test]
async fn greeting_starttls_and_the_capability_resent_after_it() {
    let server = server();
    let mut s = open(&server, false);
    let greeting = String::from_utf8(s.greeting()).unwrap();
    assert!(
        greeting.starts_with("\"IMPLEMENTATION\" \"Postern\"\r\n"),
        "{greeting}"
    );
    assert!(greeting.contains("\"SASL\" \"\"\r\n"), "{greeting}");
    assert!(greeting.contains("\"STARTTLS\"\r\n"), "{greeting}");
    assert!(greeting.contains("\"VERSION\" \"1.0\"\r\n"), "{greeting}");
    assert!(
        greeting.contains("\"MAXREDIRECTS\" \"4\"\r\n"),
        "{greeting}"
    );
    assert!(
        greeting.contains(&format!(
            "\"SIEVE\" \"{}\"\r\n",
            sieve::script::extension_list()
        )),
        "{greeting}"
    );
    assert!(greeting.ends_with("OK \"Postern ManageSieve ready\"\r\n"));

    // No password before TLS.
    let (reply, _) = send(
        &mut s,
        format!("AUTHENTICATE \"PLAIN\" \"{}\"\r\n", plain("", USER, PW)).as_bytes(),
    )
    .await;
    assert!(reply.starts_with("NO (ENCRYPT-NEEDED) "), "{reply}");
    let (reply, _) = send(&mut s, b"LISTSCRIPTS\r\n").await;
    assert_eq!(reply, "NO \"Authenticate first\"\r\n");

    // STARTTLS; what the client pipelined after it is dropped.
    let (reply, action) = send(&mut s, b"STARTTLS\r\nLOGOUT\r\n").await;
    assert_eq!(reply, "OK \"Begin TLS negotiation now\"\r\n");
    assert_eq!(action, Action::StartTls);
    s.tls_started();
    let caps = String::from_utf8(s.unsolicited().await).unwrap();
    assert!(caps.contains("\"SASL\" \"PLAIN\"\r\n"), "{caps}");
    assert!(!caps.contains("STARTTLS"), "{caps}");
    assert!(
        caps.ends_with("OK \"TLS negotiation successful\"\r\n"),
        "{caps}"
    );
    // Sent once.
    let again = tokio::time::timeout(std::time::Duration::from_millis(50), s.unsolicited()).await;
    assert!(again.is_err(), "capabilities sent twice");
    let (reply, _) = send(&mut s, b"STARTTLS\r\n").await;
    assert!(reply.starts_with("NO "), "{reply}");
}

#[tokio::test]
async fn a_command_arriving_before_the_resent_capability_gets_it_first() {
    let server = server();
    let mut s = open(&server, false);
    send(&mut s, b"STARTTLS\r\n").await;
    s.tls_started();
    let (reply, _) = send(&mut s, b"NOOP \"STARTTLS-RESYNC-CAPA\"\r\n").await;
    assert!(reply.starts_with("\"IMPLEMENTATION\""), "{reply}");
    assert!(
        reply.ends_with(
            "OK \"TLS negotiation successful\"\r\nOK (TAG \"STARTTLS-RESYNC-CAPA\") \"Done\"\r\n"
        ),
        "{reply}"
    );
}

#[tokio::test]
async fn authenticate_plain_inline_by_continuation_and_refusals() {
    let server = server();
    let mut s = open(&server, true);
    let (reply, _) = send(
        &mut s,
        format!(
            "AUTHENTICATE \"PLAIN\" \"{}\"\r\n",
            plain("", USER, "Wrong-Pass-1")
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(reply, "NO \"Authentication failed\"\r\n");
    let (reply, _) = send(
        &mut s,
        format!(
            "AUTHENTICATE \"PLAIN\" \"{}\"\r\n",
            plain("bob@example.org", USER, PW)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(reply, "NO \"Authentication failed\"\r\n");
    let (reply, _) = send(&mut s, b"AUTHENTICATE \"LOGIN\"\r\n").await;
    assert!(reply.starts_with("NO \"Only SASL PLAIN"), "{reply}");
    let (reply, _) = send(&mut s, b"AUTHENTICATE \"PLAIN\" \"!!notbase64\"\r\n").await;
    assert!(reply.starts_with("NO "), "{reply}");
    // Cancelled after the challenge.
    let (reply, _) = send(&mut s, b"AUTHENTICATE \"PLAIN\"\r\n").await;
    assert_eq!(reply, "\"\"\r\n");
    let (reply, _) = send(&mut s, b"\"*\"\r\n").await;
    assert_eq!(reply, "NO \"Authentication cancelled\"\r\n");
    // By continuation, the response as a literal, in two pieces.
    let (reply, _) = send(&mut s, b"Authenticate \"plain\"\r\n").await;
    assert_eq!(reply, "\"\"\r\n");
    let response = plain(USER, USER, PW);
    let line = format!("{{{}+}}\r\n{response}\r\n", response.len());
    let (first, second) = line.as_bytes().split_at(7);
    let (reply, _) = send(&mut s, first).await;
    assert_eq!(reply, "");
    let (reply, _) = send(&mut s, second).await;
    assert_eq!(reply, "OK \"Authenticated\"\r\n");
    let caps = ok(&mut s, "CAPABILITY\r\n").await;
    assert!(
        caps.contains(&format!("\"OWNER\" \"{USER}\"\r\n")),
        "{caps}"
    );
    let (reply, _) = send(&mut s, b"AUTHENTICATE \"PLAIN\"\r\n").await;
    assert_eq!(reply, "NO \"Already authenticated\"\r\n");
    // UNAUTHENTICATE: back to the start.
    ok(&mut s, "UNAUTHENTICATE\r\n").await;
    let (reply, _) = send(&mut s, b"LISTSCRIPTS\r\n").await;
    assert_eq!(reply, "NO \"Authenticate first\"\r\n");
    let (reply, action) = send(&mut s, b"LOGOUT\r\n").await;
    assert_eq!(reply, "OK \"Logout completed\"\r\n");
    assert_eq!(action, Action::Close);
}

#[tokio::test]
async fn the_failed_login_limiter_answers_trylater() {
    let server = server_with(SieveConfig::default(), 1);
    let mut s = open(&server, true);
    let bad = format!(
        "AUTHENTICATE \"PLAIN\" \"{}\"\r\n",
        plain("", USER, "Wrong-Pass-1")
    );
    let (reply, _) = send(&mut s, bad.as_bytes()).await;
    assert_eq!(reply, "NO \"Authentication failed\"\r\n");
    let good = format!("AUTHENTICATE \"PLAIN\" \"{}\"\r\n", plain("", USER, PW));
    let (reply, _) = send(&mut s, good.as_bytes()).await;
    assert!(reply.starts_with("NO (TRYLATER) "), "{reply}");
}

#[tokio::test]
async fn scripts_are_put_listed_activated_fetched_renamed_and_deleted() {
    let server = server();
    let mut s = logged_in(&server).await;
    let account = server.store.account(USER).unwrap().unwrap().id;

    ok(&mut s, "HAVESPACE \"main\" 200\r\n").await;
    let (reply, _) = send(&mut s, b"HAVESPACE \"main\" 201\r\n").await;
    assert!(reply.starts_with("NO (QUOTA/MAXSIZE) "), "{reply}");

    // RFC 5804 §2.6, the first example: refused, the compiler's error told (sieve-rs
    // gives an unknown command the position of its block, here line 0).
    let (reply, _) = send(
        &mut s,
        b"Putscript \"foo\" {31+}\r\n#comment\r\nInvalidSieveCommand\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("NO \"line "), "{reply}");
    assert!(reply.contains("invalidsievecommand"), "{reply}");
    // An error the compiler places: line 3.
    let (reply, _) = send(
        &mut s,
        b"PUTSCRIPT \"foo\" {26+}\r\nkeep;\r\nkeep;\r\nkeep \"x\";\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("NO \"line 3, column 6: "), "{reply}");
    assert!(server.store.sieve_scripts(account).unwrap().is_empty());

    let script =
        "require \"fileinto\";\r\nif header :contains \"Subject\" \"x\" { fileinto \"X\"; }\r\n";
    ok(
        &mut s,
        &format!("PUTSCRIPT \"main\" {{{}}}\r\n{script}\r\n", script.len()),
    )
    .await;
    ok(&mut s, "PUTSCRIPT \"second \\\"one\\\"\" \"keep;\"\r\n").await;
    ok(&mut s, "PUTSCRIPT \"Grüße\" \"discard;\"\r\n").await;
    // A fourth name is over max_scripts; replacing is not.
    let (reply, _) = send(&mut s, b"PUTSCRIPT \"four\" \"keep;\"\r\n").await;
    assert!(reply.starts_with("NO (QUOTA/MAXSCRIPTS) "), "{reply}");
    let (reply, _) = send(&mut s, b"HAVESPACE \"four\" 10\r\n").await;
    assert!(reply.starts_with("NO (QUOTA/MAXSCRIPTS) "), "{reply}");
    ok(&mut s, "HAVESPACE \"main\" 10\r\n").await;

    ok(&mut s, "SETACTIVE \"main\"\r\n").await;
    let list = ok(&mut s, "LISTSCRIPTS\r\n").await;
    assert_eq!(
        list,
        "\"Grüße\"\r\n\"main\" ACTIVE\r\n\"second \\\"one\\\"\"\r\nOK \"Listscripts completed\"\r\n"
    );
    let got = ok(&mut s, "GETSCRIPT \"main\"\r\n").await;
    assert_eq!(
        got,
        format!(
            "{{{}}}\r\n{script}\r\nOK \"Getscript completed\"\r\n",
            script.len()
        )
    );
    assert_eq!(
        server
            .store
            .sieve_script(account, "main")
            .unwrap()
            .as_deref(),
        Some(script)
    );

    // Replacing the active script keeps it active; a failing replacement stores nothing.
    ok(&mut s, "PUTSCRIPT \"main\" \"keep;\"\r\n").await;
    let (reply, _) = send(&mut s, b"PUTSCRIPT \"main\" \"keep \\\"x\\\";\"\r\n").await;
    assert!(reply.starts_with("NO \"line "), "{reply}");
    assert_eq!(
        server.store.active_sieve_script(account).unwrap(),
        Some(("main".into(), "keep;".into()))
    );

    let (reply, _) = send(&mut s, b"DELETESCRIPT \"main\"\r\n").await;
    assert!(reply.starts_with("NO (ACTIVE) "), "{reply}");
    let (reply, _) = send(&mut s, b"DELETESCRIPT \"nope\"\r\n").await;
    assert!(reply.starts_with("NO (NONEXISTENT) "), "{reply}");
    let (reply, _) = send(&mut s, b"GETSCRIPT \"nope\"\r\n").await;
    assert!(reply.starts_with("NO (NONEXISTENT) "), "{reply}");
    let (reply, _) = send(&mut s, b"SETACTIVE \"nope\"\r\n").await;
    assert!(reply.starts_with("NO (NONEXISTENT) "), "{reply}");
    let (reply, _) = send(&mut s, b"RENAMESCRIPT \"main\" \"Gr\xc3\xbc\xc3\x9fe\"\r\n").await;
    assert!(reply.starts_with("NO (ALREADYEXISTS) "), "{reply}");
    let (reply, _) = send(&mut s, b"RENAMESCRIPT \"nope\" \"x\"\r\n").await;
    assert!(reply.starts_with("NO (NONEXISTENT) "), "{reply}");
    ok(&mut s, "RENAMESCRIPT \"main\" \"haupt\"\r\n").await;
    assert_eq!(
        server.store.active_sieve_script(account).unwrap(),
        Some(("haupt".into(), "keep;".into()))
    );
    ok(&mut s, "SETACTIVE \"\"\r\n").await;
    assert_eq!(server.store.active_sieve_script(account).unwrap(), None);
    ok(&mut s, "DELETESCRIPT \"haupt\"\r\n").await;
    let list = ok(&mut s, "LISTSCRIPTS\r\n").await;
    assert!(!list.contains("haupt"), "{list}");

    // CHECKSCRIPT stores nothing.
    ok(&mut s, "CHECKSCRIPT \"keep;\"\r\n").await;
    let (reply, _) = send(&mut s, b"CHECKSCRIPT \"keep;\\r\\n\"\r\n").await;
    assert!(reply.starts_with("NO "), "{reply}");
    let (reply, _) = send(&mut s, b"CHECKSCRIPT {19+}\r\nkeep;\r\n\r\nstop stop;\r\n").await;
    assert!(reply.starts_with("NO \"line 3, column"), "{reply}");
    let (reply, _) = send(
        &mut s,
        b"CHECKSCRIPT \"require \\\"enotify\\\"; keep;\"\r\n",
    )
    .await;
    assert!(reply.contains("enotify"), "{reply}");
    assert_eq!(server.store.sieve_scripts(account).unwrap().len(), 2);
}

#[tokio::test]
async fn names_and_scripts_that_cannot_be_stored_are_refused() {
    let server = server();
    let mut s = logged_in(&server).await;
    for bad in [
        &b"PUTSCRIPT \"\" \"keep;\"\r\n"[..],
        b"PUTSCRIPT {4+}\r\na\r\nb \"keep;\"\r\n",
        b"PUTSCRIPT \"\xff\" \"keep;\"\r\n",
        b"PUTSCRIPT \"x\" \"keep; # \xff\"\r\n",
    ] {
        let (reply, action) = send(&mut s, bad).await;
        assert!(reply.starts_with("NO \""), "{bad:?} -> {reply}");
        assert_eq!(action, Action::Continue);
    }
    let long = "n".repeat(129);
    let (reply, _) = send(
        &mut s,
        format!("PUTSCRIPT \"{long}\" \"keep;\"\r\n").as_bytes(),
    )
    .await;
    assert!(reply.starts_with("NO \"Invalid script name"), "{reply}");
    let id = server.store.account(USER).unwrap().unwrap().id;
    assert!(server.store.sieve_scripts(id).unwrap().is_empty());
}

#[tokio::test]
async fn an_oversized_literal_is_read_dropped_and_refused() {
    let server = server();
    let mut s = logged_in(&server).await;
    // Limit 200 + 1024 slack: 201 bytes are taken and refused by the size check...
    let (reply, _) = send(
        &mut s,
        format!("PUTSCRIPT \"x\" {{201+}}\r\n{}\r\n", "#".repeat(201)).as_bytes(),
    )
    .await;
    assert!(reply.starts_with("NO (QUOTA/MAXSIZE) "), "{reply}");
    // ... a megabyte is dropped as it arrives, and the session goes on.
    let (reply, _) = send(&mut s, b"PUTSCRIPT \"x\" {1048576+}\r\n").await;
    assert_eq!(reply, "");
    for _ in 0..64 {
        let (reply, _) = send(&mut s, &[b'#'; 16384]).await;
        assert_eq!(reply, "");
    }
    let (reply, action) = send(&mut s, b"\r\nNOOP\r\n").await;
    assert!(
        reply.starts_with("NO (QUOTA/MAXSIZE) \"a string of 1048576 bytes"),
        "{reply}"
    );
    assert!(reply.ends_with("OK \"Done\"\r\n"), "{reply}");
    assert_eq!(action, Action::Continue);

    // Before authentication a large literal ends the connection.
    let mut s = open(&server, true);
    let (reply, action) = send(&mut s, b"PUTSCRIPT \"x\" {100000+}\r\n").await;
    assert!(reply.starts_with("BYE (QUOTA/MAXSIZE) "), "{reply}");
    assert_eq!(action, Action::Close);
}

#[tokio::test]
async fn bad_commands_and_long_lines_end_the_session() {
    let server = server();
    let mut s = open(&server, true);
    for i in 1..10 {
        let (reply, action) = send(&mut s, b"FROB\r\n").await;
        assert_eq!(reply, "NO \"Unknown command\"\r\n", "{i}");
        assert_eq!(action, Action::Continue);
    }
    let (reply, action) = send(&mut s, b"GETSCRIPT \"x\"\r\n").await;
    assert_eq!(
        reply,
        "NO \"Authenticate first\"\r\nBYE \"Too many bad commands\"\r\n"
    );
    assert_eq!(action, Action::Close);

    let mut s = open(&server, true);
    let (reply, action) = send(&mut s, &vec![b'A'; 9000]).await;
    assert!(reply.starts_with("BYE "), "{reply}");
    assert_eq!(action, Action::Close);

    // Failed operations are no bad commands.
    let mut s = logged_in(&server).await;
    for _ in 0..12 {
        let (reply, action) = send(&mut s, b"GETSCRIPT \"nope\"\r\n").await;
        assert!(reply.starts_with("NO (NONEXISTENT)"), "{reply}");
        assert_eq!(action, Action::Continue);
    }
    // A NOOP with a tag, and pipelined commands answered in order.
    let (reply, _) = send(&mut s, b"NOOP \"x\\\"y\"\r\nNOOP\r\n").await;
    assert_eq!(reply, "OK (TAG \"x\\\"y\") \"Done\"\r\nOK \"Done\"\r\n");
}

#[tokio::test]
async fn a_long_pipeline_is_answered_a_chunk_at_a_time_and_then_the_session_is_at_rest() {
    let server = server();
    let mut s = open(&server, true);
    s.greeting();
    assert!(s.at_rest());
    // 2,000 pipelined CAPABILITY commands: far more than one chunk of answers.
    let pipeline = "CAPABILITY\r\n".repeat(2000);
    let mut out = s.receive(pipeline.as_bytes()).await;
    let mut parts = 1;
    let mut total = out.reply.len();
    assert!(out.reply.len() < 2 * common::net::OUTPUT_CHUNK);
    while out.action == Action::More {
        assert!(!s.at_rest(), "answers are still owed");
        out = s.resume().await;
        total += out.reply.len();
        parts += 1;
    }
    assert_eq!(out.action, Action::Continue);
    assert!(parts > 1, "{parts} parts, {total} octets");
    let one = {
        let mut t = open(&server, true);
        t.greeting();
        t.receive(b"CAPABILITY\r\n").await.reply.len()
    };
    assert_eq!(total, 2000 * one);
    assert!(s.at_rest());
    // Half a command is not rest.
    let _ = s.receive(b"CAPAB").await;
    assert!(!s.at_rest());
}
