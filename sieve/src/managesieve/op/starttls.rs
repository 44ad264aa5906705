//! STARTTLS (RFC 5804 §2.2): OK, then the TLS handshake; the session then re-sends its
//! capabilities unprompted (see `Session::tls_started`).

use crate::managesieve::core::{Core, Next};
use crate::managesieve::error::Error;
use crate::managesieve::reply;

/// Answers OK and asks for the handshake, where TLS is offered and not on yet.
pub fn starttls(core: &Core, out: &mut Vec<u8>) -> Result<Next, Error> {
    if core.tls || !core.starttls {
        return Err(Error::TlsUnavailable);
    }
    reply::ok(out, None, "Begin TLS negotiation now");
    Ok(Next::StartTls)
}
