//! ID (RFC 2971): the client may say who it is; we answer with our name only.

use crate::core::{Core, Next};
use crate::line;

/// `* ID ("name" "Postern")` then OK.
pub fn run(core: &mut Core, tag: &str, out: &mut Vec<u8>) -> Next {
    line!(out, "* ID (\"name\" \"Postern\")");
    core.ok(out, tag, None, "ID completed")
}
