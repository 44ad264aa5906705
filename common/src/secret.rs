//! [`Secret`]: a password or key in a configuration or request, written out as itself
//! where it must travel (the TOML file, the control socket) and never shown by
//! `Debug` (logs, panics).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A secret string; `Debug` prints `"<redacted>"` unless it is empty.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty (not set).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The same, with its value replaced by `<redacted>` when set: for showing a
    /// configuration.
    pub fn redacted(&self) -> Secret {
        if self.0.is_empty() {
            Secret::default()
        } else {
            Secret::new(REDACTED)
        }
    }
}

/// What a redacted secret reads.
pub const REDACTED: &str = "<redacted>";

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            write!(f, "\"{REDACTED}\"")
        }
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Secret {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Secret {
        Secret(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_it_serde_keeps_it() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "\"<redacted>\"");
        assert_eq!(
            serde_json::to_string(&s).ok().as_deref(),
            Some("\"hunter2\"")
        );
        assert_eq!(s.redacted().expose(), REDACTED);
        assert_eq!(Secret::default().redacted().expose(), "");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
    }
}
