//! IDLE (RFC 2177): the client waits for updates until it sends DONE. The session
//! pushes the selected mailbox's updates as they happen (see `session`).

use crate::core::{Core, Next, Waiting};
use crate::line;

/// `+ idling`: from now on the session waits for DONE.
pub fn start(core: &mut Core, tag: &str, out: &mut Vec<u8>) -> Next {
    core.updates(out, true, false);
    line!(out, "+ idling");
    core.waiting = Waiting::Idle {
        tag: tag.to_string(),
    };
    Next::Continue
}

/// DONE arrived: the last updates, then OK.
pub fn done(core: &mut Core, tag: &str, out: &mut Vec<u8>) -> Next {
    core.waiting = Waiting::Command;
    core.ok(out, tag, None, "IDLE terminated")
}
