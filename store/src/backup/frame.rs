//! The archive's framing: a header, then the plaintext record stream cut into chunks,
//! each sealed on its own so that a reader never holds more than one chunk.
//!
//! ```text
//! header   magic "PSTNBKUP" · format u16 · cipher u8 · chunk size u32          (15 bytes)
//!          cipher 0 (none):        SHA-256 of the 15 bytes above                (+32)
//!          cipher 1 (AES-256-GCM): argon2id m_cost (KiB) u32 · t_cost u32 ·
//!                                  p_cost u32 · salt [16] · nonce prefix [7] ·
//!                                  GCM tag over no plaintext, the bytes above
//!                                  as associated data                         (+51)
//! chunk*   final u8 (0 or 1) · length u32 · payload
//!          cipher 0: data · SHA-256(H · index u64 · final · data)
//!          cipher 1: AES-256-GCM(data), nonce = prefix · index u32 BE · final,
//!                    associated data = H · index u64 · final
//! ```
//!
//! All integers are little-endian unless marked BE; `H` is the SHA-256 of the whole
//! header. Binding the header, the chunk's index and the final flag into every chunk
//! makes a reordered, dropped, duplicated or transplanted chunk fail, and a file cut
//! at a chunk boundary is caught by the missing final chunk (the construction is
//! the STREAM scheme of Hoang, Reyhanitabar, Rogaway and Vizár). The key is derived from
//! the passphrase by argon2id with the header's salt and costs; the header's own tag
//! tells a wrong passphrase (or a damaged header) from a damaged chunk. Without a
//! passphrase the SHA-256 sums detect damage, not deliberate tampering: anyone can
//! recompute them.

use std::io::{self, Read, Write};

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit};
use sha2::{Digest, Sha256};

use super::BackupError;

/// The first bytes of every archive.
pub(crate) const MAGIC: &[u8; 8] = b"PSTNBKUP";
/// The archive format this build writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Plaintext bytes per chunk when writing.
pub const CHUNK_SIZE: u32 = 1 << 20;
/// The largest chunk size a reader accepts (bounds its memory on a forged header).
const MAX_CHUNK_SIZE: u32 = 16 << 20;

const CIPHER_NONE: u8 = 0;
const CIPHER_AES_256_GCM: u8 = 1;

const FIXED_LEN: usize = 15;
const SALT_LEN: usize = 16;
const PREFIX_LEN: usize = 7;
const TAG_LEN: usize = 16;
const DIGEST_LEN: usize = 32;
/// The chunk index the header's tag uses in its nonce: never a chunk's.
const HEADER_NONCE_INDEX: u32 = u32::MAX;
/// The flag byte of the header's nonce: never a chunk's (0 or 1).
const HEADER_NONCE_FLAG: u8 = 2;

/// argon2id costs: what deriving the key from the passphrase takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost_kib: u32,
    /// Passes over the memory.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// 64 MiB, 3 passes, 1 lane: about a third of a second here, and costly to guess
    /// passphrases against on a GPU (RFC 9106 §4's second recommended option).
    fn default() -> Self {
        KdfParams {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// The largest costs a reader accepts from a header, so that a forged header cannot
    /// make it allocate without bound before the header is authenticated.
    const MAX: KdfParams = KdfParams {
        m_cost_kib: 1024 * 1024,
        t_cost: 16,
        p_cost: 16,
    };

    fn derive(&self, passphrase: &[u8], salt: &[u8]) -> Result<[u8; 32], BackupError> {
        if self.m_cost_kib > Self::MAX.m_cost_kib
            || self.t_cost > Self::MAX.t_cost
            || self.p_cost > Self::MAX.p_cost
        {
            return Err(BackupError::Header(format!(
                "its argon2id costs (m={} KiB, t={}, p={}) are beyond what postern accepts",
                self.m_cost_kib, self.t_cost, self.p_cost
            )));
        }
        let params = argon2::Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| BackupError::Header(format!("its argon2id costs are invalid: {e}")))?;
        let mut key = [0u8; 32];
        argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password_into(passphrase, salt, &mut key)
            .map_err(|e| BackupError::Header(format!("deriving the key failed: {e}")))?;
        Ok(key)
    }
}

/// How chunks are sealed and opened.
enum Seal {
    /// SHA-256 sums only.
    Sum,
    /// AES-256-GCM with a per-backup nonce prefix.
    Gcm {
        cipher: Box<Aes256Gcm>,
        prefix: [u8; PREFIX_LEN],
    },
}

impl Seal {
    fn gcm(key: &[u8; 32], prefix: [u8; PREFIX_LEN]) -> Seal {
        Seal::Gcm {
            cipher: Box::new(Aes256Gcm::new(key.into())),
            prefix,
        }
    }
}

fn nonce(
    prefix: &[u8; PREFIX_LEN],
    index: u32,
    flag: u8,
) -> aes_gcm::Nonce<aes_gcm::aes::cipher::consts::U12> {
    let mut n = [0u8; 12];
    n[..PREFIX_LEN].copy_from_slice(prefix);
    n[PREFIX_LEN..PREFIX_LEN + 4].copy_from_slice(&index.to_be_bytes());
    n[11] = flag;
    n.into()
}

/// The associated data (or the summed prefix) of chunk `index`.
fn chunk_aad(header_digest: &[u8; DIGEST_LEN], index: u64, flag: u8) -> [u8; DIGEST_LEN + 9] {
    let mut aad = [0u8; DIGEST_LEN + 9];
    aad[..DIGEST_LEN].copy_from_slice(header_digest);
    aad[DIGEST_LEN..DIGEST_LEN + 8].copy_from_slice(&index.to_le_bytes());
    aad[DIGEST_LEN + 8] = flag;
    aad
}

fn chunk_sum(aad: &[u8], data: &[u8]) -> [u8; DIGEST_LEN] {
    let mut h = Sha256::new();
    h.update(aad);
    h.update(data);
    h.finalize().into()
}

fn sha256(data: &[u8]) -> [u8; DIGEST_LEN] {
    Sha256::digest(data).into()
}

fn random<const N: usize>() -> Result<[u8; N], BackupError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b)
        .map_err(|e| BackupError::Random(format!("the system random generator failed: {e}")))?;
    Ok(b)
}

/// The chunk index as the nonce's 32 bits; refuses the index the header's tag uses.
fn nonce_index(index: u64) -> Result<u32, BackupError> {
    u32::try_from(index)
        .ok()
        .filter(|&i| i != HEADER_NONCE_INDEX)
        .ok_or_else(|| BackupError::Damaged(format!("chunk {index} is beyond the format's limit")))
}

/// Writes an archive: the header at once, then the bytes written to it in chunks.
/// [`ChunkWriter::finish`] writes the final chunk; an archive without it is
/// rejected as truncated.
pub(crate) struct ChunkWriter<W: Write> {
    out: W,
    seal: Seal,
    header_digest: [u8; DIGEST_LEN],
    buf: Vec<u8>,
    chunk_size: usize,
    index: u64,
    written: u64,
}

impl<W: Write> ChunkWriter<W> {
    /// Starts an archive on `out`, encrypted when a passphrase is given.
    pub(crate) fn new(
        mut out: W,
        passphrase: Option<&[u8]>,
        kdf: KdfParams,
        chunk_size: u32,
    ) -> io::Result<Self> {
        let mut header = Vec::with_capacity(FIXED_LEN + 51);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        let seal = match passphrase {
            None => {
                header.push(CIPHER_NONE);
                header.extend_from_slice(&chunk_size.to_le_bytes());
                let sum = sha256(&header);
                header.extend_from_slice(&sum);
                Seal::Sum
            }
            Some(passphrase) => {
                header.push(CIPHER_AES_256_GCM);
                header.extend_from_slice(&chunk_size.to_le_bytes());
                let salt: [u8; SALT_LEN] = random().map_err(io::Error::other)?;
                let prefix: [u8; PREFIX_LEN] = random().map_err(io::Error::other)?;
                header.extend_from_slice(&kdf.m_cost_kib.to_le_bytes());
                header.extend_from_slice(&kdf.t_cost.to_le_bytes());
                header.extend_from_slice(&kdf.p_cost.to_le_bytes());
                header.extend_from_slice(&salt);
                header.extend_from_slice(&prefix);
                let key = kdf.derive(passphrase, &salt).map_err(io::Error::other)?;
                let seal = Seal::gcm(&key, prefix);
                let Seal::Gcm { cipher, .. } = &seal else {
                    unreachable!("built as Gcm just above")
                };
                let tag = cipher
                    .encrypt_inout_detached(
                        &nonce(&prefix, HEADER_NONCE_INDEX, HEADER_NONCE_FLAG),
                        &header,
                        (&mut [][..]).into(),
                    )
                    .map_err(|_| io::Error::other("AES-GCM refused to seal the header"))?;
                header.extend_from_slice(&tag);
                seal
            }
        };
        out.write_all(&header)?;
        Ok(ChunkWriter {
            out,
            seal,
            header_digest: sha256(&header),
            buf: Vec::with_capacity(chunk_size as usize),
            chunk_size: chunk_size as usize,
            index: 0,
            written: header.len() as u64,
        })
    }

    /// Whether the archive is encrypted.
    pub(crate) fn encrypted(&self) -> bool {
        matches!(self.seal, Seal::Gcm { .. })
    }

    fn emit(&mut self, last: bool) -> io::Result<()> {
        let flag = u8::from(last);
        let aad = chunk_aad(&self.header_digest, self.index, flag);
        match &self.seal {
            Seal::Sum => {
                let sum = chunk_sum(&aad, &self.buf);
                self.buf.extend_from_slice(&sum);
            }
            Seal::Gcm { cipher, prefix } => {
                let index = nonce_index(self.index).map_err(io::Error::other)?;
                let tag = cipher
                    .encrypt_inout_detached(
                        &nonce(prefix, index, flag),
                        &aad,
                        self.buf.as_mut_slice().into(),
                    )
                    .map_err(|_| io::Error::other("AES-GCM refused a chunk"))?;
                self.buf.extend_from_slice(&tag);
            }
        }
        let len = u32::try_from(self.buf.len()).map_err(io::Error::other)?;
        self.out.write_all(&[flag])?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&self.buf)?;
        self.written += 5 + u64::from(len);
        self.buf.clear();
        self.index += 1;
        Ok(())
    }

    /// Writes the final chunk and returns the output and the archive's size in bytes.
    pub(crate) fn finish(mut self) -> io::Result<(W, u64)> {
        self.emit(true)?;
        self.out.flush()?;
        Ok((self.out, self.written))
    }
}

impl<W: Write> Write for ChunkWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if data.is_empty() {
            return Ok(0);
        }
        // A full buffer is sealed only once more data comes, so that the last chunk
        // written (by `finish`) is never a needless empty one.
        if self.buf.len() == self.chunk_size {
            self.emit(false)?;
        }
        let n = data.len().min(self.chunk_size - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads an archive: checks the header (deriving the key when it is encrypted), then
/// hands out the plaintext of each chunk once the chunk has been authenticated.
pub(crate) struct ChunkReader<R: Read> {
    input: R,
    seal: Seal,
    header_digest: [u8; DIGEST_LEN],
    chunk_size: usize,
    chunk: Vec<u8>,
    pos: usize,
    index: u64,
    done: bool,
    consumed: u64,
}

impl<R: Read> ChunkReader<R> {
    /// Reads and checks the header. An encrypted archive needs `passphrase`.
    pub(crate) fn open(mut input: R, passphrase: Option<&[u8]>) -> Result<Self, super::ReadError> {
        let mut fixed = [0u8; FIXED_LEN];
        read_header_bytes(&mut input, &mut fixed, true)?;
        if &fixed[..8] != MAGIC {
            return Err(BackupError::NotABackup.into());
        }
        let version = u16::from_le_bytes([fixed[8], fixed[9]]);
        if version != FORMAT_VERSION {
            return Err(BackupError::Version(version).into());
        }
        let cipher = fixed[10];
        let chunk_size = u32::from_le_bytes([fixed[11], fixed[12], fixed[13], fixed[14]]);
        let mut header = fixed.to_vec();
        let seal = match cipher {
            CIPHER_NONE => {
                let mut sum = [0u8; DIGEST_LEN];
                read_header_bytes(&mut input, &mut sum, false)?;
                if sha256(&header) != sum {
                    return Err(BackupError::Header("its checksum does not match".into()).into());
                }
                header.extend_from_slice(&sum);
                Seal::Sum
            }
            CIPHER_AES_256_GCM => {
                let mut rest = [0u8; 12 + SALT_LEN + PREFIX_LEN + TAG_LEN];
                read_header_bytes(&mut input, &mut rest, false)?;
                let word =
                    |i: usize| u32::from_le_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
                let kdf = KdfParams {
                    m_cost_kib: word(0),
                    t_cost: word(4),
                    p_cost: word(8),
                };
                let salt = &rest[12..12 + SALT_LEN];
                let mut prefix = [0u8; PREFIX_LEN];
                prefix.copy_from_slice(&rest[12 + SALT_LEN..12 + SALT_LEN + PREFIX_LEN]);
                let tag = &rest[12 + SALT_LEN + PREFIX_LEN..];
                header.extend_from_slice(&rest[..12 + SALT_LEN + PREFIX_LEN]);
                let Some(passphrase) = passphrase else {
                    return Err(BackupError::NeedPassphrase.into());
                };
                if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
                    return Err(BackupError::WrongPassphrase.into());
                }
                let key = kdf.derive(passphrase, salt).map_err(|e| match e {
                    // The costs are covered by the tag: out of range means damaged.
                    BackupError::Header(_) => BackupError::WrongPassphrase,
                    other => other,
                })?;
                let seal = Seal::gcm(&key, prefix);
                let Seal::Gcm { cipher, .. } = &seal else {
                    unreachable!("built as Gcm just above")
                };
                let tag: [u8; TAG_LEN] =
                    tag.try_into().map_err(|_| BackupError::WrongPassphrase)?;
                cipher
                    .decrypt_inout_detached(
                        &nonce(&prefix, HEADER_NONCE_INDEX, HEADER_NONCE_FLAG),
                        &header,
                        (&mut [][..]).into(),
                        &tag.into(),
                    )
                    .map_err(|_| BackupError::WrongPassphrase)?;
                header.extend_from_slice(&tag);
                seal
            }
            other => {
                return Err(BackupError::Header(format!("its cipher {other} is unknown")).into());
            }
        };
        if chunk_size == 0 || chunk_size > MAX_CHUNK_SIZE {
            return Err(
                BackupError::Header(format!("its chunk size {chunk_size} is impossible")).into(),
            );
        }
        Ok(ChunkReader {
            input,
            seal,
            header_digest: sha256(&header),
            chunk_size: chunk_size as usize,
            chunk: Vec::new(),
            pos: 0,
            index: 0,
            done: false,
            consumed: header.len() as u64,
        })
    }

    /// Whether the archive is encrypted.
    pub(crate) fn encrypted(&self) -> bool {
        matches!(self.seal, Seal::Gcm { .. })
    }

    /// Archive bytes read so far.
    pub(crate) fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Reads, checks and opens the next chunk into `self.chunk`.
    fn next_chunk(&mut self) -> Result<(), super::ReadError> {
        let index = self.index;
        let mut head = [0u8; 5];
        match read_full(&mut self.input, &mut head)? {
            0 => return Err(BackupError::Truncated(index).into()),
            5 => {}
            _ => return Err(BackupError::Truncated(index).into()),
        }
        let flag = head[0];
        if flag > 1 {
            return Err(self.failed(index));
        }
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let overhead = match self.seal {
            Seal::Sum => DIGEST_LEN,
            Seal::Gcm { .. } => TAG_LEN,
        };
        if len < overhead || len > self.chunk_size + overhead {
            return Err(self.failed(index));
        }
        self.chunk.resize(len, 0);
        if read_full(&mut self.input, &mut self.chunk)? != len {
            return Err(BackupError::Truncated(index).into());
        }
        self.consumed += 5 + len as u64;
        let aad = chunk_aad(&self.header_digest, index, flag);
        let data_len = len - overhead;
        let ok = match &self.seal {
            Seal::Sum => chunk_sum(&aad, &self.chunk[..data_len])[..] == self.chunk[data_len..],
            Seal::Gcm { cipher, prefix } => {
                let nonce_index = nonce_index(index)?;
                let (data, tag) = self.chunk.split_at_mut(data_len);
                match <[u8; TAG_LEN]>::try_from(&*tag) {
                    Ok(tag) => cipher
                        .decrypt_inout_detached(
                            &nonce(prefix, nonce_index, flag),
                            &aad,
                            data.into(),
                            &tag.into(),
                        )
                        .is_ok(),
                    Err(_) => false,
                }
            }
        };
        if !ok {
            return Err(self.failed(index));
        }
        self.chunk.truncate(data_len);
        self.pos = 0;
        self.index += 1;
        if flag == 1 {
            self.done = true;
            let mut extra = [0u8; 1];
            if read_full(&mut self.input, &mut extra)? != 0 {
                return Err(BackupError::Damaged(format!(
                    "there are bytes after its final chunk ({index})"
                ))
                .into());
            }
        }
        Ok(())
    }

    fn failed(&self, index: u64) -> super::ReadError {
        match self.seal {
            Seal::Sum => BackupError::ChunkChecksum(index).into(),
            Seal::Gcm { .. } => BackupError::ChunkAuth(index).into(),
        }
    }

    /// Up to `out.len()` bytes of plaintext; 0 only at the authenticated end.
    pub(crate) fn read_some(&mut self, out: &mut [u8]) -> Result<usize, super::ReadError> {
        while self.pos == self.chunk.len() {
            if self.done {
                return Ok(0);
            }
            self.next_chunk()?;
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }

    /// Exactly `out.len()` bytes of plaintext; the end of the archive is damage here.
    pub(crate) fn read_exact(&mut self, out: &mut [u8]) -> Result<(), super::ReadError> {
        let mut filled = 0;
        while filled < out.len() {
            let n = self.read_some(&mut out[filled..])?;
            if n == 0 {
                return Err(BackupError::Damaged(
                    "its record stream ends in the middle of a record".into(),
                )
                .into());
            }
            filled += n;
        }
        Ok(())
    }

    /// Checks that nothing follows: the final chunk was read and fully used.
    pub(crate) fn finish(mut self) -> Result<u64, super::ReadError> {
        let mut probe = [0u8; 1];
        if self.read_some(&mut probe)? != 0 {
            return Err(BackupError::Damaged("there is data after its end record".into()).into());
        }
        Ok(self.consumed)
    }
}

/// Reads header bytes; an archive too short to hold them is not a backup at all
/// (`first`) or is truncated.
fn read_header_bytes<R: Read>(
    input: &mut R,
    out: &mut [u8],
    first: bool,
) -> Result<(), super::ReadError> {
    let n = read_full(input, out)?;
    if n == out.len() {
        Ok(())
    } else if first && n < MAGIC.len() {
        Err(BackupError::NotABackup.into())
    } else {
        Err(BackupError::Header("the file ends inside it".into()).into())
    }
}

/// Fills `out` as far as the input goes; returns how much was read.
fn read_full<R: Read>(input: &mut R, out: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < out.len() {
        match input.read(&mut out[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::ReadError;

    /// Cheap argon2id costs: the tests are about the framing, not the KDF.
    const CHEAP: KdfParams = KdfParams {
        m_cost_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };

    fn seal(data: &[u8], passphrase: Option<&[u8]>, chunk: u32) -> Vec<u8> {
        let mut w = ChunkWriter::new(Vec::new(), passphrase, CHEAP, chunk).unwrap();
        w.write_all(data).unwrap();
        let (out, len) = w.finish().unwrap();
        assert_eq!(out.len() as u64, len);
        out
    }

    fn open(archive: &[u8], passphrase: Option<&[u8]>) -> Result<Vec<u8>, BackupError> {
        let unwrap = |e: ReadError| match e {
            ReadError::Backup(b) => b,
            ReadError::Io(io) => panic!("io error: {io}"),
        };
        let mut r = ChunkReader::open(archive, passphrase).map_err(unwrap)?;
        let mut out = Vec::new();
        let mut buf = [0u8; 1000];
        loop {
            let n = r.read_some(&mut buf).map_err(unwrap)?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        r.finish().map_err(unwrap)?;
        Ok(out)
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// The byte offsets at which each chunk starts.
    fn chunk_starts(archive: &[u8], header: usize) -> Vec<usize> {
        let mut starts = Vec::new();
        let mut at = header;
        while at < archive.len() {
            starts.push(at);
            let len = u32::from_le_bytes(archive[at + 1..at + 5].try_into().unwrap()) as usize;
            at += 5 + len;
        }
        starts
    }

    const GCM_HEADER: usize = FIXED_LEN + 12 + SALT_LEN + PREFIX_LEN + TAG_LEN;
    const SUM_HEADER: usize = FIXED_LEN + DIGEST_LEN;

    #[test]
    fn round_trips_with_and_without_a_passphrase() {
        for n in [0, 1, 4095, 4096, 4097, 3 * 4096, 10_000] {
            let d = data(n);
            let sealed = seal(&d, Some(b"secret"), 4096);
            assert_eq!(open(&sealed, Some(b"secret")).unwrap(), d, "{n}");
            assert!(
                !sealed.windows(16).any(|w| n >= 16 && w == &d[..16]),
                "plaintext leaked"
            );
            let plain = seal(&d, None, 4096);
            assert_eq!(open(&plain, None).unwrap(), d, "{n}");
            // A passphrase is not needed for an unencrypted archive.
            assert_eq!(open(&plain, Some(b"unused")).unwrap(), d);
            // Exact multiples end with their last full chunk as the final one.
            let chunks = chunk_starts(&sealed, GCM_HEADER).len();
            assert_eq!(chunks, n.div_ceil(4096).max(1), "{n}");
        }
    }

    #[test]
    fn wrong_or_missing_passphrase_is_named() {
        let sealed = seal(&data(100), Some(b"secret"), 4096);
        assert!(matches!(
            open(&sealed, Some(b"Secret")),
            Err(BackupError::WrongPassphrase)
        ));
        assert!(matches!(
            open(&sealed, None),
            Err(BackupError::NeedPassphrase)
        ));
    }

    #[test]
    fn a_flipped_byte_anywhere_is_caught() {
        let d = data(1500);
        for passphrase in [Some(&b"secret"[..]), None] {
            let sealed = seal(&d, passphrase, 512);
            for at in 0..sealed.len() {
                let mut bad = sealed.clone();
                bad[at] ^= 0x01;
                let err = open(&bad, passphrase).expect_err("a flipped byte went unnoticed");
                let header = if passphrase.is_some() {
                    GCM_HEADER
                } else {
                    SUM_HEADER
                };
                if at >= header {
                    assert!(
                        matches!(
                            err,
                            BackupError::ChunkAuth(_)
                                | BackupError::ChunkChecksum(_)
                                | BackupError::Truncated(_)
                                | BackupError::Damaged(_)
                        ),
                        "byte {at}: {err}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_flipped_payload_byte_names_its_chunk() {
        let sealed = seal(&data(10_000), Some(b"k"), 4096);
        let starts = chunk_starts(&sealed, GCM_HEADER);
        let mut bad = sealed.clone();
        bad[starts[1] + 100] ^= 0x80;
        let err = open(&bad, Some(b"k")).unwrap_err();
        assert!(matches!(err, BackupError::ChunkAuth(1)), "{err}");
        assert_eq!(
            err.to_string(),
            "backup is damaged or was tampered with: chunk 1 failed authentication"
        );
        let plain = seal(&data(10_000), None, 4096);
        let starts = chunk_starts(&plain, SUM_HEADER);
        let mut bad = plain.clone();
        bad[starts[2] + 7] ^= 0x80;
        assert!(matches!(
            open(&bad, None),
            Err(BackupError::ChunkChecksum(2))
        ));
    }

    #[test]
    fn truncation_is_caught_at_every_length() {
        let d = data(3000);
        for passphrase in [Some(&b"secret"[..]), None] {
            let sealed = seal(&d, passphrase, 1024);
            let header = if passphrase.is_some() {
                GCM_HEADER
            } else {
                SUM_HEADER
            };
            for len in 0..sealed.len() {
                let err = open(&sealed[..len], passphrase).expect_err("truncation went unnoticed");
                if len >= header {
                    assert!(matches!(err, BackupError::Truncated(_)), "{len}: {err}");
                }
            }
        }
        // Cut exactly at a chunk boundary: no final chunk.
        let sealed = seal(&d, Some(b"k"), 1024);
        let starts = chunk_starts(&sealed, GCM_HEADER);
        let err = open(&sealed[..starts[2]], Some(b"k")).unwrap_err();
        assert!(matches!(err, BackupError::Truncated(2)), "{err}");
        assert!(err.to_string().starts_with("backup is truncated"), "{err}");
    }

    #[test]
    fn reordered_dropped_or_repeated_chunks_fail() {
        let d = data(4 * 4096 + 10);
        for passphrase in [Some(&b"k"[..]), None] {
            let sealed = seal(&d, passphrase, 4096);
            let header = if passphrase.is_some() {
                GCM_HEADER
            } else {
                SUM_HEADER
            };
            let starts = chunk_starts(&sealed, header);
            let mut ends = starts[1..].to_vec();
            ends.push(sealed.len());
            let chunk = |i: usize| &sealed[starts[i]..ends[i]];
            let rebuild = |order: &[usize]| {
                let mut v = sealed[..header].to_vec();
                for &i in order {
                    v.extend_from_slice(chunk(i));
                }
                v
            };
            for order in [
                &[1, 0, 2, 3, 4][..],
                &[0, 2, 3, 4],
                &[0, 1, 1, 2, 3, 4],
                &[0, 1, 2, 4],
            ] {
                let err =
                    open(&rebuild(order), passphrase).expect_err("accepted a rearranged archive");
                assert!(
                    matches!(
                        err,
                        BackupError::ChunkAuth(_) | BackupError::ChunkChecksum(_)
                    ),
                    "{order:?}: {err}"
                );
            }
            // The final chunk followed by a replayed one.
            let err = open(&rebuild(&[0, 1, 2, 3, 4, 4]), passphrase).unwrap_err();
            assert!(matches!(err, BackupError::Damaged(_)), "{err}");
            assert_eq!(open(&rebuild(&[0, 1, 2, 3, 4]), passphrase).unwrap(), d);
        }
    }

    #[test]
    fn chunks_of_another_backup_with_the_same_passphrase_fail() {
        let d = data(3 * 4096);
        let a = seal(&d, Some(b"k"), 4096);
        let b = seal(&d, Some(b"k"), 4096);
        let starts = chunk_starts(&a, GCM_HEADER);
        let mut mixed = a[..starts[1]].to_vec();
        let b_starts = chunk_starts(&b, GCM_HEADER);
        mixed.extend_from_slice(&b[b_starts[1]..b_starts[2]]);
        mixed.extend_from_slice(&a[starts[2]..]);
        assert!(matches!(
            open(&mixed, Some(b"k")),
            Err(BackupError::ChunkAuth(1))
        ));
    }

    #[test]
    fn other_files_and_versions_are_named() {
        assert!(matches!(open(b"hello", None), Err(BackupError::NotABackup)));
        assert!(matches!(
            open(b"From alice@example.org Sat Jan  3 01:05:34 1996\n", None),
            Err(BackupError::NotABackup)
        ));
        let mut v2 = seal(b"x", None, 4096);
        v2[8] = 2;
        assert!(matches!(open(&v2, None), Err(BackupError::Version(2))));
        // The costs are covered by the header's tag.
        let mut costly = seal(b"x", Some(b"k"), 4096);
        costly[FIXED_LEN + 4] ^= 1;
        assert!(matches!(
            open(&costly, Some(b"k")),
            Err(BackupError::WrongPassphrase)
        ));
    }

    #[test]
    fn the_derived_key_depends_on_passphrase_and_salt() {
        let k = |p: &[u8], s: &[u8]| CHEAP.derive(p, s).unwrap();
        assert_eq!(k(b"a", b"saltsalt"), k(b"a", b"saltsalt"));
        assert_ne!(k(b"a", b"saltsalt"), k(b"b", b"saltsalt"));
        assert_ne!(k(b"a", b"saltsalt"), k(b"a", b"saltsalu"));
        let huge = KdfParams {
            m_cost_kib: u32::MAX,
            ..CHEAP
        };
        assert!(matches!(
            huge.derive(b"a", b"saltsalt"),
            Err(BackupError::Header(_))
        ));
    }
}
