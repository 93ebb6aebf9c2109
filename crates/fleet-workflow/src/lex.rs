//! A small JavaScript tokenizer: enough to read the `meta` header statically and to find
//! `import` anywhere in a script without running it. It knows comments, strings, template
//! literals (with nested `${}`), numbers, identifiers, punctuators and regular-expression
//! literals (told from division by the token before them, as the grammar does).

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An identifier or keyword.
    Ident,
    /// A number literal.
    Number,
    /// A string literal (`'…'` or `"…"`).
    Str,
    /// A whole template literal without substitutions.
    Template,
    /// A template literal part that opens a `${`.
    TemplateHead,
    /// A regular-expression literal.
    Regex,
    /// A punctuator.
    Punct,
}

/// One token: its kind and where it is (byte offsets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

/// A lexing failure at a byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LexError {
    pub at: usize,
    pub message: String,
}

/// Tokens of `source`, lazily.
pub(crate) struct Lexer<'a> {
    src: &'a str,
    pos: usize,
    /// Brace depth at which each open template substitution resumes its template.
    templates: Vec<usize>,
    braces: usize,
    prev: Option<(Kind, &'a str)>,
}

const REGEX_AFTER_WORDS: &[&str] = &[
    "return",
    "typeof",
    "instanceof",
    "in",
    "of",
    "new",
    "delete",
    "void",
    "throw",
    "case",
    "do",
    "else",
    "yield",
    "await",
];

impl<'a> Lexer<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        Self {
            src,
            pos: 0,
            templates: Vec::new(),
            braces: 0,
            prev: None,
        }
    }

    pub(crate) fn text(&self, token: Token) -> &'a str {
        &self.src[token.start..token.end]
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek_at(&self, n: usize) -> Option<char> {
        self.src[self.pos..].chars().nth(n)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn err(&self, at: usize, message: impl Into<String>) -> LexError {
        LexError {
            at,
            message: message.into(),
        }
    }

    fn skip_trivia(&mut self) -> Result<(), LexError> {
        loop {
            match (self.peek(), self.peek_at(1)) {
                (Some(c), _) if c.is_whitespace() || c == '\u{feff}' => {
                    self.bump();
                }
                (Some('/'), Some('/')) => {
                    while let Some(c) = self.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.bump();
                    }
                }
                (Some('/'), Some('*')) => {
                    let start = self.pos;
                    self.pos += 2;
                    match self.src[self.pos..].find("*/") {
                        Some(i) => self.pos += i + 2,
                        None => return Err(self.err(start, "unterminated comment")),
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn regex_allowed(&self) -> bool {
        match self.prev {
            None => true,
            Some((Kind::Ident, word)) => REGEX_AFTER_WORDS.contains(&word),
            Some((Kind::Punct, p)) => !matches!(p, ")" | "]" | "}"),
            Some((Kind::TemplateHead, _)) => true,
            Some(_) => false,
        }
    }

    fn string(&mut self, quote: char, start: usize) -> Result<(), LexError> {
        loop {
            match self.bump() {
                None | Some('\n') => return Err(self.err(start, "unterminated string")),
                Some('\\') => {
                    self.bump();
                }
                Some(c) if c == quote => return Ok(()),
                Some(_) => {}
            }
        }
    }

    /// Scans template characters after a `` ` `` or a `}` closing a substitution; returns
    /// whether the part ends with `${` (true) or the closing backtick (false).
    fn template_part(&mut self, start: usize) -> Result<bool, LexError> {
        loop {
            match self.bump() {
                None => return Err(self.err(start, "unterminated template literal")),
                Some('\\') => {
                    self.bump();
                }
                Some('`') => return Ok(false),
                Some('$') if self.peek() == Some('{') => {
                    self.bump();
                    return Ok(true);
                }
                Some(_) => {}
            }
        }
    }

    fn regex(&mut self, start: usize) -> Result<(), LexError> {
        let mut class = false;
        loop {
            match self.bump() {
                None | Some('\n') => return Err(self.err(start, "unterminated regular expression")),
                Some('\\') => {
                    self.bump();
                }
                Some('[') => class = true,
                Some(']') => class = false,
                Some('/') if !class => break,
                Some(_) => {}
            }
        }
        while self.peek().is_some_and(is_ident_part) {
            self.bump();
        }
        Ok(())
    }

    fn number(&mut self) {
        let mut prev = '\0';
        while let Some(c) = self.peek() {
            let exponent_sign = (c == '+' || c == '-') && (prev == 'e' || prev == 'E');
            if c.is_ascii_alphanumeric() || c == '.' || c == '_' || exponent_sign {
                prev = c;
                self.bump();
            } else {
                break;
            }
        }
    }

    /// The next token, `None` at the end.
    pub(crate) fn next_token(&mut self) -> Result<Option<Token>, LexError> {
        self.skip_trivia()?;
        let start = self.pos;
        let Some(c) = self.bump() else {
            return Ok(None);
        };
        let kind = match c {
            '\'' | '"' => {
                self.string(c, start)?;
                Kind::Str
            }
            '`' => {
                if self.template_part(start)? {
                    self.templates.push(self.braces);
                    Kind::TemplateHead
                } else {
                    Kind::Template
                }
            }
            '}' if self.templates.last() == Some(&self.braces) => {
                self.templates.pop();
                if self.template_part(start)? {
                    self.templates.push(self.braces);
                    Kind::TemplateHead
                } else {
                    Kind::Template
                }
            }
            '/' if self.regex_allowed() => {
                self.regex(start)?;
                Kind::Regex
            }
            '0'..='9' => {
                self.number();
                Kind::Number
            }
            '.' if self.peek().is_some_and(|d| d.is_ascii_digit()) => {
                self.number();
                Kind::Number
            }
            c if is_ident_start(c) => {
                while self.peek().is_some_and(is_ident_part) {
                    self.bump();
                }
                Kind::Ident
            }
            _ => {
                self.punct(c);
                Kind::Punct
            }
        };
        let token = Token {
            kind,
            start,
            end: self.pos,
        };
        self.prev = Some((kind, self.text(token)));
        Ok(Some(token))
    }

    fn punct(&mut self, c: char) {
        match c {
            '{' => self.braces += 1,
            '}' => self.braces = self.braces.saturating_sub(1),
            '.' if self.peek() == Some('.') && self.peek_at(1) == Some('.') => {
                self.pos += 2;
            }
            '?' if self.peek() == Some('.') => {
                self.bump();
            }
            '=' if self.peek() == Some('>') => {
                self.bump();
            }
            _ => {}
        }
    }
}

fn is_ident_start(c: char) -> bool {
    c == '$' || c == '_' || c == '\\' || c.is_alphabetic()
}

fn is_ident_part(c: char) -> bool {
    is_ident_start(c) || c.is_alphanumeric() || c == '\u{200c}' || c == '\u{200d}'
}

/// 1-based line and column (in characters) of byte offset `at`.
pub(crate) fn line_col(src: &str, at: usize) -> (usize, usize) {
    let at = at.min(src.len());
    let before = &src[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(src: &str) -> Vec<(Kind, String)> {
        let mut lexer = Lexer::new(src);
        let mut out = Vec::new();
        while let Some(t) = lexer.next_token().unwrap() {
            out.push((t.kind, lexer.text(t).to_owned()));
        }
        out
    }

    #[test]
    fn tells_regex_from_division_and_nests_templates() {
        let toks = kinds("a = b / c; x = /re[/]x/g.test(`t ${ {a: `in${1}`}.a } end`)");
        assert!(toks.contains(&(Kind::Punct, "/".into())));
        assert!(toks.contains(&(Kind::Regex, "/re[/]x/g".into())));
        assert!(toks.contains(&(Kind::TemplateHead, "`t ${".into())));
        assert!(toks.contains(&(Kind::TemplateHead, "`in${".into())));
        assert!(toks.contains(&(Kind::Template, "} end`".into())));
        assert_eq!(toks.last(), Some(&(Kind::Punct, ")".into())));
    }

    #[test]
    fn skips_comments_and_reports_unterminated_input() {
        assert_eq!(kinds("// x\n/* y */ z"), vec![(Kind::Ident, "z".into())]);
        let mut lexer = Lexer::new("let s = 'open");
        let err = loop {
            match lexer.next_token() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("no error"),
                Err(e) => break e,
            }
        };
        assert_eq!((err.at, err.message.as_str()), (8, "unterminated string"));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
