//! SETACTIVE (RFC 5804 §2.8): makes a script the active one, or with `""` none.

use crate::managesieve::core::{Core, script_name};
use crate::managesieve::error::Error;
use crate::managesieve::reply;

/// Activates `name`, or deactivates every script for an empty name.
pub fn setactive(core: &Core, name: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    let account = core.account()?;
    let name = if name.is_empty() {
        None
    } else {
        // A name that cannot be stored cannot exist.
        Some(script_name(name).map_err(|_| Error::NonExistent)?)
    };
    match core.store.set_active_sieve_script(account.id, name) {
        Ok(()) => {
            tracing::info!(account = %account.email, command = "SETACTIVE", name = name.unwrap_or(""), "ManageSieve: active script set");
            reply::ok(
                out,
                None,
                if name.is_some() {
                    "Script activated"
                } else {
                    "Scripts deactivated"
                },
            );
            Ok(())
        }
        Err(store::Error::NotFound(_)) => Err(Error::NonExistent),
        Err(e) => Err(core.unavailable("SETACTIVE", &e)),
    }
}
