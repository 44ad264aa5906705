//! LOGIN (RFC 3501 §6.2.3): only under TLS; failures count against the client's IP
//! and go to the activity log (store::login).

use store::login::LoginError;

use crate::core::{Core, Next};
use crate::op::capability;
use crate::resp;

/// Checks the credentials and enters the authenticated state.
pub fn login(core: &mut Core, tag: &str, user: &[u8], password: &[u8], out: &mut Vec<u8>) -> Next {
    if !core.tls {
        return core.no(
            out,
            tag,
            Some("PRIVACYREQUIRED"),
            "LOGIN is disabled until TLS is on",
        );
    }
    let (Ok(user), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password))
    else {
        return core.no(
            out,
            tag,
            Some("AUTHENTICATIONFAILED"),
            "Invalid credentials",
        );
    };
    authenticated(core, tag, user, password, out)
}

/// The common end of LOGIN and AUTHENTICATE.
pub fn authenticated(
    core: &mut Core,
    tag: &str,
    user: &str,
    password: &str,
    out: &mut Vec<u8>,
) -> Next {
    match core.auth.login(user, password, core.peer, "imap") {
        Ok(account) => {
            if !core.take_session_slot(account.id) {
                return core.no(
                    out,
                    tag,
                    Some("LIMIT"),
                    "Too many sessions for this account",
                );
            }
            core.account = Some(account);
            let caps = capability::list(core);
            resp::tagged(
                out,
                tag,
                "OK",
                Some(&format!("CAPABILITY {caps}")),
                "Logged in",
            );
            Next::Continue
        }
        Err(LoginError::Failed) => core.no(
            out,
            tag,
            Some("AUTHENTICATIONFAILED"),
            "Invalid credentials",
        ),
        Err(LoginError::Limited(_)) => core.no(
            out,
            tag,
            Some("UNAVAILABLE"),
            "Too many failed logins from your address, try again later",
        ),
        Err(LoginError::Unavailable(e)) => {
            tracing::error!(error = %e, "login check failed");
            core.no(
                out,
                tag,
                Some("UNAVAILABLE"),
                "Temporary failure, try again later",
            )
        }
    }
}
