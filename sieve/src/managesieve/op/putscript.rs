//! PUTSCRIPT (RFC 5804 §2.6): checks and stores a script, replacing one of the same
//! name (the active script stays active).

use crate::managesieve::core::{Core, script_name};
use crate::managesieve::error::Error;
use crate::managesieve::op::checkscript;
use crate::managesieve::reply;

/// Stores `script` as `name`.
pub fn putscript(core: &Core, name: &[u8], script: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let name = script_name(name)?;
    let text = checkscript::check(core, script)?;
    let account = core.account()?;
    let max = core.engine.config().max_scripts;
    match core.store.put_sieve_script(account.id, name, text, max) {
        Ok(()) => {
            tracing::info!(account = %account.email, command = "PUTSCRIPT", name, bytes = text.len(), "ManageSieve: script stored");
            reply::ok(out, None, "Script stored");
            Ok(())
        }
        // RFC 5804 §2.6: a new script over the account's limit.
        Err(store::Error::Exhausted(_)) => Err(Error::TooManyScripts(max)),
        Err(e) => Err(core.unavailable("PUTSCRIPT", &e)),
    }
}
