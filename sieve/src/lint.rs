//! Checks on a script's text that sieve-rs does not make, applied wherever a script is
//! compiled (upload, CHECKSCRIPT, delivery):
//!
//! - the `:subject`, `:from` and `:handle` of `vacation` are single-line: a line
//!   break there would become a header field (or a body) of a reply Postern signs;
//! - a `:regex` key (draft-ietf-sieve-regex) is a literal that the linear-time
//!   `regex-syntax` grammar accepts: sieve-rs matches with fancy-regex, which
//!   backtracks on back-references and look-around, and one such pattern over a
//!   message's headers held a delivery for seconds.
//!
//! The scan is a tokenizer of RFC 5228 §8.1's lexical grammar (comments, quoted
//! strings, `text:` blocks, tags, identifiers), linear and without recursion.

/// A problem found, with the line it is on (from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// An identifier (a command or test name), lower case.
    Word(String),
    /// A tagged argument (`:subject`), lower case, without the colon.
    Tag(String),
    /// A quoted string or a `text:` block, its value.
    Str(String),
    /// `[`, `]`, `,`, `(`, `)`, `{`, `}`, `;`.
    Punct(char),
    /// A number or anything else.
    Other,
}

/// Tokens with the line each starts on.
fn tokenize(text: &str) -> Vec<(Token, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\n' => {
                line += 1;
                i += 1;
            }
            b' ' | b'\t' | b'\r' => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    if b[i] == b'\n' {
                        line += 1;
                    }
                    i += 1;
                }
                i = (i + 2).min(b.len());
            }
            b'"' => {
                let start = line;
                let mut value = Vec::new();
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' && i + 1 < b.len() {
                        i += 1;
                    }
                    if b[i] == b'\n' {
                        line += 1;
                    }
                    value.push(b[i]);
                    i += 1;
                }
                i += 1;
                out.push((
                    Token::Str(String::from_utf8_lossy(&value).into_owned()),
                    start,
                ));
            }
            b':' => {
                let start = i + 1;
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                out.push((Token::Tag(text[start..i].to_ascii_lowercase()), line));
            }
            b'[' | b']' | b',' | b'(' | b')' | b'{' | b'}' | b';' => {
                out.push((Token::Punct(char::from(c)), line));
                i += 1;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                let word = text[start..i].to_ascii_lowercase();
                // RFC 5228 §8.1: `text:` then white space or a comment to the end of the
                // line; the block runs to a line holding only `.`.
                if word == "text" && b.get(i) == Some(&b':') {
                    let start_line = line;
                    while i < b.len() && b[i] != b'\n' {
                        i += 1;
                    }
                    i = (i + 1).min(b.len());
                    line += 1;
                    let mut value = String::new();
                    while i < b.len() {
                        let end = b[i..]
                            .iter()
                            .position(|&x| x == b'\n')
                            .map_or(b.len(), |p| i + p + 1);
                        let l = &text[i..end];
                        i = end;
                        line += 1;
                        let bare = l.trim_end_matches(['\r', '\n']);
                        if bare == "." {
                            break;
                        }
                        value.push_str(
                            bare.strip_prefix('.')
                                .filter(|_| bare.starts_with(".."))
                                .unwrap_or(bare),
                        );
                        value.push('\n');
                    }
                    out.push((Token::Str(value), start_line));
                } else {
                    out.push((Token::Word(word), line));
                }
            }
            _ => {
                out.push((Token::Other, line));
                i += 1;
            }
        }
    }
    out
}

/// The problems of `text`, in order.
pub fn check(text: &str) -> Vec<Problem> {
    let tokens = tokenize(text);
    let mut problems = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i].0 {
            Token::Word(w) if w == "vacation" => {
                // Arguments up to the end of the command.
                let mut j = i + 1;
                while j < tokens.len() && !matches!(tokens[j].0, Token::Punct(';' | '{' | '}')) {
                    if let Token::Tag(tag) = &tokens[j].0
                        && matches!(tag.as_str(), "subject" | "from" | "handle")
                        && let Some((Token::Str(value), line)) = tokens.get(j + 1)
                        && value.contains(['\r', '\n'])
                    {
                        problems.push(Problem {
                            line: *line,
                            message: format!(
                                "the :{tag} of vacation must be one line: a line break there would become a header field of the reply"
                            ),
                        });
                    }
                    j += 1;
                }
                i = j;
            }
            Token::Tag(tag) if tag == "regex" => {
                // The key list is the last string or list before the test ends.
                let mut j = i + 1;
                let mut last: Vec<(String, usize)> = Vec::new();
                let mut in_list = false;
                let mut current: Vec<(String, usize)> = Vec::new();
                while j < tokens.len() {
                    match &tokens[j].0 {
                        Token::Punct('[') => {
                            in_list = true;
                            current.clear();
                        }
                        Token::Punct(']') => {
                            in_list = false;
                            last = std::mem::take(&mut current);
                        }
                        Token::Str(s) if in_list => current.push((s.clone(), tokens[j].1)),
                        Token::Str(s) => last = vec![(s.clone(), tokens[j].1)],
                        Token::Punct(',') if in_list => {}
                        Token::Punct(_) | Token::Word(_) => break,
                        _ => {}
                    }
                    j += 1;
                }
                for (key, line) in last {
                    if let Some(message) = regex_problem(&key) {
                        problems.push(Problem { line, message });
                    }
                }
                i = j;
            }
            _ => i += 1,
        }
    }
    problems
}

/// Why a `:regex` key is refused, if it is.
fn regex_problem(key: &str) -> Option<String> {
    if key.contains("${") {
        return Some(format!(
            "the :regex key {key:?} uses a variable: only literal patterns are accepted, so each can be checked when the script is uploaded"
        ));
    }
    regex_syntax::ParserBuilder::new()
        .nest_limit(64)
        .build()
        .parse(key)
        .err()
        .map(|e| {
            let first = e.to_string();
            let first = first.lines().last().unwrap_or_default().trim().to_string();
            format!(
                "the :regex key {key:?} is refused ({first}): back-references and look-around are not supported, as they can take exponential time"
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vacation_values_with_line_breaks() {
        let ok = "require \"vacation\";\nvacation :subject \"Away\" :from \"bob@example.org\" \"I am away.\nBack Monday.\";\n";
        assert_eq!(check(ok), []);
        let bad = "require \"vacation\";\n# a comment with \"quotes\n\nvacation :days 1 :subject \"Away\r\nContent-Type: text/html\" \"x\";\n";
        let problems = check(bad);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].line, 4);
        assert!(problems[0].message.contains(":subject"));
        let text_block =
            "require \"vacation\";\nvacation :from text:\nbob@example.org\nBcc: x@y\n.\n\"x\";\n";
        assert_eq!(check(text_block).len(), 1);
        // A multi-line reason is fine, and so is a subject in a comment.
        let reason = "require \"vacation\";\n/* :subject \"a\nb\" */ vacation text:\nline one\n..dotted\n.\n;\n";
        assert_eq!(check(reason), []);
    }

    #[test]
    fn regex_keys_must_be_linear_literals() {
        let ok = "require \"regex\";\nif header :regex \"subject\" [\"^(a|aa)+$\", \"x.*y\"] { stop; }\n";
        assert_eq!(check(ok), []);
        let backref = "require \"regex\";\nif header :regex [\"subject\",\"to\"] \"^(a+)+\\\\1$\" { stop; }\n";
        let problems = check(backref);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].message.contains("back-references"),
            "{problems:?}"
        );
        let lookahead = "if anyof(header :regex \"x\" \"(?=a)b\", true) { stop; }";
        assert_eq!(check(lookahead).len(), 1);
        let variable = "if header :regex \"x\" \"${1}\" { stop; }";
        assert!(check(variable)[0].message.contains("variable"));
    }
}
