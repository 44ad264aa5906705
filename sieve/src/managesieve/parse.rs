//! The ManageSieve command grammar (RFC 5804 §4), read incrementally: bytes go in as
//! they arrive, complete commands come out as lists of arguments.
//!
//! ```text
//! command     = command-name *(SP argument) CRLF
//! argument    = atom / string
//! string      = quoted / literal-c2s
//! quoted      = DQUOTE *QUOTED-CHAR DQUOTE      ; "\" escapes only DQUOTE and "\"
//! literal-c2s = "{" number [ "+" ] "}" CRLF *OCTET
//! ```
//!
//! A client literal `{N}` and `{N+}` mean the same in ManageSieve: the server never
//! sends a continuation, the `N` octets follow the CRLF at once. Literal bytes go
//! straight into the argument (never through the line buffer); a literal over the
//! limit is either read and dropped without being kept (the command is then refused)
//! or ends the connection, as the caller chooses.

/// The longest command line taken, literals not counted. A longer line ends the
/// connection (there is no way to find the next command boundary cheaply).
pub const MAX_LINE: usize = 8 * 1024;

/// Arguments one command may carry: RENAMESCRIPT and HAVESPACE need 2, AUTHENTICATE 2.
pub const MAX_ARGS: usize = 8;

/// The longest atom (RFC 5804 §4: `atom = 1*1024ATOM-CHAR`).
const MAX_ATOM: usize = 1024;

/// One argument of a command, the command name included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// An atom: command names, numbers, the SASL cancel `*`. ASCII only.
    Atom(String),
    /// A quoted string (escapes undone) or a literal, as bytes: whether they must be
    /// UTF-8 is up to the command.
    String(Vec<u8>),
}

/// Why a command line was refused. The connection goes on with the next command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntaxError {
    /// A byte that starts no argument.
    #[error("syntax error: unexpected character 0x{0:02x}")]
    Unexpected(u8),
    /// A quoted string with a backslash before something other than `"` or `\`.
    #[error("syntax error: only \\\" and \\\\ may be escaped in a quoted string")]
    BadEscape,
    /// A quoted string that the line ends in, or that holds a NUL.
    #[error("syntax error: unterminated quoted string")]
    Unterminated,
    /// `{` not followed by `number [+] } CRLF`, or a number of 2^32 or more.
    #[error("syntax error: malformed literal")]
    BadLiteral,
    /// An atom longer than 1024 characters.
    #[error("syntax error: atom too long")]
    AtomTooLong,
    /// More arguments than any command takes.
    #[error("syntax error: too many arguments")]
    TooManyArgs,
    /// A literal larger than the limit; its bytes were read and dropped.
    #[error("a string of {size} bytes is larger than the limit of {max}")]
    LiteralTooBig {
        /// The announced size.
        size: u64,
        /// The limit.
        max: usize,
    },
}

/// Input that ends the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fatal {
    /// A command line (literals not counted) longer than [`MAX_LINE`].
    #[error("command line too long")]
    LineTooLong,
    /// A literal over the limit where the caller asked not to read it.
    #[error("a string of {size} bytes is larger than the limit of {max}")]
    LiteralTooBig {
        /// The announced size.
        size: u64,
        /// The limit.
        max: usize,
    },
}

/// What [`Parser::next`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A complete command: its arguments, the command name first. Empty for an empty
    /// line.
    Command(Vec<Arg>),
    /// A complete line that does not follow the grammar.
    Refused(SyntaxError),
}

/// The largest literal to take, and what to do with a larger one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Bytes one literal may hold.
    pub max_literal: usize,
    /// `true`: read a larger literal's bytes, drop them and refuse the command.
    /// `false`: end the connection ([`Fatal::LiteralTooBig`]).
    pub drop_oversized: bool,
}

/// Where the parser is inside a literal.
#[derive(Debug, Default)]
enum Literal {
    /// Not in a literal.
    #[default]
    None,
    /// Collecting `want` bytes.
    Keep { want: usize, data: Vec<u8> },
    /// Dropping this many more bytes.
    Drop { remaining: u64 },
}

/// The incremental reader. Feed it with [`Parser::push`], then call [`Parser::next`]
/// until it returns `Ok(None)`.
#[derive(Debug, Default)]
pub struct Parser {
    /// Input not yet consumed (outside literals: the current line and any after it).
    buf: Vec<u8>,
    /// The arguments of the current command so far.
    args: Vec<Arg>,
    literal: Literal,
    /// The current command is refused for this; the rest of its line is skipped.
    error: Option<SyntaxError>,
    /// Bytes of the current command consumed outside literals.
    line_len: usize,
}

impl Parser {
    /// A parser at the start of a command.
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Adds bytes from the client. Bytes of a literal being dropped are dropped here,
    /// without being buffered.
    pub fn push(&mut self, mut input: &[u8]) {
        if self.buf.is_empty() {
            match &mut self.literal {
                Literal::Drop { remaining } => {
                    let n = usize::try_from(*remaining).map_or(input.len(), |r| r.min(input.len()));
                    *remaining -= n as u64;
                    input = &input[n..];
                }
                Literal::Keep { want, data } => {
                    let n = (*want - data.len()).min(input.len());
                    data.extend_from_slice(&input[..n]);
                    input = &input[n..];
                }
                Literal::None => {}
            }
        }
        self.buf.extend_from_slice(input);
    }

    /// Whether nothing of a command has come yet (no partial line, no literal).
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty()
            && self.args.is_empty()
            && self.error.is_none()
            && matches!(self.literal, Literal::None)
    }

    /// Drops everything buffered and any command in progress (after STARTTLS: input
    /// sent in the clear before the handshake does not count).
    pub fn reset(&mut self) {
        *self = Parser::default();
    }

    /// The next complete command or refused line, `Ok(None)` when more input is
    /// needed, or a reason to close the connection.
    pub fn next(&mut self, limit: Limit) -> Result<Option<Event>, Fatal> {
        loop {
            match &mut self.literal {
                Literal::Drop { remaining } => {
                    let n = usize::try_from(*remaining)
                        .map_or(self.buf.len(), |r| r.min(self.buf.len()));
                    self.buf.drain(..n);
                    *remaining -= n as u64;
                    if *remaining > 0 {
                        return Ok(None);
                    }
                    self.literal = Literal::None;
                    continue;
                }
                Literal::Keep { want, data } => {
                    let n = (*want - data.len()).min(self.buf.len());
                    data.extend(self.buf.drain(..n));
                    if data.len() < *want {
                        return Ok(None);
                    }
                    let data = std::mem::take(data);
                    self.literal = Literal::None;
                    self.args.push(Arg::String(data));
                    continue;
                }
                Literal::None => {}
            }
            if self.error.is_some() {
                match self.skip_line()? {
                    Some(event) => return Ok(Some(event)),
                    None if matches!(self.literal, Literal::None) => return Ok(None),
                    None => continue,
                }
            }
            let spaces = self.buf.iter().take_while(|b| **b == b' ').count();
            self.consume(spaces)?;
            let Some(&first) = self.buf.first() else {
                return Ok(None);
            };
            match first {
                b'\r' | b'\n' => {
                    let len = match (first, self.buf.get(1)) {
                        (b'\n', _) => 1,
                        (_, None) => return Ok(None),
                        (_, Some(b'\n')) => 2,
                        // A CR alone: refused, the rest of the line skipped.
                        (_, Some(_)) => {
                            self.consume(1)?;
                            self.error = Some(SyntaxError::Unexpected(b'\r'));
                            continue;
                        }
                    };
                    self.buf.drain(..len);
                    self.line_len = 0;
                    return Ok(Some(Event::Command(std::mem::take(&mut self.args))));
                }
                b'"' => match scan_quoted(&self.buf) {
                    Scan::More => return self.need_more(),
                    Scan::Token(used, text) => {
                        self.consume(used)?;
                        self.add(Arg::String(text));
                    }
                    Scan::Error(used, e) => {
                        self.consume(used)?;
                        self.error = Some(e);
                    }
                },
                b'{' => match scan_literal(&self.buf) {
                    Scan::More => return self.need_more(),
                    Scan::Token(used, size) => {
                        self.consume(used)?;
                        self.start_literal(size, limit)?;
                    }
                    Scan::Error(used, e) => {
                        self.consume(used)?;
                        self.error = Some(e);
                    }
                },
                c if is_atom_char(c) => {
                    let len = self.buf.iter().take_while(|b| is_atom_char(**b)).count();
                    if len == self.buf.len() {
                        return self.need_more();
                    }
                    let atom: String = self.buf[..len].iter().map(|b| char::from(*b)).collect();
                    self.consume(len)?;
                    if len > MAX_ATOM {
                        self.error = Some(SyntaxError::AtomTooLong);
                    } else {
                        self.add(Arg::Atom(atom));
                    }
                }
                c => {
                    self.consume(1)?;
                    self.error = Some(SyntaxError::Unexpected(c));
                }
            }
        }
    }

    /// Consumes `n` bytes of the current line, counting them against [`MAX_LINE`].
    fn consume(&mut self, n: usize) -> Result<(), Fatal> {
        self.buf.drain(..n);
        self.line_len += n;
        if self.line_len > MAX_LINE {
            return Err(Fatal::LineTooLong);
        }
        Ok(())
    }

    /// The current token is incomplete: wait for more input, unless the line is
    /// already too long.
    fn need_more(&self) -> Result<Option<Event>, Fatal> {
        if self.line_len + self.buf.len() > MAX_LINE {
            return Err(Fatal::LineTooLong);
        }
        Ok(None)
    }

    fn add(&mut self, arg: Arg) {
        if self.args.len() >= MAX_ARGS {
            self.error = Some(SyntaxError::TooManyArgs);
        } else {
            self.args.push(arg);
        }
    }

    /// After a literal's announcement: collect its bytes, or drop them.
    fn start_literal(&mut self, size: u64, limit: Limit) -> Result<(), Fatal> {
        let fits = usize::try_from(size).is_ok_and(|s| s <= limit.max_literal);
        if !fits && !limit.drop_oversized {
            return Err(Fatal::LiteralTooBig {
                size,
                max: limit.max_literal,
            });
        }
        match usize::try_from(size) {
            Ok(want) if fits && self.args.len() < MAX_ARGS => {
                self.literal = Literal::Keep {
                    want,
                    data: Vec::with_capacity(want),
                };
            }
            _ => {
                self.error = Some(if fits {
                    SyntaxError::TooManyArgs
                } else {
                    SyntaxError::LiteralTooBig {
                        size,
                        max: limit.max_literal,
                    }
                });
                self.literal = Literal::Drop { remaining: size };
            }
        }
        Ok(())
    }

    /// In a refused command: drops bytes up to the end of the line. A line that ends in
    /// a literal announcement continues after the literal, whose bytes are dropped.
    fn skip_line(&mut self) -> Result<Option<Event>, Fatal> {
        let Some(pos) = self.buf.iter().position(|b| *b == b'\n') else {
            let n = self.buf.len();
            self.consume(n)?;
            return Ok(None);
        };
        let line: Vec<u8> = self.buf.drain(..=pos).collect();
        if let Some(size) = trailing_literal(&line) {
            self.line_len += line.len();
            if self.line_len > MAX_LINE {
                return Err(Fatal::LineTooLong);
            }
            self.literal = Literal::Drop { remaining: size };
            return Ok(None);
        }
        self.line_len = 0;
        self.args.clear();
        let error = self.error.take().unwrap_or(SyntaxError::Unterminated);
        Ok(Some(Event::Refused(error)))
    }
}

/// The result of scanning one token at the start of the buffer.
enum Scan<T> {
    /// The buffer ends inside the token.
    More,
    /// The token, and the bytes it took.
    Token(usize, T),
    /// Not a valid token; the bytes to consume before skipping the rest of the line
    /// (never the line end itself).
    Error(usize, SyntaxError),
}

/// RFC 5804 §4: `ATOM-CHAR = "!" / %x23-27 / %x2A-5B / %x5D-7A / %x7C-7E`.
fn is_atom_char(b: u8) -> bool {
    matches!(b, b'!' | 0x23..=0x27 | 0x2a..=0x5b | 0x5d..=0x7a | 0x7c..=0x7e)
}

/// A quoted string at the start of `buf` (which starts with `"`).
fn scan_quoted(buf: &[u8]) -> Scan<Vec<u8>> {
    let mut text = Vec::new();
    let mut i = 1;
    loop {
        match buf.get(i) {
            None => return Scan::More,
            Some(b'"') => return Scan::Token(i + 1, text),
            // RFC 5804 §4: QUOTED-CHAR = SAFE-UTF8-CHAR / "\" QUOTED-SPECIALS.
            Some(b'\\') => match buf.get(i + 1) {
                None => return Scan::More,
                Some(c @ (b'"' | b'\\')) => {
                    text.push(*c);
                    i += 2;
                }
                Some(b'\r' | b'\n') => return Scan::Error(i + 1, SyntaxError::BadEscape),
                Some(_) => return Scan::Error(i + 2, SyntaxError::BadEscape),
            },
            Some(b'\r' | b'\n') => return Scan::Error(i, SyntaxError::Unterminated),
            Some(0) => return Scan::Error(i + 1, SyntaxError::Unterminated),
            Some(c) => {
                text.push(*c);
                i += 1;
            }
        }
    }
}

/// A literal announcement `{N}` or `{N+}` and its CRLF at the start of `buf`: the
/// size. A bare LF is taken for CRLF.
fn scan_literal(buf: &[u8]) -> Scan<u64> {
    let digits = buf[1..].iter().take_while(|b| b.is_ascii_digit()).count();
    let mut i = 1 + digits;
    if digits == 0 && i < buf.len() {
        return Scan::Error(i, SyntaxError::BadLiteral);
    }
    if digits > 10 {
        return Scan::Error(i, SyntaxError::BadLiteral);
    }
    if buf.get(i) == Some(&b'+') {
        i += 1;
    }
    let end = match (buf.get(i), buf.get(i + 1), buf.get(i + 2)) {
        (None, ..) | (Some(b'}'), None, _) | (Some(b'}'), Some(b'\r'), None) => {
            return Scan::More;
        }
        (Some(b'}'), Some(b'\n'), _) => i + 2,
        (Some(b'}'), Some(b'\r'), Some(b'\n')) => i + 3,
        (Some(b'}'), Some(b'\r'), Some(_)) => return Scan::Error(i + 2, SyntaxError::BadLiteral),
        (Some(b'}'), Some(_), _) => return Scan::Error(i + 1, SyntaxError::BadLiteral),
        (Some(b'\r' | b'\n'), ..) => return Scan::Error(i, SyntaxError::BadLiteral),
        (Some(_), ..) => return Scan::Error(i + 1, SyntaxError::BadLiteral),
    };
    let size = std::str::from_utf8(&buf[1..1 + digits])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|n| *n <= u64::from(u32::MAX));
    match size {
        Some(size) => Scan::Token(end, size),
        None => Scan::Error(i, SyntaxError::BadLiteral),
    }
}

/// The size of the literal a line (with its LF) announces at its end, if it does.
fn trailing_literal(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"}")?;
    let line = line.strip_suffix(b"+").unwrap_or(line);
    let digits = line.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 10 {
        return None;
    }
    let (rest, number) = line.split_at(line.len() - digits);
    if !rest.ends_with(b"{") {
        return None;
    }
    std::str::from_utf8(number)
        .ok()?
        .parse::<u64>()
        .ok()
        .filter(|n| *n <= u64::from(u32::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const LIMIT: Limit = Limit {
        max_literal: 100,
        drop_oversized: true,
    };

    fn atom(s: &str) -> Arg {
        Arg::Atom(s.into())
    }

    fn string(s: &[u8]) -> Arg {
        Arg::String(s.to_vec())
    }

    /// Everything the parser yields for `input` fed at once.
    fn all(input: &[u8]) -> Vec<Event> {
        let mut p = Parser::new();
        p.push(input);
        drain(&mut p)
    }

    fn drain(p: &mut Parser) -> Vec<Event> {
        let mut out = Vec::new();
        while let Some(e) = p.next(LIMIT).unwrap() {
            out.push(e);
        }
        out
    }

    /// Everything the parser yields for `input` fed one byte at a time.
    fn bytewise(input: &[u8]) -> Vec<Event> {
        let mut p = Parser::new();
        let mut out = Vec::new();
        for b in input {
            p.push(std::slice::from_ref(b));
            out.extend(drain(&mut p));
        }
        out
    }

    #[test]
    fn atoms_and_quoted_strings() {
        let got = all(b"Capability\r\nHAVESPACE \"my script\" 1234\r\n");
        assert_eq!(
            got,
            vec![
                Event::Command(vec![atom("Capability")]),
                Event::Command(vec![atom("HAVESPACE"), string(b"my script"), atom("1234")]),
            ]
        );
    }

    #[test]
    fn quoted_escapes_are_undone_and_others_refused() {
        let got = all(b"GETSCRIPT \"a\\\"b\\\\c\"\r\nGETSCRIPT \"a\\nb\"\r\nNOOP\r\n");
        assert_eq!(
            got,
            vec![
                Event::Command(vec![atom("GETSCRIPT"), string(b"a\"b\\c")]),
                Event::Refused(SyntaxError::BadEscape),
                Event::Command(vec![atom("NOOP")]),
            ]
        );
        // UTF-8 passes through as bytes.
        let got = all("PUTSCRIPT \"Grüße\" \"keep;\"\r\n".as_bytes());
        assert_eq!(
            got,
            vec![Event::Command(vec![
                atom("PUTSCRIPT"),
                string("Grüße".as_bytes()),
                string(b"keep;")
            ])]
        );
    }

    #[test]
    fn an_unterminated_quoted_string_is_refused_at_the_line_end() {
        let got = all(b"GETSCRIPT \"abc\r\nNOOP\r\n");
        assert_eq!(
            got,
            vec![
                Event::Refused(SyntaxError::Unterminated),
                Event::Command(vec![atom("NOOP")]),
            ]
        );
    }

    #[test]
    fn both_literal_forms_need_no_continuation() {
        // RFC 5804 §2.6's first example, and the same with {N}.
        for form in ["{31+}", "{31}"] {
            let input = format!(
                "Putscript \"foo\" {form}\r\n#comment\r\nInvalidSieveCommand\r\n\r\nNOOP\r\n"
            );
            let expected = vec![
                Event::Command(vec![
                    atom("Putscript"),
                    string(b"foo"),
                    string(b"#comment\r\nInvalidSieveCommand\r\n"),
                ]),
                Event::Command(vec![atom("NOOP")]),
            ];
            assert_eq!(all(input.as_bytes()), expected, "{form}");
            assert_eq!(bytewise(input.as_bytes()), expected, "{form} bytewise");
        }
    }

    #[test]
    fn literal_bytes_are_taken_verbatim() {
        // CR, LF, quotes, NUL and a brace inside a literal are data.
        let got = all(b"PUTSCRIPT {3+}\r\na\"b {7}\r\n\r\n\0{1}\"\r\n");
        assert_eq!(
            got,
            vec![Event::Command(vec![
                atom("PUTSCRIPT"),
                string(b"a\"b"),
                string(b"\r\n\0{1}\""),
            ])]
        );
        // An empty literal.
        assert_eq!(
            all(b"CHECKSCRIPT {0+}\r\n\r\n"),
            vec![Event::Command(vec![atom("CHECKSCRIPT"), string(b"")])]
        );
    }

    #[test]
    fn input_split_anywhere_gives_the_same_commands() {
        let input: &[u8] = b"AUTHENTICATE \"PLAIN\" {12+}\r\nAGFAYgBwYXNz\r\nPUTSCRIPT \"x\\\"y\" {5}\r\nkeep;\r\nLISTSCRIPTS\r\n";
        let whole = all(input);
        assert_eq!(whole.len(), 3, "{whole:?}");
        assert_eq!(bytewise(input), whole);
        for cut in 1..input.len() {
            let mut p = Parser::new();
            p.push(&input[..cut]);
            let mut got = drain(&mut p);
            p.push(&input[cut..]);
            got.extend(drain(&mut p));
            assert_eq!(got, whole, "cut at {cut}");
        }
    }

    #[test]
    fn oversized_literals_are_dropped_without_buffering() {
        let mut p = Parser::new();
        p.push(b"PUTSCRIPT \"big\" {1000+}\r\n");
        assert_eq!(p.next(LIMIT).unwrap(), None);
        for _ in 0..9 {
            p.push(&[b'x'; 100]);
            assert_eq!(p.next(LIMIT).unwrap(), None);
            assert!(p.buf.is_empty(), "literal bytes were buffered");
        }
        p.push(&[b'x'; 100]);
        p.push(b"\r\nNOOP\r\n");
        assert_eq!(
            drain(&mut p),
            vec![
                Event::Refused(SyntaxError::LiteralTooBig {
                    size: 1000,
                    max: 100
                }),
                Event::Command(vec![atom("NOOP")]),
            ]
        );
        // Or the connection ends, if asked.
        let mut p = Parser::new();
        p.push(b"PUTSCRIPT \"big\" {1000+}\r\n");
        let strict = Limit {
            max_literal: 100,
            drop_oversized: false,
        };
        assert_eq!(
            p.next(strict),
            Err(Fatal::LiteralTooBig {
                size: 1000,
                max: 100
            })
        );
    }

    #[test]
    fn a_refused_line_ending_in_a_literal_skips_the_literal() {
        let got = all(b"PUTSCRIPT ( {6+}\r\nNOOP\r\n\r\nNOOP\r\n");
        assert_eq!(
            got,
            vec![
                Event::Refused(SyntaxError::Unexpected(b'(')),
                Event::Command(vec![atom("NOOP")]),
            ]
        );
    }

    #[test]
    fn malformed_literals_and_bytes_are_refused() {
        assert_eq!(
            all(b"PUTSCRIPT {x}\r\nNOOP\r\n"),
            vec![
                Event::Refused(SyntaxError::BadLiteral),
                Event::Command(vec![atom("NOOP")])
            ]
        );
        assert_eq!(
            all(b"PUTSCRIPT {99999999999}\r\n"),
            vec![Event::Refused(SyntaxError::BadLiteral)]
        );
        assert_eq!(
            all(b"PUTSCRIPT {5}x\r\n"),
            vec![Event::Refused(SyntaxError::BadLiteral)]
        );
        assert_eq!(
            all(b"NOOP\x01\r\n"),
            vec![Event::Refused(SyntaxError::Unexpected(1))]
        );
        assert_eq!(
            all(b"a b c d e f g h i\r\n"),
            vec![Event::Refused(SyntaxError::TooManyArgs)]
        );
    }

    #[test]
    fn empty_lines_bare_lf_and_extra_spaces() {
        assert_eq!(
            all(b"\r\nNOOP  \"t\"\nLOGOUT\r\n"),
            vec![
                Event::Command(vec![]),
                Event::Command(vec![atom("NOOP"), string(b"t")]),
                Event::Command(vec![atom("LOGOUT")]),
            ]
        );
    }

    #[test]
    fn long_lines_end_the_connection() {
        let mut p = Parser::new();
        p.push(&vec![b'A'; MAX_LINE + 1]);
        assert_eq!(p.next(LIMIT), Err(Fatal::LineTooLong));
        let mut p = Parser::new();
        p.push(b"NOOP \"");
        p.push(&vec![b'a'; MAX_LINE]);
        assert_eq!(p.next(LIMIT), Err(Fatal::LineTooLong));
        // A line of many short tokens too.
        let mut p = Parser::new();
        for _ in 0..MAX_LINE {
            p.push(b" ");
        }
        p.push(b"x");
        assert_eq!(p.next(LIMIT), Err(Fatal::LineTooLong));
    }

    #[test]
    fn reset_forgets_everything() {
        let mut p = Parser::new();
        p.push(b"STARTTLS\r\nLISTSCRIPTS\r\nPUTSCRIPT {9+}\r\nab");
        assert_eq!(
            p.next(LIMIT).unwrap(),
            Some(Event::Command(vec![atom("STARTTLS")]))
        );
        p.reset();
        assert!(p.buf.is_empty() && p.args.is_empty() && p.line_len == 0);
        p.push(b"NOOP\r\n");
        assert_eq!(drain(&mut p), vec![Event::Command(vec![atom("NOOP")])]);
    }
}
