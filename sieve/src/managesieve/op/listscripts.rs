//! LISTSCRIPTS (RFC 5804 §2.7): one line per script, the active one marked `ACTIVE`.

use crate::managesieve::core::Core;
use crate::managesieve::error::Error;
use crate::managesieve::reply;

/// Lists the account's scripts.
pub fn listscripts(core: &Core, out: &mut Vec<u8>) -> Result<(), Error> {
    let account = core.account()?;
    let scripts = core
        .store
        .sieve_scripts(account.id)
        .map_err(|e| core.unavailable("LISTSCRIPTS", &e))?;
    for script in scripts {
        // RFC 5804 §4: sieve-name [SP "ACTIVE"] CRLF; names are quoted with escapes
        // (a literal only for what a quoted string cannot hold).
        reply::string(out, script.name.as_bytes());
        if script.active {
            out.extend_from_slice(b" ACTIVE");
        }
        out.extend_from_slice(b"\r\n");
    }
    reply::ok(out, None, "Listscripts completed");
    Ok(())
}
