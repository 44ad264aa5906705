//! One file per ManageSieve command (RFC 5804 §2). Each handler appends its reply to
//! `out` and returns `Err` for a refusal, which [`super::core::Core::execute`] writes.

pub mod authenticate;
pub mod capability;
pub mod checkscript;
pub mod deletescript;
pub mod getscript;
pub mod havespace;
pub mod listscripts;
pub mod logout;
pub mod noop;
pub mod putscript;
pub mod renamescript;
pub mod setactive;
pub mod starttls;
pub mod unauthenticate;
