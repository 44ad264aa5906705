//! NOOP (RFC 3501 §6.1.2) and CHECK (§6.4.1): nothing to do but report changes.
//! Every change is already durable, so CHECK has nothing to flush.

use crate::core::{Core, Next};

/// OK after the selected mailbox's updates.
pub fn run(core: &mut Core, tag: &str, name: &str, out: &mut Vec<u8>) -> Next {
    core.ok(out, tag, None, &format!("{name} completed"))
}
