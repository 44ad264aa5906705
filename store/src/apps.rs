//! Web applications behind the HTTPS front: each on its own host name, proxied to an
//! upstream `host:port` over HTTP/1.1. Kept in the store, not in the configuration.

use std::time::SystemTime;

use redb::ReadableTable;
use serde::{Deserialize, Serialize};

use crate::tables::APPS;
use crate::{Error, Store, decode, decode_opt, encode, now};

/// One application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct App {
    /// Its name (lower-case letters, digits and `-`).
    pub name: String,
    /// The host name it is served on (lower case).
    pub host: String,
    /// Where requests go: `host:port`, plain HTTP/1.1.
    pub upstream: String,
    /// When it was added.
    #[serde(with = "crate::unix_ms", default = "crate::unix_ms::epoch")]
    pub created: SystemTime,
    /// Set when the app runs in a container of ours; its upstream is then the
    /// container's address.
    #[serde(default)]
    pub container: Option<Container>,
}

/// An app that runs in a container (runc) from a root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    /// The root filesystem directory (read-only in the container).
    pub rootfs: String,
    /// The port the app listens on inside its network namespace.
    pub port: u16,
    /// What runs: the program and its arguments.
    pub command: Vec<String>,
    /// `KEY=VALUE` environment entries.
    #[serde(default)]
    pub env: Vec<String>,
    /// Its slot: its network, its uid.
    pub index: u32,
    /// Its address inside its own network namespace.
    pub address: String,
    /// The host's address on the app's link (where the app reaches our mail relay).
    pub gateway: String,
    /// The account it sends mail as.
    pub relay_account: String,
    /// Whether it should run (started by `app start` and at every `serve` start).
    #[serde(default)]
    pub enabled: bool,
}

/// Checks an app name: 1 to 63 of `a-z`, `0-9`, `-`, not starting or ending with `-`.
fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "the app name {name:?} must be 1 to 63 lower-case letters, digits and inner hyphens"
        )))
    }
}

/// Checks a host name: labels of letters, digits and `-`, at least two labels.
fn check_host(host: &str) -> Result<(), Error> {
    let labels: Vec<&str> = host.split('.').collect();
    let ok = host.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!("{host:?} is not a host name")))
    }
}

impl Store {
    /// Every app, by name.
    pub fn apps(&self) -> Result<Vec<App>, Error> {
        self.all_values(APPS, "an app")
    }

    /// The app served on `host` (lower case, no port), if any.
    pub fn app_by_host(&self, host: &str) -> Result<Option<App>, Error> {
        Ok(self.apps()?.into_iter().find(|a| a.host == host))
    }

    /// Adds an app. [`Error::Exists`] if the name or the host is taken,
    /// [`Error::Invalid`] for a bad name, host or upstream.
    pub fn add_app(&self, name: &str, host: &str, upstream: &str) -> Result<App, Error> {
        self.put_app(name, host, upstream, false)
    }

    /// Changes an app's host or upstream in one commit. [`Error::NotFound`] for an
    /// unknown name; the checks of [`Store::add_app`] otherwise.
    pub fn update_app(&self, name: &str, host: &str, upstream: &str) -> Result<App, Error> {
        self.put_app(name, host, upstream, true)
    }

    /// Adds an app, or with `replace` changes an existing one.
    fn put_app(&self, name: &str, host: &str, upstream: &str, replace: bool) -> Result<App, Error> {
        let name = name.to_ascii_lowercase();
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        check_name(&name)?;
        check_host(&host)?;
        let valid_upstream = upstream
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
        if !valid_upstream {
            return Err(Error::Invalid(format!(
                "the upstream {upstream:?} must be HOST:PORT"
            )));
        }
        self.write(|txn| {
            let mut table = txn.open_table(APPS)?;
            let existing: Option<App> = decode_opt("an app", table.get(name.as_str())?)?;
            let (created, container) = match (existing, replace) {
                (Some(_), false) => return Err(Error::Exists(format!("an app named {name}"))),
                (None, true) => return Err(Error::NotFound(format!("the app {name}"))),
                (Some(old), true) => (old.created, old.container),
                (None, false) => (now(), None),
            };
            if container.is_some() && replace {
                return Err(Error::Invalid(format!(
                    "the app {name} runs in a container: its upstream is its own; remove and add it to change it"
                )));
            }
            for row in table.iter()? {
                let (_, v) = row?;
                let other: App = decode("an app", v.value())?;
                if other.host == host && other.name != name {
                    return Err(Error::Exists(format!("an app on {host} ({})", other.name)));
                }
            }
            let app = App {
                name: name.clone(),
                host: host.clone(),
                upstream: upstream.to_string(),
                created,
                container,
            };
            table.insert(name.as_str(), encode("an app", &app)?.as_slice())?;
            Ok(app)
        })
    }

    /// Adds an app that runs in a container; its upstream is the container's address
    /// and port. [`Error::Exists`] if the name, host or slot is taken.
    pub fn add_container_app(
        &self,
        name: &str,
        host: &str,
        container: Container,
    ) -> Result<App, Error> {
        let upstream = format!("{}:{}", container.address, container.port);
        let app = self.put_app(name, host, &upstream, false)?;
        self.write(|txn| {
            let mut table = txn.open_table(APPS)?;
            let mut taken = false;
            for row in table.iter()? {
                let (_, v) = row?;
                let other: App = decode("an app", v.value())?;
                taken |= other.name != app.name
                    && other
                        .container
                        .as_ref()
                        .is_some_and(|c| c.index == container.index);
            }
            if taken {
                table.remove(app.name.as_str())?;
                return Err(Error::Exists(format!("the app slot {}", container.index)));
            }
            let app = App {
                container: Some(container),
                ..app
            };
            table.insert(app.name.as_str(), encode("an app", &app)?.as_slice())?;
            Ok(app)
        })
    }

    /// Marks a container app to run or not. [`Error::NotFound`] for an unknown name,
    /// [`Error::Invalid`] for an app that is not a container.
    pub fn set_app_enabled(&self, name: &str, enabled: bool) -> Result<App, Error> {
        let name = name.to_ascii_lowercase();
        self.write(|txn| {
            let mut table = txn.open_table(APPS)?;
            let app: Option<App> = decode_opt("an app", table.get(name.as_str())?)?;
            let mut app = app.ok_or_else(|| Error::NotFound(format!("the app {name}")))?;
            let Some(container) = app.container.as_mut() else {
                return Err(Error::Invalid(format!(
                    "the app {name} runs elsewhere (--upstream), not in a container of ours"
                )));
            };
            container.enabled = enabled;
            table.insert(name.as_str(), encode("an app", &app)?.as_slice())?;
            Ok(app)
        })
    }

    /// Removes an app; [`Error::NotFound`] if there is none of that name.
    pub fn remove_app(&self, name: &str) -> Result<App, Error> {
        let name = name.to_ascii_lowercase();
        self.write(|txn| {
            let mut table = txn.open_table(APPS)?;
            let removed = table.remove(name.as_str())?;
            decode_opt("an app", removed)?.ok_or_else(|| Error::NotFound(format!("the app {name}")))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn apps_are_added_found_by_host_and_removed() {
        let (_dir, store) = crate::test_util::store();
        let app = store
            .add_app("wiki", "Wiki.Example.org", "127.0.0.1:8080")
            .unwrap();
        assert_eq!(app.host, "wiki.example.org");
        assert!(matches!(
            store.add_app("wiki", "other.example.org", "127.0.0.1:1"),
            Err(Error::Exists(_))
        ));
        assert!(matches!(
            store.add_app("wiki2", "wiki.example.org", "127.0.0.1:1"),
            Err(Error::Exists(_))
        ));
        for (name, host, upstream) in [
            ("Bad Name", "a.example.org", "h:1"),
            ("ok", "nodot", "h:1"),
            ("ok", "a.example.org", "noport"),
            ("ok", "a.example.org", "h:0"),
        ] {
            assert!(matches!(
                store.add_app(name, host, upstream),
                Err(Error::Invalid(_))
            ));
        }
        assert_eq!(
            store.app_by_host("wiki.example.org").unwrap().unwrap().name,
            "wiki"
        );
        // An update keeps the name and checks like an add.
        let moved = store
            .update_app("wiki", "docs.example.org", "127.0.0.1:9090")
            .unwrap();
        assert_eq!(moved.host, "docs.example.org");
        assert_eq!(moved.upstream, "127.0.0.1:9090");
        assert!(matches!(
            store.update_app("wiki", "docs.example.org", "x"),
            Err(Error::Invalid(_))
        ));
        assert!(matches!(
            store.update_app("nope", "n.example.org", "h:1"),
            Err(Error::NotFound(_))
        ));
        store
            .update_app("wiki", "wiki.example.org", "127.0.0.1:8080")
            .unwrap();
        assert_eq!(store.apps().unwrap().len(), 1);
        store.remove_app("wiki").unwrap();
        assert!(matches!(store.remove_app("wiki"), Err(Error::NotFound(_))));
        assert_eq!(store.app_by_host("wiki.example.org").unwrap(), None);
    }
}
