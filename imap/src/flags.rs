//! A message's flags as a session holds them: the system flags and the mailbox's
//! keywords as bits (keyword n being the nth of the view's [`Keywords`]), so that a
//! view of many messages is small and cheap to copy.

/// The system flags (RFC 3501 §2.3.2) in bit order, the order a FETCH lists them in
/// (RFC 3501 §8: `\Seen \Deleted`); `\Recent` is per session and not kept here.
pub const SYSTEM: [&str; 5] = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"];

/// The system flags in the order of RFC 3501's FLAGS responses (§6.3.1).
pub const LISTED: [&str; 5] = ["\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft"];

/// Bit of `\Seen`.
pub const SEEN: u32 = 0;
/// Bit of `\Deleted`.
pub const DELETED: u32 = 3;

/// Keywords that fit in the bits next to the system flags; later ones go to `more`.
const INLINE: u32 = 64 - SYSTEM.len() as u32;

/// The keywords a view knows, in the order it learned them.
#[derive(Debug, Clone, Default)]
pub struct Keywords {
    names: Vec<String>,
}

impl Keywords {
    /// The names, in order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The index of a keyword, if known.
    pub fn find(&self, name: &str) -> Option<u32> {
        self.names
            .iter()
            .position(|n| n == name)
            .and_then(|i| u32::try_from(i).ok())
    }

    /// The index of a keyword, learning it if new.
    pub fn learn(&mut self, name: &str) -> u32 {
        match self.find(name) {
            Some(i) => i,
            None => {
                self.names.push(name.to_string());
                u32::try_from(self.names.len() - 1).unwrap_or(u32::MAX)
            }
        }
    }

    /// Flags (as stored: system flags canonical, keywords as given) into a set,
    /// learning new keywords.
    pub fn set_of(&mut self, flags: &[String]) -> FlagSet {
        let mut set = FlagSet::default();
        for f in flags {
            match SYSTEM.iter().position(|s| s == f) {
                Some(bit) => set.bits |= 1 << bit,
                None => {
                    let k = self.learn(f);
                    set.insert_keyword(k);
                }
            }
        }
        set
    }
}

/// A message's flags: see the module docs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlagSet {
    bits: u64,
    /// Keyword indexes from [`INLINE`] on, ascending (rare: a mailbox with more than
    /// 59 keywords).
    more: Option<Box<[u32]>>,
}

impl FlagSet {
    /// Whether system flag `bit` ([`SYSTEM`] order) is set.
    pub fn has_system(&self, bit: u32) -> bool {
        self.bits & (1 << bit) != 0
    }

    /// Sets system flag `bit` (or clears it).
    pub fn set_system(&mut self, bit: u32, on: bool) {
        if on {
            self.bits |= 1 << bit;
        } else {
            self.bits &= !(1 << bit);
        }
    }

    /// Whether keyword `k` is set.
    pub fn has_keyword(&self, k: u32) -> bool {
        if k < INLINE {
            self.bits & (1 << (k + SYSTEM.len() as u32)) != 0
        } else {
            self.more
                .as_deref()
                .is_some_and(|m| m.binary_search(&k).is_ok())
        }
    }

    fn insert_keyword(&mut self, k: u32) {
        if k < INLINE {
            self.bits |= 1 << (k + SYSTEM.len() as u32);
        } else {
            let mut more: Vec<u32> = self.more.take().map(Vec::from).unwrap_or_default();
            if let Err(at) = more.binary_search(&k) {
                more.insert(at, k);
            }
            self.more = Some(more.into_boxed_slice());
        }
    }

    /// Whether the flag named `name` (a system flag in any case, or a keyword) is set.
    pub fn has(&self, name: &str, keywords: &Keywords) -> bool {
        match SYSTEM.iter().position(|s| s.eq_ignore_ascii_case(name)) {
            Some(bit) => self.has_system(bit as u32),
            None => keywords.find(name).is_some_and(|k| self.has_keyword(k)),
        }
    }

    /// The flag names, system flags first.
    pub fn names<'a>(&'a self, keywords: &'a Keywords) -> impl Iterator<Item = &'a str> + 'a {
        let system = SYSTEM
            .iter()
            .enumerate()
            .filter(|(bit, _)| self.has_system(*bit as u32))
            .map(|(_, s)| *s);
        let inline = (0..INLINE.min(keywords.len() as u32))
            .filter(|k| self.has_keyword(*k))
            .filter_map(|k| keywords.names.get(k as usize).map(String::as_str));
        let more = self
            .more
            .iter()
            .flat_map(|m| m.iter())
            .filter_map(|k| keywords.names.get(*k as usize).map(String::as_str));
        system.chain(inline).chain(more)
    }

    /// The highest keyword index set, if any (to check it was announced).
    pub fn highest_keyword(&self) -> Option<u32> {
        let inline = self.bits >> SYSTEM.len();
        match self.more.as_deref().and_then(|m| m.last()) {
            Some(k) => Some(*k),
            None if inline != 0 => Some(63 - inline.leading_zeros()),
            None => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flags_round_trip_through_bits_and_beyond() {
        let mut k = Keywords::default();
        let set = k.set_of(&["\\Seen".into(), "$Work".into(), "\\Deleted".into()]);
        assert!(set.has("\\seen", &k) && set.has("$Work", &k) && !set.has("$work", &k));
        assert!(set.has_system(DELETED) && !set.has("\\Flagged", &k));
        assert_eq!(
            set.names(&k).collect::<Vec<_>>(),
            ["\\Seen", "\\Deleted", "$Work"]
        );
        assert_eq!(set.highest_keyword(), Some(0));
        // Past the inline bits.
        let many: Vec<String> = (0..70).map(|i| format!("$k{i}")).collect();
        let big = k.set_of(&many);
        assert_eq!(big.names(&k).count(), 70);
        assert!(big.has("$k69", &k) && !big.has("$Work", &k));
        assert_eq!(big.highest_keyword(), Some(70));
        assert_eq!(FlagSet::default().highest_keyword(), None);
    }
}
