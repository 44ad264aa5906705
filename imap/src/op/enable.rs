//! ENABLE (RFC 5161): CONDSTORE and QRESYNC can be enabled (RFC 7162); anything else named
//! is not enabled and not mentioned in the reply.

use imap_types::extensions::enable::CapabilityEnable;

use crate::core::{Core, Next};
use crate::line;

/// `* ENABLED [CONDSTORE]` then OK.
pub fn run(
    core: &mut Core,
    tag: &str,
    capabilities: &[CapabilityEnable<'_>],
    out: &mut Vec<u8>,
) -> Next {
    let mut enabled = Vec::new();
    for c in capabilities {
        if matches!(c, CapabilityEnable::CondStore) && !enabled.contains(&"CONDSTORE") {
            core.condstore = true;
            enabled.push("CONDSTORE");
        }
        // RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
        if matches!(c, CapabilityEnable::Other(_))
            && c.to_string().eq_ignore_ascii_case("QRESYNC")
            && !enabled.contains(&"QRESYNC")
        {
            core.condstore = true;
            core.qresync = true;
            if let Some(sel) = core.selected.as_mut() {
                sel.vanished = true;
            }
            enabled.push("QRESYNC");
        }
    }
    if enabled.is_empty() {
        line!(out, "* ENABLED");
    } else {
        line!(out, "* ENABLED {}", enabled.join(" "));
    }
    core.ok(out, tag, None, "ENABLE completed")
}
