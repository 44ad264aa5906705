//! The SMTP session (RFC 5321), sans-socket: fed bytes, returning replies.
//!
//! This is the connection-level part every later piece builds on: greeting,
//! EHLO/HELO, STARTTLS (RFC 3207), NOOP, RSET, HELP, VRFY/EXPN (252, never revealing
//! accounts), QUIT, line limits and the bad-command limit. Mail transactions (MAIL,
//! RCPT, DATA, BDAT, AUTH) are answered with a temporary `451 4.3.2`, so senders keep
//! their mail queued and nothing is lost, until the transaction layer lands.

use std::time::Duration;

use common::net::{self, Action, ConnInfo, Output};

/// RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with CRLF; we allow a
/// little more for ESMTP parameters (RFC 1869 §4.1.2 lets extensions raise it).
const MAX_COMMAND_LINE: usize = 2048;
/// Unrecognised or malformed commands tolerated before the connection is closed.
const MAX_BAD_COMMANDS: u32 = 20;

/// Which listener a session serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Port 25: mail from other servers.
    Mx,
    /// Ports 587/465: mail from our users.
    Submission,
}

/// The SMTP protocol for the network driver.
#[derive(Debug, Clone)]
pub struct Smtp {
    hostname: String,
    mode: Mode,
}

impl Smtp {
    /// SMTP for `hostname` in `mode`.
    pub fn new(hostname: &str, mode: Mode) -> Self {
        Smtp {
            hostname: hostname.to_string(),
            mode,
        }
    }
}

impl net::Protocol for Smtp {
    type Session = Session;

    fn open(&self, info: &ConnInfo) -> Session {
        Session {
            hostname: self.hostname.clone(),
            mode: self.mode,
            tls: info.tls,
            starttls: info.starttls,
            greeted: false,
            buf: Vec::new(),
            bad_commands: 0,
        }
    }

    fn busy(&self) -> &'static [u8] {
        b"421 4.7.0 Too many connections from your address, try again later\r\n"
    }

    /// RFC 5321 §4.5.3.2.7: the server timeout is at least 5 minutes.
    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(300)
    }
}

/// One SMTP conversation.
#[derive(Debug)]
pub struct Session {
    hostname: String,
    mode: Mode,
    tls: bool,
    starttls: bool,
    greeted: bool,
    buf: Vec<u8>,
    bad_commands: u32,
}

impl Session {
    fn reply(&self, code: u16, enhanced: &str, text: &str) -> Vec<u8> {
        format!("{code} {enhanced} {text}\r\n").into_bytes()
    }

    fn ehlo(&mut self, domain: &str) -> Vec<u8> {
        self.greeted = true;
        let mut lines = vec![format!("{} Hello {domain}", self.hostname)];
        lines.push("PIPELINING".into());
        lines.push("ENHANCEDSTATUSCODES".into());
        if self.starttls && !self.tls {
            lines.push("STARTTLS".into());
        }
        let last = lines.len() - 1;
        lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("250{}{l}\r\n", if i == last { ' ' } else { '-' }))
            .collect::<String>()
            .into_bytes()
    }

    fn command(&mut self, line: &[u8]) -> Output {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches(['\r', '\n']);
        let (verb, arg) = match line.split_once(' ') {
            Some((v, a)) => (v.to_ascii_uppercase(), a.trim()),
            None => (line.to_ascii_uppercase(), ""),
        };
        let r = |code, enh: &str, text: &str| Output::reply(self.reply(code, enh, text));
        match verb.as_str() {
            "EHLO" | "HELO" if arg.is_empty() => self.bad(r(501, "5.5.4", "Syntax: EHLO domain")),
            "EHLO" => Output::reply(self.ehlo(arg)),
            "HELO" => {
                self.greeted = true;
                Output::reply(format!("250 {} Hello {arg}\r\n", self.hostname).into_bytes())
            }
            "STARTTLS" if self.starttls && !self.tls => {
                // RFC 3207 §4.2: input after STARTTLS came in the clear; discard it.
                self.buf.clear();
                Output {
                    reply: self.reply(220, "2.0.0", "Ready to start TLS"),
                    action: Action::StartTls,
                }
            }
            "STARTTLS" => self.bad(r(503, "5.5.1", "TLS is already active or not offered here")),
            "NOOP" => r(250, "2.0.0", "OK"),
            "RSET" => r(250, "2.0.0", "OK"),
            "HELP" => r(214, "2.0.0", "See RFC 5321"),
            // RFC 5321 §3.5.3: 252 neither confirms nor denies an address.
            "VRFY" | "EXPN" => r(252, "2.5.0", "Cannot verify the address, send some mail"),
            "QUIT" => Output::close(self.reply(221, "2.0.0", "Bye")),
            "MAIL" | "RCPT" | "DATA" | "BDAT" | "AUTH" => {
                let what = match self.mode {
                    Mode::Mx => "This server does not accept mail yet, try again later",
                    Mode::Submission => "Submission is not available yet, try again later",
                };
                r(451, "4.3.2", what)
            }
            _ => self.bad(r(500, "5.5.2", "Command unrecognized")),
        }
    }

    fn bad(&mut self, out: Output) -> Output {
        self.bad_commands += 1;
        if self.bad_commands >= MAX_BAD_COMMANDS {
            let mut reply = out.reply;
            reply.extend(self.reply(421, "4.7.0", "Too many errors, closing connection"));
            Output::close(reply)
        } else {
            out
        }
    }
}

impl net::Session for Session {
    fn greeting(&mut self) -> Vec<u8> {
        format!("220 {} ESMTP Postern\r\n", self.hostname).into_bytes()
    }

    async fn receive(&mut self, input: &[u8]) -> Output {
        self.buf.extend_from_slice(input);
        let mut reply = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            let out = if line.len() > MAX_COMMAND_LINE {
                self.bad(Output::reply(self.reply(500, "5.5.6", "Line too long")))
            } else {
                self.command(&line)
            };
            reply.extend(out.reply);
            if out.action != Action::Continue {
                return Output {
                    reply,
                    action: out.action,
                };
            }
        }
        if self.buf.len() > MAX_COMMAND_LINE {
            // No line end in sight: refuse to buffer more.
            self.buf.clear();
            reply.extend(self.reply(500, "5.5.6", "Line too long"));
            return Output::close([reply, self.reply(421, "4.7.0", "Closing connection")].concat());
        }
        Output::reply(reply)
    }

    fn tls_started(&mut self) {
        // RFC 3207 §4.2: the client must EHLO again after TLS.
        self.tls = true;
        self.greeted = false;
    }

    fn shutting_down(&mut self) -> Vec<u8> {
        self.reply(421, "4.3.2", "Server shutting down, try again later")
    }

    fn timed_out(&mut self) -> Vec<u8> {
        self.reply(421, "4.4.2", "Idle too long, closing connection")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::net::{Protocol, Session as _};

    fn session(starttls: bool) -> Session {
        let info = ConnInfo {
            peer: "192.0.2.1:1234".parse().unwrap(),
            local: "192.0.2.2:25".parse().unwrap(),
            listener: "smtp",
            tls: false,
            starttls,
        };
        Smtp::new("mx.example.test", Mode::Mx).open(&info)
    }

    async fn say(s: &mut Session, input: &str) -> (String, Action) {
        let out = s.receive(input.as_bytes()).await;
        (String::from_utf8(out.reply).unwrap(), out.action)
    }

    #[tokio::test]
    async fn ehlo_offers_starttls_and_drops_pipelined_input_after_it() {
        let mut s = session(true);
        let (r, _) = say(&mut s, "EHLO client.test\r\n").await;
        assert!(
            r.contains("250-STARTTLS\r\n") || r.ends_with("250 STARTTLS\r\n"),
            "{r}"
        );
        let (r, a) = say(&mut s, "STARTTLS\r\nNOOP\r\n").await;
        assert_eq!(r, "220 2.0.0 Ready to start TLS\r\n");
        assert_eq!(a, Action::StartTls);
        s.tls_started();
        let (r, _) = say(&mut s, "EHLO client.test\r\n").await;
        assert!(!r.contains("STARTTLS"), "{r}");
    }

    #[tokio::test]
    async fn mail_is_deferred_not_refused_and_quit_closes() {
        let mut s = session(false);
        let (r, _) = say(&mut s, "HELO a\r\nMAIL FROM:<a@b.test>\r\n").await;
        assert!(
            r.ends_with("451 4.3.2 This server does not accept mail yet, try again later\r\n"),
            "{r}"
        );
        let (r, a) = say(&mut s, "QUIT\r\n").await;
        assert_eq!((r.as_str(), a), ("221 2.0.0 Bye\r\n", Action::Close));
    }

    #[tokio::test]
    async fn too_many_bad_commands_close_the_connection() {
        let mut s = session(false);
        let input = "BOGUS\r\n".repeat(MAX_BAD_COMMANDS as usize);
        let (r, a) = say(&mut s, &input).await;
        assert_eq!(a, Action::Close);
        assert!(r.ends_with("421 4.7.0 Too many errors, closing connection\r\n"));
    }

    #[tokio::test]
    async fn endless_line_is_refused() {
        let mut s = session(false);
        let (r, a) = say(&mut s, &"A".repeat(MAX_COMMAND_LINE + 10)).await;
        assert_eq!(a, Action::Close);
        assert!(r.starts_with("500 5.5.6 Line too long"), "{r}");
    }
}
