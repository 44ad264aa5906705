//! CAPABILITY (RFC 3501 §6.1.1): what this connection offers now.

use crate::core::{Core, Next, Sync};
use crate::line;

/// The capabilities for the connection's state: no AUTH before TLS (LOGINDISABLED,
/// RFC 3501 §6.2.3), AUTH=PLAIN only before login, the extensions after.
pub fn list(core: &Core) -> String {
    let mut caps = vec!["IMAP4rev1".to_string()];
    if !core.tls {
        if core.starttls {
            caps.push("STARTTLS".into());
        }
        caps.push("LOGINDISABLED".into());
    } else if core.account.is_none() {
        caps.push("AUTH=PLAIN".into());
    }
    caps.extend(
        [
            "SASL-IR",
            "LITERAL+",
            "ID",
            "ENABLE",
            "IDLE",
            "NAMESPACE",
            "UIDPLUS",
            "MOVE",
            "UNSELECT",
            "CHILDREN",
            "SPECIAL-USE",
            "CREATE-SPECIAL-USE",
            "QUOTA",
            "QUOTA=RES-STORAGE",
            "CONDSTORE",
            "QRESYNC",
            "BINARY",
        ]
        .map(String::from),
    );
    caps.push(format!("APPENDLIMIT={}", core.limits.max_literal));
    caps.join(" ")
}

/// `* CAPABILITY ...` then OK.
pub fn run(core: &mut Core, tag: &str, out: &mut Vec<u8>) -> Next {
    line!(out, "* CAPABILITY {}", list(core));
    core.finish(out, tag, "OK", None, "CAPABILITY completed", Sync::Full)
}
