//! NOOP (RFC 5804 §2.13): OK, echoing the client's tag as `OK (TAG string)`.

use crate::managesieve::error::Error;
use crate::managesieve::reply;

/// Answers OK, with the tag if the client sent one.
pub fn noop(tag: Option<&[u8]>, out: &mut Vec<u8>) -> Result<(), Error> {
    match tag {
        Some(tag) => {
            // RFC 5804 §4: resp-code =/ "TAG" SP string.
            out.extend_from_slice(b"OK (TAG ");
            reply::string(out, tag);
            out.extend_from_slice(b") \"Done\"\r\n");
        }
        None => reply::ok(out, None, "Done"),
    }
    Ok(())
}
