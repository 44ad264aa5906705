//! A small IMAP client for test tools: a blocking TLS connection (the server's
//! certificate is not checked: tests talk to their own server on loopback), responses
//! read with their literals, and a parser of response data into a value tree.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

/// Accepts any certificate: the test tools talk to a server they started themselves.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS client configuration that trusts any server certificate.
pub fn tls_config() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
                .with_no_client_auth()
        });
    Arc::new(config.unwrap_or_else(|e| panic!("the ring provider supports TLS 1.2/1.3: {e}")))
}

/// One server response line, its literals inlined (`{n}` CRLF and the n octets kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line(pub Vec<u8>);

impl Line {
    /// The line as text (lossy), without the final CRLF.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(self.0.strip_suffix(b"\r\n").unwrap_or(&self.0)).into_owned()
    }
}

/// A blocking IMAPS connection.
pub struct Conn {
    stream: BufReader<StreamOwned<ClientConnection, TcpStream>>,
    next_tag: u64,
    /// Every byte read and written, for a failure report (bounded).
    pub transcript: Vec<String>,
}

impl Conn {
    /// Connects to `addr` over TLS and reads the greeting.
    pub fn connect(addr: SocketAddr, config: &Arc<ClientConfig>) -> Result<Conn> {
        let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(Duration::from_secs(120)))?;
        let name = ServerName::try_from("localhost").context("server name")?;
        let tls = ClientConnection::new(config.clone(), name)?;
        let mut conn = Conn {
            stream: BufReader::with_capacity(64 * 1024, StreamOwned::new(tls, tcp)),
            next_tag: 0,
            transcript: Vec::new(),
        };
        let greeting = conn.read_line()?;
        if !greeting.0.starts_with(b"* OK") {
            bail!("greeting: {}", greeting.text());
        }
        Ok(conn)
    }

    /// A fresh tag.
    pub fn tag(&mut self) -> String {
        self.next_tag += 1;
        format!("t{}", self.next_tag)
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.note(format!(
            "C: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ));
        let s = self.stream.get_mut();
        s.write_all(bytes)?;
        s.flush()?;
        Ok(())
    }

    fn note(&mut self, line: String) {
        if self.transcript.len() >= 400 {
            self.transcript.drain(..200);
        }
        self.transcript.push(line);
    }

    /// Reads one response line with its literals.
    pub fn read_line(&mut self) -> Result<Line> {
        let mut line = Vec::new();
        loop {
            let n = self.stream.read_until(b'\n', &mut line)?;
            if n == 0 {
                bail!("connection closed");
            }
            match literal_length(&line) {
                Some(len) => {
                    let start = line.len();
                    line.resize(start + len, 0);
                    self.stream.read_exact(&mut line[start..])?;
                }
                None => break,
            }
        }
        let shown = String::from_utf8_lossy(&line[..line.len().min(300)])
            .trim_end()
            .replace("\r\n", "\\r\\n");
        self.note(format!("S: {shown}"));
        Ok(Line(line))
    }

    /// Sends `tag command` and reads every line up to the tagged one (included).
    pub fn command(&mut self, command: &str) -> Result<(String, Vec<Line>)> {
        let tag = self.tag();
        self.send(format!("{tag} {command}\r\n").as_bytes())?;
        let lines = self.until_tagged(&tag)?;
        Ok((tag, lines))
    }

    /// Reads lines up to and including the one tagged `tag`.
    pub fn until_tagged(&mut self, tag: &str) -> Result<Vec<Line>> {
        let mut lines = Vec::new();
        let prefix = format!("{tag} ");
        loop {
            let line = self.read_line()?;
            let done = line.0.starts_with(prefix.as_bytes());
            lines.push(line);
            if done {
                return Ok(lines);
            }
        }
    }

    /// Logs in with LOGIN.
    pub fn login(&mut self, user: &str, password: &str) -> Result<()> {
        let (_, lines) = self.command(&format!("LOGIN {} {}", quote(user), quote(password)))?;
        match lines.last() {
            Some(l) if l.text().split(' ').nth(1) == Some("OK") => Ok(()),
            other => bail!("LOGIN refused: {other:?}"),
        }
    }
}

/// `"text"` with `\` and `"` escaped.
pub fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The length of the literal a line announces at its end (`{n}` or `~{n}` before CRLF).
fn literal_length(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"\r\n")?;
    let body = body.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    let digits = digits.strip_suffix(b"+").unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Response data, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// An atom (or a section name such as `BODY[HEADER.FIELDS (FROM)]<0>`).
    Atom(String),
    /// A number.
    Number(u64),
    /// A quoted string or a literal.
    Str(Vec<u8>),
    /// NIL.
    Nil,
    /// A parenthesised list.
    List(Vec<Value>),
}

impl Value {
    /// The atom's text, upper case.
    pub fn atom(&self) -> Option<String> {
        match self {
            Value::Atom(a) => Some(a.to_ascii_uppercase()),
            _ => None,
        }
    }
    /// The number.
    pub fn number(&self) -> Option<u64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }
    /// The list's items.
    pub fn list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
}

/// Parses a sequence of values separated by spaces (the rest of a response line after
/// its fixed words).
pub fn parse_values(input: &[u8]) -> Result<Vec<Value>> {
    let mut p = Parser { input, pos: 0 };
    let mut out = Vec::new();
    loop {
        p.skip_spaces();
        if p.pos >= p.input.len() || p.input[p.pos..].starts_with(b"\r\n") {
            return Ok(out);
        }
        out.push(p.value()?);
    }
}

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn skip_spaces(&mut self) {
        while self.input.get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<Value> {
        match self.input.get(self.pos) {
            Some(b'(') => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_spaces();
                    match self.input.get(self.pos) {
                        Some(b')') => {
                            self.pos += 1;
                            return Ok(Value::List(items));
                        }
                        None => bail!("unclosed list"),
                        _ => items.push(self.value()?),
                    }
                }
            }
            Some(b'"') => {
                self.pos += 1;
                let mut s = Vec::new();
                loop {
                    match self.input.get(self.pos) {
                        Some(b'\\') => {
                            s.push(*self.input.get(self.pos + 1).context("bad escape")?);
                            self.pos += 2;
                        }
                        Some(b'"') => {
                            self.pos += 1;
                            return Ok(Value::Str(s));
                        }
                        Some(&b) => {
                            s.push(b);
                            self.pos += 1;
                        }
                        None => bail!("unclosed quoted string"),
                    }
                }
            }
            Some(b'{') | Some(b'~') => {
                if self.input[self.pos] == b'~' {
                    self.pos += 1;
                }
                let close = self.input[self.pos..]
                    .iter()
                    .position(|&b| b == b'}')
                    .context("bad literal")?;
                let len: usize = std::str::from_utf8(&self.input[self.pos + 1..self.pos + close])?
                    .trim_end_matches('+')
                    .parse()?;
                self.pos += close + 1;
                if !self.input[self.pos..].starts_with(b"\r\n") {
                    bail!("literal without CRLF");
                }
                self.pos += 2;
                let end = self.pos + len;
                let data = self.input.get(self.pos..end).context("short literal")?;
                self.pos = end;
                Ok(Value::Str(data.to_vec()))
            }
            Some(_) => {
                let start = self.pos;
                let mut depth = 0;
                while let Some(&b) = self.input.get(self.pos) {
                    match b {
                        b'[' => depth += 1,
                        b']' => depth -= 1,
                        b' ' | b')' | b'(' | b'\r' if depth == 0 => break,
                        _ => {}
                    }
                    self.pos += 1;
                }
                // A section's partial: BODY[]<0>.
                let text = String::from_utf8_lossy(&self.input[start..self.pos]).into_owned();
                if text.is_empty() {
                    bail!("empty atom at {}", self.pos);
                }
                if text.eq_ignore_ascii_case("NIL") {
                    Ok(Value::Nil)
                } else if text.bytes().all(|b| b.is_ascii_digit()) {
                    Ok(Value::Number(text.parse()?))
                } else {
                    Ok(Value::Atom(text))
                }
            }
            None => bail!("value expected"),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn values_and_literals() {
        let v = parse_values(b"(UID 4 FLAGS (\\Seen $X) BODY[HEADER.FIELDS (FROM)] {3}\r\nabc RFC822.SIZE 9 X NIL \"q\\\"\")\r\n").unwrap();
        let items = v[0].list().unwrap();
        assert_eq!(items[0], Value::Atom("UID".into()));
        assert_eq!(items[1], Value::Number(4));
        assert_eq!(items[4], Value::Atom("BODY[HEADER.FIELDS (FROM)]".into()));
        assert_eq!(items[5], Value::Str(b"abc".to_vec()));
        assert_eq!(items[9], Value::Nil);
        assert_eq!(items[10], Value::Str(b"q\"".to_vec()));
        assert_eq!(literal_length(b"* 1 FETCH (BODY[] ~{12}\r\n"), Some(12));
        assert_eq!(literal_length(b"* OK {x}\r\n"), None);
    }
}
