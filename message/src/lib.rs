//! The one reader of untrusted messages: the header fields ([`header`]), who a message
//! is from ([`address`]), and its MIME structure ([`mime`]), walked in linear time with
//! bounded nesting and part counts. No two parts of Postern parse these differently,
//! and none can be made to recurse or loop over a message's structure without limit.
//!
//! mail-parser stays the parser of single header values and the decoder of transfer
//! encodings and charsets; it never sees a whole untrusted message here, because its
//! tree of nested messages is recursive to build, walk and drop.
#![forbid(unsafe_code)]

pub mod address;
pub mod header;
pub mod mime;

pub use address::{Author, Mailbox, author};
pub use mime::{Kind, Limits, Mime, Part, PartId};
