//! ManageSieve (RFC 5804), sans-socket: fed bytes, returning replies.
//!
//! This is the connection-level part later work builds on: the capability greeting,
//! CAPABILITY, NOOP, STARTTLS and LOGOUT. Authentication and script commands answer
//! `NO (TRYLATER)` until the script store lands.

use std::net::SocketAddr;
use std::time::Duration;

use common::net::{self, Action, ConnInfo, Output};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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

const MAX_LINE: usize = 8 * 1024;

/// The ManageSieve protocol for the network driver.
#[derive(Debug, Clone)]
pub struct ManageSieve {
    store: std::sync::Arc<store::Store>,
    auth: std::sync::Arc<store::login::Authenticator>,
    engine: std::sync::Arc<crate::Engine>,
}

impl ManageSieve {
    /// The protocol, with the store holding the scripts, the login checker (limiter and
    /// activity log) and the engine that checks scripts.
    pub fn new(
        store: std::sync::Arc<store::Store>,
        auth: std::sync::Arc<store::login::Authenticator>,
        engine: std::sync::Arc<crate::Engine>,
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
            tls: info.tls,
            starttls: info.starttls,
            buf: Vec::new(),
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
    tls: bool,
    starttls: bool,
    buf: Vec<u8>,
}

impl Session {
    /// RFC 5804 §1.7: capability lines followed by OK.
    fn capability(&self) -> String {
        let mut s = String::from("\"IMPLEMENTATION\" \"Postern\"\r\n\"VERSION\" \"1.0\"\r\n");
        if self.starttls && !self.tls {
            s.push_str("\"STARTTLS\"\r\n");
        }
        s
    }

    fn command(&mut self, line: &str) -> Output {
        let verb = line.split(' ').next().unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "CAPABILITY" => Output::reply(format!("{}OK\r\n", self.capability()).into_bytes()),
            "NOOP" => Output::reply(b"OK \"NOOP completed\"\r\n".to_vec()),
            "LOGOUT" => Output::close(b"OK \"Bye\"\r\n".to_vec()),
            "STARTTLS" if self.starttls && !self.tls => {
                self.buf.clear();
                Output {
                    reply: b"OK \"Begin TLS negotiation now\"\r\n".to_vec(),
                    action: Action::StartTls,
                }
            }
            "AUTHENTICATE" | "PUTSCRIPT" | "CHECKSCRIPT" | "LISTSCRIPTS" | "SETACTIVE"
            | "GETSCRIPT" | "DELETESCRIPT" | "RENAMESCRIPT" | "HAVESPACE" | "UNAUTHENTICATE" => {
                Output::reply(b"NO (TRYLATER) \"Not available yet\"\r\n".to_vec())
            }
            _ => Output::reply(b"NO \"Unknown command\"\r\n".to_vec()),
        }
    }
}

impl net::Session for Session {
    fn greeting(&mut self) -> Vec<u8> {
        format!("{}OK \"Postern ManageSieve ready\"\r\n", self.capability()).into_bytes()
    }

    async fn receive(&mut self, input: &[u8]) -> Output {
        self.buf.extend_from_slice(input);
        let mut reply = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line).trim_end().to_string();
            let out = self.command(&line);
            reply.extend(out.reply);
            if out.action != Action::Continue {
                return Output {
                    reply,
                    action: out.action,
                };
            }
        }
        if self.buf.len() > MAX_LINE {
            return Output::close([reply, b"BYE \"Line too long\"\r\n".to_vec()].concat());
        }
        Output::reply(reply)
    }

    fn tls_started(&mut self) {
        self.tls = true;
    }

    fn shutting_down(&mut self) -> Vec<u8> {
        b"BYE (TRYLATER) \"Server shutting down\"\r\n".to_vec()
    }

    fn timed_out(&mut self) -> Vec<u8> {
        b"BYE \"Idle for too long\"\r\n".to_vec()
    }
}
