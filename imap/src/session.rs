//! The IMAP session (RFC 3501 / RFC 9051), sans-socket: fed bytes, returning replies.
//!
//! This is the not-authenticated state every later piece builds on: greeting with
//! capabilities, CAPABILITY, NOOP, LOGOUT, STARTTLS on a plaintext listener
//! (LOGINDISABLED until TLS, RFC 3501 §6.2.3), and LOGIN against the account store with
//! the failed-login limiter and the activity log. Mailbox commands after login answer
//! `NO [UNAVAILABLE]` until the mailbox layer lands.

use std::sync::Arc;
use std::time::Duration;

use common::net::{self, Action, ConnInfo, Output};
use store::login::{Authenticator, LoginError};

/// Longest command line we buffer (RFC 7162 §4 asks for at least 8192 octets).
const MAX_LINE: usize = 64 * 1024;
/// Longest literal accepted before authentication.
const MAX_LITERAL_UNAUTH: usize = 8 * 1024;

/// The IMAP protocol for the network driver.
#[derive(Debug, Clone)]
pub struct Imap {
    auth: Arc<Authenticator>,
}

impl Imap {
    /// IMAP checking logins with `auth`.
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Imap { auth }
    }
}

impl net::Protocol for Imap {
    type Session = Session;

    fn open(&self, info: &ConnInfo) -> Session {
        Session {
            auth: self.auth.clone(),
            info: info.clone(),
            tls: info.tls,
            user: None,
            buf: Vec::new(),
            pending: Vec::new(),
            literal: None,
        }
    }

    fn busy(&self) -> &'static [u8] {
        b"* BYE [UNAVAILABLE] Too many connections from your address, try again later\r\n"
    }

    /// RFC 3501 §5.4: the autologout timer is at least 30 minutes.
    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(30 * 60)
    }
}

/// One IMAP conversation.
#[derive(Debug)]
pub struct Session {
    auth: Arc<Authenticator>,
    info: ConnInfo,
    tls: bool,
    user: Option<String>,
    /// Bytes received and not yet consumed.
    buf: Vec<u8>,
    /// The command assembled so far (lines and literals).
    pending: Vec<u8>,
    /// Octets of literal still expected.
    literal: Option<usize>,
}

/// A parsed argument: atom, quoted string or literal, as bytes.
fn parse_args(mut s: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
    let mut args = Vec::new();
    loop {
        while let [b' ', rest @ ..] = s {
            s = rest;
        }
        match s {
            [] => return Ok(args),
            [b'"', rest @ ..] => {
                let mut out = Vec::new();
                let mut i = 0;
                loop {
                    match rest.get(i) {
                        None => return Err("unterminated quoted string"),
                        Some(b'\\') => {
                            out.push(*rest.get(i + 1).ok_or("bad escape")?);
                            i += 2;
                        }
                        Some(b'"') => break,
                        Some(b) => {
                            out.push(*b);
                            i += 1;
                        }
                    }
                }
                args.push(out);
                s = &rest[i + 1..];
            }
            [b'{', rest @ ..] => {
                // Literal: "{n}" or "{n+}" CRLF followed by n octets (assembled below).
                let close = rest.iter().position(|b| *b == b'}').ok_or("bad literal")?;
                let n: usize = std::str::from_utf8(&rest[..close])
                    .ok()
                    .and_then(|t| t.trim_end_matches('+').parse().ok())
                    .ok_or("bad literal length")?;
                let body_start = close + 1 + 2;
                let body = rest
                    .get(body_start..body_start + n)
                    .ok_or("short literal")?;
                args.push(body.to_vec());
                s = &rest[body_start + n..];
            }
            _ => {
                let end = s.iter().position(|b| *b == b' ').unwrap_or(s.len());
                args.push(s[..end].to_vec());
                s = &s[end..];
            }
        }
    }
}

impl Session {
    fn capabilities(&self) -> String {
        let mut caps = vec!["IMAP4rev1"];
        if !self.tls {
            caps.push("STARTTLS");
            caps.push("LOGINDISABLED");
        }
        caps.join(" ")
    }

    async fn command(&mut self, line: Vec<u8>) -> Output {
        let (tag, rest) = match line.iter().position(|b| *b == b' ') {
            Some(p) => (
                String::from_utf8_lossy(&line[..p]).into_owned(),
                &line[p + 1..],
            ),
            None => return Output::reply(b"* BAD Missing command\r\n".to_vec()),
        };
        if tag.is_empty() || tag.contains(['*', '+', '(', ')', '{', '%', '"', '\\']) {
            return Output::reply(b"* BAD Invalid tag\r\n".to_vec());
        }
        let (verb, args) = match rest.iter().position(|b| *b == b' ') {
            Some(p) => (&rest[..p], &rest[p + 1..]),
            None => (rest, &b""[..]),
        };
        let verb = String::from_utf8_lossy(verb).to_ascii_uppercase();
        let ok = |text: &str| Output::reply(format!("{tag} {text}\r\n").into_bytes());
        match verb.as_str() {
            "CAPABILITY" => Output::reply(
                format!(
                    "* CAPABILITY {}\r\n{tag} OK CAPABILITY completed\r\n",
                    self.capabilities()
                )
                .into_bytes(),
            ),
            "NOOP" => ok("OK NOOP completed"),
            "LOGOUT" => Output::close(
                format!("* BYE Logging out\r\n{tag} OK LOGOUT completed\r\n").into_bytes(),
            ),
            "STARTTLS" if self.info.starttls && !self.tls => {
                // RFC 3501 §6.2.1: nothing the client sent after STARTTLS counts.
                self.buf.clear();
                Output {
                    reply: format!("{tag} OK Begin TLS negotiation now\r\n").into_bytes(),
                    action: Action::StartTls,
                }
            }
            "LOGIN" if self.user.is_some() => ok("BAD Already authenticated"),
            "LOGIN" if !self.tls => ok("NO [PRIVACYREQUIRED] LOGIN is disabled until TLS is on"),
            "LOGIN" => match parse_args(args) {
                Ok(a) if a.len() == 2 => {
                    let user = String::from_utf8_lossy(&a[0]).into_owned();
                    let password = String::from_utf8_lossy(&a[1]).into_owned();
                    self.login(&tag, user, password).await
                }
                Ok(_) => ok("BAD LOGIN takes a user name and a password"),
                Err(e) => ok(&format!("BAD {e}")),
            },
            "STARTTLS" | "AUTHENTICATE" if self.user.is_none() => ok("BAD Not supported here"),
            _ if self.user.is_none() => ok("BAD Unknown command or not allowed before login"),
            _ => ok("NO [UNAVAILABLE] Mailbox access is not available yet"),
        }
    }

    async fn login(&mut self, tag: &str, user: String, password: String) -> Output {
        let auth = self.auth.clone();
        let ip = self.info.peer.ip();
        let name = user.clone();
        let result =
            tokio::task::spawn_blocking(move || auth.login(&name, &password, ip, "imap")).await;
        let text = match result {
            Ok(Ok(account)) => {
                self.user = Some(account.email);
                format!("{tag} OK [CAPABILITY IMAP4rev1] LOGIN completed\r\n")
            }
            Ok(Err(LoginError::Failed)) => {
                format!("{tag} NO [AUTHENTICATIONFAILED] Invalid credentials\r\n")
            }
            Ok(Err(LoginError::Limited(_))) => {
                format!(
                    "{tag} NO [UNAVAILABLE] Too many failed logins from your address, try again later\r\n"
                )
            }
            Ok(Err(LoginError::Unavailable(e))) => {
                tracing::error!(error = %e, "login check failed");
                format!("{tag} NO [UNAVAILABLE] Temporary failure, try again later\r\n")
            }
            Err(e) => {
                tracing::error!(error = %e, "login task failed");
                format!("{tag} NO [UNAVAILABLE] Temporary failure, try again later\r\n")
            }
        };
        Output::reply(text.into_bytes())
    }
}

impl net::Session for Session {
    fn greeting(&mut self) -> Vec<u8> {
        format!(
            "* OK [CAPABILITY {}] Postern ready\r\n",
            self.capabilities()
        )
        .into_bytes()
    }

    async fn receive(&mut self, input: &[u8]) -> Output {
        self.buf.extend_from_slice(input);
        let mut reply = Vec::new();
        loop {
            if let Some(n) = self.literal {
                if self.buf.len() < n {
                    break;
                }
                self.pending.extend(self.buf.drain(..n));
                self.literal = None;
            }
            let Some(pos) = self.buf.iter().position(|b| *b == b'\n') else {
                if self.buf.len() + self.pending.len() > MAX_LINE {
                    return Output::close([reply, b"* BYE Line too long\r\n".to_vec()].concat());
                }
                break;
            };
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            self.pending.extend_from_slice(&line);
            if self.pending.len() > MAX_LINE {
                return Output::close([reply, b"* BYE Line too long\r\n".to_vec()].concat());
            }
            // A line ending in {n} or {n+} announces a literal (RFC 3501 §4.3, RFC 7888).
            let trimmed = line
                .strip_suffix(b"\r\n")
                .or(line.strip_suffix(b"\n"))
                .unwrap_or(&line);
            if let Some(open) = trimmed.iter().rposition(|b| *b == b'{')
                && trimmed.ends_with(b"}")
            {
                let spec =
                    String::from_utf8_lossy(&trimmed[open + 1..trimmed.len() - 1]).into_owned();
                let sync = !spec.ends_with('+');
                match spec.trim_end_matches('+').parse::<usize>() {
                    Ok(n) if n <= MAX_LITERAL_UNAUTH || self.user.is_some() => {
                        self.literal = Some(n);
                        if sync {
                            reply.extend_from_slice(b"+ Ready for literal data\r\n");
                        }
                        continue;
                    }
                    Ok(_) => {
                        self.pending.clear();
                        reply.extend_from_slice(b"* BAD Literal too large\r\n");
                        if !sync {
                            // RFC 7888 §4: a non-synchronising literal we refuse can't be
                            // skipped reliably; close.
                            return Output::close(
                                [reply, b"* BYE Literal too large\r\n".to_vec()].concat(),
                            );
                        }
                        continue;
                    }
                    Err(_) => {}
                }
            }
            let mut command = std::mem::take(&mut self.pending);
            while matches!(command.last(), Some(b'\r' | b'\n')) {
                command.pop();
            }
            let out = self.command(command).await;
            reply.extend(out.reply);
            if out.action != Action::Continue {
                return Output {
                    reply,
                    action: out.action,
                };
            }
        }
        Output::reply(reply)
    }

    fn tls_started(&mut self) {
        self.tls = true;
    }

    fn shutting_down(&mut self) -> Vec<u8> {
        b"* BYE [UNAVAILABLE] Server shutting down, try again later\r\n".to_vec()
    }

    fn timed_out(&mut self) -> Vec<u8> {
        b"* BYE Autologout; idle for too long\r\n".to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::parse_args;

    #[test]
    fn arguments_atoms_quoted_and_literals() {
        let a = parse_args(br#"alice "pa ss\"w\\d""#).unwrap();
        assert_eq!(a, vec![b"alice".to_vec(), br#"pa ss"w\d"#.to_vec()]);
        let a = parse_args(b"{5}\r\nalice {3+}\r\nx y").unwrap();
        assert_eq!(a, vec![b"alice".to_vec(), b"x y".to_vec()]);
        assert!(parse_args(br#""open"#).is_err());
        assert!(parse_args(b"{9}\r\nab").is_err());
    }
}
