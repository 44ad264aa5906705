//! Running a user's script on one message at delivery: pure. The script's questions
//! (does this mailbox exist, was this id seen, what is the included script) go to a
//! [`Host`] that only looks things up; what the script decides comes back as
//! [`Action`]s for delivery to apply. A runtime error throws the actions away and keeps
//! the message in INBOX: mail is never lost because of a script.

use std::sync::Arc;

use sieve_engine::compiler::grammar::actions::action_redirect::Notify;
use sieve_engine::{Event, Input, Mailbox, Recipient, Script, SpamStatus};

use crate::script::Engine;

/// What the script may ask the server while it runs.
pub trait Host {
    /// The text of the account's script `name`, for `include` (RFC 6609); `global`
    /// asks for a server-wide script, which Postern does not have.
    fn script(&self, name: &str, global: bool) -> Option<String>;
    /// Whether the account has the mailbox (RFC 5490 `mailboxexists`).
    fn mailbox_exists(&self, name: &str) -> bool;
    /// Whether the account has a mailbox with the special use (RFC 8579).
    fn special_use_exists(&self, special_use: &str) -> bool;
    /// Whether `id` was remembered and has not expired (vacation, `duplicate`).
    fn seen(&self, id: &str) -> bool;
}

/// The message and its envelope as the script sees them.
#[derive(Debug, Clone)]
pub struct Delivery<'a> {
    /// The message as it will be stored.
    pub message: &'a [u8],
    /// The envelope sender (`""` for the null sender).
    pub envelope_from: &'a str,
    /// The envelope recipient that led to this account, as the client gave it (with
    /// any `+detail`, for the `subaddress` extension).
    pub envelope_to: &'a str,
    /// The account's own address: vacation never answers it and uses it as From.
    pub user_address: &'a str,
    /// The spam scanner's verdict, for `spamtest` (RFC 5235).
    pub spam: Spam,
}

/// The spam verdict on the message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Spam {
    /// Not scanned.
    Unknown,
    /// Scanned: the scanner's score and its spam threshold (SpamAssassin's `score=` and
    /// `required=`), and whether it called the message spam.
    Scanned {
        /// The score.
        score: f64,
        /// The threshold.
        required: f64,
        /// The verdict (`X-Spam-Flag: YES`).
        spam: bool,
    },
}

impl Spam {
    /// RFC 5235 §3.2: 1 is clearly not spam, 10 clearly spam, in between by how far the
    /// score has come towards twice the threshold.
    fn status(self) -> SpamStatus {
        match self {
            Spam::Unknown => SpamStatus::Unknown,
            Spam::Scanned {
                score,
                required,
                spam,
            } => {
                let required = if required > 0.0 { required } else { 5.0 };
                if score <= 0.0 && !spam {
                    SpamStatus::Ham
                } else if score >= 2.0 * required {
                    SpamStatus::Spam
                } else {
                    let ratio = (score / (2.0 * required)).clamp(0.0, 1.0);
                    // A verdict of spam is never reported as "probably not".
                    SpamStatus::MaybeSpam(if spam { ratio.max(0.5) } else { ratio })
                }
            }
        }
    }
}

/// One thing the script decided. `message` indexes [`Outcome::messages`]; 0 is the
/// message as delivered, others were made by the script (edited headers, replies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Store the message in INBOX (explicit or implicit keep) with these flags.
    Keep {
        /// IMAP flags and keywords (RFC 5232).
        flags: Vec<String>,
        /// Which message.
        message: usize,
    },
    /// Store the message in a mailbox.
    FileInto {
        /// The mailbox name (UTF-8, `/`-separated as IMAP shows it).
        mailbox: String,
        /// A special use (RFC 8579 `:specialuse`) to prefer over the name.
        special_use: Option<String>,
        /// Create the mailbox if it is missing (RFC 5490 `:create`).
        create: bool,
        /// IMAP flags and keywords.
        flags: Vec<String>,
        /// Which message.
        message: usize,
    },
    /// Send the message on to another address (RFC 5228 §4.2).
    Redirect {
        /// The address.
        address: String,
        /// Which message.
        message: usize,
    },
    /// Refuse the message (RFC 5429); `extended` for `ereject`.
    Reject {
        /// The reason given to the sender.
        reason: String,
        /// `ereject`: refuse in the SMTP dialogue when at all possible.
        extended: bool,
    },
    /// Send an automatic reply (RFC 5230) built by the engine.
    Reply {
        /// The address to answer.
        to: String,
        /// Which message (a reply the engine made).
        message: usize,
    },
    /// Remember an id until it expires (vacation's per-sender record, RFC 7352).
    Remember {
        /// The id.
        id: String,
        /// Seconds to remember it.
        seconds: u64,
    },
}

/// What a run produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The actions, in the order the script took them. No `Keep` and no `FileInto`
    /// means the message is discarded (or only redirected or rejected).
    pub actions: Vec<Action>,
    /// Messages the script made, by index (index 0 is empty: the delivered message).
    pub messages: Vec<Vec<u8>>,
    /// The runtime error that made the run keep the message in INBOX instead.
    pub error: Option<String>,
}

impl Outcome {
    /// The bytes of message `index`: `original` for 0.
    pub fn message<'a>(&'a self, index: usize, original: &'a [u8]) -> &'a [u8] {
        match index {
            0 => original,
            i => self.messages.get(i).map_or(original, Vec::as_slice),
        }
    }

    /// The outcome of a run that failed: keep the delivered message in INBOX.
    fn failed(error: String) -> Outcome {
        Outcome {
            actions: vec![Action::Keep {
                flags: Vec::new(),
                message: 0,
            }],
            messages: Vec::new(),
            error: Some(error),
        }
    }
}

/// The most events one run may produce, whatever the engine's own limits say.
const MAX_EVENTS: usize = 10_000;

impl Engine {
    /// Runs `script` (the account's active script, `name`) on a delivery.
    pub fn run(
        &self,
        name: &str,
        script: Arc<sieve_engine::Sieve>,
        delivery: &Delivery<'_>,
        host: &dyn Host,
    ) -> Outcome {
        let mut context = self
            .runtime
            .filter(delivery.message)
            .with_user_address(delivery.user_address)
            .with_spam_status(delivery.spam.status())
            .with_envelope(sieve_engine::Envelope::From, delivery.envelope_from)
            .with_envelope(sieve_engine::Envelope::To, delivery.envelope_to);
        let mut input = Input::script(name, script);
        let mut outcome = Outcome {
            messages: vec![Vec::new()],
            ..Outcome::default()
        };
        let mut includes = 0usize;
        for _ in 0..MAX_EVENTS {
            let Some(result) = context.run(input) else {
                return outcome;
            };
            let event = match result {
                Ok(event) => event,
                Err(e) => return Outcome::failed(runtime_error(&e)),
            };
            input = Input::True;
            match event {
                Event::IncludeScript { name, optional } => {
                    let (script_name, global) = match &name {
                        Script::Personal(n) => (n.clone(), false),
                        Script::Global(n) => (n.clone(), true),
                    };
                    includes += 1;
                    let found = (includes <= self.config.max_includes * 8)
                        .then(|| host.script(&script_name, global))
                        .flatten();
                    match found.map(|text| self.compile(&text)) {
                        Some(Ok(compiled)) => input = Input::script(name, compiled),
                        Some(Err(e)) => {
                            return Outcome::failed(format!(
                                "the included script {script_name:?} is invalid: {e}"
                            ));
                        }
                        None if optional => input = Input::False,
                        None => {
                            return Outcome::failed(format!(
                                "the included script {script_name:?} does not exist"
                            ));
                        }
                    }
                }
                Event::MailboxExists {
                    mailboxes,
                    special_use,
                } => {
                    let all = mailboxes.iter().all(|m| match m {
                        Mailbox::Name(n) => host.mailbox_exists(n),
                        Mailbox::Id(_) => false,
                    }) && special_use.iter().all(|s| host.special_use_exists(s));
                    input = all.into();
                }
                Event::ListContains { .. } => input = Input::False,
                Event::DuplicateId { id, expiry, .. } => {
                    input = host.seen(&id).into();
                    outcome.actions.push(Action::Remember {
                        id,
                        seconds: expiry,
                    });
                }
                Event::SetEnvelope { .. } => {}
                Event::Function { .. } => input = Input::result(String::new().into()),
                Event::Keep { flags, message_id } => outcome.actions.push(Action::Keep {
                    flags,
                    message: message_id,
                }),
                Event::Discard => {}
                Event::Reject { extended, reason } => {
                    outcome.actions.push(Action::Reject { reason, extended })
                }
                Event::FileInto {
                    folder,
                    flags,
                    special_use,
                    create,
                    message_id,
                    ..
                } => outcome.actions.push(Action::FileInto {
                    mailbox: folder,
                    special_use,
                    create,
                    flags,
                    message: message_id,
                }),
                Event::SendMessage {
                    recipient,
                    notify,
                    message_id,
                    ..
                } => {
                    let address = match recipient {
                        Recipient::Address(a) => a,
                        Recipient::List(_) | Recipient::Group(_) => continue,
                    };
                    // Redirect carries the `:notify` of redirect-dsn, not offered here, so
                    // always Default; the engine's vacation reply asks for Never.
                    outcome.actions.push(if notify == Notify::Never {
                        Action::Reply {
                            to: address,
                            message: message_id,
                        }
                    } else {
                        Action::Redirect {
                            address,
                            message: message_id,
                        }
                    });
                }
                Event::Notify { .. } => {}
                Event::CreatedMessage {
                    message_id,
                    message,
                } => {
                    if outcome.messages.len() <= message_id {
                        outcome.messages.resize(message_id + 1, Vec::new());
                    }
                    outcome.messages[message_id] = message;
                }
            }
        }
        Outcome::failed(format!("the script produced more than {MAX_EVENTS} events"))
    }
}

fn runtime_error(e: &sieve_engine::runtime::RuntimeError) -> String {
    use sieve_engine::runtime::RuntimeError;
    match e {
        RuntimeError::TooManyIncludes => "too many nested includes".into(),
        RuntimeError::InvalidInstruction(i) => format!(
            "{} cannot run here (line {}, column {})",
            i.name(),
            i.line_num(),
            i.line_pos()
        ),
        RuntimeError::ScriptErrorMessage(m) => format!("the script stopped with error {m:?}"),
        RuntimeError::CapabilityNotAllowed(c) => format!("the extension {c} is not offered"),
        RuntimeError::CapabilityNotSupported(c) => format!("the extension {c} is unknown"),
        RuntimeError::CPULimitReached => "the script ran out of instructions".into(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::SieveConfig;
    use std::collections::HashSet;

    #[derive(Default)]
    struct TestHost {
        mailboxes: HashSet<String>,
        seen: HashSet<String>,
        scripts: Vec<(String, String)>,
    }

    impl Host for TestHost {
        fn script(&self, name: &str, _global: bool) -> Option<String> {
            self.scripts
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t.clone())
        }
        fn mailbox_exists(&self, name: &str) -> bool {
            self.mailboxes.contains(name)
        }
        fn special_use_exists(&self, _: &str) -> bool {
            true
        }
        fn seen(&self, id: &str) -> bool {
            self.seen.contains(id)
        }
    }

    const MESSAGE: &[u8] = b"Received: from x by y; Fri, 27 Nov 2026 08:00:00 +0000\r\nFrom: Ann <ann@remote.test>\r\nTo: bob@example.org\r\nSubject: hello\r\nList-Id: <news.remote.test>\r\n\r\nbody text\r\n";

    fn run_with(script: &str, host: &TestHost, spam: Spam) -> Outcome {
        let engine = Engine::new(&SieveConfig::default(), "mx.example.org");
        let compiled = engine.compile(script).unwrap();
        let delivery = Delivery {
            message: MESSAGE,
            envelope_from: "ann@remote.test",
            envelope_to: "bob+news@example.org",
            user_address: "bob@example.org",
            spam,
        };
        engine.run("main", compiled, &delivery, host)
    }

    fn run(script: &str) -> Outcome {
        run_with(script, &TestHost::default(), Spam::Unknown)
    }

    #[test]
    fn no_script_actions_means_implicit_keep() {
        assert_eq!(
            run("# nothing\n").actions,
            vec![Action::Keep {
                flags: vec![],
                message: 0
            }]
        );
    }

    #[test]
    fn fileinto_with_flags_and_create() {
        let out = run(
            "require [\"fileinto\", \"imap4flags\", \"mailbox\"];\nif header :contains \"List-Id\" \"news\" { fileinto :create :flags \"\\\\Flagged\" \"Lists/News\"; stop; }\n",
        );
        assert_eq!(
            out.actions,
            vec![Action::FileInto {
                mailbox: "Lists/News".into(),
                special_use: None,
                create: true,
                flags: vec!["\\Flagged".into()],
                message: 0
            }]
        );
    }

    #[test]
    fn subaddress_and_envelope() {
        let out = run(
            "require [\"envelope\", \"subaddress\", \"fileinto\"];\nif envelope :detail \"to\" \"news\" { fileinto \"Detail\"; }\nif envelope :domain \"from\" \"remote.test\" { discard; }\n",
        );
        assert_eq!(
            out.actions,
            vec![Action::FileInto {
                mailbox: "Detail".into(),
                special_use: None,
                create: false,
                flags: vec![],
                message: 0
            }]
        );
    }

    #[test]
    fn reject_and_discard_cancel_keep() {
        let out = run("require \"reject\";\nreject \"go away\";\n");
        assert_eq!(
            out.actions,
            vec![Action::Reject {
                reason: "go away".into(),
                extended: false
            }]
        );
        assert!(run("discard;").actions.is_empty());
    }

    #[test]
    fn redirect_and_vacation_are_told_apart() {
        let out = run("redirect \"carol@other.test\";\n");
        assert_eq!(
            out.actions,
            vec![Action::Redirect {
                address: "carol@other.test".into(),
                message: 0
            }]
        );
        // The message names bob in To: but carries List-Id: no vacation reply.
        let out = run("require \"vacation\";\nvacation :days 3 \"away\";\n");
        assert!(
            !out.actions
                .iter()
                .any(|a| matches!(a, Action::Reply { .. })),
            "{out:?}"
        );
    }

    #[test]
    fn vacation_replies_once() {
        let script = "require \"vacation\";\nif header :contains \"subject\" \"hello\" { vacation :days 3 :subject \"Out\" \"I am away\"; }\n";
        let engine = Engine::new(&SieveConfig::default(), "mx.example.org");
        let compiled = engine.compile(script).unwrap();
        let message = b"From: Ann <ann@remote.test>\r\nTo: bob@example.org\r\nSubject: hello\r\nMessage-ID: <1@remote.test>\r\n\r\nhi\r\n";
        let delivery = Delivery {
            message,
            envelope_from: "ann@remote.test",
            envelope_to: "bob@example.org",
            user_address: "bob@example.org",
            spam: Spam::Unknown,
        };
        let mut host = TestHost::default();
        let out = engine.run("v", compiled.clone(), &delivery, &host);
        let (to, index) = out
            .actions
            .iter()
            .find_map(|a| match a {
                Action::Reply { to, message } => Some((to.clone(), *message)),
                _ => None,
            })
            .unwrap();
        assert_eq!(to, "ann@remote.test");
        let reply = String::from_utf8_lossy(out.message(index, message)).to_string();
        assert!(reply.contains("Auto-Submitted: auto-replied"), "{reply}");
        assert!(reply.contains("In-Reply-To: <1@remote.test>"), "{reply}");
        assert!(reply.contains("I am away"), "{reply}");
        let id = out
            .actions
            .iter()
            .find_map(|a| match a {
                Action::Remember { id, seconds } => {
                    assert_eq!(*seconds, 3 * 86400);
                    Some(id.clone())
                }
                _ => None,
            })
            .unwrap();
        assert!(out.actions.contains(&Action::Keep {
            flags: vec![],
            message: 0
        }));
        host.seen.insert(id);
        let again = engine.run("v", compiled, &delivery, &host);
        assert!(
            !again
                .actions
                .iter()
                .any(|a| matches!(a, Action::Reply { .. })),
            "{again:?}"
        );
    }

    #[test]
    fn runtime_errors_keep_in_inbox() {
        let config = SieveConfig {
            max_instructions: 50,
            ..SieveConfig::default()
        };
        let engine = Engine::new(&config, "h");
        let mut script = String::from("require \"fileinto\";\nfileinto \"Never\";\n");
        for _ in 0..100 {
            script.push_str("if header :contains \"subject\" \"zzz\" { stop; }\n");
        }
        let compiled = engine.compile(&script).unwrap();
        let delivery = Delivery {
            message: MESSAGE,
            envelope_from: "",
            envelope_to: "bob@example.org",
            user_address: "bob@example.org",
            spam: Spam::Unknown,
        };
        let out = engine.run("x", compiled, &delivery, &TestHost::default());
        assert_eq!(
            out.actions,
            vec![Action::Keep {
                flags: vec![],
                message: 0
            }]
        );
        assert_eq!(
            out.error.as_deref(),
            Some("the script ran out of instructions")
        );
    }

    #[test]
    fn editheader_makes_a_new_message() {
        let out = run(
            "require \"editheader\";\naddheader \"X-Filtered\" \"yes\";\ndeleteheader \"List-Id\";\n",
        );
        let Some(Action::Keep { message, .. }) = out.actions.first() else {
            panic!("{out:?}");
        };
        assert!(*message > 0);
        let edited = String::from_utf8_lossy(out.message(*message, MESSAGE)).to_string();
        assert!(edited.starts_with("X-Filtered: yes\r\n"), "{edited}");
        assert!(!edited.contains("List-Id"), "{edited}");
    }

    #[test]
    fn spamtest_reads_the_verdict() {
        let script = "require [\"spamtest\", \"relational\", \"comparator-i;ascii-numeric\", \"fileinto\"];\nif spamtest :value \"ge\" :comparator \"i;ascii-numeric\" \"6\" { fileinto \"Junk\"; }\n";
        let spam = Spam::Scanned {
            score: 8.0,
            required: 5.0,
            spam: true,
        };
        let ham = Spam::Scanned {
            score: 1.0,
            required: 5.0,
            spam: false,
        };
        let host = TestHost::default();
        assert!(matches!(
            run_with(script, &host, spam).actions.as_slice(),
            [Action::FileInto { .. }]
        ));
        assert!(matches!(
            run_with(script, &host, ham).actions.as_slice(),
            [Action::Keep { .. }]
        ));
    }

    #[test]
    fn include_and_mailboxexists_ask_the_host() {
        let mut host = TestHost::default();
        host.scripts.push((
            "lists".into(),
            "require \"fileinto\";\nfileinto \"FromInclude\";\n".into(),
        ));
        host.mailboxes.insert("Exists".into());
        let out = run_with(
            "require [\"include\", \"mailbox\", \"fileinto\"];\ninclude :personal \"lists\";\nif mailboxexists \"Exists\" { fileinto \"Exists\"; }\nif mailboxexists \"Missing\" { fileinto \"Missing\"; }\n",
            &host,
            Spam::Unknown,
        );
        let boxes: Vec<_> = out
            .actions
            .iter()
            .filter_map(|a| match a {
                Action::FileInto { mailbox, .. } => Some(mailbox.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(boxes, vec!["FromInclude", "Exists"]);
        let out = run("require \"include\";\ninclude \"missing\";\n");
        assert!(out.error.unwrap().contains("does not exist"));
    }
}
