//! UNAUTHENTICATE (RFC 5804 §2.14.1): back to the non-authenticated state; TLS stays.

use crate::managesieve::core::{Core, Waiting};
use crate::managesieve::error::Error;
use crate::managesieve::reply;

/// Forgets the account and answers OK.
pub fn unauthenticate(core: &mut Core, out: &mut Vec<u8>) -> Result<(), Error> {
    if let Some(account) = core.account.take() {
        tracing::info!(account = %account.email, peer = %core.peer, "ManageSieve: unauthenticated");
    }
    core.waiting = Waiting::Command;
    reply::ok(out, None, "Unauthenticated");
    Ok(())
}
