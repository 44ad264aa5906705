//! AUTHENTICATE (RFC 3501 §6.2.2) with SASL PLAIN (RFC 4616), the initial response
//! inline (SASL-IR, RFC 4959) or after a `+` continuation. Only under TLS.

use crate::core::{Core, Next, Waiting};
use crate::line;
use crate::op::login;

/// Starts the exchange.
pub fn start(
    core: &mut Core,
    tag: &str,
    mechanism: &str,
    initial: Option<Vec<u8>>,
    out: &mut Vec<u8>,
) -> Next {
    if !core.tls {
        return core.no(
            out,
            tag,
            Some("PRIVACYREQUIRED"),
            "Authentication is disabled until TLS is on",
        );
    }
    if !mechanism.eq_ignore_ascii_case("PLAIN") {
        return core.no(
            out,
            tag,
            Some("CANNOT"),
            "Only AUTHENTICATE PLAIN is supported",
        );
    }
    match initial {
        Some(response) => plain(core, tag, &response, out),
        None => {
            line!(out, "+ ");
            core.waiting = Waiting::AuthData {
                tag: tag.to_string(),
            };
            Next::Continue
        }
    }
}

/// The client's response line (already base64-decoded), or `None` for `*` (cancel).
pub fn data(core: &mut Core, tag: &str, response: Option<&[u8]>, out: &mut Vec<u8>) -> Next {
    core.waiting = Waiting::Command;
    match response {
        Some(r) => plain(core, tag, r, out),
        None => core.bad(out, tag, "Authentication cancelled"),
    }
}

fn plain(core: &mut Core, tag: &str, response: &[u8], out: &mut Vec<u8>) -> Next {
    match common::auth::decode_plain(response) {
        Ok(creds) => {
            // RFC 4616: an authorization identity other than the user is not ours to grant.
            if !creds.authzid.is_empty() && !creds.authzid.eq_ignore_ascii_case(&creds.authcid) {
                return core.no(
                    out,
                    tag,
                    Some("AUTHORIZATIONFAILED"),
                    "Cannot act as another user",
                );
            }
            login::authenticated(core, tag, &creds.authcid, &creds.password, out)
        }
        Err(_) => core.bad(out, tag, "Malformed PLAIN response"),
    }
}
