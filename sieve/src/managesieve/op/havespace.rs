//! HAVESPACE (RFC 5804 §2.5): whether a PUTSCRIPT of that name and size would fit.

use crate::managesieve::core::{Core, script_name};
use crate::managesieve::error::Error;
use crate::managesieve::reply;

/// Answers OK, `NO (QUOTA/MAXSIZE)` or `NO (QUOTA/MAXSCRIPTS)`.
pub fn havespace(core: &Core, name: &[u8], size: u64, out: &mut Vec<u8>) -> Result<(), Error> {
    let name = script_name(name)?;
    let limits = core.engine.config();
    if size > limits.max_script_bytes as u64 {
        return Err(Error::TooBig {
            size,
            max: limits.max_script_bytes,
        });
    }
    let account = core.account()?;
    let scripts = core
        .store
        .sieve_scripts(account.id)
        .map_err(|e| core.unavailable("HAVESPACE", &e))?;
    if !scripts.iter().any(|s| s.name == name) && scripts.len() >= limits.max_scripts {
        return Err(Error::TooManyScripts(limits.max_scripts));
    }
    reply::ok(out, None, "Putscript would succeed");
    Ok(())
}
