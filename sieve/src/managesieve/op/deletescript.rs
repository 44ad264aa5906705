//! DELETESCRIPT (RFC 5804 §2.10): removes a script, never the active one.

use crate::managesieve::core::{Core, script_name};
use crate::managesieve::error::Error;
use crate::managesieve::reply;

/// Deletes the script `name`.
pub fn deletescript(core: &Core, name: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let account = core.account()?;
    let name = script_name(name).map_err(|_| Error::NonExistent)?;
    match core.store.delete_sieve_script(account.id, name) {
        Ok(()) => {
            tracing::info!(account = %account.email, command = "DELETESCRIPT", name, "ManageSieve: script deleted");
            reply::ok(out, None, "Script deleted");
            Ok(())
        }
        Err(store::Error::NotFound(_)) => Err(Error::NonExistent),
        Err(store::Error::InUse(_)) => Err(Error::Active),
        Err(e) => Err(core.unavailable("DELETESCRIPT", &e)),
    }
}
