//! LOGOUT (RFC 5804 §2.3): OK, then the server closes the connection.

use crate::managesieve::core::Next;
use crate::managesieve::reply;

/// Answers OK and ends the session.
pub fn logout(out: &mut Vec<u8>) -> Next {
    reply::ok(out, None, "Logout completed");
    Next::Close
}
