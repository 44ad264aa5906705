//! STARTTLS (RFC 3501 §6.2.1) on a plaintext listener.

use crate::core::{Core, Next};
use crate::resp;

/// OK and the TLS handshake, where TLS is possible and not yet on.
pub fn run(core: &mut Core, tag: &str, out: &mut Vec<u8>) -> Next {
    if core.tls || !core.starttls {
        return core.bad(out, tag, "TLS is already active or not available here");
    }
    resp::tagged(out, tag, "OK", None, "Begin TLS negotiation now");
    Next::StartTls
}
