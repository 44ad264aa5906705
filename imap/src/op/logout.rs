//! LOGOUT (RFC 3501 §6.1.3).

use crate::core::{Core, Next};
use crate::{line, resp};

/// `* BYE`, OK, close.
pub fn run(core: &mut Core, tag: &str, out: &mut Vec<u8>) -> Next {
    line!(out, "* BYE Logging out");
    resp::tagged(out, tag, "OK", None, "LOGOUT completed");
    core.logged_out = true;
    Next::Close
}
