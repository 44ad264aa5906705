//! ManageSieve (RFC 5804), sans-socket: fed bytes, returning replies.
//!
//! [`parse`] reads the grammar incrementally (atoms, quoted strings, both literal
//! forms), [`command`] types each line, [`core`] holds the state and the one table of
//! what is allowed when, and `op/` has one file per command. Store, password and
//! compiler work runs on a blocking thread. See `docs/managesieve.md`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::net::{self, Action, ConnInfo, Output};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod command;
pub mod core;
pub mod error;
pub mod op;
pub mod parse;
pub mod reply;

pub use self::core::{Core, Next, State, Waiting};
pub use command::Command;
pub use error::Error;

use parse::{Event, Fatal, Limit, Parser};

/// `[managesieve]`: filter management for mail clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Addresses for ManageSieve (port 4190, STARTTLS; AUTH only after TLS). Empty:
    /// none.
    pub listen: Vec<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![SocketAddr::from(([0u16; 8], 4190))],
        }
    }
}

/// Refused commands (syntax errors, unknown commands, wrong arguments, commands
/// before authentication) one connection may send before it is closed with `BYE`.
pub const MAX_BAD_COMMANDS: u32 = 10;

/// The largest literal taken before authentication (a SASL response needs little);
/// a larger one ends the connection.
pub const MAX_LITERAL_UNAUTHENTICATED: usize = 8 * 1024;

/// What an authenticated client's literal may exceed `[sieve] max_script_bytes` by
/// (a script of exactly the limit, and room for the RFC's own checks to answer).
pub const LITERAL_SLACK: usize = 1024;

/// The ManageSieve protocol for the network driver.
#[derive(Debug, Clone)]
pub struct ManageSieve {
    store: Arc<store::Store>,
    auth: Arc<store::login::Authenticator>,
    engine: Arc<crate::Engine>,
}

impl ManageSieve {
    /// The protocol, with the store holding the scripts, the login checker (limiter and
    /// activity log) and the engine that checks scripts.
    pub fn new(
        store: Arc<store::Store>,
        auth: Arc<store::login::Authenticator>,
        engine: Arc<crate::Engine>,
    ) -> ManageSieve {
        ManageSieve {
            store,
            auth,
            engine,
        }
    }
}

impl net::Protocol for ManageSieve {
    type Session = Session;

    fn open(&self, info: &ConnInfo) -> Session {
        Session {
            core: Some(Core {
                store: self.store.clone(),
                auth: self.auth.clone(),
                engine: self.engine.clone(),
                peer: info.peer.ip(),
                tls: info.tls,
                starttls: info.starttls,
                account: None,
                waiting: Waiting::Command,
            }),
            parser: Parser::new(),
            bad_commands: 0,
            capability_owed: false,
        }
    }

    fn busy(&self) -> &'static [u8] {
        b"BYE (TRYLATER) \"Too many connections from your address, try again later\"\r\n"
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(30 * 60)
    }
}

/// One ManageSieve conversation.
#[derive(Debug)]
pub struct Session {
    /// The logic; `None` only while a command runs on a blocking thread.
    core: Option<Core>,
    parser: Parser,
    bad_commands: u32,
    /// RFC 5804 §2.2: after the TLS handshake the server sends its capabilities
    /// unprompted; set by [`net::Session::tls_started`], cleared once sent.
    capability_owed: bool,
}

/// Work for the core on a blocking thread.
type Job = Box<dyn FnOnce(&mut Core, &mut Vec<u8>) -> Next + Send>;

impl Session {
    /// Runs `job` on the core on a blocking thread; `None` if it panicked.
    async fn run(&mut self, job: Job) -> Option<(Vec<u8>, Next)> {
        net::run_blocking(&mut self.core, "managesieve", move |core| {
            let mut out = Vec::new();
            let next = job(core, &mut out);
            (out, next)
        })
        .await
    }

    /// The literal limit for the current state: before authentication small, and a
    /// larger literal closes the connection; after, the script limit plus
    /// [`LITERAL_SLACK`], and a larger literal is read, dropped and refused.
    fn limit(&self) -> Limit {
        match &self.core {
            Some(core) if core.account.is_some() => Limit {
                max_literal: core.engine.config().max_script_bytes + LITERAL_SLACK,
                drop_oversized: true,
            },
            _ => Limit {
                max_literal: MAX_LITERAL_UNAUTHENTICATED,
                drop_oversized: false,
            },
        }
    }

    /// Counts a refused command; `true` when that was one too many.
    fn bad_command(&mut self) -> bool {
        self.bad_commands += 1;
        self.bad_commands >= MAX_BAD_COMMANDS
    }

    /// Runs the commands the parser holds, answers appended to `reply`; stops with
    /// [`Action::More`] once about a chunk of output is waiting.
    async fn process(&mut self, mut reply: Vec<u8>) -> Output {
        loop {
            if reply.len() >= net::OUTPUT_CHUNK {
                return Output::more(reply);
            }
            let event = match self.parser.next(self.limit()) {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(fatal) => {
                    let code = match fatal {
                        Fatal::LiteralTooBig { .. } => Some("QUOTA/MAXSIZE"),
                        Fatal::LineTooLong => None,
                    };
                    let text = format!("{fatal}: closing the connection");
                    reply::bye(&mut reply, code, &text);
                    return Output::close(reply);
                }
            };
            let waiting = self.core.as_ref().map_or(Waiting::Command, |c| c.waiting);
            let job: Job = match (event, waiting) {
                (Event::Command(args), Waiting::SaslResponse) => Box::new(move |core, out| {
                    if let Err(e) = op::authenticate::response(core, &args, out) {
                        e.reply(out);
                    }
                    Next::Continue
                }),
                // An empty line is no command: nothing to answer.
                (Event::Command(args), Waiting::Command) if args.is_empty() => continue,
                (Event::Command(args), Waiting::Command) => {
                    let checked = Command::parse(args).and_then(|command| {
                        let state = self
                            .core
                            .as_ref()
                            .map_or(State::NotAuthenticated, Core::state);
                        core::allowed(state, &command).map(|()| command)
                    });
                    match checked {
                        Ok(command) => Box::new(move |core, out| core.execute(command, out)),
                        Err(e) => {
                            e.reply(&mut reply);
                            if e.is_bad_command() && self.bad_command() {
                                reply::bye(&mut reply, None, "Too many bad commands");
                                return Output::close(reply);
                            }
                            continue;
                        }
                    }
                }
                (Event::Refused(e), waiting) => {
                    if let Some(core) = self.core.as_mut() {
                        // A broken line instead of the SASL response ends the exchange.
                        if waiting == Waiting::SaslResponse {
                            core.waiting = Waiting::Command;
                        }
                    }
                    Error::Syntax(e).reply(&mut reply);
                    if self.bad_command() {
                        reply::bye(&mut reply, None, "Too many bad commands");
                        return Output::close(reply);
                    }
                    continue;
                }
            };
            let Some((out, next)) = self.run(job).await else {
                reply::bye(&mut reply, None, "Internal server error");
                return Output::close(reply);
            };
            reply.extend(out);
            match next {
                Next::Continue => {}
                Next::Close => return Output::close(reply),
                Next::StartTls => {
                    // RFC 5804 §2.2 (as RFC 3207 §4.2): input pipelined after STARTTLS
                    // came in the clear and is dropped.
                    self.parser.reset();
                    return Output {
                        reply,
                        action: Action::StartTls,
                    };
                }
            }
        }
        Output::reply(reply)
    }

    /// The capability list owed after STARTTLS, if still owed.
    fn owed_capability(&mut self) -> Vec<u8> {
        match &self.core {
            Some(core) if self.capability_owed => {
                self.capability_owed = false;
                let mut out = op::capability::lines(core);
                reply::ok(&mut out, None, "TLS negotiation successful");
                out
            }
            _ => Vec::new(),
        }
    }
}

impl net::Session for Session {
    fn greeting(&mut self) -> Vec<u8> {
        self.core
            .as_ref()
            .map(op::capability::greeting)
            .unwrap_or_default()
    }

    async fn receive(&mut self, input: &[u8]) -> Output {
        let reply = self.owed_capability();
        self.parser.push(input);
        self.process(reply).await
    }

    /// The commands pipelined after an answer that filled a chunk.
    async fn resume(&mut self) -> Output {
        self.process(Vec::new()).await
    }

    /// Between commands with nothing half-received: at shutdown it is told at once.
    fn at_rest(&self) -> bool {
        self.parser.is_idle()
            && !self.capability_owed
            && self
                .core
                .as_ref()
                .is_some_and(|c| c.waiting == Waiting::Command)
    }

    fn tls_started(&mut self) {
        if let Some(core) = self.core.as_mut() {
            core.tls = true;
        }
        self.capability_owed = true;
    }

    fn shutting_down(&mut self) -> Vec<u8> {
        b"BYE (TRYLATER) \"Server shutting down\"\r\n".to_vec()
    }

    fn timed_out(&mut self) -> Vec<u8> {
        b"BYE \"Idle for too long\"\r\n".to_vec()
    }

    /// After STARTTLS: the capability list, at once (RFC 5804 §2.2). Cancel-safe: it
    /// awaits nothing before taking the owed list, and a client command that arrives
    /// first gets the list ahead of its reply from [`net::Session::receive`].
    async fn unsolicited(&mut self) -> Vec<u8> {
        let owed = self.owed_capability();
        if owed.is_empty() {
            std::future::pending::<()>().await;
        }
        owed
    }
}
