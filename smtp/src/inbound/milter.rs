//! The MTA side of the Sendmail milter protocol, version 6: how the MX asks a filter
//! (SpamAssassin through spamass-milter, rspamd...) about a message. No maintained
//! crate covers the MTA side (DEPENDENCIES.md), so it is written here, after libmilter's
//! `mfdef.h`: packets are a 4-byte big-endian length (command byte + data), the command
//! byte and the data; strings are NUL-terminated.

use std::net::IpAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Where the milter listens and how long to wait for each of its answers.
#[derive(Debug, Clone)]
pub struct MilterConfig {
    /// `ip:port`, or `unix:/path`.
    pub address: String,
    /// Bound on each read and write.
    pub timeout: Duration,
}

/// The message's envelope, and what the milter's macros are made of.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// Our host name (macro `j`).
    pub our_hostname: &'a str,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The client's port.
    pub client_port: u16,
    /// The client's name (`[ip]` without reverse DNS).
    pub client_name: &'a str,
    /// EHLO/HELO.
    pub helo: &'a str,
    /// MAIL FROM ("" for `<>`).
    pub mail_from: &'a str,
    /// RCPT TO addresses.
    pub rcpt_to: &'a [String],
    /// Our id for the message (macro `i`).
    pub queue_id: &'a str,
    /// TLS version, when the session is under TLS.
    pub tls_version: Option<&'a str>,
}

/// The milter's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Deliver (CONTINUE to the end, or ACCEPT).
    Accept,
    /// Refuse permanently.
    Reject {
        /// SMTP reply code (5xx).
        code: u16,
        /// Enhanced status code.
        enhanced: String,
        /// Reply text.
        text: String,
    },
    /// Refuse for now.
    TempFail {
        /// SMTP reply code (4xx).
        code: u16,
        /// Enhanced status code.
        enhanced: String,
        /// Reply text.
        text: String,
    },
    /// Accept and silently drop.
    Discard,
}

/// A header modification asked for at the end of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderChange {
    /// Append a header (SMFIR_ADDHEADER).
    Add {
        /// Field name.
        name: String,
        /// Field value.
        value: String,
    },
    /// Replace the `index`-th (1-based) field of that name; an empty value deletes it
    /// (SMFIR_CHGHEADER).
    Change {
        /// 1-based occurrence among fields of that name.
        index: u32,
        /// Field name.
        name: String,
        /// New value ("" deletes).
        value: String,
    },
    /// Insert a header before the `index`-th field (0: first) (SMFIR_INSHEADER).
    Insert {
        /// Position among all fields.
        index: u32,
        /// Field name.
        name: String,
        /// Field value.
        value: String,
    },
}

/// The decision and the header changes that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What to do with the message.
    pub action: Action,
    /// Header changes to apply before delivery.
    pub header_changes: Vec<HeaderChange>,
}

/// Why the milter could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Connecting failed.
    #[error("cannot connect to the milter at {address}: {source}")]
    Connect {
        /// The address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// The milter did not answer in time.
    #[error("the milter did not answer within {0:?}")]
    Timeout(Duration),
    /// Reading or writing failed.
    #[error("milter I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The milter broke the protocol.
    #[error("milter protocol error: {0}")]
    Protocol(String),
}

// Commands (MTA to milter), mfdef.h.
const C_BODY: u8 = b'B';
const C_CONNECT: u8 = b'C';
const C_MACRO: u8 = b'D';
const C_BODYEOB: u8 = b'E';
const C_HELO: u8 = b'H';
const C_HEADER: u8 = b'L';
const C_MAIL: u8 = b'M';
const C_EOH: u8 = b'N';
const C_OPTNEG: u8 = b'O';
const C_QUIT: u8 = b'Q';
const C_RCPT: u8 = b'R';
const C_DATA: u8 = b'T';

// Replies (milter to MTA).
const R_ACCEPT: u8 = b'a';
const R_CONTINUE: u8 = b'c';
const R_DISCARD: u8 = b'd';
const R_ADDHEADER: u8 = b'h';
const R_INSHEADER: u8 = b'i';
const R_CHGHEADER: u8 = b'm';
const R_PROGRESS: u8 = b'p';
const R_REJECT: u8 = b'r';
const R_SKIP: u8 = b's';
const R_TEMPFAIL: u8 = b't';
const R_REPLYCODE: u8 = b'y';

/// Protocol version we speak.
const VERSION: u32 = 6;
// Actions (SMFIF_*). libmilter drops the connection when a filter registered for an
// action the MTA does not offer, so every action is offered; we honour the header
// changes (ADDHEADER, CHGHEADER, INSHEADER) and log and ignore the rest (recipient,
// sender and body changes, quarantine): the message is then delivered as received.
const F_OFFERED: u32 = 0x1FF;
// Protocol steps (SMFIP_*).
const P_NOCONNECT: u32 = 0x01;
const P_NOHELO: u32 = 0x02;
const P_NOMAIL: u32 = 0x04;
const P_NORCPT: u32 = 0x08;
const P_NOBODY: u32 = 0x10;
const P_NOHDRS: u32 = 0x20;
const P_NOEOH: u32 = 0x40;
const P_NR_HDR: u32 = 0x80;
const P_NODATA: u32 = 0x200;
const P_SKIP: u32 = 0x400;
const P_NR_CONN: u32 = 0x1000;
const P_NR_HELO: u32 = 0x2000;
const P_NR_MAIL: u32 = 0x4000;
const P_NR_RCPT: u32 = 0x8000;
const P_NR_DATA: u32 = 0x10000;
const P_NR_EOH: u32 = 0x40000;
const P_NR_BODY: u32 = 0x80000;
const P_HDR_LEADSPC: u32 = 0x100000;
// Bits that need nothing from us: we never send UNKNOWN nor rejected recipients, and
// our body chunks are far below the 256 KiB / 1 MiB data sizes.
const P_NOUNKNOWN: u32 = 0x100;
const P_RCPT_REJ: u32 = 0x800;
const P_NR_UNKN: u32 = 0x20000;
const P_MDS_256K: u32 = 0x1000_0000;
const P_MDS_1M: u32 = 0x2000_0000;
/// Every step and "no reply" bit we can honour.
const P_SUPPORTED: u32 = P_NOCONNECT
    | P_NOHELO
    | P_NOMAIL
    | P_NORCPT
    | P_NOBODY
    | P_NOHDRS
    | P_NOEOH
    | P_NR_HDR
    | P_NODATA
    | P_SKIP
    | P_NR_CONN
    | P_NR_HELO
    | P_NR_MAIL
    | P_NR_RCPT
    | P_NR_DATA
    | P_NR_EOH
    | P_NR_BODY
    | P_HDR_LEADSPC
    | P_NOUNKNOWN
    | P_RCPT_REJ
    | P_NR_UNKN
    | P_MDS_256K
    | P_MDS_1M;

/// Largest packet we accept from a milter (libmilter's own maximum is 512 MiB; a
/// reply is small: 1 MiB is ample and bounds our memory).
const MAX_PACKET: usize = 1 << 20;
/// Body chunk size (libmilter's MILTER_CHUNK_SIZE).
const CHUNK: usize = 65535;

/// Macro stages of the v6 OPTNEG reply (SMFIM_*).
const STAGES: [u8; 7] = [C_CONNECT, C_HELO, C_MAIL, C_RCPT, C_DATA, C_BODYEOB, C_EOH];

/// What the milter asked for in its OPTNEG reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Negotiated {
    actions: u32,
    protocol: u32,
    /// Requested macro names per stage index of [`STAGES`].
    macros: [Option<Vec<String>>; 7],
}

fn packet(command: u8, data: &[u8]) -> Vec<u8> {
    let len = u32::try_from(data.len() + 1).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(data.len() + 5);
    out.extend_from_slice(&len.to_be_bytes());
    out.push(command);
    out.extend_from_slice(data);
    out
}

fn strings(parts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(p.as_bytes());
        out.push(0);
    }
    out
}

fn optneg_request() -> Vec<u8> {
    let mut data = Vec::new();
    data.extend_from_slice(&VERSION.to_be_bytes());
    data.extend_from_slice(&F_OFFERED.to_be_bytes());
    data.extend_from_slice(&P_SUPPORTED.to_be_bytes());
    packet(C_OPTNEG, &data)
}

fn parse_optneg(data: &[u8]) -> Result<Negotiated, Error> {
    let word = |at: usize| -> Result<u32, Error> {
        data.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| Error::Protocol("short OPTNEG reply".into()))
    };
    let version = word(0)?;
    if version < 2 {
        return Err(Error::Protocol(format!(
            "milter protocol version {version} is too old"
        )));
    }
    let mut negotiated = Negotiated {
        actions: word(4)?,
        protocol: word(8)?,
        macros: Default::default(),
    };
    if negotiated.protocol & !P_SUPPORTED != 0 {
        tracing::debug!(
            unsupported = negotiated.protocol & !P_SUPPORTED,
            "milter asks for protocol steps we do not offer; ignoring them"
        );
    }
    // v6: the rest is (u32 stage, NUL-terminated space-separated macro names)*.
    let mut rest = &data[12..];
    while rest.len() >= 4 {
        let stage = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        rest = &rest[4..];
        let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
        let names = String::from_utf8_lossy(&rest[..end])
            .split([' ', ','])
            .filter(|n| !n.is_empty())
            .map(|n| n.trim_matches(['{', '}']).to_string())
            .collect();
        if let Some(slot) = negotiated.macros.get_mut(stage) {
            *slot = Some(names);
        }
        rest = rest.get(end + 1..).unwrap_or(&[]);
    }
    Ok(negotiated)
}

/// The value of macro `name` (without braces) for `envelope`, when we know it.
fn macro_value(name: &str, envelope: &Envelope<'_>, rcpt: Option<&str>) -> Option<String> {
    Some(match name {
        "j" => envelope.our_hostname.to_string(),
        "_" => format!("{} [{}]", envelope.client_name, envelope.client_ip),
        "daemon_name" => "postern".into(),
        "client_addr" => envelope.client_ip.to_string(),
        "client_name" => envelope.client_name.to_string(),
        "client_port" => envelope.client_port.to_string(),
        "i" => envelope.queue_id.to_string(),
        "mail_addr" => envelope.mail_from.to_string(),
        "rcpt_addr" => rcpt?.to_string(),
        "auth_authen" | "auth_type" => String::new(),
        "tls_version" => envelope.tls_version?.to_string(),
        "v" => "Postern".into(),
        _ => return None,
    })
}

/// Macros sent at each stage when the milter gave no list (what Postfix sends by
/// default, and what spamass-milter uses).
fn default_macros(stage: u8) -> &'static [&'static str] {
    match stage {
        C_CONNECT => &[
            "j",
            "_",
            "daemon_name",
            "client_addr",
            "client_name",
            "client_port",
            "v",
        ],
        C_HELO => &["tls_version"],
        C_MAIL => &["i", "mail_addr", "auth_authen", "auth_type"],
        C_RCPT => &["rcpt_addr"],
        C_DATA | C_EOH | C_BODYEOB => &["i"],
        _ => &[],
    }
}

/// One conversation with a milter over any stream.
struct Conversation<S> {
    stream: S,
    timeout: Duration,
    negotiated: Negotiated,
}

/// How a stage's reply turned out.
enum Step {
    Continue,
    Skip,
    Done(Action),
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conversation<S> {
    async fn send(&mut self, command: u8, data: &[u8]) -> Result<(), Error> {
        let bytes = packet(command, data);
        match tokio::time::timeout(self.timeout, self.stream.write_all(&bytes)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(Error::Timeout(self.timeout)),
        }
    }

    async fn read(&mut self) -> Result<(u8, Vec<u8>), Error> {
        let read = async {
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).await?;
            let len = u32::from_be_bytes(len) as usize;
            if len == 0 || len > MAX_PACKET {
                return Err(Error::Protocol(format!("packet length {len}")));
            }
            let mut buf = vec![0u8; len];
            self.stream.read_exact(&mut buf).await?;
            let command = buf[0];
            buf.remove(0);
            Ok((command, buf))
        };
        match tokio::time::timeout(self.timeout, read).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout(self.timeout)),
        }
    }

    async fn macros(
        &mut self,
        stage: u8,
        envelope: &Envelope<'_>,
        rcpt: Option<&str>,
    ) -> Result<(), Error> {
        let index = STAGES.iter().position(|s| *s == stage);
        let names: Vec<String> = match index.and_then(|i| self.negotiated.macros[i].clone()) {
            Some(list) => list,
            None => default_macros(stage)
                .iter()
                .map(|s| s.to_string())
                .collect(),
        };
        let mut data = vec![stage];
        let mut any = false;
        for name in names {
            if let Some(value) = macro_value(&name, envelope, rcpt) {
                let wire = if name.len() == 1 {
                    name.clone()
                } else {
                    format!("{{{name}}}")
                };
                data.extend(strings(&[&wire, &value]));
                any = true;
            }
        }
        if any {
            self.send(C_MACRO, &data).await?;
        }
        Ok(())
    }

    /// Sends a stage command unless the milter declined it, and reads its reply
    /// unless the milter said it sends none.
    async fn stage(
        &mut self,
        command: u8,
        data: &[u8],
        skip_bit: u32,
        no_reply_bit: u32,
    ) -> Result<Step, Error> {
        if self.negotiated.protocol & skip_bit != 0 {
            return Ok(Step::Continue);
        }
        self.send(command, data).await?;
        if self.negotiated.protocol & no_reply_bit != 0 {
            return Ok(Step::Continue);
        }
        loop {
            let (reply, data) = self.read().await?;
            return Ok(match reply {
                R_PROGRESS => continue,
                R_CONTINUE => Step::Continue,
                R_SKIP => Step::Skip,
                other => Step::Done(final_action(other, &data)?),
            });
        }
    }

    /// End of body: header changes until the final reply.
    async fn end_of_body(&mut self) -> Result<Verdict, Error> {
        self.send(C_BODYEOB, &[]).await?;
        let mut changes = Vec::new();
        loop {
            let (reply, data) = self.read().await?;
            match reply {
                R_PROGRESS => {}
                R_ADDHEADER => {
                    let [name, value] = two_strings(&data)?;
                    changes.push(HeaderChange::Add { name, value });
                }
                R_CHGHEADER | R_INSHEADER => {
                    let index = data
                        .get(..4)
                        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                        .ok_or_else(|| Error::Protocol("short header change".into()))?;
                    let [name, value] = two_strings(&data[4..])?;
                    changes.push(if reply == R_CHGHEADER {
                        HeaderChange::Change { index, name, value }
                    } else {
                        HeaderChange::Insert { index, name, value }
                    });
                }
                R_CONTINUE => {
                    return Ok(Verdict {
                        action: Action::Accept,
                        header_changes: changes,
                    });
                }
                other if is_final(other) => {
                    return Ok(Verdict {
                        action: final_action(other, &data)?,
                        header_changes: changes,
                    });
                }
                other => {
                    // A modification we did not allow (recipients, body, quarantine).
                    tracing::warn!(reply = %char::from(other), "milter asked for a change we did not allow; ignored");
                }
            }
        }
    }
}

fn is_final(reply: u8) -> bool {
    matches!(
        reply,
        R_ACCEPT | R_REJECT | R_TEMPFAIL | R_DISCARD | R_REPLYCODE
    )
}

fn final_action(reply: u8, data: &[u8]) -> Result<Action, Error> {
    Ok(match reply {
        R_ACCEPT => Action::Accept,
        R_DISCARD => Action::Discard,
        R_REJECT => Action::Reject {
            code: 550,
            enhanced: "5.7.1".into(),
            text: "Command rejected".into(),
        },
        R_TEMPFAIL => Action::TempFail {
            code: 451,
            enhanced: "4.7.1".into(),
            text: "Try again later".into(),
        },
        R_REPLYCODE => {
            let text =
                String::from_utf8_lossy(data.split(|b| *b == 0).next().unwrap_or(&[])).into_owned();
            let mut parts = text.splitn(3, ' ');
            let code: u16 = parts.next().and_then(|c| c.parse().ok()).unwrap_or(550);
            let (enhanced, rest) = match (parts.next(), parts.next()) {
                (Some(e), rest)
                    if e.chars().next().is_some_and(|c| c == '4' || c == '5')
                        && e.contains('.') =>
                {
                    (e.to_string(), rest.unwrap_or("").to_string())
                }
                (Some(first), rest) => (
                    if code >= 500 { "5.7.1" } else { "4.7.1" }.to_string(),
                    [first, rest.unwrap_or("")].join(" ").trim().to_string(),
                ),
                (None, _) => (
                    if code >= 500 { "5.7.1" } else { "4.7.1" }.to_string(),
                    String::new(),
                ),
            };
            match code {
                400..=499 => Action::TempFail {
                    code,
                    enhanced,
                    text: rest,
                },
                _ => Action::Reject {
                    code: if (500..=599).contains(&code) {
                        code
                    } else {
                        550
                    },
                    enhanced,
                    text: rest,
                },
            }
        }
        other => {
            return Err(Error::Protocol(format!(
                "unexpected reply {:?}",
                char::from(other)
            )));
        }
    })
}

fn two_strings(data: &[u8]) -> Result<[String; 2], Error> {
    let mut parts = data.split(|b| *b == 0);
    match (parts.next(), parts.next()) {
        (Some(a), Some(b)) => Ok([
            String::from_utf8_lossy(a).into_owned(),
            String::from_utf8_lossy(b).into_owned(),
        ]),
        _ => Err(Error::Protocol("malformed header change".into())),
    }
}

/// Asks the milter at `config.address` about `message` (CRLF line ends).
pub async fn check(
    config: &MilterConfig,
    envelope: &Envelope<'_>,
    message: &[u8],
) -> Result<Verdict, Error> {
    let connect_err = |source| Error::Connect {
        address: config.address.clone(),
        source,
    };
    if let Some(path) = config.address.strip_prefix("unix:") {
        let stream = tokio::time::timeout(config.timeout, tokio::net::UnixStream::connect(path))
            .await
            .map_err(|_| Error::Timeout(config.timeout))?
            .map_err(connect_err)?;
        converse(stream, config.timeout, envelope, message).await
    } else {
        let stream = tokio::time::timeout(
            config.timeout,
            tokio::net::TcpStream::connect(config.address.as_str()),
        )
        .await
        .map_err(|_| Error::Timeout(config.timeout))?
        .map_err(connect_err)?;
        converse(stream, config.timeout, envelope, message).await
    }
}

async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    timeout: Duration,
    envelope: &Envelope<'_>,
    message: &[u8],
) -> Result<Verdict, Error> {
    let mut c = Conversation {
        stream,
        timeout,
        negotiated: Negotiated::default(),
    };
    c.stream.write_all(&optneg_request()).await?;
    let (reply, data) = c.read().await?;
    if reply != C_OPTNEG {
        return Err(Error::Protocol(format!(
            "expected OPTNEG, got {:?}",
            char::from(reply)
        )));
    }
    c.negotiated = parse_optneg(&data)?;
    let verdict = run_stages(&mut c, envelope, message).await;
    // Best effort: the milter closes its side either way.
    let _ = c.send(C_QUIT, &[]).await;
    verdict
}

async fn run_stages<S: AsyncRead + AsyncWrite + Unpin>(
    c: &mut Conversation<S>,
    envelope: &Envelope<'_>,
    message: &[u8],
) -> Result<Verdict, Error> {
    let accept = || Verdict {
        action: Action::Accept,
        header_changes: Vec::new(),
    };
    let done = |action| Verdict {
        action,
        header_changes: Vec::new(),
    };
    // CONNECT: hostname, family, port, address.
    c.macros(C_CONNECT, envelope, None).await?;
    let mut data = strings(&[envelope.client_name]);
    data.push(if envelope.client_ip.is_ipv4() {
        b'4'
    } else {
        b'6'
    });
    data.extend_from_slice(&envelope.client_port.to_be_bytes());
    data.extend(strings(&[&envelope.client_ip.to_string()]));
    match c.stage(C_CONNECT, &data, P_NOCONNECT, P_NR_CONN).await? {
        Step::Done(Action::Accept) => return Ok(accept()),
        Step::Done(a) => return Ok(done(a)),
        _ => {}
    }
    c.macros(C_HELO, envelope, None).await?;
    match c
        .stage(C_HELO, &strings(&[envelope.helo]), P_NOHELO, P_NR_HELO)
        .await?
    {
        Step::Done(Action::Accept) => return Ok(accept()),
        Step::Done(a) => return Ok(done(a)),
        _ => {}
    }
    c.macros(C_MAIL, envelope, None).await?;
    let from = format!("<{}>", envelope.mail_from);
    match c
        .stage(C_MAIL, &strings(&[&from]), P_NOMAIL, P_NR_MAIL)
        .await?
    {
        Step::Done(Action::Accept) => return Ok(accept()),
        Step::Done(a) => return Ok(done(a)),
        _ => {}
    }
    for rcpt in envelope.rcpt_to {
        c.macros(C_RCPT, envelope, Some(rcpt)).await?;
        let to = format!("<{rcpt}>");
        match c
            .stage(C_RCPT, &strings(&[&to]), P_NORCPT, P_NR_RCPT)
            .await?
        {
            Step::Done(Action::Accept) => return Ok(accept()),
            Step::Done(a) => return Ok(done(a)),
            _ => {}
        }
    }
    c.macros(C_DATA, envelope, None).await?;
    match c.stage(C_DATA, &[], P_NODATA, P_NR_DATA).await? {
        Step::Done(Action::Accept) => return Ok(accept()),
        Step::Done(a) => return Ok(done(a)),
        _ => {}
    }
    let (fields, body) = split_message(message);
    let leading_space = c.negotiated.protocol & P_HDR_LEADSPC != 0;
    for (name, value) in &fields {
        // Values go as they are in the message, folds as bare LF (as Postfix sends
        // them), without the space after the colon unless the milter asked for it.
        let value = value.replace("\r\n", "\n");
        let value = if leading_space {
            value
        } else {
            value.trim_start_matches([' ', '\t']).to_string()
        };
        match c
            .stage(C_HEADER, &strings(&[name, &value]), P_NOHDRS, P_NR_HDR)
            .await?
        {
            Step::Done(Action::Accept) => return Ok(accept()),
            Step::Done(a) => return Ok(done(a)),
            _ => {}
        }
    }
    c.macros(C_EOH, envelope, None).await?;
    match c.stage(C_EOH, &[], P_NOEOH, P_NR_EOH).await? {
        Step::Done(Action::Accept) => return Ok(accept()),
        Step::Done(a) => return Ok(done(a)),
        _ => {}
    }
    for chunk in body.chunks(CHUNK) {
        match c.stage(C_BODY, chunk, P_NOBODY, P_NR_BODY).await? {
            Step::Done(Action::Accept) => return Ok(accept()),
            Step::Done(a) => return Ok(done(a)),
            // SMFIR_SKIP: the milter has seen enough of the body.
            Step::Skip => break,
            Step::Continue => {}
        }
    }
    c.macros(C_BODYEOB, envelope, None).await?;
    c.end_of_body().await
}

/// A message's header fields (name, raw value after the colon, folds kept) and body.
fn split_message(message: &[u8]) -> (Vec<(String, String)>, &[u8]) {
    let end = if message.starts_with(b"\r\n") {
        0
    } else {
        message
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(message.len(), |p| p + 2)
    };
    let head = String::from_utf8_lossy(&message[..end]);
    let body = message.get(end + 2..).unwrap_or(&[]);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in head.split_inclusive("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = fields.last_mut() {
                last.1.push_str(line);
            }
        } else if let Some((name, value)) = line.split_once(':') {
            fields.push((name.to_string(), value.to_string()));
        }
    }
    for field in &mut fields {
        if field.1.ends_with("\r\n") {
            field.1.truncate(field.1.len() - 2);
        }
    }
    (fields, body)
}

/// Applies header changes to `message` (CRLF), as the MTA does after end of body.
/// Values a milter sends folded with bare LF get CRLF.
pub fn apply(message: &[u8], changes: &[HeaderChange]) -> Vec<u8> {
    let (mut fields, body) = split_message(message);
    let fix = |v: &str| {
        let v = v.replace("\r\n", "\n").replace('\n', "\r\n");
        if v.starts_with([' ', '\t']) {
            v
        } else {
            format!(" {v}")
        }
    };
    for change in changes {
        match change {
            HeaderChange::Add { name, value } => fields.push((name.clone(), fix(value))),
            HeaderChange::Change { index, name, value } => {
                let position = fields
                    .iter()
                    .enumerate()
                    .filter(|(_, (n, _))| n.eq_ignore_ascii_case(name))
                    .nth((*index).max(1) as usize - 1)
                    .map(|(i, _)| i);
                match (position, value.is_empty()) {
                    (Some(i), true) => {
                        fields.remove(i);
                    }
                    (Some(i), false) => fields[i].1 = fix(value),
                    // Changing a field that does not exist adds it (libmilter semantics).
                    (None, false) => fields.push((name.clone(), fix(value))),
                    (None, true) => {}
                }
            }
            HeaderChange::Insert { index, name, value } => {
                let at = (*index as usize).min(fields.len());
                fields.insert(at, (name.clone(), fix(value)));
            }
        }
    }
    let mut out = Vec::with_capacity(message.len() + 256);
    for (name, value) in fields {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optneg_with_and_without_macro_lists() {
        let mut data = Vec::new();
        data.extend_from_slice(&6u32.to_be_bytes());
        data.extend_from_slice(&0x11u32.to_be_bytes());
        data.extend_from_slice(&(P_NR_HDR | P_NOHELO).to_be_bytes());
        let plain = parse_optneg(&data).unwrap();
        assert_eq!((plain.actions, plain.protocol), (0x11, P_NR_HDR | P_NOHELO));
        assert!(plain.macros.iter().all(Option::is_none));
        data.extend_from_slice(&2u32.to_be_bytes());
        data.extend_from_slice(b"{mail_addr} i\0");
        data.extend_from_slice(&0u32.to_be_bytes());
        data.extend_from_slice(b"j {client_addr}\0");
        let with = parse_optneg(&data).unwrap();
        assert_eq!(
            with.macros[2],
            Some(vec!["mail_addr".to_string(), "i".to_string()])
        );
        assert_eq!(
            with.macros[0],
            Some(vec!["j".to_string(), "client_addr".to_string()])
        );
        assert!(parse_optneg(&data[..8]).is_err());
    }

    #[test]
    fn packets_are_length_prefixed() {
        assert_eq!(packet(b'Q', &[]), vec![0, 0, 0, 1, b'Q']);
        assert_eq!(packet(b'H', b"a\0"), vec![0, 0, 0, 3, b'H', b'a', 0]);
    }

    #[test]
    fn header_changes_apply_like_an_mta() {
        let msg = b"Received: one\r\nSubject: hi\r\nX-A: 1\r\nX-A: 2\r\n folded\r\n\r\nbody\r\n";
        let out = apply(
            msg,
            &[
                HeaderChange::Add {
                    name: "X-Spam-Status".into(),
                    value: "No, score=1.0\n\ttests=ALL_TRUSTED".into(),
                },
                HeaderChange::Change {
                    index: 2,
                    name: "x-a".into(),
                    value: "two".into(),
                },
                HeaderChange::Change {
                    index: 1,
                    name: "Subject".into(),
                    value: String::new(),
                },
                HeaderChange::Insert {
                    index: 0,
                    name: "X-First".into(),
                    value: "yes".into(),
                },
            ],
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "X-First: yes\r\nReceived: one\r\nX-A: 1\r\nX-A: two\r\nX-Spam-Status: No, score=1.0\r\n\ttests=ALL_TRUSTED\r\n\r\nbody\r\n"
        );
    }

    #[test]
    fn reply_codes() {
        assert_eq!(
            final_action(R_REPLYCODE, b"550 5.7.1 Blocked by SpamAssassin\0").unwrap(),
            Action::Reject {
                code: 550,
                enhanced: "5.7.1".into(),
                text: "Blocked by SpamAssassin".into()
            }
        );
        assert_eq!(
            final_action(R_REPLYCODE, b"451 Try later\0").unwrap(),
            Action::TempFail {
                code: 451,
                enhanced: "4.7.1".into(),
                text: "Try later".into()
            }
        );
        assert!(matches!(
            final_action(R_REJECT, b"").unwrap(),
            Action::Reject { code: 550, .. }
        ));
        assert!(matches!(
            final_action(R_TEMPFAIL, b"").unwrap(),
            Action::TempFail { code: 451, .. }
        ));
        assert_eq!(final_action(R_DISCARD, b"").unwrap(), Action::Discard);
        assert!(final_action(b'z', b"").is_err());
    }

    /// A fake milter: answers OPTNEG, then plays `script` (one reply packet per
    /// command received after OPTNEG, macros excepted).
    async fn fake_milter(script: Vec<Vec<u8>>) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut script = script.into_iter();
            loop {
                let mut len = [0u8; 4];
                if s.read_exact(&mut len).await.is_err() {
                    return;
                }
                let mut buf = vec![0u8; u32::from_be_bytes(len) as usize];
                if s.read_exact(&mut buf).await.is_err() {
                    return;
                }
                let reply = match buf[0] {
                    C_OPTNEG => {
                        let mut d = Vec::new();
                        d.extend_from_slice(&6u32.to_be_bytes());
                        d.extend_from_slice(&F_OFFERED.to_be_bytes());
                        d.extend_from_slice(&0u32.to_be_bytes());
                        packet(C_OPTNEG, &d)
                    }
                    C_MACRO | C_QUIT => continue,
                    _ => match script.next() {
                        Some(r) if r.is_empty() => continue, // never answer
                        Some(r) => r,
                        None => packet(R_CONTINUE, &[]),
                    },
                };
                if s.write_all(&reply).await.is_err() {
                    return;
                }
            }
        });
        addr
    }

    fn envelope<'a>(rcpts: &'a [String]) -> Envelope<'a> {
        Envelope {
            our_hostname: "mx.example.test",
            client_ip: "192.0.2.1".parse().unwrap(),
            client_port: 4000,
            client_name: "[192.0.2.1]",
            helo: "client.test",
            mail_from: "a@remote.test",
            rcpt_to: rcpts,
            queue_id: "Q1",
            tls_version: None,
        }
    }

    async fn run(script: Vec<Vec<u8>>, timeout_ms: u64) -> Result<Verdict, Error> {
        let addr = fake_milter(script).await;
        let config = MilterConfig {
            address: addr.to_string(),
            timeout: Duration::from_millis(timeout_ms),
        };
        let rcpts = vec!["b@example.test".to_string()];
        check(&config, &envelope(&rcpts), b"Subject: x\r\n\r\nbody\r\n").await
    }

    #[tokio::test]
    async fn every_reply_kind_is_understood() {
        let c = || packet(R_CONTINUE, &[]);
        // Stages: connect, helo, mail, rcpt, data, header, eoh, body, eob.
        let v = run(vec![c(), c(), packet(R_REJECT, &[])], 2000)
            .await
            .unwrap();
        assert!(matches!(v.action, Action::Reject { code: 550, .. }));
        let v = run(vec![c(), c(), c(), packet(R_TEMPFAIL, &[])], 2000)
            .await
            .unwrap();
        assert!(matches!(v.action, Action::TempFail { code: 451, .. }));
        let v = run(vec![c(), c(), c(), packet(R_ACCEPT, &[])], 2000)
            .await
            .unwrap();
        assert_eq!(v.action, Action::Accept, "ACCEPT at RCPT ends early");
        let mut eob_changes = vec![
            c(),
            c(),
            c(),
            c(),
            c(),
            c(),
            c(),
            [packet(R_PROGRESS, &[]), c()].concat(),
        ];
        let mut chg = 1u32.to_be_bytes().to_vec();
        chg.extend(strings(&["Subject", "changed"]));
        let mut ins = 0u32.to_be_bytes().to_vec();
        ins.extend(strings(&["X-First", "1"]));
        // At end of body: the modifications come before the final reply, all in a row;
        // the fake sends one packet per command, so send them joined.
        eob_changes.push(
            [
                packet(R_CHGHEADER, &chg),
                packet(R_INSHEADER, &ins),
                packet(R_DISCARD, &[]),
            ]
            .concat(),
        );
        let v = run(eob_changes, 2000).await.unwrap();
        assert_eq!(v.action, Action::Discard);
        assert_eq!(v.header_changes.len(), 2, "{v:?}");
        let v = run(
            vec![
                c(),
                c(),
                c(),
                c(),
                c(),
                c(),
                c(),
                packet(R_SKIP, &[]),
                packet(R_REPLYCODE, b"554 5.7.1 No\0"),
            ],
            2000,
        )
        .await
        .unwrap();
        assert_eq!(
            v.action,
            Action::Reject {
                code: 554,
                enhanced: "5.7.1".into(),
                text: "No".into()
            }
        );
    }

    #[tokio::test]
    async fn silence_times_out_and_oversized_packets_are_refused() {
        let start = std::time::Instant::now();
        let e = run(vec![packet(R_CONTINUE, &[]), Vec::new()], 300)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Timeout(_)), "{e}");
        assert!(start.elapsed() < Duration::from_secs(2));
        let huge = [(u32::MAX).to_be_bytes().to_vec(), vec![R_CONTINUE]].concat();
        let e = run(vec![huge], 2000).await.unwrap_err();
        assert!(matches!(e, Error::Protocol(_)), "{e}");
        let closed = run(vec![], 300);
        let _ = closed.await;
        let nothing = check(
            &MilterConfig {
                address: "127.0.0.1:9".into(),
                timeout: Duration::from_millis(300),
            },
            &envelope(&[]),
            b"\r\n",
        )
        .await
        .unwrap_err();
        assert!(matches!(nothing, Error::Connect { .. }), "{nothing}");
    }
}
