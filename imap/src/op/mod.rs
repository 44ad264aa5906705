//! One file per IMAP command (closely paired commands share one: SELECT/EXAMINE,
//! LIST/LSUB, COPY/MOVE, SUBSCRIBE/UNSUBSCRIBE, NOOP/CHECK).

pub mod append;
pub mod authenticate;
pub mod capability;
pub mod copy;
pub mod create;
pub mod delete;
pub mod enable;
pub mod expunge;
pub mod fetch;
pub mod id;
pub mod idle;
pub mod list;
pub mod login;
pub mod logout;
pub mod namespace;
pub mod noop;
pub mod quota;
pub mod rename;
pub mod search;
pub mod select;
pub mod starttls;
pub mod status;
pub mod store;
pub mod subscribe;
