//! ENABLE (RFC 5161). Nothing here needs enabling yet: CONDSTORE and UTF8=ACCEPT are
//! not advertised, so every capability named is answered as not enabled.

use imap_types::extensions::enable::CapabilityEnable;

use crate::core::{Core, Next};
use crate::line;

/// `* ENABLED` (with nothing) then OK.
pub fn run(
    core: &mut Core,
    tag: &str,
    _capabilities: &[CapabilityEnable<'_>],
    out: &mut Vec<u8>,
) -> Next {
    line!(out, "* ENABLED");
    core.ok(out, tag, None, "ENABLE completed")
}
