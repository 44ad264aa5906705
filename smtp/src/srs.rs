//! The Sender Rewriting Scheme: a message we forward to another server goes out from
//! an address of ours that encodes the original sender, so SPF passes at the next hop
//! and a bounce comes back to us, who pass it on to the original sender; nobody else
//! can make us do that, as the address carries a keyed hash and a timestamp.
//!
//! The forms are those of libsrs2 (Shevek, "Sender Rewriting Scheme"):
//! - `SRS0=HHH=TT=domain=local@ours`: forwarding mail from `local@domain`;
//! - `SRS1=HHH=first.forwarder==HHH=TT=domain=local@ours`: forwarding mail that
//!   another forwarder already rewrote (its SRS0 address), so a bounce goes back
//!   through that forwarder rather than through every hop.
//!
//! HHH is an HMAC-SHA256 of the rest under the store's `srs` secret, in base32 (so a
//! relay that changes the case of the local part does not break it); TT is the day
//! the address was made, base32, modulo 1024.

use std::time::{SystemTime, UNIX_EPOCH};

/// How long an SRS address is honoured, in days.
pub const MAX_AGE_DAYS: u64 = 21;
/// Length of the hash, in base32 characters (40 bits).
const HASH_LEN: usize = 8;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Why an address that looks like SRS is not honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SrsError {
    /// Not of the SRS0/SRS1 form.
    #[error("malformed SRS address")]
    Malformed,
    /// The hash does not match: not made by us.
    #[error("the SRS address was not made here")]
    Forged,
    /// Made too long ago.
    #[error("the SRS address has expired")]
    Expired,
}

/// Makes and reverses SRS addresses under one key.
#[derive(Clone)]
pub struct Srs {
    key: ring::hmac::Key,
}

impl std::fmt::Debug for Srs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Srs")
    }
}

fn today() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

impl Srs {
    /// An SRS under `secret` (the store's `srs` secret).
    pub fn new(secret: &[u8]) -> Srs {
        Srs {
            key: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret),
        }
    }

    fn hash(&self, parts: &[&str]) -> String {
        let mut ctx = ring::hmac::Context::with_key(&self.key);
        for p in parts {
            ctx.update(p.to_ascii_lowercase().as_bytes());
            ctx.update(&[0]);
        }
        let tag = ctx.sign();
        let mut out = String::with_capacity(HASH_LEN);
        let mut bits = 0u32;
        let mut nbits = 0;
        for &b in tag.as_ref() {
            bits = (bits << 8) | u32::from(b);
            nbits += 8;
            while nbits >= 5 && out.len() < HASH_LEN {
                nbits -= 5;
                out.push(char::from(BASE32[((bits >> nbits) & 31) as usize]));
            }
            if out.len() == HASH_LEN {
                break;
            }
        }
        out
    }

    fn verify(&self, hash: &str, parts: &[&str]) -> Result<(), SrsError> {
        let expected = self.hash(parts);
        // Compared case-insensitively, without stopping at the first difference.
        let given = hash.to_ascii_lowercase();
        let differ = expected
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if expected.len() == given.len() && differ == 0 {
            Ok(())
        } else {
            Err(SrsError::Forged)
        }
    }

    /// The envelope sender for forwarding mail from `sender` as `our_domain`. The null
    /// sender stays null (a bounce is never bounced).
    pub fn forward(&self, sender: &str, our_domain: &str) -> String {
        let Some((local, domain)) = sender.rsplit_once('@') else {
            return sender.to_string();
        };
        let prefix = local.get(..5).map(str::to_ascii_uppercase);
        match prefix.as_deref() {
            // Already SRS0 of another forwarder: SRS1 naming that forwarder.
            Some("SRS0=") => {
                let rest = &local[4..];
                let hash = self.hash(&[domain, rest]);
                format!("SRS1={hash}={domain}={rest}@{our_domain}")
            }
            // SRS1: keep the first forwarder, hash it again under our key.
            Some("SRS1=") => {
                let fields: Vec<&str> = local[5..].splitn(3, '=').collect();
                match fields.as_slice() {
                    [_, first, rest] => {
                        let hash = self.hash(&[first, rest]);
                        format!("SRS1={hash}={first}={rest}@{our_domain}")
                    }
                    _ => self.srs0(local, domain, our_domain),
                }
            }
            _ => self.srs0(local, domain, our_domain),
        }
    }

    fn srs0(&self, local: &str, domain: &str, our_domain: &str) -> String {
        let day = today() % 1024;
        let tt: String = [BASE32[(day >> 5) as usize], BASE32[(day & 31) as usize]]
            .iter()
            .map(|&b| char::from(b))
            .collect();
        let hash = self.hash(&[&tt, domain, local]);
        format!("SRS0={hash}={tt}={domain}={local}@{our_domain}")
    }

    /// Where a bounce to the local part `local` of one of our domains goes: `Ok(None)`
    /// when it is not an SRS address, the original sender (or the first forwarder's
    /// SRS0 address) when it is one of ours and not expired.
    pub fn reverse(&self, local: &str) -> Result<Option<String>, SrsError> {
        let prefix = local.get(..5).map(str::to_ascii_uppercase);
        match prefix.as_deref() {
            Some("SRS0=") => {
                let fields: Vec<&str> = local[5..].splitn(4, '=').collect();
                let [hash, tt, domain, user] = fields.as_slice() else {
                    return Err(SrsError::Malformed);
                };
                if user.is_empty() || domain.is_empty() {
                    return Err(SrsError::Malformed);
                }
                self.verify(hash, &[tt, domain, user])?;
                let day = decode_day(tt).ok_or(SrsError::Malformed)?;
                let age = (today() % 1024 + 1024 - day) % 1024;
                if age > MAX_AGE_DAYS {
                    return Err(SrsError::Expired);
                }
                Ok(Some(format!("{user}@{domain}")))
            }
            Some("SRS1=") => {
                let fields: Vec<&str> = local[5..].splitn(3, '=').collect();
                let [hash, first, rest] = fields.as_slice() else {
                    return Err(SrsError::Malformed);
                };
                if first.is_empty() || !rest.starts_with('=') {
                    return Err(SrsError::Malformed);
                }
                self.verify(hash, &[first, rest])?;
                Ok(Some(format!("SRS0{rest}@{first}")))
            }
            _ => Ok(None),
        }
    }
}

fn decode_day(tt: &str) -> Option<u64> {
    let b = tt.to_ascii_lowercase().into_bytes();
    let [hi, lo] = b.as_slice() else {
        return None;
    };
    let v = |c: &u8| BASE32.iter().position(|x| x == c).map(|p| p as u64);
    Some(v(hi)? << 5 | v(lo)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_and_reverse() {
        let srs = Srs::new(b"secret");
        let a = srs.forward("Ann@Remote.test", "example.test");
        assert!(a.starts_with("SRS0="), "{a}");
        assert!(a.ends_with("=Remote.test=Ann@example.test"), "{a}");
        let local = a.rsplit_once('@').unwrap().0;
        assert_eq!(srs.reverse(local).unwrap().unwrap(), "Ann@Remote.test");
        // A relay that lower-cases the address does not break it.
        assert_eq!(
            srs.reverse(&local.to_ascii_lowercase().replacen("srs0", "SRS0", 1))
                .unwrap()
                .unwrap()
                .to_ascii_lowercase(),
            "ann@remote.test"
        );
        assert_eq!(srs.forward("", "example.test"), "");
        assert_eq!(srs.reverse("alice").unwrap(), None);
    }

    #[test]
    fn forged_and_expired_addresses_are_refused() {
        let srs = Srs::new(b"secret");
        let other = Srs::new(b"another secret");
        let a = other.forward("ann@remote.test", "example.test");
        let local = a.rsplit_once('@').unwrap().0;
        assert_eq!(srs.reverse(local), Err(SrsError::Forged));
        // A hash for one user does not cover another.
        let mine = srs.forward("ann@remote.test", "example.test");
        let swapped = mine.replace("=ann@", "=bob@");
        assert_eq!(
            srs.reverse(swapped.rsplit_once('@').unwrap().0),
            Err(SrsError::Forged)
        );
        assert_eq!(srs.reverse("SRS0=x"), Err(SrsError::Malformed));
        // 30 days ago.
        let day = (today() + 1024 - 30) % 1024;
        let tt: String = [BASE32[(day >> 5) as usize], BASE32[(day & 31) as usize]]
            .iter()
            .map(|&b| char::from(b))
            .collect();
        let hash = srs.hash(&[&tt, "remote.test", "ann"]);
        assert_eq!(
            srs.reverse(&format!("SRS0={hash}={tt}=remote.test=ann")),
            Err(SrsError::Expired)
        );
    }

    #[test]
    fn a_second_forwarder_makes_srs1_back_to_the_first() {
        let first = Srs::new(b"first");
        let second = Srs::new(b"second");
        let a = first.forward("ann@remote.test", "fwd1.test");
        let b = second.forward(&a, "fwd2.test");
        assert!(b.starts_with("SRS1="), "{b}");
        // A third forwarder keeps pointing at the first.
        let c = Srs::new(b"third").forward(&b, "fwd3.test");
        assert!(c.starts_with("SRS1=") && c.contains("=fwd1.test=="), "{c}");
        let back = second
            .reverse(b.rsplit_once('@').unwrap().0)
            .unwrap()
            .unwrap();
        assert_eq!(back, a);
        assert_eq!(
            first
                .reverse(back.rsplit_once('@').unwrap().0)
                .unwrap()
                .unwrap(),
            "ann@remote.test"
        );
    }
}
