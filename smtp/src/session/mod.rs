//! The SMTP session (RFC 5321), sans-socket: fed bytes, returning replies. One file
//! per command group; this file holds the state, the input loop and the replies.
//!
//! The MX side is complete for receiving: EHLO/HELO, MAIL, RCPT, DATA, BDAT (RFC 3030),
//! RSET, NOOP, HELP, VRFY/EXPN (252), QUIT, STARTTLS (RFC 3207), with PIPELINING,
//! 8BITMIME, SMTPUTF8, SIZE, ENHANCEDSTATUSCODES and CHUNKING. Submission adds AUTH
//! PLAIN/LOGIN under TLS only, and the sender checks (MAIL FROM and From: must be the
//! user's), DSN (RFC 3461) and REQUIRETLS (RFC 8689); remote recipients go to the
//! outbound queue (`crate::queue`).

mod auth;
mod data;
mod ehlo;
mod mail;
mod rcpt;
mod spool;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::net::{self, Action, ConnInfo, Output};
use smtp_proto::Request;
use smtp_proto::request::receiver::{BdatReceiver, DataReceiver};
use store::{AccountId, Store};

use crate::config::Config;

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with CRLF; ESMTP
/// parameters may extend it (RFC 1869 §4.1.2). smtp-proto parses up to 4096.
const MAX_COMMAND_LINE: usize = 4096;
/// An overlong line is read and dropped up to this length, then the session closes.
const MAX_DISCARDED_LINE: usize = 64 * 1024;
/// Unrecognised or malformed commands tolerated before the connection is closed.
const MAX_BAD_COMMANDS: u32 = 20;

/// Which listener a session serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Port 25: mail from other servers.
    Mx,
    /// Ports 587/465: mail from our users.
    Submission,
}

/// What every session of a server shares.
#[derive(Debug)]
pub struct Context {
    /// Our host name (greeting, EHLO, Received).
    pub hostname: String,
    /// The `[smtp]` section.
    pub config: Config,
    /// The store mail is delivered into.
    pub store: Arc<Store>,
    /// Counters of what happened to messages, for metrics.
    pub stats: Stats,
    /// Checks submission logins (limiter, activity log).
    pub auth: Arc<store::login::Authenticator>,
    /// The DNS block lists of `[spam] dnsbl` (None: no check).
    pub dnsbl: Option<crate::inbound::dnsbl::Dnsbl>,
    /// SPF/DKIM/ARC/DMARC on the MX (None: not checked, no Authentication-Results).
    pub verifier: Option<crate::inbound::auth_results::Verifier>,
    /// The spam milter (`[spam] milter`), and whether to accept when it fails.
    pub milter: Option<(crate::inbound::milter::MilterConfig, bool)>,
    /// The outbound queue's worker, woken when a message is queued (None: the queue
    /// is only written, as in tests of the session alone).
    pub queue: Option<std::sync::Arc<crate::queue::Queue>>,
    /// Submission's sending limits.
    pub limits: Limits,
    /// Runs the recipients' Sieve scripts at delivery.
    pub sieve: Arc<sieve::Engine>,
    /// Rewrites the envelope sender of forwarded mail and reverses it for bounces.
    pub srs: crate::srs::Srs,
    /// Where messages past 1 MiB are spooled while they arrive (anonymous files).
    pub spool_dir: std::path::PathBuf,
}

/// How much mail an account, and a client IP, may submit (`[submission]`
/// `max_messages_per_hour*`).
#[derive(Debug, Default)]
pub struct Limits {
    per_account: Option<common::rate::KeyedBuckets<AccountId>>,
    per_ip: Option<common::rate::KeyedBuckets<std::net::IpAddr>>,
}

impl Limits {
    /// The limits `[submission]` sets.
    pub fn new(config: &crate::config::SubmissionConfig) -> Limits {
        let hour = Duration::from_secs(3600);
        Limits {
            per_account: (config.max_messages_per_hour > 0).then(|| {
                common::rate::KeyedBuckets::per_period(config.max_messages_per_hour, hour)
            }),
            per_ip: (config.max_messages_per_hour_per_ip > 0).then(|| {
                common::rate::KeyedBuckets::per_period(config.max_messages_per_hour_per_ip, hour)
            }),
        }
    }

    /// Takes one message from the account's and the IP's allowance; `Err` names which
    /// one ran out.
    pub fn take(&self, account: AccountId, ip: std::net::IpAddr) -> Result<(), &'static str> {
        if let Some(b) = &self.per_account
            && b.acquire(&account).is_err()
        {
            return Err("account");
        }
        if let Some(b) = &self.per_ip
            && b.acquire(&ip).is_err()
        {
            return Err("address");
        }
        Ok(())
    }
}

/// Message counters since start (read by the metrics endpoint of a later issue).
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages accepted with 250 after DATA or BDAT LAST.
    pub accepted: AtomicU64,
    /// Messages or recipients refused for policy (relay, DNSBL, DMARC, spam, size).
    pub rejected: AtomicU64,
}

impl Stats {
    /// Adds one to `counter`.
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an accepted message (here and in the process-wide metrics).
    pub fn accepted(&self) {
        Stats::count(&self.accepted);
        common::metrics::inc("postern_messages_accepted_total", None);
    }

    /// Counts a message refused for `reason` without an activity-log entry (size,
    /// bare line endings).
    pub fn rejected(&self, reason: &str) {
        Stats::count(&self.rejected);
        common::metrics::inc("postern_messages_rejected_total", Some(("reason", reason)));
    }
}

/// The SMTP protocol for the network driver.
#[derive(Debug, Clone)]
pub struct Smtp {
    context: Arc<Context>,
    mode: Mode,
}

impl Smtp {
    /// SMTP in `mode` with the shared `context`.
    pub fn new(context: Arc<Context>, mode: Mode) -> Self {
        Smtp { context, mode }
    }
}

impl net::Protocol for Smtp {
    type Session = Session;

    fn open(&self, info: &ConnInfo) -> Session {
        Session {
            context: self.context.clone(),
            mode: self.mode,
            info: info.clone(),
            tls: info.tls,
            helo: None,
            esmtp: false,
            transaction: None,
            input: Input::Commands,
            buf: Vec::new(),
            bad_commands: 0,
            bdat_refusal: None,
            discarded: 0,
            user: None,
            sasl: None,
            dnsbl: None,
            ends_at: tokio::time::Instant::now()
                + Duration::from_secs(self.context.config.max_session_seconds.max(1)),
            data_ends_at: None,
        }
    }

    fn busy(&self) -> &'static [u8] {
        b"421 4.7.0 Too many connections from your address, try again later\r\n"
    }

    /// RFC 5321 §4.5.3.2.7: the server timeout is at least 5 minutes.
    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(300)
    }
}

/// What the next input bytes are.
enum Input {
    /// Command lines.
    Commands,
    /// The message after DATA, up to CRLF.CRLF (dot-unstuffed by smtp-proto).
    Data(DataReceiver),
    /// A BDAT chunk of known length.
    Bdat(BdatReceiver),
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Input::Commands => "Commands",
            Input::Data(_) => "Data",
            Input::Bdat(_) => "Bdat",
        })
    }
}

/// One mail transaction: from MAIL to the end of DATA / the last BDAT.
#[derive(Debug, Default)]
struct Transaction {
    /// The reverse-path ("" for the null sender).
    mail_from: String,
    /// SMTPUTF8 was given (RFC 6531).
    smtputf8: bool,
    /// Accepted recipients as given.
    recipients: Vec<String>,
    /// The local accounts they reach, de-duplicated, each with the address that led
    /// there (Sieve's envelope "to").
    accounts: Vec<crate::delivery::Recipient>,
    /// Remote recipients for the outbound queue, with their RFC 3461 NOTIFY and ORCPT.
    remote: Vec<store::QueuedRecipient>,
    /// Remote addresses our aliases forward to, each with the recipient that led
    /// there as its ORCPT, and the alias's domain (the SRS and ARC domain).
    forwards: Vec<(store::QueuedRecipient, String)>,
    /// RFC 8689 REQUIRETLS was given.
    require_tls: bool,
    /// RFC 3461 ENVID (decoded).
    env_id: Option<String>,
    /// RFC 3461 RET=FULL.
    ret_full: bool,
    /// The message received so far: its last part in memory ...
    body: Vec<u8>,
    /// ... and everything before it in a file, once it grew past 1 MiB.
    spool: spool::Spool,
    /// The message grew past the size limit: it is being read and discarded.
    too_big: bool,
    /// A BDAT was refused: the rest of the BDAT sequence is read and discarded.
    bdat_failed: bool,
    /// Writing the spool file failed: the message is read and refused with 451.
    spool_failed: bool,
}

/// One SMTP conversation.
#[derive(Debug)]
pub struct Session {
    context: Arc<Context>,
    mode: Mode,
    info: ConnInfo,
    tls: bool,
    helo: Option<String>,
    esmtp: bool,
    transaction: Option<Transaction>,
    input: Input,
    buf: Vec<u8>,
    bad_commands: u32,
    /// The refusal of the BDAT chunk being read, sent once it has arrived.
    bdat_refusal: Option<Vec<u8>>,
    /// Bytes of an overlong command line dropped so far.
    discarded: usize,
    /// The authenticated account (submission).
    user: Option<store::Account>,
    /// A SASL exchange waiting for the client's next line.
    sasl: Option<auth::Sasl>,
    /// The DNSBL verdict on this client, looked up at its first MAIL.
    dnsbl: Option<crate::inbound::dnsbl::Listing>,
    /// When the session ends whatever happens (`[smtp] max_session_seconds`).
    ends_at: tokio::time::Instant,
    /// When the message now arriving must have arrived (`[smtp] max_data_seconds`).
    data_ends_at: Option<tokio::time::Instant>,
}

/// A reply with its enhanced status code (RFC 2034 / RFC 3463): every reply has one.
pub(crate) fn reply(code: u16, enhanced: &str, text: &str) -> Vec<u8> {
    format!("{code} {enhanced} {text}\r\n").into_bytes()
}

/// A queue id for Received headers and logs: unique within the process and time.
pub(crate) fn queue_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!(
        "{:X}{:04X}",
        now.as_micros(),
        COUNTER.fetch_add(1, Ordering::Relaxed) & 0xFFFF
    )
}

impl Session {
    async fn command(&mut self, line: &[u8]) -> Output {
        if std::str::from_utf8(line).is_err() {
            // RFC 6531 §3.3: commands are UTF-8; anything else is malformed.
            return self.bad(Output::reply(reply(
                501,
                "5.5.2",
                "Invalid UTF-8 in command",
            )));
        }
        let parsed = if line.contains(&0) {
            Err(smtp_proto::Error::UnknownCommand)
        } else {
            Request::parse(&mut line.iter()).map(Request::into_owned)
        };
        match parsed {
            Ok(request) => self.request(request).await,
            Err(e) => self.bad(Output::reply(parse_error(&e))),
        }
    }

    async fn request(&mut self, request: Request<String>) -> Output {
        match request {
            Request::Ehlo { host } => Output::reply(self.handle_ehlo(&host, true)),
            Request::Helo { host } => Output::reply(self.handle_ehlo(&host, false)),
            Request::Lhlo { .. } => {
                self.bad(Output::reply(reply(500, "5.5.1", "LHLO is for LMTP")))
            }
            Request::StartTls => self.handle_starttls(),
            Request::Mail { from } => Output::reply(self.handle_mail(from).await),
            Request::Rcpt { to } => {
                let (answer, refused) = self.handle_rcpt(to).await;
                // Refused recipients count as errors: a client probing addresses or
                // trying to relay is cut off like one sending garbage.
                if refused {
                    self.bad(Output::reply(answer))
                } else {
                    Output::reply(answer)
                }
            }
            Request::Data => Output::reply(self.handle_data()),
            Request::Bdat {
                chunk_size,
                is_last,
            } => Output::reply(self.handle_bdat(chunk_size, is_last)),
            Request::Rset => {
                self.transaction = None;
                self.data_ends_at = None;
                Output::reply(reply(250, "2.0.0", "OK"))
            }
            Request::Noop { .. } => Output::reply(reply(250, "2.0.0", "OK")),
            Request::Help { .. } => {
                Output::reply(reply(214, "2.0.0", "See RFC 5321; this is Postern"))
            }
            // RFC 5321 §3.5.3: 252 neither confirms nor denies an address.
            Request::Vrfy { .. } | Request::Expn { .. } => Output::reply(reply(
                252,
                "2.5.0",
                "Cannot verify the address, send some mail",
            )),
            Request::Quit => Output::close(reply(221, "2.0.0", "Bye")),
            Request::Auth {
                mechanism,
                initial_response,
            } => Output::reply(self.handle_auth(mechanism, &initial_response).await),
            Request::Etrn { .. } | Request::Atrn { .. } | Request::Burl { .. } => self.bad(
                Output::reply(reply(502, "5.5.1", "Command not implemented")),
            ),
        }
    }

    fn handle_starttls(&mut self) -> Output {
        if self.tls || !self.info.starttls {
            return self.bad(Output::reply(reply(
                503,
                "5.5.1",
                "TLS is already active or not offered here",
            )));
        }
        // RFC 3207 §4.2: input after STARTTLS came in the clear; discard it.
        self.buf.clear();
        Output {
            reply: reply(220, "2.0.0", "Ready to start TLS"),
            action: Action::StartTls,
        }
    }

    /// Records a refusal where the operator sees it: the counter, the serve log and
    /// an activity-log entry with the client's IP, the account (submission) or the
    /// envelope sender (`sender`, default: the transaction's), and the reason.
    pub(crate) async fn log_rejection(&self, sender: Option<&str>, action: &str, detail: String) {
        Stats::count(&self.context.stats.rejected);
        common::metrics::inc("postern_messages_rejected_total", Some(("reason", action)));
        let store = self.context.store.clone();
        let sender = sender.or(self.transaction.as_ref().map(|t| t.mail_from.as_str()));
        let actor = match (&self.user, sender) {
            (Some(user), _) => user.email.clone(),
            (None, Some(s)) => format!("<{s}>"),
            (None, None) => "-".to_string(),
        };
        let event = store::AuditEvent {
            actor,
            action: action.to_string(),
            ip: Some(self.info.peer.ip()),
            detail,
        };
        // A client that did not log in gets one entry per kind of refusal per minute
        // (with a count), in the activity log and in the serve log.
        let authenticated = self.user.is_some();
        let logged = tokio::task::spawn_blocking(move || {
            let written = if authenticated {
                store.log_event(&event).map(|()| true)
            } else {
                store.log_refusal(&event)
            };
            (written, event)
        })
        .await;
        match logged {
            Ok((Ok(written), event)) => {
                if written {
                    tracing::info!(peer = %self.info.peer, actor = %event.actor, action, detail = %event.detail, "refused");
                }
            }
            _ => tracing::error!("could not write a rejection to the activity log"),
        }
    }

    fn bad(&mut self, out: Output) -> Output {
        self.bad_commands += 1;
        if self.bad_commands >= MAX_BAD_COMMANDS {
            let mut bytes = out.reply;
            bytes.extend(reply(421, "4.7.0", "Too many errors, closing connection"));
            Output::close(bytes)
        } else {
            out
        }
    }

    /// Feeds buffered bytes to the DATA or BDAT receiver; `Some` when the message or
    /// chunk is complete.
    fn ingest_payload(&mut self) -> Option<bool> {
        let max = usize::try_from(self.context.config.max_message_size).unwrap_or(usize::MAX);
        let txn = self.transaction.get_or_insert_with(Transaction::default);
        let mut iter = self.buf.iter();
        let done = match &mut self.input {
            Input::Data(r) => r.ingest(&mut iter, &mut txn.body).then_some(true),
            Input::Bdat(r) => {
                let last = r.is_last;
                r.ingest(&mut iter, &mut txn.body).then_some(last)
            }
            Input::Commands => None,
        };
        let consumed = self.buf.len() - iter.len();
        self.buf.drain(..consumed);
        if txn.too_big || txn.bdat_failed || txn.spool_failed {
            // Read to the end of the message, keeping none of it.
            txn.body.clear();
        } else if txn.spool.len(&txn.body) > max as u64 {
            txn.too_big = true;
            txn.body.clear();
            txn.spool.discard();
        } else if let Err(e) = txn.spool.spill(&mut txn.body, &self.context.spool_dir) {
            tracing::error!(error = %e, "cannot spool a message: it will be refused");
            txn.spool_failed = true;
            txn.body.clear();
            txn.spool.discard();
        }
        done
    }
}

fn parse_error(e: &smtp_proto::Error) -> Vec<u8> {
    use smtp_proto::Error as E;
    match e {
        E::UnknownCommand => reply(500, "5.5.2", "Command unrecognized"),
        E::InvalidSenderAddress => reply(501, "5.1.7", "Bad sender address syntax"),
        E::InvalidRecipientAddress => reply(501, "5.1.3", "Bad recipient address syntax"),
        E::SyntaxError { syntax } => reply(501, "5.5.4", &format!("Syntax: {syntax}")),
        E::InvalidParameter { param } => reply(501, "5.5.4", &format!("Invalid parameter {param}")),
        E::UnsupportedParameter { param } => {
            reply(555, "5.5.4", &format!("Unsupported parameter {param}"))
        }
        E::NeedsMoreData { .. } | E::ResponseTooLong | E::InvalidResponse { .. } => {
            reply(500, "5.5.2", "Command unrecognized")
        }
    }
}

impl Session {
    /// Handles the input buffered, replies appended to `out`; stops with
    /// [`Action::More`] once about a chunk of replies is waiting (a long pipeline).
    async fn process(&mut self, mut out: Vec<u8>) -> Output {
        loop {
            if out.len() >= net::OUTPUT_CHUNK {
                return Output::more(out);
            }
            if !matches!(self.input, Input::Commands) {
                match self.ingest_payload() {
                    None => break,
                    Some(last) => {
                        let is_data = matches!(self.input, Input::Data(_));
                        self.input = Input::Commands;
                        if is_data || last {
                            self.data_ends_at = None;
                        }
                        out.extend(if is_data || last {
                            self.finish_message().await
                        } else {
                            self.chunk_received()
                        });
                        continue;
                    }
                }
            }
            let Some(pos) = self.buf.iter().position(|b| *b == b'\n') else {
                if self.buf.len() > MAX_COMMAND_LINE {
                    // Too long already: drop it (memory stays bounded) and answer
                    // when the line ends; a line that never ends closes the session.
                    self.discarded += self.buf.len();
                    self.buf.clear();
                    if self.discarded > MAX_DISCARDED_LINE {
                        out.extend(reply(500, "5.5.6", "Line too long"));
                        out.extend(reply(421, "4.7.0", "Closing connection"));
                        return Output::close(out);
                    }
                }
                break;
            };
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let overlong = std::mem::take(&mut self.discarded) > 0;
            let step = if self.sasl.is_some() && !overlong {
                Output::reply(self.sasl_response(&line).await)
            } else if overlong || line.len() > MAX_COMMAND_LINE {
                let r = reply(500, "5.5.6", "Line too long");
                self.bad(Output::reply(r))
            } else {
                self.command(&line).await
            };
            out.extend(step.reply);
            if step.action != Action::Continue {
                return Output {
                    reply: out,
                    action: step.action,
                };
            }
        }
        Output::reply(out)
    }
}

impl net::Session for Session {
    fn greeting(&mut self) -> Vec<u8> {
        format!("220 {} ESMTP Postern\r\n", self.context.hostname).into_bytes()
    }

    async fn receive(&mut self, input: &[u8]) -> Output {
        self.buf.extend_from_slice(input);
        self.process(Vec::new()).await
    }

    /// The commands pipelined after replies that filled a chunk.
    async fn resume(&mut self) -> Output {
        self.process(Vec::new()).await
    }

    fn tls_started(&mut self) {
        // RFC 3207 §4.2: forget what the client said before TLS; it must EHLO again.
        self.tls = true;
        self.user = None;
        self.sasl = None;
        self.helo = None;
        self.esmtp = false;
        self.transaction = None;
    }

    fn shutting_down(&mut self) -> Vec<u8> {
        reply(421, "4.3.2", "Server shutting down, try again later")
    }

    fn timed_out(&mut self) -> Vec<u8> {
        let now = tokio::time::Instant::now();
        if now >= self.ends_at {
            reply(421, "4.4.2", "Session too long, closing connection")
        } else if self.data_ends_at.is_some_and(|d| now >= d) {
            reply(
                421,
                "4.4.2",
                "The message took too long to arrive, closing connection",
            )
        } else {
            reply(421, "4.4.2", "Idle too long, closing connection")
        }
    }

    fn deadline(&self) -> Option<tokio::time::Instant> {
        Some(match self.data_ends_at {
            Some(d) => d.min(self.ends_at),
            None => self.ends_at,
        })
    }
}
