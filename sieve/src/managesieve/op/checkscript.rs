//! CHECKSCRIPT (RFC 5804 §2.12): the PUTSCRIPT checks, nothing stored.

use crate::managesieve::core::Core;
use crate::managesieve::error::Error;
use crate::managesieve::reply;

/// Checks `script` and answers OK or the reason.
pub fn checkscript(core: &Core, script: &[u8], out: &mut Vec<u8>) -> Result<(), Error> {
    check(core, script)?;
    reply::ok(out, None, "Script is valid");
    Ok(())
}

/// The checks a script passes before it is stored: the size limit (`QUOTA/MAXSIZE`),
/// UTF-8 (RFC 5228 §2.1), and the compiler with the extensions Postern honours
/// (RFC 5804 §2.6: a script that fails is refused with the error, line and column).
pub fn check<'a>(core: &Core, script: &'a [u8]) -> Result<&'a str, Error> {
    let max = core.engine.config().max_script_bytes;
    if script.len() > max {
        return Err(Error::TooBig {
            size: script.len() as u64,
            max,
        });
    }
    let text = std::str::from_utf8(script).map_err(|_| Error::NotUtf8)?;
    core.engine.compile(text).map_err(Error::Check)?;
    Ok(text)
}
