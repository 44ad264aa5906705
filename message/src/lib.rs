//! The one reader of untrusted messages: the MIME structure of a message, walked once
//! in linear time with bounded nesting and part counts, so that no part of Postern can
//! be made to recurse or loop over a message's structure without limit.
//!
//! mail-parser stays the parser of single header blocks and the decoder of transfer
//! encodings and charsets; it never sees a whole untrusted message here, because its
//! tree of nested messages is recursive to build, walk and drop.
#![forbid(unsafe_code)]

pub mod mime;

pub use mime::{Kind, Limits, Mime, Part, PartId};
