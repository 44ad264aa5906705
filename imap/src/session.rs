//! The IMAP connection for `common::net`: bytes in, split into lines and literals by
//! imap-codec's fragmentizer (continuations for synchronising literals, LITERAL+,
//! size limits), each complete command decoded and run by [`Core`] on a blocking
//! thread (the store is synchronous), IDLE updates pushed as the store changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::net::{self, Action, ConnInfo, Output};
use imap_codec::fragmentizer::{DecodeMessageError, FragmentInfo, Fragmentizer};
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::auth::AuthenticateData;
use imap_codec::imap_types::core::LiteralMode;
use imap_codec::{AuthenticateDataCodec, CommandCodec, IdleDoneCodec};
use store::login::Authenticator;
use store::{Change, Store};
use tokio::sync::broadcast;

use crate::config::Config;
use crate::core::{Core, Limits, Next, SessionCounts, Waiting};
use crate::op;
use crate::resp;

/// The longest command line (without literals) we take, RFC 7162 §4 asks for 8192.
const MAX_LINE: usize = 64 * 1024;

/// The IMAP protocol for the network driver.
#[derive(Debug, Clone)]
pub struct Imap {
    store: Arc<Store>,
    auth: Arc<Authenticator>,
    limits: Limits,
    sessions: SessionCounts,
    cache: Arc<crate::snapshot::Cache>,
}

impl Imap {
    /// IMAP over `store`, checking logins with `auth`.
    pub fn new(store: Arc<Store>, auth: Arc<Authenticator>, config: &Config) -> Self {
        Imap {
            store,
            auth,
            limits: Limits {
                max_literal: config.max_message_bytes,
                max_literal_unauthenticated: 8 * 1024,
                max_sessions_per_account: config.max_sessions_per_account,
            },
            sessions: Arc::new(Mutex::new(HashMap::new())),
            cache: Arc::default(),
        }
    }
}

impl net::Protocol for Imap {
    type Session = Session;

    fn open(&self, info: &ConnInfo) -> Session {
        let core = Core::new(
            self.store.clone(),
            self.auth.clone(),
            info.peer.ip(),
            info.tls,
            info.starttls,
            self.limits,
            self.sessions.clone(),
            self.cache.clone(),
        );
        Session {
            core: Some(core),
            frag: fragmentizer(&self.limits),
            limits: self.limits,
            changes: self.store.subscribe(),
        }
    }

    fn busy(&self) -> &'static [u8] {
        b"* BYE [UNAVAILABLE] Too many connections from your address, try again later\r\n"
    }

    /// RFC 3501 §5.4: the autologout timer is at least 30 minutes.
    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(30 * 60)
    }
}

fn fragmentizer(limits: &Limits) -> Fragmentizer {
    Fragmentizer::new(limits.max_literal.saturating_add(MAX_LINE as u32 * 2))
}

/// One IMAP connection.
pub struct Session {
    /// The logic; `None` only while a command runs on a blocking thread.
    core: Option<Core>,
    frag: Fragmentizer,
    limits: Limits,
    changes: broadcast::Receiver<Change>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

/// Work for the core, run on a blocking thread.
type Job = Box<dyn FnOnce(&mut Core, &mut Vec<u8>) -> Next + Send>;

/// What one decoded input is.
enum Input {
    Command(imap_codec::imap_types::command::Command<'static>),
    AuthData(String, Option<Vec<u8>>),
    IdleDone(String),
    /// CREATE with a USE list (CREATE-SPECIAL-USE): the plain CREATE and the attributes.
    CreateUse(
        imap_codec::imap_types::command::Command<'static>,
        Vec<String>,
    ),
    /// A line that could not be decoded: the reply to send.
    Bad(Vec<u8>),
}

impl Session {
    /// Runs `f` on the core on a blocking thread.
    async fn run<F>(&mut self, f: F) -> Option<(Vec<u8>, Next)>
    where
        F: FnOnce(&mut Core, &mut Vec<u8>) -> Next + Send + 'static,
    {
        common::net::run_blocking(&mut self.core, "imap", move |core| {
            let mut out = Vec::new();
            let next = f(core, &mut out);
            (out, next)
        })
        .await
    }

    fn waiting(&self) -> Waiting {
        self.core
            .as_ref()
            .map_or(Waiting::Command, |c| c.waiting.clone())
    }

    /// Decodes the complete message in the fragmentizer for what the session expects.
    fn decode(&self) -> Input {
        let tag_of = |frag: &Fragmentizer| frag.decode_tag().map(|t| t.as_ref().to_string());
        match self.waiting() {
            Waiting::Command => match self.frag.decode_message(&CommandCodec::default()) {
                Ok(cmd) => Input::Command(cmd.into_static()),
                Err(DecodeMessageError::MessageTooLong { .. }) => {
                    let mut out = Vec::new();
                    bad(&mut out, tag_of(&self.frag), "Command too long");
                    Input::Bad(out)
                }
                Err(_) => {
                    // CREATE name (USE (...)) (RFC 6154 §5.2): imap-codec does not parse
                    // the USE list; take it off and decode the plain CREATE.
                    if let Some((plain, uses)) = split_create_use(self.frag.message_bytes())
                        && let Ok((_, cmd)) =
                            imap_codec::decode::Decoder::decode(&CommandCodec::default(), &plain)
                        && matches!(
                            cmd.body,
                            imap_codec::imap_types::command::CommandBody::Create { .. }
                        )
                    {
                        return Input::CreateUse(cmd.into_static(), uses);
                    }
                    let mut out = Vec::new();
                    let text = syntax_hint(self.frag.message_bytes());
                    bad(&mut out, tag_of(&self.frag), &text);
                    Input::Bad(out)
                }
            },
            Waiting::AuthData { tag } => {
                match self.frag.decode_message(&AuthenticateDataCodec::default()) {
                    Ok(AuthenticateData::Continue(data)) => {
                        Input::AuthData(tag, Some(data.declassify().to_vec()))
                    }
                    Ok(AuthenticateData::Cancel) => Input::AuthData(tag, None),
                    Err(_) => Input::AuthData(tag, Some(Vec::new())),
                }
            }
            Waiting::Idle { tag } => match self.frag.decode_message(&IdleDoneCodec::default()) {
                Ok(_) => Input::IdleDone(tag),
                Err(_) => Input::IdleDone(tag),
            },
        }
    }
}

/// `tag CREATE name (USE (\\A \\B))` CRLF -> (`tag CREATE name` CRLF, [`\\A`, `\\B`]).
fn split_create_use(line: &[u8]) -> Option<(Vec<u8>, Vec<String>)> {
    let text = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))?;
    let text = std::str::from_utf8(text).ok()?;
    let upper = text.to_ascii_uppercase();
    let mut words = upper.split_ascii_whitespace();
    words.next()?;
    if words.next()? != "CREATE" {
        return None;
    }
    let pos = upper.rfind(" (USE (")?;
    let list = text[pos + " (USE (".len()..].strip_suffix("))")?;
    let uses = list.split_ascii_whitespace().map(str::to_string).collect();
    Some((format!("{}\r\n", &text[..pos]).into_bytes(), uses))
}

fn bad(out: &mut Vec<u8>, tag: Option<String>, text: &str) {
    match tag {
        Some(t) if !t.is_empty() => resp::tagged(out, &t, "BAD", None, text),
        _ => crate::line!(out, "* BAD {text}"),
    }
}

/// A reason for a line the codec refused, as precise as we can cheaply be.
fn syntax_hint(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut words = text.split_ascii_whitespace();
    let _tag = words.next();
    match words.next() {
        None => "Missing command".into(),
        Some(cmd) => {
            let cmd = cmd.to_ascii_uppercase();
            let known = [
                "CAPABILITY",
                "NOOP",
                "LOGOUT",
                "STARTTLS",
                "AUTHENTICATE",
                "LOGIN",
                "SELECT",
                "EXAMINE",
                "CREATE",
                "DELETE",
                "RENAME",
                "SUBSCRIBE",
                "UNSUBSCRIBE",
                "LIST",
                "LSUB",
                "STATUS",
                "APPEND",
                "CHECK",
                "CLOSE",
                "EXPUNGE",
                "SEARCH",
                "FETCH",
                "STORE",
                "COPY",
                "MOVE",
                "UID",
                "IDLE",
                "ENABLE",
                "NAMESPACE",
                "UNSELECT",
                "ID",
                "GETQUOTA",
                "GETQUOTAROOT",
            ];
            if known.contains(&cmd.as_str()) {
                format!("Invalid arguments for {cmd}")
            } else {
                format!("Unknown command {cmd}")
            }
        }
    }
}

impl Session {
    /// Runs the complete commands buffered in the fragmentizer, answers appended to
    /// `reply`; stops with [`Action::More`] once about a chunk of output is waiting
    /// (the rest of a FETCH, or the commands pipelined after it, follow in `resume`).
    async fn process(&mut self, mut reply: Vec<u8>) -> Output {
        loop {
            if reply.len() >= common::net::OUTPUT_CHUNK {
                return Output::more(reply);
            }
            let Some(fragment) = self.frag.progress() else {
                // Before login, one line may not grow past MAX_LINE plus a small literal.
                let authenticated = self.core.as_ref().is_some_and(|c| c.account.is_some());
                if !authenticated
                    && self.frag.message_bytes().len()
                        > MAX_LINE + self.limits.max_literal_unauthenticated as usize
                {
                    reply.extend_from_slice(b"* BYE Command too long\r\n");
                    return Output::close(reply);
                }
                break;
            };
            if let FragmentInfo::Line {
                announcement: Some(literal),
                ..
            } = fragment
            {
                let max = self.core.as_ref().map_or(0, Core::max_literal);
                if literal.length > max {
                    let tag = self.frag.decode_tag().map(|t| t.as_ref().to_string());
                    if literal.mode == LiteralMode::Sync {
                        // The client waits for our go-ahead: refuse, and it sends nothing.
                        match tag {
                            Some(t) => resp::tagged(
                                &mut reply,
                                &t,
                                "NO",
                                Some("TOOBIG"),
                                &format!("Literal larger than {max} octets"),
                            ),
                            None => crate::line!(
                                &mut reply,
                                "* NO [TOOBIG] Literal larger than {max} octets"
                            ),
                        }
                        self.frag.skip_message();
                        continue;
                    }
                    // RFC 7888 §4: a non-synchronising literal we will not take: close.
                    crate::line!(
                        &mut reply,
                        "* BYE [TOOBIG] Literal larger than {max} octets"
                    );
                    return Output::close(reply);
                }
                if literal.mode == LiteralMode::Sync {
                    reply.extend_from_slice(b"+ Ready for literal data\r\n");
                }
                continue;
            }
            if !self.frag.is_message_complete() {
                continue;
            }
            let job: Job = match self.decode() {
                Input::Bad(out) => {
                    reply.extend(out);
                    continue;
                }
                Input::Command(cmd) => Box::new(move |core, out| core.execute(cmd, out)),
                Input::CreateUse(cmd, uses) => {
                    Box::new(move |core, out| op::create::with_use(core, cmd, &uses, out))
                }
                Input::AuthData(tag, data) => Box::new(move |core, out| {
                    op::authenticate::data(core, &tag, data.as_deref(), out)
                }),
                Input::IdleDone(tag) => Box::new(move |core, out| op::idle::done(core, &tag, out)),
            };
            let Some((out, next)) = self.run(job).await else {
                reply.extend_from_slice(b"* BYE Internal error\r\n");
                return Output::close(reply);
            };
            reply.extend(out);
            match next {
                Next::Continue if self.core.as_ref().is_some_and(|c| c.doomed) => {
                    return Output::close(reply);
                }
                Next::Continue => {}
                Next::More => return Output::more(reply),
                Next::Close => return Output::close(reply),
                Next::StartTls => {
                    // RFC 3501 §6.2.1: nothing sent after STARTTLS in the clear counts.
                    self.frag = fragmentizer(&self.limits);
                    return Output {
                        reply,
                        action: Action::StartTls,
                    };
                }
            }
        }
        Output::reply(reply)
    }
}

impl net::Session for Session {
    fn greeting(&mut self) -> Vec<u8> {
        self.core.as_ref().map(Core::greeting).unwrap_or_default()
    }

    async fn receive(&mut self, input: &[u8]) -> Output {
        self.frag.enqueue_bytes(input);
        self.process(Vec::new()).await
    }

    /// The rest of a FETCH, then the commands pipelined after it.
    async fn resume(&mut self) -> Output {
        let pending = self.core.as_ref().is_some_and(|c| c.pending.is_some());
        if !pending {
            return self.process(Vec::new()).await;
        }
        let Some((out, next)) = self.run(|core, out| core.resume(out)).await else {
            return Output::close(b"* BYE Internal error\r\n".to_vec());
        };
        match next {
            Next::More => Output::more(out),
            Next::Close => Output::close(out),
            _ if self.core.as_ref().is_some_and(|c| c.doomed) => Output::close(out),
            _ => self.process(out).await,
        }
    }

    /// Between commands with nothing half-received, or in IDLE: at shutdown it gets
    /// its BYE at once.
    fn at_rest(&self) -> bool {
        let Some(core) = &self.core else {
            return false;
        };
        core.pending.is_none()
            && match core.waiting {
                Waiting::Idle { .. } => true,
                Waiting::Command => self.frag.message_bytes().is_empty(),
                Waiting::AuthData { .. } => false,
            }
    }

    fn tls_started(&mut self) {
        if let Some(core) = self.core.as_mut() {
            core.tls = true;
        }
    }

    fn shutting_down(&mut self) -> Vec<u8> {
        b"* BYE [UNAVAILABLE] Server shutting down, try again later\r\n".to_vec()
    }

    fn timed_out(&mut self) -> Vec<u8> {
        b"* BYE Autologout; idle for too long\r\n".to_vec()
    }

    /// During IDLE: waits for a change to the selected mailbox and returns its
    /// untagged updates. Cancel-safe: after the wait nothing awaits, so a dropped
    /// future never leaves the core taken.
    async fn unsolicited(&mut self) -> Vec<u8> {
        loop {
            let selected = match &self.core {
                Some(core) if matches!(core.waiting, Waiting::Idle { .. }) => {
                    core.selected.as_ref().map(|s| s.id)
                }
                _ => None,
            };
            let Some(mailbox) = selected else {
                return std::future::pending().await;
            };
            match self.changes.recv().await {
                Ok(Change::Mailbox { mailbox: m, .. }) if m == mailbox => {}
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return std::future::pending().await,
            }
            let mut out = Vec::new();
            if let Some(core) = self.core.as_mut() {
                core.updates(&mut out, true, false);
            }
            if !out.is_empty() {
                return out;
            }
        }
    }
}
