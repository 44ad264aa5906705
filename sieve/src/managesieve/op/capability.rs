//! CAPABILITY (RFC 5804 §2.4) and the capability list of the greeting (§1.7) and of
//! the unprompted re-send after STARTTLS (§2.2).

use crate::managesieve::core::Core;
use crate::managesieve::error::Error;
use crate::managesieve::reply;

/// The capability lines, without the final OK.
pub fn lines(core: &Core) -> Vec<u8> {
    let mut out = Vec::new();
    let mut line = |key: &str, value: Option<&str>| {
        reply::string(&mut out, key.as_bytes());
        if let Some(value) = value {
            out.push(b' ');
            reply::string(&mut out, value.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    };
    line("IMPLEMENTATION", Some("Postern"));
    // RFC 5804 §1.7: the SASL list may be empty only where STARTTLS is offered;
    // Postern takes passwords only under TLS.
    line("SASL", Some(if core.tls { "PLAIN" } else { "" }));
    line("SIEVE", Some(&crate::script::extension_list()));
    if core.starttls && !core.tls {
        line("STARTTLS", None);
    }
    line(
        "MAXREDIRECTS",
        Some(&core.engine.config().max_redirects.to_string()),
    );
    // RFC 5804 §1.7: OWNER only in the authenticated state.
    if let Some(account) = &core.account {
        line("OWNER", Some(&account.email));
    }
    // RFC 5804 §2.14.1: the extension is advertised.
    line("UNAUTHENTICATE", None);
    line("VERSION", Some("1.0"));
    out
}

/// The greeting: the capability list and OK.
pub fn greeting(core: &Core) -> Vec<u8> {
    let mut out = lines(core);
    reply::ok(&mut out, None, "Postern ManageSieve ready");
    out
}

/// CAPABILITY: the list and OK, in any state.
pub fn capability(core: &Core, out: &mut Vec<u8>) -> Result<(), Error> {
    out.extend(lines(core));
    reply::ok(out, None, "Capability completed");
    Ok(())
}
