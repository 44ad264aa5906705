//! The ManageSieve session's logic, without the parser: its state, the one table of
//! which command is allowed in which state, and the dispatch to `op/`. Runs on a
//! blocking thread (the store, the password check and the script compiler block).

use std::net::IpAddr;
use std::sync::Arc;

use store::login::Authenticator;
use store::{Account, Store};

use super::command::Command;
use super::error::Error;
use super::op;
use crate::Engine;

/// RFC 5804 §1.1: the states of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Before a successful AUTHENTICATE, and after UNAUTHENTICATE.
    NotAuthenticated,
    /// Logged in: the script commands work on the account's scripts.
    Authenticated,
}

/// What the session expects from the client next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// A command.
    Command,
    /// The client's string after the server's empty SASL challenge (RFC 5804 §2.1).
    SaslResponse,
}

/// What the connection does after a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Read the next command.
    Continue,
    /// Start TLS (after STARTTLS's OK).
    StartTls,
    /// Close (after LOGOUT's OK).
    Close,
}

/// The session's state and what it works with.
pub struct Core {
    /// The scripts.
    pub store: Arc<Store>,
    /// Password checks, the failed-login limiter and the activity log.
    pub auth: Arc<Authenticator>,
    /// Checks scripts; its config holds the limits.
    pub engine: Arc<Engine>,
    /// The client's address (for the limiter and the activity log).
    pub peer: IpAddr,
    /// Whether the connection is under TLS.
    pub tls: bool,
    /// Whether this listener offers STARTTLS.
    pub starttls: bool,
    /// The logged-in account; `Some` exactly in [`State::Authenticated`].
    pub account: Option<Account>,
    /// What the client is to send next.
    pub waiting: Waiting,
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

impl Core {
    /// The session's current state.
    pub fn state(&self) -> State {
        if self.account.is_some() {
            State::Authenticated
        } else {
            State::NotAuthenticated
        }
    }

    /// The logged-in account. Only called by commands [`allowed`] lets through in
    /// [`State::Authenticated`].
    pub fn account(&self) -> Result<&Account, Error> {
        self.account.as_ref().ok_or(Error::NotAuthenticated)
    }

    /// A store failure: logged here with the account and command, answered `NO
    /// (TRYLATER)`.
    pub fn unavailable(&self, command: &str, e: &store::Error) -> Error {
        tracing::error!(
            account = self.account.as_ref().map_or("", |a| a.email.as_str()),
            command,
            error = %e,
            "ManageSieve: the store failed"
        );
        Error::Unavailable
    }

    /// Runs one command, appending its reply to `out`.
    pub fn execute(&mut self, command: Command, out: &mut Vec<u8>) -> Next {
        if let Err(e) = allowed(self.state(), &command) {
            e.reply(out);
            return Next::Continue;
        }
        let result = match command {
            Command::Capability => op::capability::capability(self, out),
            Command::Logout => return op::logout::logout(out),
            Command::Noop { tag } => op::noop::noop(tag.as_deref(), out),
            Command::StartTls => match op::starttls::starttls(self, out) {
                Ok(next) => return next,
                Err(e) => Err(e),
            },
            Command::Authenticate { mechanism, initial } => {
                op::authenticate::start(self, &mechanism, initial, out)
            }
            Command::Unauthenticate => op::unauthenticate::unauthenticate(self, out),
            Command::HaveSpace { name, size } => op::havespace::havespace(self, &name, size, out),
            Command::PutScript { name, script } => {
                op::putscript::putscript(self, &name, &script, out)
            }
            Command::CheckScript { script } => op::checkscript::checkscript(self, &script, out),
            Command::ListScripts => op::listscripts::listscripts(self, out),
            Command::SetActive { name } => op::setactive::setactive(self, &name, out),
            Command::GetScript { name } => op::getscript::getscript(self, &name, out),
            Command::DeleteScript { name } => op::deletescript::deletescript(self, &name, out),
            Command::RenameScript { old, new } => {
                op::renamescript::renamescript(self, &old, &new, out)
            }
        };
        if let Err(e) = result {
            e.reply(out);
        }
        Next::Continue
    }
}

/// The one table of which command is allowed in which state (RFC 5804 §2).
pub fn allowed(state: State, command: &Command) -> Result<(), Error> {
    use Command as C;
    match (state, command) {
        (_, C::Capability | C::Logout | C::Noop { .. }) => Ok(()),
        // RFC 5804 §2.2 and §2.1: only before authentication.
        (State::NotAuthenticated, C::StartTls | C::Authenticate { .. }) => Ok(()),
        (State::Authenticated, C::StartTls | C::Authenticate { .. }) => {
            Err(Error::AlreadyAuthenticated)
        }
        (State::NotAuthenticated, _) => Err(Error::NotAuthenticated),
        (State::Authenticated, _) => Ok(()),
    }
}

/// RFC 5804 §1.6: a script name is UTF-8 without control characters (the Net-Unicode
/// rules of RFC 5198 §2: none of U+0000-001F, U+007F-009F, U+2028, U+2029), not
/// empty, and here at most [`MAX_NAME`] bytes.
pub fn script_name(name: &[u8]) -> Result<&str, Error> {
    let name = std::str::from_utf8(name).map_err(|_| Error::InvalidName("not UTF-8"))?;
    if name.is_empty() {
        return Err(Error::InvalidName("empty"));
    }
    if name.len() > MAX_NAME {
        return Err(Error::InvalidName("longer than 128 bytes"));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '\u{2028}' || c == '\u{2029}')
    {
        return Err(Error::InvalidName("control characters"));
    }
    Ok(name)
}

/// The longest script name taken, in bytes.
pub const MAX_NAME: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_table() {
        let put = Command::PutScript {
            name: b"a".to_vec(),
            script: b"keep;".to_vec(),
        };
        assert_eq!(
            allowed(State::NotAuthenticated, &put),
            Err(Error::NotAuthenticated)
        );
        assert_eq!(allowed(State::Authenticated, &put), Ok(()));
        assert_eq!(
            allowed(State::NotAuthenticated, &Command::Unauthenticate),
            Err(Error::NotAuthenticated)
        );
        assert_eq!(
            allowed(State::Authenticated, &Command::StartTls),
            Err(Error::AlreadyAuthenticated)
        );
        for state in [State::NotAuthenticated, State::Authenticated] {
            assert_eq!(allowed(state, &Command::Capability), Ok(()));
            assert_eq!(allowed(state, &Command::Noop { tag: None }), Ok(()));
            assert_eq!(allowed(state, &Command::Logout), Ok(()));
        }
    }

    #[test]
    fn script_names_follow_rfc_5804_section_1_6() {
        assert_eq!(script_name(b"main"), Ok("main"));
        assert_eq!(script_name("Ferien ☀".as_bytes()), Ok("Ferien ☀"));
        assert_eq!(script_name(b"with \"quote\" \\"), Ok("with \"quote\" \\"));
        assert!(script_name(b"").is_err());
        assert!(script_name(b"a\r\nb").is_err());
        assert!(script_name(b"tab\there").is_err());
        assert!(script_name("x\u{85}".as_bytes()).is_err());
        assert!(script_name("x\u{2028}".as_bytes()).is_err());
        assert!(script_name(b"\xff").is_err());
        assert!(script_name(&[b'a'; 129]).is_err());
        assert!(script_name(&[b'a'; 128]).is_ok());
    }
}
