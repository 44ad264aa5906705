//! AUTH (RFC 4954) on the submission ports: PLAIN (RFC 4616) and LOGIN, with or
//! without an initial response, only under TLS, through the shared authenticator
//! (failed-login limiter and activity log).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN};
use store::login::LoginError;

use super::{Mode, Session, reply};

/// Where a SASL exchange stands while it waits for the client's next line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Sasl {
    /// PLAIN sent without an initial response: waiting for it.
    Plain,
    /// LOGIN: waiting for the user name.
    LoginUser,
    /// LOGIN: waiting for the password of this user.
    LoginPassword(String),
}

impl Session {
    /// AUTH mechanism [initial-response].
    pub(super) async fn handle_auth(&mut self, mechanism: u64, initial: &str) -> Vec<u8> {
        if self.mode == Mode::Mx {
            return reply(503, "5.5.1", "AUTH is offered on the submission ports only");
        }
        if !self.tls {
            return reply(530, "5.7.0", "Must issue a STARTTLS command first");
        }
        if self.user.is_some() {
            return reply(503, "5.5.1", "Already authenticated");
        }
        if self.transaction.is_some() {
            return reply(
                503,
                "5.5.1",
                "AUTH is not allowed during a mail transaction",
            );
        }
        // RFC 4954 §4: "=" is an empty initial response.
        let initial = (!initial.is_empty()).then(|| if initial == "=" { "" } else { initial });
        match (mechanism, initial) {
            (AUTH_PLAIN, Some(ir)) => self.finish_plain(ir).await,
            (AUTH_PLAIN, None) => {
                self.sasl = Some(Sasl::Plain);
                b"334 \r\n".to_vec()
            }
            (AUTH_LOGIN, Some(user)) => match decode(user) {
                Some(user) => {
                    self.sasl = Some(Sasl::LoginPassword(user));
                    b"334 UGFzc3dvcmQ6\r\n".to_vec()
                }
                None => reply(501, "5.5.2", "Cannot decode the response"),
            },
            (AUTH_LOGIN, None) => {
                self.sasl = Some(Sasl::LoginUser);
                b"334 VXNlcm5hbWU6\r\n".to_vec()
            }
            _ => reply(504, "5.5.4", "Unrecognized authentication type"),
        }
    }

    /// A line sent while a SASL exchange waits for it.
    pub(super) async fn sasl_response(&mut self, line: &[u8]) -> Vec<u8> {
        let Some(state) = self.sasl.take() else {
            return reply(503, "5.5.1", "No authentication in progress");
        };
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches(['\r', '\n']);
        if line == "*" {
            // RFC 4954 §4: the client cancelled.
            return reply(501, "5.0.0", "Authentication cancelled");
        }
        match state {
            Sasl::Plain => self.finish_plain(line).await,
            Sasl::LoginUser => match decode(line) {
                Some(user) => {
                    self.sasl = Some(Sasl::LoginPassword(user));
                    b"334 UGFzc3dvcmQ6\r\n".to_vec()
                }
                None => reply(501, "5.5.2", "Cannot decode the response"),
            },
            Sasl::LoginPassword(user) => match decode(line) {
                Some(password) => self.login(user, password).await,
                None => reply(501, "5.5.2", "Cannot decode the response"),
            },
        }
    }

    async fn finish_plain(&mut self, response: &str) -> Vec<u8> {
        let Ok(raw) = STANDARD.decode(response.trim()) else {
            return reply(501, "5.5.2", "Cannot decode the response");
        };
        let Ok(creds) = common::auth::decode_plain(&raw) else {
            return reply(501, "5.5.2", "Malformed PLAIN response");
        };
        // We do not let one user act for another (RFC 4616 §2 authzid).
        if !creds.authzid.is_empty() && !creds.authzid.eq_ignore_ascii_case(&creds.authcid) {
            return reply(535, "5.7.8", "Authentication credentials invalid");
        }
        self.login(creds.authcid, creds.password).await
    }

    async fn login(&mut self, user: String, password: String) -> Vec<u8> {
        let auth = self.context.auth.clone();
        let ip = self.info.peer.ip();
        let service = self.info.listener;
        let result =
            tokio::task::spawn_blocking(move || auth.login(&user, &password, ip, service)).await;
        match result {
            Ok(Ok(account)) => {
                self.user = Some(account);
                reply(235, "2.7.0", "Authentication successful")
            }
            Ok(Err(LoginError::Failed)) => {
                reply(535, "5.7.8", "Authentication credentials invalid")
            }
            Ok(Err(LoginError::Limited(_))) => reply(
                454,
                "4.7.0",
                "Too many failed logins from your address, try again later",
            ),
            Ok(Err(LoginError::Unavailable(e))) => {
                tracing::error!(error = %e, "login check failed");
                reply(454, "4.7.0", "Temporary authentication failure")
            }
            Err(e) => {
                tracing::error!(error = %e, "login task failed");
                reply(454, "4.7.0", "Temporary authentication failure")
            }
        }
    }
}

fn decode(b64: &str) -> Option<String> {
    let raw = STANDARD.decode(b64.trim()).ok()?;
    String::from_utf8(raw).ok()
}
