//! Who may send as which address on submission: nobody sends as anybody else.

use store::{Account, Store};

/// Whether `account` may use `address` as its envelope or From: address: its own
/// address, a `+tag` variant of it, or an alias that delivers to it.
pub fn may_send_as(store: &Store, account: &Account, address: &str) -> Result<bool, store::Error> {
    let Ok(address) = store::normalize_address(address) else {
        return Ok(false);
    };
    let Some((local, domain)) = address.rsplit_once('@') else {
        return Ok(false);
    };
    let mut candidates = vec![address.clone()];
    if let Some((base, _)) = local.split_once('+')
        && !base.is_empty()
    {
        candidates.push(format!("{base}@{domain}"));
    }
    for candidate in candidates {
        if candidate == account.email {
            return Ok(true);
        }
        if let Some(alias) = store.alias(&candidate)?
            && alias
                .targets
                .iter()
                .any(|t| t.eq_ignore_ascii_case(&account.email))
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The addresses in a message's From: header (RFC 5322 §3.6.2), lower-cased.
pub fn from_addresses(message: &[u8]) -> Vec<String> {
    let Some(parsed) = mail_parser::MessageParser::default().parse_headers(message) else {
        return Vec::new();
    };
    parsed
        .from()
        .map(|from| {
            from.iter()
                .filter_map(|a| a.address())
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default()
}

/// The DKIM-Signature header fields for `message`, one per active key of the domain of
/// its first From: address, and how many keys there were (0: unsigned).
pub fn dkim_signatures(store: &Store, message: &[u8]) -> Result<(String, usize), String> {
    let Some(domain) = from_addresses(message)
        .first()
        .and_then(|a| a.rsplit_once('@').map(|(_, d)| d.to_string()))
    else {
        return Err("no From: address".into());
    };
    let keys: Vec<dkim::sign::SigningKey> = store
        .dkim_keys(&domain)
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|k| k.active)
        .filter_map(|k| {
            Some(dkim::sign::SigningKey {
                algorithm: dkim::keys::Algorithm::from_key_type(&k.algorithm)?,
                domain: k.domain,
                selector: k.selector,
                private_key_pem: k.private_key_pem,
            })
        })
        .collect();
    let signatures = dkim::sign::sign(message, &keys).map_err(|e| e.to_string())?;
    Ok((signatures, keys.len()))
}
