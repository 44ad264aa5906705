//! RENAMESCRIPT (RFC 5804 §2.11.1): renames a script; an active one stays active.

use crate::managesieve::core::{Core, script_name};
use crate::managesieve::error::Error;
use crate::managesieve::reply;

/// Renames `old` to `new`.
pub fn renamescript(core: &Core, old: &[u8], new: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let account = core.account()?;
    let old = script_name(old).map_err(|_| Error::NonExistent)?;
    let new = script_name(new)?;
    match core.store.rename_sieve_script(account.id, old, new) {
        Ok(()) => {
            tracing::info!(account = %account.email, command = "RENAMESCRIPT", name = old, new_name = new, "ManageSieve: script renamed");
            reply::ok(out, None, "Script renamed");
            Ok(())
        }
        Err(store::Error::NotFound(_)) => Err(Error::NonExistent),
        Err(store::Error::Exists(_)) => Err(Error::AlreadyExists),
        Err(e) => Err(core.unavailable("RENAMESCRIPT", &e)),
    }
}
