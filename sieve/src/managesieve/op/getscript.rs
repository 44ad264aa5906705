//! GETSCRIPT (RFC 5804 §2.9): the script as a literal, then OK.

use crate::managesieve::core::{Core, script_name};
use crate::managesieve::error::Error;
use crate::managesieve::reply;

/// Sends the script `name`.
pub fn getscript(core: &Core, name: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let account = core.account()?;
    let name = script_name(name).map_err(|_| Error::NonExistent)?;
    let text = core
        .store
        .sieve_script(account.id, name)
        .map_err(|e| core.unavailable("GETSCRIPT", &e))?
        .ok_or(Error::NonExistent)?;
    // RFC 5804 §4: response-getscript = (sieve-script CRLF response-ok); always a
    // literal, so the bytes come back exactly as stored.
    reply::literal(out, text.as_bytes());
    out.extend_from_slice(b"\r\n");
    reply::ok(out, None, "Getscript completed");
    Ok(())
}
