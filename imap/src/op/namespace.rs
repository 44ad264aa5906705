//! NAMESPACE (RFC 2342): one personal namespace, no prefix, `/` delimiter.

use crate::core::{Core, Next};
use crate::line;

/// `* NAMESPACE (("" "/")) NIL NIL` then OK.
pub fn run(core: &mut Core, tag: &str, out: &mut Vec<u8>) -> Next {
    line!(out, "* NAMESPACE ((\"\" \"{}\")) NIL NIL", store::DELIMITER);
    core.ok(out, tag, None, "NAMESPACE completed")
}
