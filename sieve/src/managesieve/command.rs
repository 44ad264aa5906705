//! ManageSieve commands (RFC 5804 §2), typed from the parsed arguments.

use super::error::Error;
use super::parse::Arg;

/// One client command. Names and scripts are bytes as sent; each command checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// RFC 5804 §2.4.
    Capability,
    /// RFC 5804 §2.3.
    Logout,
    /// RFC 5804 §2.13: with the tag to echo, if any.
    Noop {
        /// The tag string, echoed in `OK (TAG ...)`.
        tag: Option<Vec<u8>>,
    },
    /// RFC 5804 §2.2.
    StartTls,
    /// RFC 5804 §2.1.
    Authenticate {
        /// The SASL mechanism's name.
        mechanism: Vec<u8>,
        /// The initial response (base64), if sent with the command.
        initial: Option<Vec<u8>>,
    },
    /// RFC 5804 §2.14.1.
    Unauthenticate,
    /// RFC 5804 §2.5.
    HaveSpace {
        /// The script's name.
        name: Vec<u8>,
        /// The size it would have.
        size: u64,
    },
    /// RFC 5804 §2.6.
    PutScript {
        /// The script's name.
        name: Vec<u8>,
        /// Its text.
        script: Vec<u8>,
    },
    /// RFC 5804 §2.12.
    CheckScript {
        /// The text to check.
        script: Vec<u8>,
    },
    /// RFC 5804 §2.7.
    ListScripts,
    /// RFC 5804 §2.8: an empty name deactivates.
    SetActive {
        /// The script to make active, or empty.
        name: Vec<u8>,
    },
    /// RFC 5804 §2.9.
    GetScript {
        /// The script's name.
        name: Vec<u8>,
    },
    /// RFC 5804 §2.10.
    DeleteScript {
        /// The script's name.
        name: Vec<u8>,
    },
    /// RFC 5804 §2.11.1.
    RenameScript {
        /// The current name.
        old: Vec<u8>,
        /// The new name.
        new: Vec<u8>,
    },
}

impl Command {
    /// Types a command line (non-empty). Command names are case-insensitive
    /// (RFC 5804 §4).
    pub fn parse(args: Vec<Arg>) -> Result<Command, Error> {
        let mut args = args.into_iter();
        let Some(Arg::Atom(verb)) = args.next() else {
            return Err(Error::UnknownCommand);
        };
        let verb = verb.to_ascii_uppercase();
        let rest: Vec<Arg> = args.collect();
        let bad = |name: &'static str, want: &'static str| Err(Error::Arguments(name, want));
        match verb.as_str() {
            "CAPABILITY" => match rest.as_slice() {
                [] => Ok(Command::Capability),
                _ => bad("CAPABILITY", "none expected"),
            },
            "LOGOUT" => match rest.as_slice() {
                [] => Ok(Command::Logout),
                _ => bad("LOGOUT", "none expected"),
            },
            "STARTTLS" => match rest.as_slice() {
                [] => Ok(Command::StartTls),
                _ => bad("STARTTLS", "none expected"),
            },
            "UNAUTHENTICATE" => match rest.as_slice() {
                [] => Ok(Command::Unauthenticate),
                _ => bad("UNAUTHENTICATE", "none expected"),
            },
            "LISTSCRIPTS" => match rest.as_slice() {
                [] => Ok(Command::ListScripts),
                _ => bad("LISTSCRIPTS", "none expected"),
            },
            "NOOP" => match rest.as_slice() {
                [] => Ok(Command::Noop { tag: None }),
                [Arg::String(tag)] => Ok(Command::Noop {
                    tag: Some(tag.clone()),
                }),
                _ => bad("NOOP", "an optional tag string expected"),
            },
            // RFC 5804 §4: authenticate = "AUTHENTICATE" SP auth-type [SP string]; the
            // mechanism is taken as an atom too.
            "AUTHENTICATE" => {
                let mut rest = rest.into_iter();
                let mechanism = match rest.next() {
                    Some(Arg::String(m)) => m,
                    Some(Arg::Atom(m)) => m.into_bytes(),
                    None => return bad("AUTHENTICATE", "a mechanism expected"),
                };
                match (rest.next(), rest.next()) {
                    (None, _) => Ok(Command::Authenticate {
                        mechanism,
                        initial: None,
                    }),
                    (Some(Arg::String(initial)), None) => Ok(Command::Authenticate {
                        mechanism,
                        initial: Some(initial),
                    }),
                    _ => bad(
                        "AUTHENTICATE",
                        "a mechanism and an optional initial response string expected",
                    ),
                }
            }
            "HAVESPACE" => match rest.as_slice() {
                [Arg::String(name), Arg::Atom(size)] => match number(size) {
                    Some(size) => Ok(Command::HaveSpace {
                        name: name.clone(),
                        size,
                    }),
                    None => bad("HAVESPACE", "the size must be a number"),
                },
                _ => bad("HAVESPACE", "a name string and a size number expected"),
            },
            "PUTSCRIPT" => match <[Arg; 2]>::try_from(rest) {
                Ok([Arg::String(name), Arg::String(script)]) => {
                    Ok(Command::PutScript { name, script })
                }
                _ => bad("PUTSCRIPT", "a name string and a script string expected"),
            },
            "CHECKSCRIPT" => match <[Arg; 1]>::try_from(rest) {
                Ok([Arg::String(script)]) => Ok(Command::CheckScript { script }),
                _ => bad("CHECKSCRIPT", "a script string expected"),
            },
            "SETACTIVE" => match <[Arg; 1]>::try_from(rest) {
                Ok([Arg::String(name)]) => Ok(Command::SetActive { name }),
                _ => bad("SETACTIVE", "a name string expected"),
            },
            "GETSCRIPT" => match <[Arg; 1]>::try_from(rest) {
                Ok([Arg::String(name)]) => Ok(Command::GetScript { name }),
                _ => bad("GETSCRIPT", "a name string expected"),
            },
            "DELETESCRIPT" => match <[Arg; 1]>::try_from(rest) {
                Ok([Arg::String(name)]) => Ok(Command::DeleteScript { name }),
                _ => bad("DELETESCRIPT", "a name string expected"),
            },
            "RENAMESCRIPT" => match <[Arg; 2]>::try_from(rest) {
                Ok([Arg::String(old), Arg::String(new)]) => Ok(Command::RenameScript { old, new }),
                _ => bad("RENAMESCRIPT", "two name strings expected"),
            },
            _ => Err(Error::UnknownCommand),
        }
    }

    /// The command's name as the RFC spells it, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Capability => "CAPABILITY",
            Command::Logout => "LOGOUT",
            Command::Noop { .. } => "NOOP",
            Command::StartTls => "STARTTLS",
            Command::Authenticate { .. } => "AUTHENTICATE",
            Command::Unauthenticate => "UNAUTHENTICATE",
            Command::HaveSpace { .. } => "HAVESPACE",
            Command::PutScript { .. } => "PUTSCRIPT",
            Command::CheckScript { .. } => "CHECKSCRIPT",
            Command::ListScripts => "LISTSCRIPTS",
            Command::SetActive { .. } => "SETACTIVE",
            Command::GetScript { .. } => "GETSCRIPT",
            Command::DeleteScript { .. } => "DELETESCRIPT",
            Command::RenameScript { .. } => "RENAMESCRIPT",
        }
    }
}

/// RFC 5804 §4: `number = 1*DIGIT` below 2^32.
fn number(atom: &str) -> Option<u64> {
    if atom.is_empty() || !atom.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    atom.parse::<u64>()
        .ok()
        .filter(|n| *n <= u64::from(u32::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn a(s: &str) -> Arg {
        Arg::Atom(s.into())
    }

    fn s(s: &str) -> Arg {
        Arg::String(s.as_bytes().to_vec())
    }

    #[test]
    fn commands_are_typed_case_insensitively() {
        assert_eq!(
            Command::parse(vec![a("Putscript"), s("foo"), s("keep;")]),
            Ok(Command::PutScript {
                name: b"foo".to_vec(),
                script: b"keep;".to_vec()
            })
        );
        assert_eq!(
            Command::parse(vec![a("havespace"), s("x"), a("100")]),
            Ok(Command::HaveSpace {
                name: b"x".to_vec(),
                size: 100
            })
        );
        assert_eq!(
            Command::parse(vec![a("AUTHENTICATE"), s("PLAIN"), s("AGEAYg==")]),
            Ok(Command::Authenticate {
                mechanism: b"PLAIN".to_vec(),
                initial: Some(b"AGEAYg==".to_vec())
            })
        );
        assert_eq!(
            Command::parse(vec![a("noop"), s("t")]),
            Ok(Command::Noop {
                tag: Some(b"t".to_vec())
            })
        );
    }

    #[test]
    fn wrong_arguments_and_unknown_verbs_are_refused() {
        assert_eq!(Command::parse(vec![a("FROB")]), Err(Error::UnknownCommand));
        assert_eq!(
            Command::parse(vec![s("GETSCRIPT")]),
            Err(Error::UnknownCommand)
        );
        for args in [
            vec![a("GETSCRIPT")],
            vec![a("GETSCRIPT"), a("foo")],
            vec![a("HAVESPACE"), s("x"), a("-1")],
            vec![a("HAVESPACE"), s("x"), a("99999999999")],
            vec![a("PUTSCRIPT"), s("x")],
            vec![a("LISTSCRIPTS"), s("x")],
            vec![a("RENAMESCRIPT"), s("x"), s("y"), s("z")],
        ] {
            assert!(
                matches!(Command::parse(args.clone()), Err(Error::Arguments(..))),
                "{args:?}"
            );
        }
    }
}
