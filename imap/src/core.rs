//! The IMAP session's logic, synchronous and sans-socket: a decoded command in, the
//! response bytes out. States and what each allows are one table, [`allowed`]
//! (RFC 3501 §3, §6); each command lives in its own file under `op/`.

use std::net::IpAddr;
use std::sync::Arc;

use imap_types::command::{Command, CommandBody};
use imap_types::mailbox::Mailbox as ImapMailbox;
use store::login::Authenticator;
use store::{Account, Store};

use crate::op;
use crate::resp;
use crate::selected::Selected;

/// Logged-in sessions per account, shared by all connections.
pub type SessionCounts = Arc<std::sync::Mutex<std::collections::HashMap<store::AccountId, usize>>>;

/// Limits that keep one client from costing more than it should.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest literal accepted after login (APPEND's message), in octets.
    pub max_literal: u32,
    /// The largest literal accepted before login.
    pub max_literal_unauthenticated: u32,
    /// Sessions one account may have logged in at once.
    pub max_sessions_per_account: usize,
}

/// The connection states of RFC 3501 §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Before LOGIN / AUTHENTICATE.
    NotAuthenticated,
    /// Logged in, no mailbox selected.
    Authenticated,
    /// A mailbox is selected.
    Selected,
    /// After LOGOUT.
    Logout,
}

/// Which untagged updates come before a command's tagged reply (RFC 3501 §7.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// Everything, EXPUNGE included.
    Full,
    /// Everything, with UIDs in FETCH updates (after UID commands).
    Uid,
    /// No EXPUNGE (during FETCH, STORE, SEARCH).
    NoExpunge,
    /// None (BAD replies, and commands outside the selected state).
    None,
}

/// What the connection does after a response is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read the next command.
    Continue,
    /// The answer goes on ([`Core::resume`] makes the next part).
    More,
    /// Start TLS (STARTTLS accepted), then read.
    StartTls,
    /// Close the connection.
    Close,
}

/// A command that continues over more lines than its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waiting {
    /// Nothing: the next line is a command.
    Command,
    /// AUTHENTICATE PLAIN sent `+`: the next line is the client's response.
    AuthData {
        /// The AUTHENTICATE command's tag.
        tag: String,
    },
    /// IDLE: updates flow until the client sends DONE.
    Idle {
        /// The IDLE command's tag.
        tag: String,
    },
}

/// One session's state.
pub struct Core {
    pub(crate) store: Arc<Store>,
    pub(crate) auth: Arc<Authenticator>,
    pub(crate) peer: IpAddr,
    /// The connection is under TLS.
    pub tls: bool,
    /// STARTTLS is possible on this connection.
    pub(crate) starttls: bool,
    pub(crate) limits: Limits,
    /// The logged-in account.
    pub account: Option<Account>,
    /// The selected mailbox.
    pub selected: Option<Selected>,
    /// CONDSTORE was enabled (RFC 7162 §3.1): MODSEQ in FETCH responses.
    pub(crate) condstore: bool,
    /// QRESYNC was enabled (RFC 7162 §3.2): VANISHED instead of EXPUNGE.
    pub(crate) qresync: bool,
    /// What the next input line is.
    pub waiting: Waiting,
    pub(crate) logged_out: bool,
    pub(crate) sessions: SessionCounts,
    /// The mailboxes' message lists shared by all sessions.
    pub(crate) cache: Arc<crate::snapshot::Cache>,
    /// A FETCH whose responses are not all sent yet.
    pub(crate) pending: Option<crate::fetch::job::FetchJob>,
    /// The selected mailbox was deleted: the connection ends after this command
    /// (RFC 2180 §3).
    pub(crate) doomed: bool,
}

impl Drop for Core {
    fn drop(&mut self) {
        if let Some(account) = &self.account {
            let mut counts = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = counts.get_mut(&account.id) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(&account.id);
                }
            }
        }
    }
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("peer", &self.peer)
            .field("tls", &self.tls)
            .field("account", &self.account.as_ref().map(|a| &a.email))
            .field("waiting", &self.waiting)
            .finish_non_exhaustive()
    }
}

/// Whether `body` may run in `state` (RFC 3501 §6.1-6.4 and the extensions' RFCs).
pub fn allowed(state: State, body: &CommandBody<'_>) -> bool {
    use CommandBody as C;
    use State as S;
    match body {
        C::Capability | C::Noop | C::Logout | C::Id { .. } => state != S::Logout,
        C::StartTLS | C::Authenticate { .. } | C::Login { .. } => state == S::NotAuthenticated,
        C::Select { .. }
        | C::Examine { .. }
        | C::Create { .. }
        | C::Delete { .. }
        | C::Rename { .. }
        | C::Subscribe { .. }
        | C::Unsubscribe { .. }
        | C::List { .. }
        | C::Lsub { .. }
        | C::Status { .. }
        | C::Append { .. }
        | C::Idle
        | C::Enable { .. }
        | C::Namespace
        | C::GetQuota { .. }
        | C::GetQuotaRoot { .. } => matches!(state, S::Authenticated | S::Selected),
        C::Check
        | C::Close
        | C::Unselect
        | C::Expunge
        | C::ExpungeUid { .. }
        | C::Search { .. }
        | C::Fetch { .. }
        | C::Store { .. }
        | C::Copy { .. }
        | C::Move { .. } => state == S::Selected,
        _ => false,
    }
}

impl Core {
    /// A session for a client at `peer`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<Store>,
        auth: Arc<Authenticator>,
        peer: IpAddr,
        tls: bool,
        starttls: bool,
        limits: Limits,
        sessions: SessionCounts,
        cache: Arc<crate::snapshot::Cache>,
    ) -> Core {
        Core {
            store,
            auth,
            peer,
            tls,
            starttls,
            limits,
            account: None,
            selected: None,
            condstore: false,
            qresync: false,
            waiting: Waiting::Command,
            logged_out: false,
            sessions,
            cache,
            pending: None,
            doomed: false,
        }
    }

    /// The next part of a FETCH that [`Next::More`] announced; its tagged reply once
    /// every message is answered.
    pub fn resume(&mut self, out: &mut Vec<u8>) -> Next {
        let (Some(mut job), Some(sel)) = (self.pending.take(), self.selected.as_ref()) else {
            return Next::Continue;
        };
        match job.step(sel, &self.store, out, common::net::OUTPUT_CHUNK) {
            crate::fetch::job::Step::More => {
                self.pending = Some(job);
                Next::More
            }
            crate::fetch::job::Step::Broken => {
                crate::line!(out, "* BYE Internal error while sending a message");
                Next::Close
            }
            crate::fetch::job::Step::Done => {
                let tag = job.tag;
                if job.unknown_cte {
                    return self.finish(
                        out,
                        &tag,
                        "NO",
                        Some("UNKNOWN-CTE"),
                        "A part has a Content-Transfer-Encoding this server cannot decode",
                        Sync::None,
                    );
                }
                if job.missing {
                    self.finish(
                        out,
                        &tag,
                        "NO",
                        Some("EXPUNGEISSUED"),
                        "Some of the requested messages were expunged",
                        Sync::None,
                    )
                } else {
                    self.finish(out, &tag, "OK", None, "FETCH completed", Sync::None)
                }
            }
        }
    }

    /// The current state.
    pub fn state(&self) -> State {
        if self.logged_out {
            State::Logout
        } else if self.account.is_none() {
            State::NotAuthenticated
        } else if self.selected.is_some() {
            State::Selected
        } else {
            State::Authenticated
        }
    }

    /// The largest literal accepted now.
    pub fn max_literal(&self) -> u32 {
        if self.account.is_some() {
            self.limits.max_literal
        } else {
            self.limits.max_literal_unauthenticated
        }
    }

    /// The greeting (RFC 3501 §7.1.1).
    pub fn greeting(&self) -> Vec<u8> {
        let mut out = Vec::new();
        crate::line!(
            &mut out,
            "* OK [CAPABILITY {}] Postern IMAP ready",
            op::capability::list(self)
        );
        out
    }

    /// Runs one command; returns what to do next. Responses go to `out`.
    pub fn execute(&mut self, command: Command<'_>, out: &mut Vec<u8>) -> Next {
        let tag = command.tag.as_ref().to_string();
        let state = self.state();
        if !allowed(state, &command.body) {
            let text = if matches!(
                command.body,
                CommandBody::Sort { .. }
                    | CommandBody::Thread { .. }
                    | CommandBody::Compress { .. }
                    | CommandBody::SetQuota { .. }
            ) {
                format!("{} is not supported", command.body.name())
            } else {
                format!("{} is not allowed {}", command.body.name(), describe(state))
            };
            resp::tagged(out, &tag, "BAD", None, &text);
            return Next::Continue;
        }
        match command.body {
            CommandBody::Capability => op::capability::run(self, &tag, out),
            CommandBody::Noop => op::noop::run(self, &tag, "NOOP", out),
            CommandBody::Check => op::noop::run(self, &tag, "CHECK", out),
            CommandBody::Logout => op::logout::run(self, &tag, out),
            CommandBody::StartTLS => op::starttls::run(self, &tag, out),
            CommandBody::Login { username, password } => op::login::login(
                self,
                &tag,
                username.as_ref(),
                password.declassify().as_ref(),
                out,
            ),
            CommandBody::Authenticate {
                mechanism,
                initial_response,
            } => op::authenticate::start(
                self,
                &tag,
                mechanism.as_ref(),
                initial_response.map(|r| r.declassify().to_vec()),
                out,
            ),
            CommandBody::Id { .. } => op::id::run(self, &tag, out),
            CommandBody::Enable { capabilities } => {
                op::enable::run(self, &tag, capabilities.as_ref(), out)
            }
            CommandBody::Namespace => op::namespace::run(self, &tag, out),
            CommandBody::Select {
                mailbox,
                parameters,
            } => {
                self.enable_condstore_for(&parameters);
                let resync = resync_of(parameters);
                op::select::select(self, &tag, &mailbox, false, resync, out)
            }
            CommandBody::Examine {
                mailbox,
                parameters,
            } => {
                self.enable_condstore_for(&parameters);
                let resync = resync_of(parameters);
                op::select::select(self, &tag, &mailbox, true, resync, out)
            }
            CommandBody::Close => op::select::close(self, &tag, out),
            CommandBody::Unselect => op::select::unselect(self, &tag, out),
            CommandBody::Create { mailbox } => op::create::run(self, &tag, &mailbox, out),
            CommandBody::Delete { mailbox } => op::delete::run(self, &tag, &mailbox, out),
            CommandBody::Rename { from, to } => op::rename::run(self, &tag, &from, &to, out),
            CommandBody::Subscribe { mailbox } => {
                op::subscribe::run(self, &tag, &mailbox, true, out)
            }
            CommandBody::Unsubscribe { mailbox } => {
                op::subscribe::run(self, &tag, &mailbox, false, out)
            }
            CommandBody::List {
                reference,
                mailbox_wildcard,
            } => op::list::run(self, &tag, &reference, &mailbox_wildcard, false, out),
            CommandBody::Lsub {
                reference,
                mailbox_wildcard,
            } => op::list::run(self, &tag, &reference, &mailbox_wildcard, true, out),
            CommandBody::Status {
                mailbox,
                item_names,
            } => op::status::run(self, &tag, &mailbox, item_names.as_ref(), out),
            CommandBody::Append {
                mailbox,
                flags,
                date,
                message,
            } => op::append::run(self, &tag, &mailbox, &flags, date.as_ref(), message, out),
            CommandBody::Expunge => op::expunge::run(self, &tag, None, out),
            CommandBody::ExpungeUid { sequence_set } => {
                op::expunge::run(self, &tag, Some(&sequence_set), out)
            }
            CommandBody::Search {
                charset,
                criteria,
                uid,
            } => op::search::run(self, &tag, charset.as_ref(), criteria.as_ref(), uid, out),
            CommandBody::Fetch {
                sequence_set,
                macro_or_item_names,
                uid,
                modifiers,
            } => op::fetch::run(
                self,
                &tag,
                &sequence_set,
                macro_or_item_names,
                uid,
                &modifiers,
                out,
            ),
            CommandBody::Store {
                sequence_set,
                kind,
                response,
                flags,
                uid,
                modifiers,
            } => op::store::run(
                self,
                &tag,
                &sequence_set,
                kind,
                response,
                &flags,
                uid,
                &modifiers,
                out,
            ),
            CommandBody::Copy {
                sequence_set,
                mailbox,
                uid,
            } => op::copy::run(self, &tag, &sequence_set, &mailbox, uid, false, out),
            CommandBody::Move {
                sequence_set,
                mailbox,
                uid,
            } => op::copy::run(self, &tag, &sequence_set, &mailbox, uid, true, out),
            CommandBody::Idle => op::idle::start(self, &tag, out),
            CommandBody::GetQuota { root } => op::quota::get_quota(self, &tag, root.as_ref(), out),
            CommandBody::GetQuotaRoot { mailbox } => {
                op::quota::get_quota_root(self, &tag, &mailbox, out)
            }
            _ => {
                resp::tagged(out, &tag, "BAD", None, "Command not supported");
                Next::Continue
            }
        }
    }

    /// Ends a command: the selected mailbox's untagged updates (`sync`), then the
    /// tagged status line.
    pub(crate) fn finish(
        &mut self,
        out: &mut Vec<u8>,
        tag: &str,
        status: &str,
        code: Option<&str>,
        text: &str,
        sync: Sync,
    ) -> Next {
        match sync {
            Sync::Full => self.updates(out, true, false),
            Sync::Uid => self.updates(out, true, true),
            Sync::NoExpunge => self.updates(out, false, false),
            Sync::None => {}
        }
        resp::tagged(out, tag, status, code, text);
        Next::Continue
    }

    /// `tag OK text` after the updates of a command that may report expunges.
    pub(crate) fn ok(
        &mut self,
        out: &mut Vec<u8>,
        tag: &str,
        code: Option<&str>,
        text: &str,
    ) -> Next {
        self.finish(out, tag, "OK", code, text, Sync::Full)
    }

    /// `tag NO text` after the updates.
    pub(crate) fn no(
        &mut self,
        out: &mut Vec<u8>,
        tag: &str,
        code: Option<&str>,
        text: &str,
    ) -> Next {
        self.finish(out, tag, "NO", code, text, Sync::Full)
    }

    /// `tag BAD text`, no updates.
    pub(crate) fn bad(&mut self, out: &mut Vec<u8>, tag: &str, text: &str) -> Next {
        self.finish(out, tag, "BAD", None, text, Sync::None)
    }

    /// A store failure: logged, `NO [SERVERBUG]` to the client.
    pub(crate) fn store_failed(&mut self, out: &mut Vec<u8>, tag: &str, e: &store::Error) -> Next {
        match e {
            store::Error::OverQuota { .. } => {
                self.no(out, tag, Some("OVERQUOTA"), "Quota exceeded")
            }
            store::Error::Invalid(text) => self.no(out, tag, Some("CANNOT"), text),
            store::Error::Exists(what) => self.no(
                out,
                tag,
                Some("ALREADYEXISTS"),
                &format!("{what} already exists"),
            ),
            store::Error::NotFound(_) => {
                self.no(out, tag, Some("NONEXISTENT"), "No such mailbox or message")
            }
            e => {
                tracing::error!(error = %e, "IMAP store operation failed");
                self.no(
                    out,
                    tag,
                    Some("SERVERBUG"),
                    "Internal error, try again later",
                )
            }
        }
    }

    /// Untagged updates for the selected mailbox.
    pub fn updates(&mut self, out: &mut Vec<u8>, expunge: bool, uid: bool) {
        let condstore = self.condstore;
        // RFC 7162 §3.2.4: with QRESYNC, unsolicited FETCH responses carry the UID.
        let uid = uid || self.qresync;
        let store = self.store.clone();
        let Some(sel) = self.selected.as_mut() else {
            return;
        };
        match sel.sync(&store, out, expunge, uid, condstore) {
            Ok(Ok(())) => {}
            Ok(Err(crate::selected::Deleted)) => {
                // RFC 2180 §3: the mailbox is gone under the session; end it.
                if !self.doomed {
                    crate::line!(out, "* BYE The selected mailbox was deleted");
                }
                self.doomed = true;
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not read the selected mailbox's changes");
            }
        }
    }

    /// The logged-in account's mailbox a command names. `Err` carries the reply,
    /// already written: BAD for a name that does not decode, NO with `missing`
    /// (NONEXISTENT, or TRYCREATE for APPEND/COPY/MOVE targets) when there is none.
    pub(crate) fn named_mailbox(
        &mut self,
        out: &mut Vec<u8>,
        tag: &str,
        mailbox: &ImapMailbox<'_>,
        missing: &str,
    ) -> Result<store::Mailbox, Next> {
        let Some(account) = self.account.as_ref().map(|a| a.id) else {
            return Err(self.bad(out, tag, "Not logged in"));
        };
        let name = mailbox_name(mailbox).map_err(|e| self.bad(out, tag, &e))?;
        match self.store.mailbox(account, &name) {
            Ok(Some(m)) => Ok(m),
            Ok(None) | Err(store::Error::Invalid(_)) => {
                Err(self.no(out, tag, Some(missing), "No such mailbox"))
            }
            Err(e) => Err(self.store_failed(out, tag, &e)),
        }
    }

    /// SELECT/EXAMINE (CONDSTORE) enables CONDSTORE (RFC 7162 §3.1).
    fn enable_condstore_for(&mut self, parameters: &[imap_types::command::SelectParameter]) {
        if parameters
            .iter()
            .any(|p| matches!(p, imap_types::command::SelectParameter::CondStore))
        {
            self.condstore = true;
        }
    }

    /// Takes a session slot for `account`; false when it has `max_sessions_per_account`.
    pub(crate) fn take_session_slot(&self, account: store::AccountId) -> bool {
        let mut counts = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(account).or_insert(0);
        if *n >= self.limits.max_sessions_per_account {
            return false;
        }
        *n += 1;
        true
    }

    /// The account, for commands that run only when logged in (see [`allowed`]).
    pub(crate) fn account(&self) -> Option<&Account> {
        self.account.as_ref()
    }
}

/// The QRESYNC parameter of SELECT/EXAMINE, if given.
fn resync_of(parameters: Vec<imap_types::command::SelectParameter>) -> Option<op::select::Resync> {
    parameters.into_iter().find_map(|p| match p {
        imap_types::command::SelectParameter::QResync {
            uid_validity,
            mod_sequence_value,
            known_uids,
            ..
        } => Some(op::select::Resync {
            uid_validity: uid_validity.get(),
            modseq: mod_sequence_value.get(),
            known_uids,
        }),
        imap_types::command::SelectParameter::CondStore => None,
    })
}

fn describe(state: State) -> &'static str {
    match state {
        State::NotAuthenticated => "before login",
        State::Authenticated => "without a selected mailbox",
        State::Selected => "once logged in",
        State::Logout => "after LOGOUT",
    }
}

/// A mailbox name from the client as the store names it: `INBOX` in any case, others
/// decoded from modified UTF-7 (or taken as UTF-8 when they are not valid UTF-7).
pub fn mailbox_name(mailbox: &ImapMailbox<'_>) -> Result<String, String> {
    match mailbox {
        ImapMailbox::Inbox => Ok(store::INBOX.to_string()),
        ImapMailbox::Other(other) => {
            let raw = std::str::from_utf8(other.as_ref())
                .map_err(|_| "The mailbox name is not UTF-8 or modified UTF-7".to_string())?;
            let name = crate::utf7::decode(raw).unwrap_or_else(|| raw.to_string());
            if name.eq_ignore_ascii_case(store::INBOX) {
                Ok(store::INBOX.to_string())
            } else {
                Ok(name)
            }
        }
    }
}
