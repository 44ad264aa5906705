//! A message body on its way into the store: bytes in memory, or a spooled message
//! (a header block in memory in front of the rest of the message in a file), so a
//! large message is copied from disk to disk without ever being whole in memory.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// A message in a file, read from `offset` to `offset + len`, with `head` in front.
#[derive(Debug)]
pub struct Spooled {
    /// What comes first: the header fields we added, or the whole rewritten header.
    pub head: Vec<u8>,
    /// The file holding the rest (read positionally; shared by every copy).
    pub file: Arc<File>,
    /// Where the rest starts in the file.
    pub offset: u64,
    /// How long the rest is.
    pub len: u64,
    /// Whether the rest is all ASCII.
    pub ascii: bool,
}

/// A message body.
#[derive(Debug, Clone)]
pub enum Body<'a> {
    /// In memory.
    Bytes(Cow<'a, [u8]>),
    /// Mostly in a file.
    Spooled(Arc<Spooled>),
}

/// How much a reader of the header block looks at, at most.
const MAX_HEADER: usize = 1024 * 1024;
/// The chunk a spooled body is copied in.
const CHUNK: usize = 64 * 1024;

impl<'a> From<&'a [u8]> for Body<'a> {
    fn from(b: &'a [u8]) -> Body<'a> {
        Body::Bytes(Cow::Borrowed(b))
    }
}

impl<'a, const N: usize> From<&'a [u8; N]> for Body<'a> {
    fn from(b: &'a [u8; N]) -> Body<'a> {
        Body::Bytes(Cow::Borrowed(b))
    }
}

impl From<Vec<u8>> for Body<'_> {
    fn from(b: Vec<u8>) -> Self {
        Body::Bytes(Cow::Owned(b))
    }
}

impl<'a> From<Cow<'a, [u8]>> for Body<'a> {
    fn from(b: Cow<'a, [u8]>) -> Self {
        Body::Bytes(b)
    }
}

impl<'a> Body<'a> {
    /// The length in octets.
    pub fn len(&self) -> u64 {
        match self {
            Body::Bytes(b) => u64::try_from(b.len()).unwrap_or(u64::MAX),
            Body::Spooled(s) => u64::try_from(s.head.len())
                .unwrap_or(u64::MAX)
                .saturating_add(s.len),
        }
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether every octet is ASCII.
    pub fn is_ascii(&self) -> bool {
        match self {
            Body::Bytes(b) => b.is_ascii(),
            Body::Spooled(s) => s.head.is_ascii() && s.ascii,
        }
    }

    /// The same body with `prefix` (header fields) in front.
    pub fn with_prefix(&self, prefix: &[u8]) -> Body<'a> {
        if prefix.is_empty() {
            return self.clone();
        }
        match self {
            Body::Bytes(b) => Body::Bytes(Cow::Owned([prefix, b].concat())),
            Body::Spooled(s) => Body::Spooled(Arc::new(Spooled {
                head: [prefix, &s.head].concat(),
                file: s.file.clone(),
                offset: s.offset,
                len: s.len,
                ascii: s.ascii,
            })),
        }
    }

    /// The first `max` octets at most (the header block and a little more, for
    /// readers of header fields).
    pub fn prefix(&self, max: usize) -> Cow<'_, [u8]> {
        match self {
            Body::Bytes(b) => Cow::Borrowed(&b[..b.len().min(max)]),
            Body::Spooled(s) if s.head.len() >= max => Cow::Borrowed(&s.head[..max]),
            Body::Spooled(s) => {
                let want = (max - s.head.len()).min(usize::try_from(s.len).unwrap_or(usize::MAX));
                let mut out = s.head.clone();
                let mut rest = vec![0u8; want];
                match read_exact_at(&s.file, &mut rest, s.offset) {
                    Ok(()) => out.extend_from_slice(&rest),
                    Err(e) => tracing::warn!(error = %e, "cannot read a spooled message"),
                }
                Cow::Owned(out)
            }
        }
    }

    /// The header block (the fields and the empty line), at most 1 MiB.
    pub fn header(&self) -> Cow<'_, [u8]> {
        let prefix = self.prefix(MAX_HEADER);
        let end = message_header_len(&prefix);
        match prefix {
            Cow::Borrowed(b) => Cow::Borrowed(&b[..end]),
            Cow::Owned(mut v) => {
                v.truncate(end);
                Cow::Owned(v)
            }
        }
    }

    /// The whole body in memory (read from its file when spooled).
    pub fn bytes(&self) -> io::Result<Cow<'_, [u8]>> {
        match self {
            Body::Bytes(b) => Ok(Cow::Borrowed(b)),
            Body::Spooled(_) => {
                let mut out = Vec::with_capacity(usize::try_from(self.len()).unwrap_or(0));
                self.write_to(&mut out)?;
                Ok(Cow::Owned(out))
            }
        }
    }

    /// Writes the body out, a chunk at a time.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        self.for_each_chunk(|chunk| out.write_all(chunk))
    }

    /// Hands the body to `f` in order, a chunk at a time.
    pub fn for_each_chunk(&self, mut f: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
        match self {
            Body::Bytes(b) => f(b),
            Body::Spooled(s) => {
                f(&s.head)?;
                let mut buf = vec![0u8; CHUNK];
                let mut done = 0u64;
                while done < s.len {
                    let n = usize::try_from((s.len - done).min(CHUNK as u64)).unwrap_or(CHUNK);
                    read_exact_at(&s.file, &mut buf[..n], s.offset + done)?;
                    f(&buf[..n])?;
                    done += n as u64;
                }
                Ok(())
            }
        }
    }
}

fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<()> {
    file.read_exact_at(buf, offset)
}

/// Where the header block of `message` ends (after the empty line), or its length.
fn message_header_len(message: &[u8]) -> usize {
    let mut pos = 0;
    while pos < message.len() {
        let end = message[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |i| pos + i + 1);
        let line = &message[pos..end];
        if line == b"\r\n" || line == b"\n" {
            return end;
        }
        pos = end;
    }
    message.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spooled_body_reads_like_the_bytes_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool");
        let whole = b"From: a@b\r\nSubject: x\r\n\r\nline\r\n".to_vec();
        let mut content = b"X-Junk: before\r\n".to_vec();
        let offset = content.len() as u64;
        content.extend_from_slice(&whole);
        std::fs::write(&path, &content).unwrap();
        let file = Arc::new(File::open(&path).unwrap());
        let body = Body::Spooled(Arc::new(Spooled {
            head: b"Received: by us\r\n".to_vec(),
            file,
            offset,
            len: whole.len() as u64,
            ascii: true,
        }));
        let expected = [&b"Received: by us\r\n"[..], &whole].concat();
        assert_eq!(body.bytes().unwrap().as_ref(), expected.as_slice());
        assert_eq!(body.len(), expected.len() as u64);
        assert_eq!(
            body.header().as_ref(),
            b"Received: by us\r\nFrom: a@b\r\nSubject: x\r\n\r\n"
        );
        let more = body.with_prefix(b"ARC: 1\r\n");
        assert!(more.bytes().unwrap().starts_with(b"ARC: 1\r\nReceived"));
        assert!(body.is_ascii());
    }
}
