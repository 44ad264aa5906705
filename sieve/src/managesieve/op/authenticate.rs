//! AUTHENTICATE (RFC 5804 §2.1) with SASL PLAIN (RFC 4616): the initial response with
//! the command, or after the server's empty challenge `""`. Only under TLS; failures
//! count against the client's IP and go to the activity log (`store::login`).

use base64::Engine as _;
use store::login::LoginError;

use crate::managesieve::core::{Core, Waiting};
use crate::managesieve::error::Error;
use crate::managesieve::parse::Arg;
use crate::managesieve::reply;

/// The protocol name in the activity log and the limiter's records.
const SERVICE: &str = "managesieve";

/// Starts the exchange: checks the initial response, or sends the empty challenge.
pub fn start(
    core: &mut Core,
    mechanism: &[u8],
    initial: Option<Vec<u8>>,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    // RFC 5804 §2.1 lets a server refuse a mechanism; no password goes in the clear.
    if !core.tls {
        return Err(Error::EncryptNeeded);
    }
    if !mechanism.eq_ignore_ascii_case(b"PLAIN") {
        return Err(Error::Mechanism);
    }
    match initial {
        Some(response) => plain(core, &response, out),
        None => {
            // RFC 5804 §2.1: the challenge is a string; PLAIN's is empty.
            reply::string(out, b"");
            out.extend_from_slice(b"\r\n");
            core.waiting = Waiting::SaslResponse;
            Ok(())
        }
    }
}

/// The client's line after the challenge: a string with the response, or `"*"` to
/// cancel (RFC 5804 §2.1: answered NO).
pub fn response(core: &mut Core, args: &[Arg], out: &mut Vec<u8>) -> Result<(), Error> {
    core.waiting = Waiting::Command;
    match args {
        [Arg::String(response)] if response != b"*" => plain(core, response, out),
        _ => Err(Error::AuthCancelled),
    }
}

/// Checks a base64 PLAIN response and enters the authenticated state.
fn plain(core: &mut Core, encoded: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let message = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim_ascii())
        .map_err(|_| Error::AuthMalformed)?;
    let creds = common::auth::decode_plain(&message).map_err(|_| Error::AuthMalformed)?;
    // RFC 4616 §2: acting as another identity is not ours to grant.
    if !creds.authzid.is_empty()
        && !creds
            .authzid
            .trim()
            .eq_ignore_ascii_case(creds.authcid.trim())
    {
        tracing::info!(user = %creds.authcid, authzid = %creds.authzid, peer = %core.peer,
            "ManageSieve: refused an authorization identity other than the user");
        return Err(Error::AuthFailed);
    }
    match core
        .auth
        .login(&creds.authcid, &creds.password, core.peer, SERVICE)
    {
        Ok(account) => {
            tracing::info!(account = %account.email, peer = %core.peer, "ManageSieve: authenticated");
            core.account = Some(account);
            reply::ok(out, None, "Authenticated");
            Ok(())
        }
        Err(LoginError::Failed) => Err(Error::AuthFailed),
        Err(LoginError::Limited(_)) => Err(Error::LoginLimited),
        Err(LoginError::Unavailable(e)) => {
            tracing::error!(error = %e, "ManageSieve: the login check failed");
            Err(Error::Unavailable)
        }
    }
}
