//! The MTA side of the Sendmail milter protocol, version 6: how the MX asks a filter
//! (SpamAssassin through spamass-milter, rspamd, opendkim...) about a message after
//! DATA. No maintained crate speaks this side (DEPENDENCIES.md), so it is written here
//! after libmilter's `mfdef.h` (the protocol has no RFC: citations name that header's
//! constants). Every packet is a 4-byte big-endian length (command byte plus data), the
//! command byte and the data; strings are NUL-terminated.
//!
//! One connection per message: option negotiation, then CONNECT, HELO, MAIL, each RCPT,
//! DATA, each header, end of headers, the body in chunks, end of body, QUIT. Stages the
//! milter declined are skipped (macros included), replies it said it would not send are
//! not awaited.
//!
//! Actions offered: ADDHDRS, CHGHDRS, SETSYMLIST, and CHGBODY. CHGBODY is offered only
//! because libmilter hangs up when the MTA offers less than the filter registered for,
//! and spamass-milter registers ADDHDRS|CHGHDRS|CHGBODY. A replaced body is never
//! applied (logged), and the Content-Type / Content-Transfer-Encoding changes that come
//! with it are dropped, so the message stays as received and consistent. Recipient,
//! sender and quarantine changes are not offered; sent anyway, they are logged and
//! ignored.

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Where the milter listens and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MilterConfig {
    /// `ip:port` (also Postfix's `inet:ip:port`), or `unix:/path`.
    pub address: String,
    /// Bound on connecting and on each read and write; a PROGRESS reply restarts it.
    pub timeout: Duration,
}

/// The message's envelope: what the stages and the milter's macros are made of.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// Our host name (macro `j`).
    pub our_hostname: &'a str,
    /// The client's address.
    pub client_ip: IpAddr,
    /// The client's port.
    pub client_port: u16,
    /// The client's name from reverse DNS, or `[ip]` without one.
    pub client_name: &'a str,
    /// The EHLO/HELO argument.
    pub helo: &'a str,
    /// MAIL FROM address without brackets ("" for `<>`).
    pub mail_from: &'a str,
    /// RCPT TO addresses without brackets.
    pub rcpt_to: &'a [String],
    /// Our id for the message (macro `i`).
    pub queue_id: &'a str,
    /// TLS version, when the session is under TLS (macro `{tls_version}`).
    pub tls_version: Option<&'a str>,
}

/// The milter's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Deliver: CONTINUE through end of body, or ACCEPT at any stage.
    Accept,
    /// Refuse permanently (REJECT, or a 5xx REPLYCODE).
    Reject {
        /// SMTP reply code (5xx).
        code: u16,
        /// Enhanced status code (RFC 3463).
        enhanced: String,
        /// Reply text.
        text: String,
    },
    /// Refuse for now (TEMPFAIL, a 4xx REPLYCODE, SHUTDOWN or CONN_FAIL).
    TempFail {
        /// SMTP reply code (4xx).
        code: u16,
        /// Enhanced status code (RFC 3463).
        enhanced: String,
        /// Reply text.
        text: String,
    },
    /// Accept and silently drop.
    Discard,
}

/// A header modification the milter asked for at end of body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderChange {
    /// Append a field (SMFIR_ADDHEADER).
    Add {
        /// Field name.
        name: String,
        /// Field value.
        value: String,
    },
    /// Replace the `index`-th field of that name, counted from 1 (0 counts as 1); an
    /// empty value deletes it (SMFIR_CHGHEADER).
    Change {
        /// 1-based occurrence among the fields of that name.
        index: u32,
        /// Field name.
        name: String,
        /// New value ("" deletes the field).
        value: String,
    },
    /// Insert a field before the `index`-th field of the header, 0 making it the first
    /// (SMFIR_INSHEADER).
    Insert {
        /// Position among all fields.
        index: u32,
        /// Field name.
        name: String,
        /// Field value.
        value: String,
    },
}

impl HeaderChange {
    fn name(&self) -> &str {
        match self {
            Self::Add { name, .. } | Self::Change { name, .. } | Self::Insert { name, .. } => name,
        }
    }
}

/// The decision and the header changes that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// What to do with the message.
    pub action: Action,
    /// Header changes, in the order received, to [`apply`] before delivery.
    pub header_changes: Vec<HeaderChange>,
}

/// Why the milter could not give a verdict. Failing open or closed is the caller's call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Connecting failed (or timed out).
    #[error("cannot connect to the milter at {address}: {source}")]
    Connect {
        /// The configured address.
        address: String,
        /// Why.
        source: io::Error,
    },
    /// A read or write took longer than the configured timeout.
    #[error("the milter did not answer within {0:?}")]
    Timeout(Duration),
    /// The milter closed the connection mid-conversation.
    #[error("the milter closed the connection")]
    Closed,
    /// The milter announced a packet over our limit.
    #[error("milter packet of {0} bytes is over the {MAX_PACKET} byte limit")]
    TooLarge(u32),
    /// The milter broke the protocol.
    #[error("milter protocol error: {0}")]
    Protocol(String),
    /// Reading or writing failed.
    #[error("milter I/O: {0}")]
    Io(#[from] io::Error),
}

/// The protocol version we speak (mfdef.h SMFI_PROT_VERSION).
const SMFI_PROT_VERSION: u32 = 6;

// MTA to milter (mfdef.h SMFIC_*).
const SMFIC_ABORT: u8 = b'A';
const SMFIC_BODY: u8 = b'B';
const SMFIC_CONNECT: u8 = b'C';
const SMFIC_MACRO: u8 = b'D';
const SMFIC_BODYEOB: u8 = b'E';
const SMFIC_HELO: u8 = b'H';
const SMFIC_HEADER: u8 = b'L';
const SMFIC_MAIL: u8 = b'M';
const SMFIC_EOH: u8 = b'N';
const SMFIC_OPTNEG: u8 = b'O';
const SMFIC_QUIT: u8 = b'Q';
const SMFIC_RCPT: u8 = b'R';
const SMFIC_DATA: u8 = b'T';

// Milter to MTA (mfdef.h SMFIR_*).
const SMFIR_ADDRCPT: u8 = b'+';
const SMFIR_DELRCPT: u8 = b'-';
const SMFIR_ADDRCPT_PAR: u8 = b'2';
const SMFIR_SHUTDOWN: u8 = b'4';
const SMFIR_ACCEPT: u8 = b'a';
const SMFIR_REPLBODY: u8 = b'b';
const SMFIR_CONTINUE: u8 = b'c';
const SMFIR_DISCARD: u8 = b'd';
const SMFIR_CHGFROM: u8 = b'e';
const SMFIR_CONN_FAIL: u8 = b'f';
const SMFIR_ADDHEADER: u8 = b'h';
const SMFIR_INSHEADER: u8 = b'i';
const SMFIR_CHGHEADER: u8 = b'm';
const SMFIR_PROGRESS: u8 = b'p';
const SMFIR_QUARANTINE: u8 = b'q';
const SMFIR_REJECT: u8 = b'r';
const SMFIR_SKIP: u8 = b's';
const SMFIR_TEMPFAIL: u8 = b't';
const SMFIR_REPLYCODE: u8 = b'y';

// Actions (mfdef.h SMFIF_*).
const SMFIF_ADDHDRS: u32 = 0x01;
const SMFIF_CHGBODY: u32 = 0x02;
const SMFIF_CHGHDRS: u32 = 0x10;
const SMFIF_SETSYMLIST: u32 = 0x100;
/// Offered actions; see the module docs for CHGBODY. Not offered: ADDRCPT 0x04,
/// DELRCPT 0x08, QUARANTINE 0x20, CHGFROM 0x40, ADDRCPT_PAR 0x80.
const ACTIONS_OFFERED: u32 = SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_CHGBODY | SMFIF_SETSYMLIST;

// Protocol steps (mfdef.h SMFIP_*): NO* declines a stage, NR_* declines its reply.
const SMFIP_NOCONNECT: u32 = 0x01;
const SMFIP_NOHELO: u32 = 0x02;
const SMFIP_NOMAIL: u32 = 0x04;
const SMFIP_NORCPT: u32 = 0x08;
const SMFIP_NOBODY: u32 = 0x10;
const SMFIP_NOHDRS: u32 = 0x20;
const SMFIP_NOEOH: u32 = 0x40;
const SMFIP_NR_HDR: u32 = 0x80;
const SMFIP_NODATA: u32 = 0x200;
const SMFIP_RCPT_REJ: u32 = 0x800;
const SMFIP_NR_CONN: u32 = 0x1000;
const SMFIP_NR_HELO: u32 = 0x2000;
const SMFIP_NR_MAIL: u32 = 0x4000;
const SMFIP_NR_RCPT: u32 = 0x8000;
const SMFIP_NR_DATA: u32 = 0x10000;
const SMFIP_NR_EOH: u32 = 0x40000;
const SMFIP_NR_BODY: u32 = 0x80000;
const SMFIP_HDR_LEADSPC: u32 = 0x100000;
/// Every step up to HDR_LEADSPC, each of which we honour (SKIP 0x400 included;
/// NOUNKNOWN 0x100 and NR_UNKN 0x20000 cost nothing: we never send UNKNOWN). Not
/// offered: RCPT_REJ (we never pass refused recipients) and MDS_256K / MDS_1M (our
/// packets fit libmilter's default 64 KiB).
const PROTOCOL_OFFERED: u32 = (SMFIP_HDR_LEADSPC * 2 - 1) & !SMFIP_RCPT_REJ;

/// libmilter's body chunk size and default data limit (mfdef.h MILTER_CHUNK_SIZE,
/// MILTER_MAX_DATA_SIZE): no packet we send carries more data than this.
const MILTER_CHUNK_SIZE: usize = 65535;
/// The largest packet we accept from a milter.
const MAX_PACKET: u32 = 64 << 20;

/// A conversation stage, in protocol order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Connect,
    Helo,
    Mail,
    Rcpt,
    Data,
    Header,
    Eoh,
    Body,
    Eob,
}

impl Stage {
    /// The command; the SMFIP_NO* bit that declines the stage and the SMFIP_NR_* bit
    /// that declines its reply (end of body: neither); the SMFIM_* macro list index.
    fn spec(self) -> (u8, u32, u32, Option<usize>) {
        match self {
            Self::Connect => (SMFIC_CONNECT, SMFIP_NOCONNECT, SMFIP_NR_CONN, Some(0)),
            Self::Helo => (SMFIC_HELO, SMFIP_NOHELO, SMFIP_NR_HELO, Some(1)),
            Self::Mail => (SMFIC_MAIL, SMFIP_NOMAIL, SMFIP_NR_MAIL, Some(2)),
            Self::Rcpt => (SMFIC_RCPT, SMFIP_NORCPT, SMFIP_NR_RCPT, Some(3)),
            Self::Data => (SMFIC_DATA, SMFIP_NODATA, SMFIP_NR_DATA, Some(4)),
            Self::Header => (SMFIC_HEADER, SMFIP_NOHDRS, SMFIP_NR_HDR, None),
            Self::Eoh => (SMFIC_EOH, SMFIP_NOEOH, SMFIP_NR_EOH, Some(6)),
            Self::Body => (SMFIC_BODY, SMFIP_NOBODY, SMFIP_NR_BODY, None),
            Self::Eob => (SMFIC_BODYEOB, 0, 0, Some(5)),
        }
    }

    /// Macros sent when the milter gave no list for the stage: Postfix's defaults plus
    /// what spamass-milter reads (`j`, `_`, `i`, `s`, `r`, `v`, `Z`, `{rcpt_addr}`).
    /// libmilter keeps each stage's macros for the rest of the conversation.
    fn default_macros(self) -> &'static [&'static str] {
        match self {
            Self::Connect => &[
                "j",
                "_",
                "daemon_name",
                "client_addr",
                "client_name",
                "client_port",
                "v",
                "Z",
            ],
            Self::Helo => &["s", "tls_version"],
            Self::Mail => &["i", "r", "mail_addr"],
            Self::Rcpt => &["rcpt_addr"],
            Self::Data | Self::Eoh | Self::Eob => &["i"],
            Self::Header | Self::Body => &[],
        }
    }
}

/// The milter's answer to our OPTNEG.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Negotiated {
    version: u32,
    /// SMFIF_* bits it wants, within what we offered.
    actions: u32,
    /// SMFIP_* bits it set, within what we offered.
    protocol: u32,
    /// Macro names (braces removed) it asked for, by SMFIM_* index.
    macros: [Option<Vec<String>>; 7],
}

fn take_u32(data: &[u8]) -> Option<(u32, &[u8])> {
    let (word, rest) = data.split_first_chunk::<4>()?;
    Some((u32::from_be_bytes(*word), rest))
}

/// A NUL-terminated string and what follows it; `None` without a NUL.
fn take_cstr(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = data.iter().position(|b| *b == 0)?;
    Some((&data[..end], &data[end + 1..]))
}

/// Appends `s` NUL-terminated; NULs inside it would break the framing and are dropped.
fn push_cstr(out: &mut Vec<u8>, s: impl AsRef<[u8]>) {
    out.extend(s.as_ref().iter().filter(|b| **b != 0));
    out.push(0);
}

/// A packet: length (command byte + data), command, data.
fn encode(command: u8, data: &[u8]) -> Vec<u8> {
    // Our packets carry at most one body chunk, a header or the macros: far below 4 GiB.
    let len = u32::try_from(data.len() + 1).unwrap_or(u32::MAX);
    let mut packet = Vec::with_capacity(data.len() + 5);
    packet.extend_from_slice(&len.to_be_bytes());
    packet.push(command);
    packet.extend_from_slice(data);
    packet
}

fn optneg_request() -> Vec<u8> {
    [SMFI_PROT_VERSION, ACTIONS_OFFERED, PROTOCOL_OFFERED]
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .collect()
}

/// Parses the milter's OPTNEG reply: version, actions, protocol steps, then (v6) any
/// number of `u32 SMFIM_* stage` + NUL-terminated space-separated macro names.
fn parse_optneg(data: &[u8]) -> Result<Negotiated, Error> {
    let short = || Error::Protocol(format!("OPTNEG reply of {} bytes", data.len()));
    let (version, rest) = take_u32(data).ok_or_else(short)?;
    let (actions, rest) = take_u32(rest).ok_or_else(short)?;
    let (protocol, mut rest) = take_u32(rest).ok_or_else(short)?;
    if version < 2 {
        return Err(Error::Protocol(format!(
            "milter protocol version {version}"
        )));
    }
    if actions & !ACTIONS_OFFERED != 0 || protocol & !PROTOCOL_OFFERED != 0 {
        tracing::debug!(
            actions = format_args!("{actions:#x}"),
            protocol = format_args!("{protocol:#x}"),
            "the milter asked for actions or steps we did not offer: ignored"
        );
    }
    let mut negotiated = Negotiated {
        version,
        actions: actions & ACTIONS_OFFERED,
        protocol: protocol & PROTOCOL_OFFERED,
        macros: Default::default(),
    };
    while let Some((stage, after)) = take_u32(rest) {
        let (names, after) = take_cstr(after).unwrap_or((after, &[]));
        let names = String::from_utf8_lossy(names)
            .split([' ', ','])
            .filter(|n| !n.is_empty())
            .map(|n| n.trim_start_matches('{').trim_end_matches('}').to_string())
            .collect();
        match negotiated.macros.get_mut(stage as usize) {
            Some(slot) => *slot = Some(names),
            None => tracing::debug!(stage, "macro list for an unknown stage: ignored"),
        }
        rest = after;
    }
    Ok(negotiated)
}

/// The value of macro `name` (braces removed) for `envelope`, when we know it.
/// `{auth_authen}` and `{auth_type}` are never sent: the envelope carries no
/// authenticated identity, and an empty `{auth_authen}` reads as authenticated to rspamd.
fn macro_value(name: &str, envelope: &Envelope<'_>, rcpt: Option<&str>) -> Option<String> {
    let ip = envelope.client_ip.to_canonical();
    Some(match name {
        "j" => envelope.our_hostname.to_string(),
        // Sendmail's `_`: "name [ip]", or "[ip]" without reverse DNS.
        "_" if envelope.client_name.starts_with('[') => format!("[{ip}]"),
        "_" => format!("{} [{ip}]", envelope.client_name),
        "daemon_name" => "postern".to_string(),
        "client_addr" => ip.to_string(),
        "client_name" => envelope.client_name.to_string(),
        "client_port" => envelope.client_port.to_string(),
        "s" => envelope.helo.to_string(),
        "r" if envelope.tls_version.is_some() => "ESMTPS".to_string(),
        "r" => "ESMTP".to_string(),
        "i" => envelope.queue_id.to_string(),
        "mail_addr" => envelope.mail_from.to_string(),
        "rcpt_addr" => rcpt?.to_string(),
        "tls_version" => envelope.tls_version?.to_string(),
        "v" => "Postern".to_string(),
        "Z" => env!("CARGO_PKG_VERSION").to_string(),
        _ => return None,
    })
}

/// What a stage's reply means for the conversation.
#[derive(Debug)]
enum Step {
    Continue,
    /// SMFIR_SKIP: send no more body chunks.
    Skip,
    Done(Action),
}

fn default_reject() -> Action {
    Action::Reject {
        code: 550,
        enhanced: "5.7.1".into(),
        text: "Command rejected".into(),
    }
}

fn default_tempfail() -> Action {
    Action::TempFail {
        code: 451,
        enhanced: "4.7.1".into(),
        text: "Try again later".into(),
    }
}

/// The action of a reply that ends the conversation; anything else is a protocol error.
fn final_action(reply: u8, data: &[u8]) -> Result<Action, Error> {
    match reply {
        SMFIR_ACCEPT => Ok(Action::Accept),
        SMFIR_DISCARD => Ok(Action::Discard),
        SMFIR_REJECT => Ok(default_reject()),
        SMFIR_TEMPFAIL | SMFIR_SHUTDOWN | SMFIR_CONN_FAIL => Ok(default_tempfail()),
        SMFIR_REPLYCODE => parse_replycode(data),
        other => Err(Error::Protocol(format!(
            "unexpected reply {:?} ({other:#04x})",
            char::from(other)
        ))),
    }
}

/// SMFIR_REPLYCODE: `"550 5.7.1 text"`, or several lines `"550-5.7.1 a\r\n550 5.7.1 b"`
/// (smfi_setmlreply). Only 4xx and 5xx are allowed (smfi_setreply); an enhanced code
/// (RFC 3463) must match the reply's class, else the default x.7.1 stands in for it.
fn parse_replycode(data: &[u8]) -> Result<Action, Error> {
    let raw = take_cstr(data).map_or(data, |(s, _)| s);
    let raw = String::from_utf8_lossy(raw);
    let bad = || Error::Protocol(format!("bad REPLYCODE {raw:?}"));
    let (mut code, mut enhanced, mut texts) = (None, None, Vec::new());
    for line in raw.split('\n').map(str::trim_end).filter(|l| !l.is_empty()) {
        let (digits, rest) = line.split_at_checked(3).ok_or_else(bad)?;
        let this: u16 = digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())
            .flatten()
            .filter(|c| (400..600).contains(c))
            .ok_or_else(bad)?;
        let rest = match rest.as_bytes().first() {
            None => "",
            Some(b' ' | b'-') => &rest[1..],
            Some(_) => return Err(bad()),
        };
        let code = *code.get_or_insert(this);
        let class = char::from(b'0' + (code / 100) as u8);
        let (first, text) = rest.split_once(' ').unwrap_or((rest, ""));
        let is_enhanced = first.starts_with(class)
            && first.split('.').count() == 3
            && first
                .split('.')
                .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
        if is_enhanced {
            enhanced.get_or_insert_with(|| first.to_string());
            texts.push(text);
        } else {
            texts.push(rest);
        }
    }
    let code = code.ok_or_else(bad)?;
    let text: String = texts
        .join(" ")
        .replace("%%", "%")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let (default_enhanced, fallback) = if code >= 500 {
        ("5.7.1", "Command rejected")
    } else {
        ("4.7.1", "Try again later")
    };
    let enhanced = enhanced.unwrap_or_else(|| default_enhanced.to_string());
    let text = match text.trim() {
        "" => fallback.to_string(),
        text => text.to_string(),
    };
    Ok(if code >= 500 {
        Action::Reject {
            code,
            enhanced,
            text,
        }
    } else {
        Action::TempFail {
            code,
            enhanced,
            text,
        }
    })
}

/// SMFIR_ADDHEADER (name, value), SMFIR_CHGHEADER / SMFIR_INSHEADER (u32 index, name,
/// value).
fn parse_header_change(reply: u8, data: &[u8]) -> Result<HeaderChange, Error> {
    let bad = || Error::Protocol(format!("malformed header change {:?}", char::from(reply)));
    let (index, rest) = match reply {
        SMFIR_ADDHEADER => (0, data),
        _ => take_u32(data).ok_or_else(bad)?,
    };
    let (name, rest) = take_cstr(rest).ok_or_else(bad)?;
    let value = take_cstr(rest).map_or(rest, |(v, _)| v);
    let name = String::from_utf8_lossy(name).into_owned();
    let value = String::from_utf8_lossy(value).into_owned();
    Ok(match reply {
        SMFIR_ADDHEADER => HeaderChange::Add { name, value },
        SMFIR_CHGHEADER => HeaderChange::Change { index, name, value },
        _ => HeaderChange::Insert { index, name, value },
    })
}

/// RFC 5322 §3.6.8: field-name = 1*ftext, printable ASCII but the colon.
/// Fields describing the body, meaningless with a body replacement we do not apply.
fn describes_body(name: &str) -> bool {
    name.eq_ignore_ascii_case("Content-Type")
        || name.eq_ignore_ascii_case("Content-Transfer-Encoding")
}

/// One conversation over any stream.
struct Session<S> {
    stream: S,
    timeout: Duration,
    negotiated: Negotiated,
    /// Between MAIL and the end-of-body reply: ending early needs SMFIC_ABORT.
    in_message: bool,
}

/// A peer that hung up shows as one of these.
fn from_io(e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::UnexpectedEof
        | io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::ConnectionAborted => Error::Closed,
        _ => Error::Io(e),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    fn new(stream: S, timeout: Duration) -> Self {
        Session {
            stream,
            timeout,
            negotiated: Negotiated::default(),
            in_message: false,
        }
    }

    async fn write(&mut self, command: u8, data: &[u8]) -> Result<(), Error> {
        let packet = encode(command, data);
        let stream = &mut self.stream;
        let write = async move {
            stream.write_all(&packet).await?;
            stream.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Ok(result) => result.map_err(from_io),
            Err(_) => Err(Error::Timeout(self.timeout)),
        }
    }

    /// One packet: (command, data). The buffer grows as bytes arrive, so a forged length
    /// allocates nothing by itself.
    async fn read(&mut self) -> Result<(u8, Vec<u8>), Error> {
        let stream = &mut self.stream;
        let read = async move {
            let len = stream.read_u32().await.map_err(from_io)?;
            if len == 0 {
                return Err(Error::Protocol("empty packet".into()));
            }
            if len > MAX_PACKET {
                return Err(Error::TooLarge(len));
            }
            let command = stream.read_u8().await.map_err(from_io)?;
            let want = len as usize - 1;
            let mut data = Vec::with_capacity(want.min(MILTER_CHUNK_SIZE));
            (&mut *stream)
                .take(want as u64)
                .read_to_end(&mut data)
                .await
                .map_err(from_io)?;
            if data.len() < want {
                return Err(Error::Closed);
            }
            Ok((command, data))
        };
        match tokio::time::timeout(self.timeout, read).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout(self.timeout)),
        }
    }

    async fn negotiate(&mut self) -> Result<(), Error> {
        self.write(SMFIC_OPTNEG, &optneg_request()).await?;
        let (reply, data) = match self.read().await {
            // libmilter hangs up when we offer less than the filter registered for.
            Err(Error::Closed) => {
                return Err(Error::Protocol(format!(
                    "the milter hung up at option negotiation; it may need actions we do not offer (we offer {ACTIONS_OFFERED:#x})"
                )));
            }
            other => other?,
        };
        if reply != SMFIC_OPTNEG {
            return Err(Error::Protocol(format!(
                "expected OPTNEG, got {:?}",
                char::from(reply)
            )));
        }
        self.negotiated = parse_optneg(&data)?;
        tracing::debug!(
            version = self.negotiated.version,
            actions = format_args!("{:#x}", self.negotiated.actions),
            protocol = format_args!("{:#x}", self.negotiated.protocol),
            macros = ?self.negotiated.macros,
            "milter negotiated"
        );
        Ok(())
    }

    fn declined(&self, stage: Stage) -> bool {
        let (_, declined_by, _, _) = stage.spec();
        self.negotiated.protocol & declined_by != 0
    }

    /// SMFIC_MACRO before `stage`: the names the milter asked for, else our defaults;
    /// names we have no value for are left out.
    async fn send_macros(
        &mut self,
        stage: Stage,
        envelope: &Envelope<'_>,
        rcpt: Option<&str>,
    ) -> Result<(), Error> {
        let (command, _, _, Some(index)) = stage.spec() else {
            return Ok(());
        };
        let mut data = vec![command];
        let requested = self.negotiated.macros.get(index).and_then(Option::as_ref);
        let names: Vec<&str> = match requested {
            Some(list) => list.iter().map(String::as_str).collect(),
            None => stage.default_macros().to_vec(),
        };
        for name in names {
            if let Some(value) = macro_value(name, envelope, rcpt) {
                if name.len() == 1 {
                    push_cstr(&mut data, name);
                } else {
                    push_cstr(&mut data, format!("{{{name}}}"));
                }
                push_cstr(&mut data, value);
            }
        }
        if data.len() > 1 {
            self.write(SMFIC_MACRO, &data).await?;
        }
        Ok(())
    }

    /// Sends `stage` unless declined and reads its reply unless the milter said it sends
    /// none (PROGRESS only restarts the wait).
    async fn ask(&mut self, stage: Stage, data: &[u8]) -> Result<Step, Error> {
        if self.declined(stage) {
            return Ok(Step::Continue);
        }
        let (command, _, unanswered_by, _) = stage.spec();
        self.write(command, data).await?;
        if self.negotiated.protocol & unanswered_by != 0 {
            return Ok(Step::Continue);
        }
        loop {
            let (reply, data) = self.read().await?;
            match reply {
                SMFIR_PROGRESS => {}
                SMFIR_CONTINUE => return Ok(Step::Continue),
                SMFIR_SKIP if stage == Stage::Body => return Ok(Step::Skip),
                other => return final_action(other, &data).map(Step::Done),
            }
        }
    }

    /// Macros, then the stage.
    async fn stage(
        &mut self,
        stage: Stage,
        data: &[u8],
        envelope: &Envelope<'_>,
        rcpt: Option<&str>,
    ) -> Result<Step, Error> {
        if self.declined(stage) {
            return Ok(Step::Continue);
        }
        self.send_macros(stage, envelope, rcpt).await?;
        self.ask(stage, data).await
    }

    /// Every stage up to the end-of-body verdict. Any final reply before it ends the
    /// conversation: a refused recipient refuses the message, since the caller asks once
    /// for all recipients after DATA.
    async fn run(&mut self, envelope: &Envelope<'_>, message: &[u8]) -> Result<Verdict, Error> {
        let early = |action| {
            Ok(Verdict {
                action,
                header_changes: Vec::new(),
            })
        };
        let ip = envelope.client_ip.to_canonical();
        // SMFIC_CONNECT: hostname, family ('4' / '6'), port (u16), address.
        let mut connect = Vec::new();
        push_cstr(&mut connect, envelope.client_name);
        connect.push(if ip.is_ipv4() { b'4' } else { b'6' });
        connect.extend_from_slice(&envelope.client_port.to_be_bytes());
        push_cstr(&mut connect, ip.to_string());
        let mut helo = Vec::new();
        push_cstr(&mut helo, envelope.helo);
        // SMFIC_MAIL / SMFIC_RCPT: the address in brackets, then ESMTP arguments (none).
        let mut mail = Vec::new();
        push_cstr(&mut mail, format!("<{}>", envelope.mail_from));
        let mut steps = vec![
            (Stage::Connect, connect, None),
            (Stage::Helo, helo, None),
            (Stage::Mail, mail, None),
        ];
        for rcpt in envelope.rcpt_to {
            let mut data = Vec::new();
            push_cstr(&mut data, format!("<{rcpt}>"));
            steps.push((Stage::Rcpt, data, Some(rcpt.as_str())));
        }
        steps.push((Stage::Data, Vec::new(), None));
        for (stage, data, rcpt) in steps {
            self.in_message |= stage == Stage::Mail;
            if let Step::Done(a) = self.stage(stage, &data, envelope, rcpt).await? {
                return early(a);
            }
        }
        let (fields, _, body_start) = split_message(message);
        let leading_space = self.negotiated.protocol & SMFIP_HDR_LEADSPC != 0;
        if !self.declined(Stage::Header) {
            for field in &fields {
                let Some(data) = header_data(field, leading_space) else {
                    continue;
                };
                if let Step::Done(a) = self.ask(Stage::Header, &data).await? {
                    return early(a);
                }
            }
        }
        if let Step::Done(a) = self.stage(Stage::Eoh, &[], envelope, None).await? {
            return early(a);
        }
        if !self.declined(Stage::Body) {
            for chunk in message[body_start..].chunks(MILTER_CHUNK_SIZE) {
                match self.ask(Stage::Body, chunk).await? {
                    Step::Done(a) => return early(a),
                    Step::Skip => break,
                    Step::Continue => {}
                }
            }
        }
        self.end_of_body(envelope).await
    }

    /// SMFIC_BODYEOB: modifications, then the final reply.
    async fn end_of_body(&mut self, envelope: &Envelope<'_>) -> Result<Verdict, Error> {
        self.send_macros(Stage::Eob, envelope, None).await?;
        self.write(SMFIC_BODYEOB, &[]).await?;
        let mut changes = Vec::new();
        let mut body_replaced = false;
        let action = loop {
            let (reply, data) = self.read().await?;
            match reply {
                SMFIR_PROGRESS => {}
                SMFIR_ADDHEADER | SMFIR_CHGHEADER | SMFIR_INSHEADER => {
                    let change = parse_header_change(reply, &data)?;
                    if message::header::is_field_name(change.name().as_bytes()) {
                        changes.push(change);
                    } else {
                        tracing::warn!(
                            ?change,
                            "milter header change with an invalid name: ignored"
                        );
                    }
                }
                SMFIR_REPLBODY => body_replaced = true,
                SMFIR_ADDRCPT | SMFIR_DELRCPT | SMFIR_ADDRCPT_PAR | SMFIR_CHGFROM
                | SMFIR_QUARANTINE => tracing::warn!(
                    reply = %char::from(reply),
                    "milter asked for a change we do not allow: ignored"
                ),
                SMFIR_CONTINUE => break Action::Accept,
                other => break final_action(other, &data)?,
            }
        };
        self.in_message = false;
        if body_replaced {
            changes.retain(|c| !describes_body(c.name()));
            tracing::warn!(
                "milter replaced the body: not applied, nor its Content-Type changes (for spamass-milter, run it with -m)"
            );
        }
        Ok(Verdict {
            action,
            header_changes: changes,
        })
    }
}

/// Asks the milter at `config.address` about `message` (a whole RFC 5322 message with
/// CRLF line ends), on a connection of its own.
pub async fn check(
    config: &MilterConfig,
    envelope: &Envelope<'_>,
    message: &[u8],
) -> Result<Verdict, Error> {
    let address = config
        .address
        .strip_prefix("inet:")
        .unwrap_or(&config.address);
    if let Some(path) = address.strip_prefix("unix:") {
        let stream = connect(config, tokio::net::UnixStream::connect(path)).await?;
        converse(stream, config.timeout, envelope, message).await
    } else {
        let stream = connect(config, tokio::net::TcpStream::connect(address)).await?;
        converse(stream, config.timeout, envelope, message).await
    }
}

async fn connect<S>(
    config: &MilterConfig,
    connecting: impl Future<Output = io::Result<S>>,
) -> Result<S, Error> {
    let result = match tokio::time::timeout(config.timeout, connecting).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    };
    result.map_err(|source| Error::Connect {
        address: config.address.clone(),
        source,
    })
}

async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    timeout: Duration,
    envelope: &Envelope<'_>,
    message: &[u8],
) -> Result<Verdict, Error> {
    let mut session = Session::new(stream, timeout);
    session.negotiate().await?;
    let verdict = session.run(envelope, message).await?;
    // Best effort: the verdict stands whether or not the milter hears these.
    if session.in_message {
        let _ = session.write(SMFIC_ABORT, &[]).await;
    }
    let _ = session.write(SMFIC_QUIT, &[]).await;
    Ok(verdict)
}

/// One header field as it stands in the message: folds and line end included.
#[derive(Debug, Clone)]
struct Field<'a> {
    raw: Cow<'a, [u8]>,
    /// Where the colon is, when the first line is `name:` with a valid name; other lines
    /// are carried through untouched and never sent.
    colon: Option<usize>,
}

impl<'a> Field<'a> {
    fn new(name: &str, value: &str) -> Field<'static> {
        let mut raw = Vec::with_capacity(name.len() + value.len() + 4);
        raw.extend_from_slice(name.as_bytes());
        raw.push(b':');
        raw.extend_from_slice(fold(value).as_bytes());
        raw.extend_from_slice(b"\r\n");
        Field {
            raw: Cow::Owned(raw),
            colon: Some(name.len()),
        }
    }

    fn name(&self) -> Option<&[u8]> {
        self.colon.map(|c| self.raw[..c].trim_ascii_end())
    }

    /// Everything after the colon, without the final line end.
    fn value(&self) -> &[u8] {
        let Some(colon) = self.colon else {
            return &[];
        };
        let value = &self.raw[colon + 1..];
        let value = value.strip_suffix(b"\n").unwrap_or(value);
        value.strip_suffix(b"\r").unwrap_or(value)
    }
}

/// The header's stretches (the one message reader's, [`message::header::spans`]), where
/// the header ends and where the body starts (after the empty line, RFC 5322 §2.1).
fn split_message(message: &[u8]) -> (Vec<Field<'_>>, usize, usize) {
    let fields: Vec<Field<'_>> = message::header::spans(message)
        .map(|s| Field {
            raw: Cow::Borrowed(s.raw),
            colon: s.field.map(|f| f.colon),
        })
        .collect();
    let header_end = message::header::spans(message)
        .last()
        .map_or(0, |s| s.offset + s.raw.len());
    (fields, header_end, message::header::header_len(message))
}

/// SMFIC_HEADER data: name, value. The value goes as in the message, folds as bare LF
/// (as Sendmail and Postfix send them), without the white space after the colon unless
/// the milter asked for SMFIP_HDR_LEADSPC; cut to fit libmilter's 64 KiB data limit.
fn header_data(field: &Field<'_>, leading_space: bool) -> Option<Vec<u8>> {
    let name = field.name()?;
    let raw = field.value();
    let mut value = Vec::with_capacity(raw.len());
    for (i, b) in raw.iter().enumerate() {
        if !(*b == b'\r' && raw.get(i + 1) == Some(&b'\n')) {
            value.push(*b);
        }
    }
    if !leading_space {
        let start = value
            .iter()
            .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            .unwrap_or(value.len());
        value.drain(..start);
    }
    value.retain(|b| *b != 0);
    value.truncate(MILTER_CHUNK_SIZE.checked_sub(name.len() + 2)?);
    let mut data = Vec::with_capacity(name.len() + value.len() + 2);
    push_cstr(&mut data, name);
    push_cstr(&mut data, &value);
    Some(data)
}

/// A milter's header value as it goes into the message: a space after the colon, CRLF
/// line ends (spamass-milter folds with bare `\n\t`), every continuation line starting
/// with white space (RFC 5322 §2.2.3) so a value cannot start a field of its own, and no
/// blank line, which would end the header.
fn fold(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let lines = value
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).replace(['\r', '\0'], " "))
        .filter(|l| !l.trim().is_empty());
    for (i, line) in lines.enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        if !line.starts_with([' ', '\t']) {
            out.push(if i == 0 { ' ' } else { '\t' });
        }
        out.push_str(&line);
    }
    out
}

/// Applies header changes to a message (CRLF), in order, as the MTA must after end of
/// body: fields nobody changed keep their bytes, new values get CRLF folds. A change of
/// an occurrence that does not exist adds the field (libmilter's smfi_chgheader); one
/// with an invalid field name is skipped.
pub fn apply(message: &[u8], changes: &[HeaderChange]) -> Vec<u8> {
    if changes.is_empty() {
        return message.to_vec();
    }
    let (mut fields, header_end, _) = split_message(message);
    for change in changes {
        if !message::header::is_field_name(change.name().as_bytes()) {
            tracing::warn!(?change, "header change with an invalid field name: skipped");
            continue;
        }
        match change {
            HeaderChange::Add { name, value } => fields.push(Field::new(name, value)),
            HeaderChange::Change { index, name, value } => {
                let position = fields
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| {
                        f.name()
                            .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
                    })
                    .nth((*index).max(1) as usize - 1)
                    .map(|(i, _)| i);
                match (position, value.is_empty()) {
                    (Some(i), true) => {
                        fields.remove(i);
                    }
                    (Some(i), false) => {
                        // The field keeps its name as written; only the value changes.
                        let written = fields[i].name().unwrap_or(name.as_bytes());
                        let written = String::from_utf8_lossy(written).into_owned();
                        fields[i] = Field::new(&written, value);
                    }
                    (None, false) => fields.push(Field::new(name, value)),
                    (None, true) => {}
                }
            }
            HeaderChange::Insert { index, name, value } => {
                let at = (*index as usize).min(fields.len());
                fields.insert(at, Field::new(name, value));
            }
        }
    }
    let mut out = Vec::with_capacity(message.len() + 512);
    for field in &fields {
        out.extend_from_slice(&field.raw);
        if !field.raw.ends_with(b"\n") {
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(&message[header_end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cstrs(parts: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            push_cstr(&mut out, p);
        }
        out
    }

    fn optneg(actions: u32, protocol: u32, macros: &[(u32, &str)]) -> Vec<u8> {
        let mut data = [6, actions, protocol]
            .iter()
            .flat_map(|w: &u32| w.to_be_bytes())
            .collect::<Vec<u8>>();
        for (stage, names) in macros {
            data.extend_from_slice(&stage.to_be_bytes());
            push_cstr(&mut data, names);
        }
        data
    }

    const MESSAGE: &[u8] = b"Subject: hello\r\nX-Fold: one\r\n two\r\n\r\nbody\r\n";

    fn envelope(rcpts: &[String]) -> Envelope<'_> {
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

    /// Runs one check against a fake; returns the result, the fake's record as
    #[tokio::test]
    async fn packets_encode_and_decode() {
        assert_eq!(encode(b'Q', &[]), [0, 0, 0, 1, b'Q']);
        assert_eq!(encode(b'H', b"a\0"), [0, 0, 0, 3, b'H', b'a', 0]);
        let (mut ours, theirs) = tokio::io::duplex(1024);
        let mut session = Session::new(theirs, Duration::from_millis(300));
        ours.write_all(&encode(b'y', b"550 no\0")).await.unwrap();
        ours.write_all(&[0, 0, 0, 0]).await.unwrap();
        assert_eq!(session.read().await.unwrap(), (b'y', b"550 no\0".to_vec()));
        assert!(matches!(session.read().await, Err(Error::Protocol(_))));
        // A length promising more than ever comes, then EOF.
        ours.write_all(&[0, 0, 0, 9, b'c', 1]).await.unwrap();
        drop(ours);
        assert!(matches!(session.read().await, Err(Error::Closed)));
    }

    #[test]
    fn optneg_with_and_without_macro_lists() {
        assert_eq!(
            optneg_request(),
            [0, 0, 0, 6, 0, 0, 1, 0x13, 0, 0x1f, 0xf7, 0xff]
        );
        let plain = parse_optneg(&optneg(0x13, 0x300, &[])).unwrap();
        assert_eq!(
            (plain.version, plain.actions, plain.protocol),
            (6, 0x13, 0x300)
        );
        assert!(plain.macros.iter().all(Option::is_none));
        let lists = optneg(
            0xff,
            SMFIP_NR_HDR | 0x800,
            &[
                (2, "{mail_addr} i"),
                (0, "j {client_addr}"),
                (5, ""),
                (9, "x"),
            ],
        );
        let with = parse_optneg(&lists).unwrap();
        assert_eq!(with.actions, 0x13, "ADDRCPT & co. were not offered");
        assert_eq!(with.protocol, SMFIP_NR_HDR, "RCPT_REJ was not offered");
        assert_eq!(with.macros[2], Some(vec!["mail_addr".into(), "i".into()]));
        assert_eq!(with.macros[0], Some(vec!["j".into(), "client_addr".into()]));
        assert_eq!(with.macros[5], Some(vec![]));
        assert!(parse_optneg(&lists[..8]).is_err());
        assert!(parse_optneg(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn replycodes() {
        let reject = |code, enhanced: &str, text: &str| Action::Reject {
            code,
            enhanced: enhanced.into(),
            text: text.into(),
        };
        let parse = |s: &str| parse_replycode(format!("{s}\0").as_bytes());
        assert_eq!(
            parse("550 5.7.1 Blocked by SpamAssassin").unwrap(),
            reject(550, "5.7.1", "Blocked by SpamAssassin")
        );
        assert_eq!(parse("554 No way").unwrap(), reject(554, "5.7.1", "No way"));
        assert_eq!(
            parse("553").unwrap(),
            reject(553, "5.7.1", "Command rejected")
        );
        assert_eq!(
            parse("550-5.7.0 first\r\n550 5.7.0 100%% second").unwrap(),
            reject(550, "5.7.0", "first 100% second")
        );
        assert_eq!(
            parse("550 4.7.1 wrong class").unwrap(),
            reject(550, "5.7.1", "4.7.1 wrong class")
        );
        assert_eq!(
            parse("421 4.3.2 busy").unwrap(),
            Action::TempFail {
                code: 421,
                enhanced: "4.3.2".into(),
                text: "busy".into()
            }
        );
        for bad in ["250 ok", "abc", "55", "5500 x", "+50 x", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_values_as_sent() {
        let (fields, _, body) = split_message(MESSAGE);
        assert_eq!(&MESSAGE[body..], b"body\r\n");
        assert_eq!(
            header_data(&fields[0], false).unwrap(),
            cstrs(&["Subject", "hello"])
        );
        assert_eq!(
            header_data(&fields[1], false).unwrap(),
            cstrs(&["X-Fold", "one\n two"])
        );
        assert_eq!(
            header_data(&fields[1], true).unwrap(),
            cstrs(&["X-Fold", " one\n two"])
        );
        let odd = b"X-Empty:\r\n\tlater\r\nnot a field\r\nX-Long: ".to_vec();
        let long = [odd, vec![b'a'; 70_000], b"\r\n\r\n".to_vec()].concat();
        let (fields, _, _) = split_message(&long);
        assert_eq!(
            header_data(&fields[0], false).unwrap(),
            cstrs(&["X-Empty", "later"])
        );
        assert!(header_data(&fields[1], false).is_none());
        assert_eq!(
            header_data(&fields[2], false).unwrap().len(),
            MILTER_CHUNK_SIZE
        );
        let (fields, end, body) = split_message(b"\r\nonly body");
        assert!(fields.is_empty());
        assert_eq!((end, body), (0, 2));
    }

    #[test]
    fn apply_adds_changes_deletes_and_inserts() {
        let msg = b"Received: one\r\nSubject: hi\r\nX-A: 1\r\nX-A: 2\r\n folded\r\nX-Raw: caf\xe9\r\n\r\nbody\r\n";
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
                    index: 0,
                    name: "Subject".into(),
                    value: String::new(),
                },
                HeaderChange::Insert {
                    index: 0,
                    name: "X-First".into(),
                    value: "yes".into(),
                },
                HeaderChange::Insert {
                    index: 2,
                    name: "X-Third".into(),
                    value: "3".into(),
                },
                HeaderChange::Change {
                    index: 3,
                    name: "X-A".into(),
                    value: "added".into(),
                },
                HeaderChange::Change {
                    index: 1,
                    name: "X-Missing".into(),
                    value: String::new(),
                },
                HeaderChange::Add {
                    name: "Bad Name".into(),
                    value: "x".into(),
                },
                HeaderChange::Add {
                    name: "X-Inject".into(),
                    value: "a\nBcc: evil@example.test\n\nbody".into(),
                },
            ],
        );
        assert_eq!(
            out,
            b"X-First: yes\r\nReceived: one\r\nX-Third: 3\r\nX-A: 1\r\nX-A: two\r\nX-Raw: caf\xe9\r\n\
              X-Spam-Status: No, score=1.0\r\n\ttests=ALL_TRUSTED\r\nX-A: added\r\n\
              X-Inject: a\r\n\tBcc: evil@example.test\r\n\tbody\r\n\r\nbody\r\n"
        );
        assert_eq!(apply(msg, &[]), msg);
        let headerless = apply(
            b"X: 1",
            &[HeaderChange::Add {
                name: "Y".into(),
                value: "2".into(),
            }],
        );
        assert_eq!(headerless, b"X: 1\r\nY: 2\r\n");
    }

    #[test]
    fn client_macros() {
        let rcpts = [];
        let mut env = envelope(&rcpts);
        assert_eq!(macro_value("_", &env, None).unwrap(), "[192.0.2.1]");
        assert_eq!(macro_value("tls_version", &env, None), None);
        assert_eq!(macro_value("auth_authen", &env, None), None);
        assert_eq!(macro_value("rcpt_addr", &env, Some("x@y")).unwrap(), "x@y");
        env.client_name = "mail.remote.test";
        env.client_ip = "::ffff:192.0.2.1".parse().unwrap();
        env.tls_version = Some("TLSv1.3");
        assert_eq!(
            macro_value("_", &env, None).unwrap(),
            "mail.remote.test [192.0.2.1]"
        );
        assert_eq!(macro_value("r", &env, None).unwrap(), "ESMTPS");
    }
}
