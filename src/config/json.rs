//! A strict RFC 8259 JSON parser, written by hand because the crate takes no
//! dependencies beyond `libc`.
//!
//! It exists for two readers: the config file loader (`super::file`), which
//! needs the line and column of every value so that its errors can point at
//! the offending text, and the test suites, which read JSON-lines files (one
//! object per line) that may hold large strings.
//!
//! What it must never do: panic or recurse without bound on any input. Every
//! malformed input is a [`JsonError`] with a position; nesting deeper than
//! [`MAX_DEPTH`] is an error, not a stack overflow.
//!
//! Positions: [`Pos`] is 1-based; `col` counts Unicode scalar values (chars)
//! from the start of the line, so a tab or a multi-byte character is one
//! column. Lines end at LF; CR is whitespace and does not count as a line end
//! of its own (CRLF is one line end).
//!
//! Numbers: kept as `f64` in [`Value::Number`]; a number written as an
//! integer literal (`-?digits`, no fraction, no exponent) also keeps its exact
//! integer value, which [`Json::as_u64`] and [`Json::as_i64`] return. So a
//! port or weight is never silently rounded, and `9001.0` or `9e3` is not
//! taken for an integer.
//!
//! Duplicate object keys are kept, in order; the caller decides what they
//! mean. A leading byte order mark (U+FEFF) is ignored, as RFC 8259 allows.
#![forbid(unsafe_code)]

use std::fmt;

/// Deepest nesting of arrays and objects accepted.
pub const MAX_DEPTH: usize = 128;

/// A position in the input: 1-based line, and 1-based column counted in chars.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl Pos {
    pub const START: Pos = Pos { line: 1, col: 1 };
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.col)
    }
}

/// A JSON value without its position; the members of arrays and objects carry theirs.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Json>),
    /// Members in document order; duplicate keys are all kept.
    Object(Vec<(String, Json)>),
}

/// A JSON value and the position of its first character.
#[derive(Clone, Debug, PartialEq)]
pub struct Json {
    pub value: Value,
    pub pos: Pos,
    /// The exact value of a number written as an integer literal that fits an
    /// `i128` (every `u64` and `i64` does); `None` for everything else.
    int: Option<i128>,
}

impl Json {
    /// A value at a position, for callers that build documents by hand.
    /// A `Number` built this way keeps its exact integer value when the `f64`
    /// is integral and within ±2^53.
    pub fn new(value: Value, pos: Pos) -> Json {
        let int = match value {
            Value::Number(n) if n.fract() == 0.0 && n.abs() <= 9_007_199_254_740_992.0 => {
                Some(n as i128)
            }
            _ => None,
        };
        Json { value, pos, int }
    }

    /// The member `key` of an object (the first, if the key is repeated).
    pub fn get(&self, key: &str) -> Option<&Json> {
        match &self.value {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self.value {
            Value::Number(n) => Some(n),
            _ => None,
        }
    }

    /// The value of a non-negative number written as an integer literal, if
    /// it fits a `u64`. `1.0`, `1e3` and `-0.0` are not integers here.
    pub fn as_u64(&self) -> Option<u64> {
        self.int.and_then(|i| u64::try_from(i).ok())
    }

    /// The value of a number written as an integer literal, if it fits an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        self.int.and_then(|i| i64::try_from(i).ok())
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json]> {
        match &self.value {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&[(String, Json)]> {
        match &self.value {
            Value::Object(members) => Some(members),
            _ => None,
        }
    }

    /// What kind of value this is, as an error message would name it
    /// ("a string", "an object", ...).
    pub fn type_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }
}

/// Why the input is not JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JsonErrorKind {
    /// The input ended where the named thing was expected.
    UnexpectedEnd(&'static str),
    /// Something other than the named thing was found.
    Expected(&'static str),
    /// A comma directly before `]` or `}`.
    TrailingComma,
    /// A raw character below U+0020 inside a string.
    ControlCharacter(u8),
    /// A backslash followed by something that is not an escape.
    InvalidEscape(char),
    /// `\u` not followed by four hex digits.
    InvalidUnicodeEscape,
    /// A `\uD800`–`\uDFFF` escape that is not half of a surrogate pair.
    LoneSurrogate(u16),
    /// A string with no closing quote.
    UnterminatedString,
    /// `01`, `-00`, ...
    LeadingZero,
    /// A number that breaks the grammar: the reason names the missing part.
    InvalidNumber(&'static str),
    /// A number too large for an `f64` (e.g. `1e400`).
    NumberOutOfRange,
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
    TooDeep,
    /// More text after the one top-level value.
    TrailingCharacters,
}

impl fmt::Display for JsonErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JsonErrorKind::UnexpectedEnd(what) => {
                write!(f, "unexpected end of input, expected {what}")
            }
            JsonErrorKind::Expected(what) => write!(f, "expected {what}"),
            JsonErrorKind::TrailingComma => f.write_str("trailing comma is not allowed"),
            JsonErrorKind::ControlCharacter(b) => {
                write!(f, "control character U+{b:04X} in string must be escaped")
            }
            JsonErrorKind::InvalidEscape(c) => write!(f, "invalid escape '\\{}'", c.escape_debug()),
            JsonErrorKind::InvalidUnicodeEscape => {
                f.write_str("invalid \\u escape: expected 4 hex digits")
            }
            JsonErrorKind::LoneSurrogate(u) => write!(f, "lone surrogate \\u{u:04X} in string"),
            JsonErrorKind::UnterminatedString => f.write_str("unterminated string"),
            JsonErrorKind::LeadingZero => f.write_str("leading zeros are not allowed in numbers"),
            JsonErrorKind::InvalidNumber(why) => write!(f, "invalid number: {why}"),
            JsonErrorKind::NumberOutOfRange => f.write_str("number out of range"),
            JsonErrorKind::TooDeep => write!(
                f,
                "arrays and objects nested deeper than {MAX_DEPTH} levels"
            ),
            JsonErrorKind::TrailingCharacters => {
                f.write_str("unexpected characters after the JSON value")
            }
        }
    }
}

/// A syntax error and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonError {
    pub pos: Pos,
    pub kind: JsonErrorKind,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.pos, self.kind)
    }
}

impl std::error::Error for JsonError {}

/// Parses one JSON document: a single value with optional whitespace around it.
pub fn parse(input: &str) -> Result<Json, JsonError> {
    let mut p = Parser {
        src: input,
        bytes: input.as_bytes(),
        i: 0,
        line: 1,
        col: 1,
    };
    if p.bytes.starts_with("\u{feff}".as_bytes()) {
        p.i = 3;
    }
    p.skip_ws();
    let value = p.value(0)?;
    p.skip_ws();
    if p.i < p.bytes.len() {
        return Err(p.err(JsonErrorKind::TrailingCharacters));
    }
    Ok(value)
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    /// Byte offset of the next unread byte.
    i: usize,
    line: u32,
    /// Column of the next unread byte, in chars.
    col: u32,
}

/// True for the first byte of a UTF-8 sequence (ASCII or a lead byte).
fn starts_char(b: u8) -> bool {
    b & 0xC0 != 0x80
}

impl<'a> Parser<'a> {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }

    fn err(&self, kind: JsonErrorKind) -> JsonError {
        JsonError {
            pos: self.pos(),
            kind,
        }
    }

    fn err_at(&self, pos: Pos, kind: JsonErrorKind) -> JsonError {
        JsonError { pos, kind }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.i).copied()
    }

    /// Moves past one byte that is not a newline.
    fn bump(&mut self) {
        if let Some(&b) = self.bytes.get(self.i) {
            self.i += 1;
            if b == b'\n' {
                self.line = self.line.saturating_add(1);
                self.col = 1;
            } else if starts_char(b) {
                self.col = self.col.saturating_add(1);
            }
        }
    }

    /// Moves past `end - self.i` bytes that hold no newline.
    fn bump_run(&mut self, end: usize) {
        let run = self.bytes.get(self.i..end).unwrap_or(&[]);
        let chars = run.iter().filter(|&&b| starts_char(b)).count();
        self.col = self
            .col
            .saturating_add(u32::try_from(chars).unwrap_or(u32::MAX));
        self.i = end;
    }

    fn skip_ws(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.bump(),
                _ => break,
            }
        }
    }

    /// An error for the byte at the cursor, which is not `what`.
    fn expected(&self, what: &'static str) -> JsonError {
        if self.i >= self.bytes.len() {
            self.err(JsonErrorKind::UnexpectedEnd(what))
        } else {
            self.err(JsonErrorKind::Expected(what))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Json, JsonError> {
        let pos = self.pos();
        let b = match self.peek() {
            Some(b) => b,
            None => return Err(self.expected("a JSON value")),
        };
        let (value, int) = match b {
            b'{' => (self.object(depth)?, None),
            b'[' => (self.array(depth)?, None),
            b'"' => (Value::String(self.string()?), None),
            b'-' | b'0'..=b'9' => {
                let (n, int) = self.number()?;
                (Value::Number(n), int)
            }
            b't' => (self.literal("true", Value::Bool(true))?, None),
            b'f' => (self.literal("false", Value::Bool(false))?, None),
            b'n' => (self.literal("null", Value::Null)?, None),
            _ => return Err(self.expected("a JSON value")),
        };
        Ok(Json { value, pos, int })
    }

    fn literal(&mut self, word: &'static str, value: Value) -> Result<Value, JsonError> {
        let what = match word {
            "true" => "'true'",
            "false" => "'false'",
            _ => "'null'",
        };
        let start = self.pos();
        for &w in word.as_bytes() {
            match self.peek() {
                Some(b) if b == w => self.bump(),
                None => return Err(self.err(JsonErrorKind::UnexpectedEnd(what))),
                Some(_) => return Err(self.err_at(start, JsonErrorKind::Expected(what))),
            }
        }
        // `truex` or `nullnull`: a letter right after the word is not a separator.
        if matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric()) {
            return Err(self.err_at(start, JsonErrorKind::Expected(what)));
        }
        Ok(value)
    }

    fn enter(&self, depth: usize) -> Result<usize, JsonError> {
        if depth >= MAX_DEPTH {
            Err(self.err(JsonErrorKind::TooDeep))
        } else {
            Ok(depth + 1)
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, JsonError> {
        let depth = self.enter(depth)?;
        self.bump(); // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.bump();
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    let comma = self.pos();
                    self.bump();
                    self.skip_ws();
                    if self.peek() == Some(b']') {
                        return Err(self.err_at(comma, JsonErrorKind::TrailingComma));
                    }
                }
                Some(b']') => {
                    self.bump();
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.expected("',' or ']'")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Value, JsonError> {
        let depth = self.enter(depth)?;
        self.bump(); // '{'
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.bump();
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.expected("a string key"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.expected("':'"));
            }
            self.bump();
            self.skip_ws();
            let value = self.value(depth)?;
            members.push((key, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    let comma = self.pos();
                    self.bump();
                    self.skip_ws();
                    if self.peek() == Some(b'}') {
                        return Err(self.err_at(comma, JsonErrorKind::TrailingComma));
                    }
                }
                Some(b'}') => {
                    self.bump();
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.expected("',' or '}'")),
            }
        }
    }

    /// Parses a string; the cursor is on the opening quote.
    fn string(&mut self) -> Result<String, JsonError> {
        let open = self.pos();
        self.bump(); // '"'
        let mut out = String::new();
        loop {
            // Copy the longest run of plain characters in one go: big strings
            // cost one scan and one copy.
            let rest = self.bytes.get(self.i..).unwrap_or(&[]);
            let run = rest
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                .unwrap_or(rest.len());
            let end = self.i + run;
            // The run ends at an ASCII byte or at the end of input, both char
            // boundaries, so the slice is always valid; `get` keeps it panic-free.
            if let Some(text) = self.src.get(self.i..end) {
                out.push_str(text);
            }
            self.bump_run(end);
            match self.peek() {
                None => return Err(self.err_at(open, JsonErrorKind::UnterminatedString)),
                Some(b'"') => {
                    self.bump();
                    return Ok(out);
                }
                Some(b'\\') => self.escape(&mut out)?,
                Some(b) => return Err(self.err(JsonErrorKind::ControlCharacter(b))),
            }
        }
    }

    /// Decodes one escape; the cursor is on the backslash.
    fn escape(&mut self, out: &mut String) -> Result<(), JsonError> {
        let at = self.pos();
        self.bump(); // '\\'
        let c = match self.peek() {
            None => return Err(self.err_at(at, JsonErrorKind::UnterminatedString)),
            Some(b) => b,
        };
        let simple = match c {
            b'"' => Some('"'),
            b'\\' => Some('\\'),
            b'/' => Some('/'),
            b'b' => Some('\u{8}'),
            b'f' => Some('\u{c}'),
            b'n' => Some('\n'),
            b'r' => Some('\r'),
            b't' => Some('\t'),
            _ => None,
        };
        if let Some(ch) = simple {
            self.bump();
            out.push(ch);
            return Ok(());
        }
        if c != b'u' {
            let ch = self
                .src
                .get(self.i..)
                .and_then(|s| s.chars().next())
                .unwrap_or('?');
            return Err(self.err_at(at, JsonErrorKind::InvalidEscape(ch)));
        }
        self.bump(); // 'u'
        let hi = self.hex4(at)?;
        let ch = match hi {
            0xD800..=0xDBFF => {
                // Must be followed by `\u` and a low surrogate.
                let second = self.pos();
                if self.bytes.get(self.i..self.i + 2) != Some(b"\\u".as_slice()) {
                    return Err(self.err_at(at, JsonErrorKind::LoneSurrogate(hi)));
                }
                self.bump();
                self.bump();
                let lo = self.hex4(second)?;
                if !(0xDC00..=0xDFFF).contains(&lo) {
                    return Err(self.err_at(at, JsonErrorKind::LoneSurrogate(hi)));
                }
                let cp = 0x10000 + ((u32::from(hi) - 0xD800) << 10) + (u32::from(lo) - 0xDC00);
                char::from_u32(cp)
            }
            0xDC00..=0xDFFF => return Err(self.err_at(at, JsonErrorKind::LoneSurrogate(hi))),
            _ => char::from_u32(u32::from(hi)),
        };
        // Both arms above only produce valid scalar values; the fallback is unreachable.
        out.push(ch.unwrap_or('\u{fffd}'));
        Ok(())
    }

    /// Reads four hex digits after `\u`; `at` is the escape's backslash.
    fn hex4(&mut self, at: Pos) -> Result<u16, JsonError> {
        let mut v: u16 = 0;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                _ => return Err(self.err_at(at, JsonErrorKind::InvalidUnicodeEscape)),
            };
            v = (v << 4) | u16::from(d);
            self.bump();
        }
        Ok(v)
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
        let n = self.i - start;
        self.col = self
            .col
            .saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        n
    }

    /// Parses a number per the RFC 8259 grammar:
    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Result<(f64, Option<i128>), JsonError> {
        let start = self.i;
        let start_pos = self.pos();
        if self.peek() == Some(b'-') {
            self.bump();
        }
        match self.peek() {
            Some(b'0') => {
                self.bump();
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return Err(self.err_at(start_pos, JsonErrorKind::LeadingZero));
                }
            }
            Some(b'1'..=b'9') => {
                self.digits();
            }
            None => {
                return Err(self.err(JsonErrorKind::UnexpectedEnd("a digit after '-'")));
            }
            Some(_) => {
                return Err(self.err(JsonErrorKind::InvalidNumber("expected a digit after '-'")));
            }
        }
        let mut integral = true;
        if self.peek() == Some(b'.') {
            integral = false;
            self.bump();
            if self.digits() == 0 {
                return Err(self.err(JsonErrorKind::InvalidNumber("expected a digit after '.'")));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            integral = false;
            self.bump();
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.bump();
            }
            if self.digits() == 0 {
                return Err(self.err(JsonErrorKind::InvalidNumber(
                    "expected a digit in the exponent",
                )));
            }
        }
        // The grammar above is a subset of what `f64::from_str` accepts.
        let text = self.src.get(start..self.i).unwrap_or("");
        let n: f64 = match text.parse() {
            Ok(n) => n,
            Err(_) => return Err(self.err_at(start_pos, JsonErrorKind::InvalidNumber("malformed"))),
        };
        if !n.is_finite() {
            return Err(self.err_at(start_pos, JsonErrorKind::NumberOutOfRange));
        }
        let int = if integral {
            text.parse::<i128>().ok()
        } else {
            None
        };
        Ok((n, int))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: u32, col: u32) -> Pos {
        Pos { line, col }
    }

    /// Writes a value back as compact JSON, for round-trip tests.
    fn write(v: &Json, out: &mut String) {
        match &v.value {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => match v.as_i64() {
                Some(i) => out.push_str(&i.to_string()),
                None => out.push_str(&format!("{n:e}")),
            },
            Value::String(s) => write_str(s, out),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            Value::Object(members) => {
                out.push('{');
                for (i, (k, item)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(k, out);
                    out.push(':');
                    write(item, out);
                }
                out.push('}');
            }
        }
    }

    fn write_str(s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
    }

    /// Strips positions so values can be compared by structure.
    fn shape(v: &Json) -> String {
        let mut s = String::new();
        write(v, &mut s);
        s
    }

    #[test]
    fn scalars() {
        let cases: &[(&str, Value)] = &[
            ("null", Value::Null),
            ("true", Value::Bool(true)),
            ("false", Value::Bool(false)),
            ("0", Value::Number(0.0)),
            ("-0", Value::Number(-0.0)),
            ("42", Value::Number(42.0)),
            ("-17", Value::Number(-17.0)),
            ("3.25", Value::Number(3.25)),
            ("1e3", Value::Number(1000.0)),
            ("1E+3", Value::Number(1000.0)),
            ("2.5e-1", Value::Number(0.25)),
            ("-0.0", Value::Number(-0.0)),
            ("1e-400", Value::Number(0.0)),
            ("\"\"", Value::String(String::new())),
            ("\"abc\"", Value::String("abc".into())),
            ("  \t\r\n 7 \n", Value::Number(7.0)),
            ("[]", Value::Array(vec![])),
            ("{}", Value::Object(vec![])),
            ("\u{feff}1", Value::Number(1.0)),
        ];
        for (input, want) in cases {
            let got = parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(&got.value, want, "{input:?}");
        }
    }

    #[test]
    fn string_escapes() {
        let cases: &[(&str, &str)] = &[
            (r#""\"\\\/\b\f\n\r\t""#, "\"\\/\u{8}\u{c}\n\r\t"),
            (r#""\u0041\u00e9\u20AC""#, "Aé€"),
            (r#""\u0000""#, "\0"),
            (r#""\ud83d\ude00""#, "😀"),
            (r#""\uD834\uDD1E x""#, "𝄞 x"),
            (r#""a\u005Cb""#, "a\\b"),
            ("\"héllo wörld 😀\"", "héllo wörld 😀"),
            ("\"\u{7f}\"", "\u{7f}"),
        ];
        for (input, want) in cases {
            let got = parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(got.as_str(), Some(*want), "{input:?}");
        }
    }

    #[test]
    fn errors_with_positions() {
        use JsonErrorKind as K;
        let cases: &[(&str, Pos, JsonErrorKind)] = &[
            ("", p(1, 1), K::UnexpectedEnd("a JSON value")),
            ("   ", p(1, 4), K::UnexpectedEnd("a JSON value")),
            ("x", p(1, 1), K::Expected("a JSON value")),
            ("tru", p(1, 4), K::UnexpectedEnd("'true'")),
            ("trux", p(1, 1), K::Expected("'true'")),
            ("truex", p(1, 1), K::Expected("'true'")),
            ("nul", p(1, 4), K::UnexpectedEnd("'null'")),
            ("fals", p(1, 5), K::UnexpectedEnd("'false'")),
            ("NaN", p(1, 1), K::Expected("a JSON value")),
            ("Infinity", p(1, 1), K::Expected("a JSON value")),
            ("+1", p(1, 1), K::Expected("a JSON value")),
            (".5", p(1, 1), K::Expected("a JSON value")),
            ("01", p(1, 1), K::LeadingZero),
            ("-01", p(1, 1), K::LeadingZero),
            ("00", p(1, 1), K::LeadingZero),
            (
                "1.",
                p(1, 3),
                K::InvalidNumber("expected a digit after '.'"),
            ),
            (
                "1.e5",
                p(1, 3),
                K::InvalidNumber("expected a digit after '.'"),
            ),
            (
                "1e",
                p(1, 3),
                K::InvalidNumber("expected a digit in the exponent"),
            ),
            (
                "1e+",
                p(1, 4),
                K::InvalidNumber("expected a digit in the exponent"),
            ),
            ("-", p(1, 2), K::UnexpectedEnd("a digit after '-'")),
            (
                "-a",
                p(1, 2),
                K::InvalidNumber("expected a digit after '-'"),
            ),
            (
                "- 1",
                p(1, 2),
                K::InvalidNumber("expected a digit after '-'"),
            ),
            ("1e400", p(1, 1), K::NumberOutOfRange),
            ("-1e400", p(1, 1), K::NumberOutOfRange),
            ("0x10", p(1, 2), K::TrailingCharacters),
            ("1 2", p(1, 3), K::TrailingCharacters),
            ("{} x", p(1, 4), K::TrailingCharacters),
            ("[1,]", p(1, 3), K::TrailingComma),
            ("{\"a\":1,}", p(1, 7), K::TrailingComma),
            ("[1 2]", p(1, 4), K::Expected("',' or ']'")),
            ("[1", p(1, 3), K::UnexpectedEnd("',' or ']'")),
            ("[", p(1, 2), K::UnexpectedEnd("a JSON value")),
            ("[,1]", p(1, 2), K::Expected("a JSON value")),
            ("{", p(1, 2), K::UnexpectedEnd("a string key")),
            ("{1:2}", p(1, 2), K::Expected("a string key")),
            ("{a:1}", p(1, 2), K::Expected("a string key")),
            ("{'a':1}", p(1, 2), K::Expected("a string key")),
            ("{\"a\" 1}", p(1, 6), K::Expected("':'")),
            ("{\"a\":}", p(1, 6), K::Expected("a JSON value")),
            ("{\"a\":1 \"b\":2}", p(1, 8), K::Expected("',' or '}'")),
            ("{\"a\":1", p(1, 7), K::UnexpectedEnd("',' or '}'")),
            ("\"abc", p(1, 1), K::UnterminatedString),
            ("\"ab\\", p(1, 4), K::UnterminatedString),
            ("\"a\nb\"", p(1, 3), K::ControlCharacter(b'\n')),
            ("\"a\tb\"", p(1, 3), K::ControlCharacter(b'\t')),
            ("\"\u{1}\"", p(1, 2), K::ControlCharacter(1)),
            ("\"\\x\"", p(1, 2), K::InvalidEscape('x')),
            ("\"\\é\"", p(1, 2), K::InvalidEscape('é')),
            ("\"\\U0041\"", p(1, 2), K::InvalidEscape('U')),
            ("\"\\u12\"", p(1, 2), K::InvalidUnicodeEscape),
            ("\"\\u12g4\"", p(1, 2), K::InvalidUnicodeEscape),
            ("\"\\u", p(1, 2), K::InvalidUnicodeEscape),
            ("\"\\ud800\"", p(1, 2), K::LoneSurrogate(0xD800)),
            ("\"\\udc00\"", p(1, 2), K::LoneSurrogate(0xDC00)),
            ("\"\\ud800\\u0041\"", p(1, 2), K::LoneSurrogate(0xD800)),
            ("\"\\ud800\\ud800\"", p(1, 2), K::LoneSurrogate(0xD800)),
            ("\"\\ud800x\"", p(1, 2), K::LoneSurrogate(0xD800)),
            ("\"\\ud800\\u00\"", p(1, 8), K::InvalidUnicodeEscape),
            // Whitespace is only space, tab, CR and LF.
            ("\u{a0}1", p(1, 1), K::Expected("a JSON value")),
            ("1\u{c}", p(1, 2), K::TrailingCharacters),
            ("[1,\u{b}2]", p(1, 4), K::Expected("a JSON value")),
            // Columns count chars, not bytes; lines count LFs.
            ("\"é😀\" x", p(1, 6), K::TrailingCharacters),
            ("{\n  \"a\": 1,\n  \"b\" 2\n}", p(3, 7), K::Expected("':'")),
            ("\r\n\r\n  [1,,]", p(3, 6), K::Expected("a JSON value")),
            ("[\"\n\"]", p(1, 3), K::ControlCharacter(b'\n')),
            ("//c\n1", p(1, 1), K::Expected("a JSON value")),
        ];
        for (input, pos, kind) in cases {
            let err = parse(input).expect_err(input);
            assert_eq!(
                (&err.pos, &err.kind),
                (pos, kind),
                "input {input:?} gave {err}"
            );
        }
    }

    #[test]
    fn display_format() {
        let err = parse("{\n  \"a\": 1,\n  \"b\": 2\n  \"c\": 3}").unwrap_err();
        assert_eq!(err.to_string(), "line 4, column 3: expected ',' or '}'");
        let err = parse("\"\\ud800\"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 1, column 2: lone surrogate \\uD800 in string"
        );
        let err = parse("\"\u{1f}\"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 1, column 2: control character U+001F in string must be escaped"
        );
        let err = parse("[").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 1, column 2: unexpected end of input, expected a JSON value"
        );
    }

    #[test]
    fn positions_of_values() {
        let doc = parse("{\n  \"a\": [1, \"é\", true],\n\t\"b\": {\"c\": null}\n}").unwrap();
        assert_eq!(doc.pos, p(1, 1));
        let a = doc.get("a").unwrap();
        assert_eq!(a.pos, p(2, 8));
        let items = a.as_array().unwrap();
        assert_eq!(items[0].pos, p(2, 9));
        assert_eq!(items[1].pos, p(2, 12));
        assert_eq!(items[2].pos, p(2, 17));
        let b = doc.get("b").unwrap();
        assert_eq!(b.pos, p(3, 7));
        assert_eq!(b.get("c").unwrap().pos, p(3, 13));
    }

    #[test]
    fn integers_are_exact() {
        let cases: &[(&str, Option<u64>, Option<i64>)] = &[
            ("0", Some(0), Some(0)),
            ("-0", Some(0), Some(0)),
            ("65535", Some(65535), Some(65535)),
            ("-1", None, Some(-1)),
            (
                "9007199254740993",
                Some(9_007_199_254_740_993),
                Some(9_007_199_254_740_993),
            ),
            ("18446744073709551615", Some(u64::MAX), None),
            ("18446744073709551616", None, None),
            ("-9223372036854775808", None, Some(i64::MIN)),
            ("1.0", None, None),
            ("1e3", None, None),
            ("9001.5", None, None),
            ("123456789012345678901234567890123456789012", None, None),
        ];
        for (input, want_u, want_i) in cases {
            let v = parse(input).unwrap();
            assert_eq!(v.as_u64(), *want_u, "{input}");
            assert_eq!(v.as_i64(), *want_i, "{input}");
            assert!(v.as_f64().is_some());
        }
        assert_eq!(parse("\"1\"").unwrap().as_u64(), None);
        assert_eq!(parse("true").unwrap().as_u64(), None);
    }

    #[test]
    fn accessors() {
        let doc =
            parse(r#"{"s":"x","n":1.5,"b":false,"a":[1],"o":{},"z":null,"s":"dup"}"#).unwrap();
        assert_eq!(doc.get("s").and_then(Json::as_str), Some("x"));
        assert_eq!(doc.get("n").and_then(Json::as_f64), Some(1.5));
        assert_eq!(doc.get("b").and_then(Json::as_bool), Some(false));
        assert_eq!(
            doc.get("a").and_then(Json::as_array).map(<[Json]>::len),
            Some(1)
        );
        assert_eq!(
            doc.get("o").and_then(Json::as_object).map(<[_]>::len),
            Some(0)
        );
        assert!(doc.get("z").unwrap().is_null());
        assert!(doc.get("missing").is_none());
        assert!(doc.get("s").unwrap().get("s").is_none());
        assert_eq!(doc.get("s").unwrap().as_bool(), None);
        assert_eq!(doc.get("b").unwrap().as_str(), None);
        // Duplicate keys are all kept, in order.
        let members = doc.as_object().unwrap();
        let keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["s", "n", "b", "a", "o", "z", "s"]);
        assert_eq!(members[6].1.as_str(), Some("dup"));
        let names: Vec<&str> = members.iter().map(|(_, v)| v.type_name()).collect();
        assert_eq!(
            names,
            [
                "a string",
                "a number",
                "a boolean",
                "an array",
                "an object",
                "null",
                "a string"
            ]
        );
        let built = Json::new(Value::Number(443.0), Pos::START);
        assert_eq!(built.as_u64(), Some(443));
        assert_eq!(Json::new(Value::Number(0.5), Pos::START).as_u64(), None);
    }

    #[test]
    fn nesting_limit() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let err = parse(&deep).unwrap_err();
        assert_eq!(err.kind, JsonErrorKind::TooDeep);
        assert_eq!(err.pos, p(1, MAX_DEPTH as u32 + 1));
        let objs = "{\"a\":".repeat(MAX_DEPTH + 1);
        assert_eq!(parse(&objs).unwrap_err().kind, JsonErrorKind::TooDeep);
        // Far deeper than any stack could take by recursion: still just an error.
        let huge = "[".repeat(1_000_000);
        assert_eq!(parse(&huge).unwrap_err().kind, JsonErrorKind::TooDeep);
    }

    #[test]
    fn large_strings_and_json_lines() {
        let big = "ab\u{e9}c".repeat(500_000);
        let line = format!("{{\"id\":7,\"body\":\"{big}\\n\",\"ok\":true}}");
        let v = parse(&line).unwrap();
        assert_eq!(
            v.get("body").unwrap().as_str().unwrap().len(),
            big.len() + 1
        );
        // The column after a long line is right (chars, not bytes).
        let err = parse(&format!("\"{big}\" ,")).unwrap_err();
        assert_eq!(err.pos, p(1, 2_000_000 + 4));

        let lines = "{\"n\":1}\n{\"n\":2,\"s\":\"x\"}\n\n{\"n\":3}\n";
        let ns: Vec<u64> = lines
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| parse(l).unwrap().get("n").unwrap().as_u64().unwrap())
            .collect();
        assert_eq!(ns, [1, 2, 3]);
    }

    /// xorshift64*: a small deterministic PRNG, so failures replay.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn random_value(rng: &mut Rng, depth: usize) -> String {
        let pick = if depth > 4 {
            rng.below(5)
        } else {
            rng.below(7)
        };
        match pick {
            0 => "null".into(),
            1 => ["true", "false"][rng.below(2)].into(),
            2 => {
                let nums = [
                    "0", "-0", "1", "-12", "3.5", "1e10", "-2.5E-3", "65535", "1.0e+2",
                ];
                nums[rng.below(nums.len())].into()
            }
            3 => (rng.next() as i64).to_string(),
            4 => {
                let parts = [
                    "a",
                    "\\n",
                    "\\u00e9",
                    "é",
                    "\\ud83d\\ude00",
                    "😀",
                    "\\\"",
                    " ",
                    "\\/",
                ];
                let mut s = String::from("\"");
                for _ in 0..rng.below(6) {
                    s.push_str(parts[rng.below(parts.len())]);
                }
                s.push('"');
                s
            }
            5 => {
                let items: Vec<String> = (0..rng.below(4))
                    .map(|_| random_value(rng, depth + 1))
                    .collect();
                format!("[{}]", items.join(", "))
            }
            _ => {
                let items: Vec<String> = (0..rng.below(4))
                    .map(|i| format!("\"k{i}\" : {}", random_value(rng, depth + 1)))
                    .collect();
                format!("{{\n{}\n}}", items.join(",\n"))
            }
        }
    }

    #[test]
    fn random_documents_round_trip() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..2000 {
            let doc = random_value(&mut rng, 0);
            let v = parse(&doc).unwrap_or_else(|e| panic!("{doc:?}: {e}"));
            let again = shape(&v);
            let v2 = parse(&again).unwrap_or_else(|e| panic!("{again:?}: {e}"));
            assert_eq!(shape(&v2), again, "from {doc:?}");
        }
    }

    #[test]
    fn mutated_inputs_never_panic() {
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        let alphabet: &[&str] = &[
            "{", "}", "[", "]", ",", ":", "\"", "\\", "u", "d8", "dc", "0", "1", "-", "+", ".",
            "e", "E", " ", "\n", "\t", "\r", "\u{0}", "\u{1f}", "é", "😀", "t", "n", "f", "x",
            "\u{feff}",
        ];
        for _ in 0..3000 {
            let doc = random_value(&mut rng, 0);
            let mut chars: Vec<char> = doc.chars().collect();
            for _ in 0..1 + rng.below(4) {
                if chars.is_empty() {
                    break;
                }
                let at = rng.below(chars.len() + 1);
                match rng.below(4) {
                    0 if at < chars.len() => {
                        chars.remove(at);
                    }
                    1 => chars.truncate(at),
                    2 | 3 => {
                        let ins = alphabet[rng.below(alphabet.len())];
                        for (k, c) in ins.chars().enumerate() {
                            chars.insert((at + k).min(chars.len()), c);
                        }
                    }
                    _ => {}
                }
            }
            let mutated: String = chars.into_iter().collect();
            match parse(&mutated) {
                Ok(v) => {
                    // Whatever parses must survive a round trip.
                    let s = shape(&v);
                    assert_eq!(shape(&parse(&s).unwrap()), s, "from {mutated:?}");
                }
                Err(e) => {
                    assert!(e.pos.line >= 1 && e.pos.col >= 1);
                    assert!(!e.to_string().is_empty());
                }
            }
        }
        // Every prefix of a document that uses every feature.
        let full = "{\"a\":[1,-2.5e+3,true,false,null,\"\\u00e9\\ud83d\\ude00\\n\"],\"b\":{}}";
        for end in 0..full.len() {
            if let Some(prefix) = full.get(..end) {
                assert!(parse(prefix).is_err(), "{prefix:?}");
            }
        }
        assert!(parse(full).is_ok());
    }
}
