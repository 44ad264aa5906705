//! A message being received: the first [`IN_MEMORY`] octets in memory, everything past
//! that in an anonymous file, so a client sending a large message holds no more of our
//! memory than a small one does. Each octet is looked at once as it passes, for what
//! the checks after DATA need: a bare CR or LF (RFC 5321 §2.3.8) and non-ASCII octets.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

/// Octets kept in memory before the message goes to a file.
pub const IN_MEMORY: usize = 1024 * 1024;
/// The longest header block accepted: it is read into memory for the checks.
pub const MAX_HEADER: usize = 1024 * 1024;

/// The part of a message already written to the spool file, and what was seen in it.
#[derive(Debug, Default)]
pub struct Spool {
    file: Option<File>,
    written: u64,
    prev: u8,
    bare: Option<u64>,
    non_ascii: bool,
}

impl Spool {
    /// Octets received so far, with `buffered` still in memory.
    pub fn len(&self, buffered: &[u8]) -> u64 {
        self.written + buffered.len() as u64
    }

    /// Moves all but the last two octets of `buffer` (the receiver may still take back
    /// a CR it put there) to the file once it holds more than [`IN_MEMORY`].
    pub fn spill(&mut self, buffer: &mut Vec<u8>, dir: &Path) -> io::Result<()> {
        if buffer.len() <= IN_MEMORY {
            return Ok(());
        }
        let keep = 2;
        let n = buffer.len() - keep;
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(tempfile::tempfile_in(dir)?),
        };
        file.write_all(&buffer[..n])?;
        let chunk: Vec<u8> = buffer.drain(..n).collect();
        self.scan(&chunk);
        Ok(())
    }

    fn scan(&mut self, chunk: &[u8]) {
        for (i, &b) in chunk.iter().enumerate() {
            if self.bare.is_none()
                && ((b == b'\n' && self.prev != b'\r') || (self.prev == b'\r' && b != b'\n'))
            {
                self.bare = Some(self.written + i as u64);
            }
            self.non_ascii |= !b.is_ascii();
            self.prev = b;
        }
        self.written += chunk.len() as u64;
    }

    /// Forgets everything (a refused or abandoned message).
    pub fn discard(&mut self) {
        *self = Spool::default();
    }

    /// The whole message: `buffer` alone when nothing went to the file, else the file
    /// with `buffer` written to its end. Also the offset of the first bare CR or LF.
    pub fn finish(mut self, buffer: Vec<u8>) -> io::Result<(Received, Option<u64>)> {
        let Some(mut file) = self.file.take() else {
            let mut scan = Spool::default();
            scan.scan(&buffer);
            let bare = scan
                .bare
                .or_else(|| (scan.prev == b'\r').then(|| buffer.len() as u64 - 1));
            return Ok((Received::Bytes(buffer), bare));
        };
        file.write_all(&buffer)?;
        self.scan(&buffer);
        let bare = self
            .bare
            .or_else(|| (self.prev == b'\r').then(|| self.written - 1));
        Ok((
            Received::File {
                file: Arc::new(file),
                len: self.written,
                ascii: !self.non_ascii,
            },
            bare,
        ))
    }
}

/// A received message.
#[derive(Debug)]
pub enum Received {
    /// Small enough to have stayed in memory.
    Bytes(Vec<u8>),
    /// In its spool file, from offset 0.
    File {
        /// The file.
        file: Arc<File>,
        /// Its length.
        len: u64,
        /// Whether it is all ASCII.
        ascii: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn bare(message: &[u8]) -> Option<u64> {
        Spool::default().finish(message.to_vec()).unwrap().1
    }

    #[test]
    fn bare_line_endings_are_found() {
        assert_eq!(bare(b"a\r\nb\r\n"), None);
        assert_eq!(bare(b"a\nb"), Some(1));
        assert_eq!(bare(b"a\rb"), Some(2));
        assert_eq!(bare(b"a\r"), Some(1));
        assert_eq!(bare(b""), None);
    }

    #[test]
    fn small_messages_stay_in_memory_and_large_ones_spill() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::default();
        let mut buf = b"Subject: x\r\n\r\nsmall\r\n".to_vec();
        spool.spill(&mut buf, dir.path()).unwrap();
        let (got, bare) = spool.finish(buf.clone()).unwrap();
        assert!(matches!(got, Received::Bytes(ref b) if *b == buf));
        assert_eq!(bare, None);

        let mut spool = Spool::default();
        let line = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n";
        let mut all = Vec::new();
        let mut buf = Vec::new();
        for _ in 0..40_000 {
            buf.extend_from_slice(line);
            all.extend_from_slice(line);
            spool.spill(&mut buf, dir.path()).unwrap();
            assert!(buf.len() <= IN_MEMORY + line.len());
        }
        buf.extend_from_slice(b"\xc3\xa9 end\nbare");
        all.extend_from_slice(b"\xc3\xa9 end\nbare");
        let (got, bare) = spool.finish(buf).unwrap();
        let Received::File { file, len, ascii } = got else {
            panic!("not spooled");
        };
        assert_eq!(len, all.len() as u64);
        assert!(!ascii);
        let mut back = vec![0u8; all.len()];
        file.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(back, all);
        assert_eq!(bare, Some((all.len() - 5) as u64));
    }
}
