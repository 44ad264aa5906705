//! Why a ManageSieve command was refused, and the one place those reasons become `NO`
//! replies with their RFC 5804 §1.3 response codes.

use crate::CheckError;

use super::parse::SyntaxError;
use super::reply;

/// A refused command. Every variant answers `NO`; the connection goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A command that needs an authenticated session.
    #[error("Authenticate first")]
    NotAuthenticated,
    /// AUTHENTICATE or STARTTLS in the authenticated state.
    #[error("Already authenticated")]
    AlreadyAuthenticated,
    /// A command name this server does not know.
    #[error("Unknown command")]
    UnknownCommand,
    /// A known command with the wrong arguments; names the command.
    #[error("Invalid arguments for {0}: {1}")]
    Arguments(&'static str, &'static str),
    /// A line that breaks the grammar.
    #[error("{0}")]
    Syntax(SyntaxError),
    /// STARTTLS where TLS is already on or not offered.
    #[error("TLS is not available here")]
    TlsUnavailable,
    /// AUTHENTICATE before TLS: Postern sends no password in the clear (RFC 5804 §2.1
    /// lets the server refuse a mechanism).
    #[error("Authentication needs TLS: use STARTTLS first")]
    EncryptNeeded,
    /// A SASL mechanism other than PLAIN.
    #[error("Only SASL PLAIN is supported")]
    Mechanism,
    /// The client cancelled the SASL exchange, or answered what is not a string.
    #[error("Authentication cancelled")]
    AuthCancelled,
    /// The SASL response is not base64 or not a PLAIN message.
    #[error("Malformed SASL PLAIN response")]
    AuthMalformed,
    /// Wrong credentials, or an authorization identity other than the user's own.
    #[error("Authentication failed")]
    AuthFailed,
    /// The failed-login limiter refused this client for now.
    #[error("Too many failed logins from your address, try again later")]
    LoginLimited,
    /// A script name that breaks RFC 5804 §1.6; says why.
    #[error("Invalid script name: {0}")]
    InvalidName(&'static str),
    /// A script that is not UTF-8 (RFC 5228 §2.1).
    #[error("The script is not valid UTF-8")]
    NotUtf8,
    /// A script larger than `[sieve] max_script_bytes`.
    #[error("The script is {size} bytes, more than the limit of {max}")]
    TooBig {
        /// The script's size.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// A new script where the account has `[sieve] max_scripts` already.
    #[error("The limit of {0} scripts is reached")]
    TooManyScripts(usize),
    /// The script does not pass the check (RFC 5804 §2.6: the error is told).
    #[error("{0}")]
    Check(CheckError),
    /// No script of that name.
    #[error("There is no script by that name")]
    NonExistent,
    /// DELETESCRIPT of the active script (RFC 5804 §2.10).
    #[error("You may not delete an active script")]
    Active,
    /// RENAMESCRIPT to a name that is taken (RFC 5804 §2.11.1).
    #[error("A script by that name already exists")]
    AlreadyExists,
    /// The store failed (already logged where it happened).
    #[error("Temporary server failure, try again later")]
    Unavailable,
}

impl Error {
    /// The RFC 5804 §1.3 response code this refusal carries, if any.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            Error::EncryptNeeded => Some("ENCRYPT-NEEDED"),
            Error::LoginLimited | Error::Unavailable => Some("TRYLATER"),
            Error::TooBig { .. }
            | Error::Check(CheckError::TooBig { .. })
            | Error::Syntax(SyntaxError::LiteralTooBig { .. }) => Some("QUOTA/MAXSIZE"),
            Error::TooManyScripts(_) => Some("QUOTA/MAXSCRIPTS"),
            Error::NonExistent => Some("NONEXISTENT"),
            Error::Active => Some("ACTIVE"),
            Error::AlreadyExists => Some("ALREADYEXISTS"),
            _ => None,
        }
    }

    /// Whether this refusal counts towards the bad commands that end a session: input
    /// that breaks the protocol, not a failed operation.
    pub fn is_bad_command(&self) -> bool {
        matches!(
            self,
            Error::NotAuthenticated
                | Error::UnknownCommand
                | Error::Arguments(..)
                | Error::Syntax(_)
        )
    }

    /// Appends the `NO (code) "text"` reply.
    pub fn reply(&self, out: &mut Vec<u8>) {
        reply::no(out, self.code(), &self.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(e: Error) -> String {
        let mut out = Vec::new();
        e.reply(&mut out);
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn replies_carry_rfc_5804_codes() {
        assert_eq!(
            text(Error::NotAuthenticated),
            "NO \"Authenticate first\"\r\n"
        );
        assert_eq!(
            text(Error::NonExistent),
            "NO (NONEXISTENT) \"There is no script by that name\"\r\n"
        );
        assert_eq!(
            text(Error::TooBig { size: 9, max: 8 }),
            "NO (QUOTA/MAXSIZE) \"The script is 9 bytes, more than the limit of 8\"\r\n"
        );
        assert_eq!(
            text(Error::Check(CheckError::Syntax {
                line: 3,
                column: 1,
                message: "expected \";\"".into()
            })),
            "NO \"line 3, column 1: expected \\\";\\\"\"\r\n"
        );
        assert_eq!(
            text(Error::Syntax(SyntaxError::LiteralTooBig {
                size: 9,
                max: 8
            })),
            "NO (QUOTA/MAXSIZE) \"a string of 9 bytes is larger than the limit of 8\"\r\n"
        );
        assert!(text(Error::LoginLimited).starts_with("NO (TRYLATER) "));
        assert!(text(Error::EncryptNeeded).starts_with("NO (ENCRYPT-NEEDED) "));
    }
}
