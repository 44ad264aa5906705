//! Compiling and checking scripts with sieve-rs, and the extensions Postern honours.
//!
//! The [`Engine`] holds the compiler and the runtime, both configured once from
//! `[sieve]`; it is shared by ManageSieve (checking uploads) and delivery (running).

use std::sync::Arc;

use sieve_engine::compiler::grammar::Capability;
use sieve_engine::compiler::grammar::Comparator;
use sieve_engine::{Compiler, Event, Input, Runtime, Sieve};

use crate::SieveConfig;

/// The extensions a script may `require`: exactly those that work end to end here.
/// Left out: enotify (no notification methods), redirect-dsn and redirect-deliverby,
/// envelope-dsn and envelope-deliverby, extlists, mailboxid, mboxmetadata,
/// servermetadata, imapsieve, virustest (no virus scanner), convert, and sieve-rs's
/// own vnd.stalwart extensions.
pub const EXTENSIONS: &[Capability] = &[
    Capability::FileInto,
    Capability::Reject,
    Capability::Ereject,
    Capability::Envelope,
    Capability::EncodedCharacter,
    Capability::Comparator(Comparator::AsciiNumeric),
    Capability::Comparator(Comparator::Octet),
    Capability::Comparator(Comparator::AsciiCaseMap),
    Capability::Imap4Flags,
    Capability::Copy,
    Capability::Body,
    Capability::Variables,
    Capability::Relational,
    Capability::SubAddress,
    Capability::Date,
    Capability::Index,
    Capability::Include,
    Capability::Environment,
    Capability::SpamTest,
    Capability::SpamTestPlus,
    Capability::Vacation,
    Capability::VacationSeconds,
    Capability::Fcc,
    Capability::EditHeader,
    Capability::Duplicate,
    Capability::Mailbox,
    Capability::SpecialUse,
    Capability::Ihave,
    Capability::Regex,
    Capability::Mime,
    Capability::ForEveryPart,
    Capability::ExtractText,
    Capability::Replace,
    Capability::Enclose,
];

/// The extension list as ManageSieve's `SIEVE` capability shows it (RFC 5804 §1.7):
/// space-separated, comparators as `comparator-<name>`.
pub fn extension_list() -> String {
    EXTENSIONS
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why a script was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The script is larger than `[sieve] max_script_bytes`.
    #[error("the script is {size} bytes, more than the limit of {max}")]
    TooBig {
        /// The script's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The script does not compile; line and column count from 1.
    #[error("line {line}, column {column}: {message}")]
    Syntax {
        /// The line of the error.
        line: usize,
        /// The column of the error.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The script requires an extension this server does not offer.
    #[error("the extension {0:?} is not supported here")]
    Unsupported(String),
    /// The script compiles but uses something Postern refuses ([`crate::lint`]).
    #[error("line {line}: {message}")]
    Refused {
        /// The line.
        line: usize,
        /// What is refused and why.
        message: String,
    },
}

/// The compiler and runtime, configured from `[sieve]`.
pub struct Engine {
    compiler: Compiler,
    pub(crate) runtime: Runtime,
    pub(crate) config: SieveConfig,
    /// What each account's scripts have sent this hour.
    generated: common::rate::KeyedBuckets<u64>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("config", &self.config)
            .finish()
    }
}

impl Engine {
    /// An engine with the limits of `config`; `hostname` names this server in the
    /// Message-IDs of vacation replies and in the `environment` extension.
    pub fn new(config: &SieveConfig, hostname: &str) -> Engine {
        let compiler = Compiler::new()
            .with_max_script_size(config.max_script_bytes)
            .with_max_includes(config.max_includes.max(1) * 4);
        let mut runtime = Runtime::new()
            .without_capabilities(
                Capability::all()
                    .iter()
                    .filter(|c| !EXTENSIONS.contains(c))
                    .cloned(),
            )
            .with_cpu_limit(config.max_instructions)
            .with_max_redirects(config.max_redirects)
            .with_max_nested_includes(config.max_includes)
            .with_max_out_messages(config.max_messages_out)
            // RFC 5228 §4.2 and RFC 5230 §4.1: a message that has come round this many
            // times is not sent on again.
            .with_max_received_headers(30)
            .with_local_hostname(hostname.to_string())
            // RFC 5293 §9: the trace and auto-reply headers cannot be edited.
            .with_protected_header("Received")
            .with_protected_header("Auto-Submitted")
            .with_protected_header("Delivered-To")
            .with_protected_header("Authentication-Results")
            .with_env_variable("name", "Postern")
            .with_env_variable("version", env!("CARGO_PKG_VERSION"))
            .with_env_variable("domain", hostname.to_string())
            .with_env_variable("host", hostname.to_string())
            .with_env_variable("phase", "during")
            .with_env_variable("location", "MDA");
        runtime.set_vacation_default_subject("Automatic reply");
        Engine {
            compiler,
            runtime,
            config: config.clone(),
            generated: common::rate::KeyedBuckets::per_period(
                config.max_generated_per_hour.max(1),
                std::time::Duration::from_secs(3600),
            ),
        }
    }

    /// Takes one message from the hourly allowance of `account`'s scripts
    /// (`[sieve] max_generated_per_hour`); false when it is used up.
    pub fn take_generated(&self, account: u64) -> bool {
        self.generated.acquire(&account).is_ok()
    }

    /// The limits this engine applies.
    pub fn config(&self) -> &SieveConfig {
        &self.config
    }

    /// Compiles `text`, refusing it if it is too large, does not compile, or requires
    /// an extension that is not in [`EXTENSIONS`].
    pub fn compile(&self, text: &str) -> Result<Arc<Sieve>, CheckError> {
        if text.len() > self.config.max_script_bytes {
            return Err(CheckError::TooBig {
                size: text.len(),
                max: self.config.max_script_bytes,
            });
        }
        if let Some(problem) = crate::lint::check(text).into_iter().next() {
            return Err(CheckError::Refused {
                line: problem.line,
                message: problem.message,
            });
        }
        let script = self.compiler.compile(text.as_bytes()).map_err(|e| {
            // sieve-rs's text ends with the position, which the error names itself.
            let text = e.to_string();
            let message = text
                .rsplit_once(" at line ")
                .map_or(text.as_str(), |(m, _)| m)
                .trim_end_matches('.')
                .to_string();
            CheckError::Syntax {
                line: e.line_num(),
                column: e.line_pos(),
                message,
            }
        })?;
        let script = Arc::new(script);
        self.check_requires(&script)?;
        Ok(script)
    }

    /// sieve-rs checks `require` against the runtime's allowed extensions only when the
    /// script runs: run it once on an empty message, answering every question, and
    /// look for that refusal. `require` comes before any other command (RFC 5228
    /// §3.2), so it is met first.
    fn check_requires(&self, script: &Arc<Sieve>) -> Result<(), CheckError> {
        use sieve_engine::runtime::RuntimeError;
        let mut context = self.runtime.filter(b"From: <check@invalid>\r\n\r\n");
        let mut input = Input::script("check", script.clone());
        for _ in 0..64 {
            let Some(result) = context.run(input) else {
                return Ok(());
            };
            input = match result {
                Err(RuntimeError::CapabilityNotAllowed(c)) => {
                    return Err(CheckError::Unsupported(c.to_string()));
                }
                Err(RuntimeError::CapabilityNotSupported(c)) => {
                    return Err(CheckError::Unsupported(c));
                }
                Err(_) => return Ok(()),
                Ok(Event::IncludeScript { .. }) => return Ok(()),
                Ok(Event::Function { .. }) => Input::result(String::new().into()),
                Ok(_) => Input::True,
            };
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn engine() -> Engine {
        Engine::new(&SieveConfig::default(), "mx.example.org")
    }

    #[test]
    fn good_scripts_compile() {
        let e = engine();
        e.compile("require [\"fileinto\", \"imap4flags\"];\nif header :contains \"List-Id\" \"x\" { fileinto \"Lists\"; addflag \"\\\\Seen\"; }\n").unwrap();
        e.compile(
            "require [\"vacation\", \"vacation-seconds\"];\nvacation :seconds 60 \"away\";\n",
        )
        .unwrap();
        e.compile("keep;").unwrap();
    }

    #[test]
    fn syntax_errors_name_line_and_column() {
        let err = engine()
            .compile("keep;\n\nif true {\n  fileinto \"x\"\n")
            .unwrap_err();
        match &err {
            CheckError::Syntax { line, .. } => assert_eq!(*line, 4, "{err}"),
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().starts_with("line 4, column"), "{err}");
    }

    #[test]
    fn unsupported_extensions_are_refused() {
        let e = engine();
        assert_eq!(
            e.compile("require \"enotify\";\nkeep;").unwrap_err(),
            CheckError::Unsupported("enotify".into())
        );
        assert_eq!(
            e.compile("require [\"fileinto\", \"x-unknown\"];\nkeep;")
                .unwrap_err(),
            CheckError::Unsupported("x-unknown".into())
        );
    }

    #[test]
    fn size_limit_is_enforced() {
        let config = SieveConfig {
            max_script_bytes: 10,
            ..SieveConfig::default()
        };
        let e = Engine::new(&config, "h");
        assert!(matches!(
            e.compile("keep; keep; keep;"),
            Err(CheckError::TooBig { size: 17, max: 10 })
        ));
    }

    #[test]
    fn extension_list_names_comparators() {
        let list = extension_list();
        assert!(
            list.starts_with("fileinto reject ereject envelope"),
            "{list}"
        );
        assert!(list.contains("comparator-i;ascii-numeric"), "{list}");
        assert!(!list.contains("enotify"), "{list}");
    }
}
