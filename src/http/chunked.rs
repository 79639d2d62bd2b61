//! A streaming validator for the chunked transfer coding (RFC 9112 section 7.1).
//!
//! The proxy forwards chunked bodies byte for byte (the framing is already
//! the one it would produce), so the decoder's job is to find exactly where
//! the message ends and to refuse anything two readers could disagree on.
//! It holds chunked framing to the rules the head parser holds a head to:
//! trailer lines are field lines (a `tchar` name, no whitespace before the
//! colon, a value of field-vchar, obs-text, SP and HTAB, no obs-fold), and
//! every line ends in CRLF. It also reports data spans, for a sink that
//! wants the body without the framing.
//!
//! Where RFC 9112 leaves room, the strict reading:
//! - `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`
//!   puts bad whitespace only before a `;`, after it, and around `=`. So
//!   whitespace at the end of the size line is refused whether it follows
//!   the size (`5 \r\n`), an extension name (`5;a \r\n`) or a value
//!   (`5;a=b \r\n`).
//! - The whole chunk-size line (the size with any leading zeros, and the
//!   extensions) is bounded by [`MAX_SIZE_LINE`], and the trailer section
//!   by [`MAX_TRAILER_BYTES`]: a peer cannot keep the decoder reading bytes
//!   that carry no body.
#![forbid(unsafe_code)]

use super::scan::{TOKEN, VALUE};
use std::fmt;

/// Longest chunk-size line accepted, CRLF excluded: the size digits
/// (leading zeros included) and the extensions. Real senders use a few
/// bytes; the bound keeps endless zeros or extensions from being read.
pub const MAX_SIZE_LINE: u32 = 4096;

/// Longest trailer section accepted, line ends included: the head's limit
/// (`config::MAX_HEADER_BYTES`).
pub const MAX_TRAILER_BYTES: u32 = crate::config::MAX_HEADER_BYTES as u32;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits of the size.
    Size,
    /// Bad whitespace after the size: only `;` may follow.
    SizeWs,
    /// Chunk extensions (RFC 9112 7.1.1): `;` BWS name [BWS `=` BWS value].
    /// After `;`, before the name.
    ExtPreName,
    ExtName,
    /// Whitespace after a name: `=` or `;` must follow.
    ExtPostName,
    /// After `=`, before the value.
    ExtPreValue,
    ExtToken,
    ExtQuoted,
    ExtQuotedEscape,
    /// Just after the closing quote of a value.
    ExtQuoteEnd,
    /// Whitespace after a value: `;` must follow.
    ExtPostValue,
    /// Expecting the LF of the size line.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer field line (or the final empty line).
    TrailerStart,
    TrailerName,
    /// After the colon: OWS, the value, OWS.
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
}

impl State {
    /// States of the chunk-size line before its CR, whose bytes count
    /// against [`MAX_SIZE_LINE`].
    fn in_size_line(self) -> bool {
        matches!(
            self,
            State::Size
                | State::SizeWs
                | State::ExtPreName
                | State::ExtName
                | State::ExtPostName
                | State::ExtPreValue
                | State::ExtToken
                | State::ExtQuoted
                | State::ExtQuotedEscape
                | State::ExtQuoteEnd
                | State::ExtPostValue
        )
    }

    /// States of the trailer section, whose bytes count against
    /// [`MAX_TRAILER_BYTES`].
    fn in_trailers(self) -> bool {
        matches!(
            self,
            State::TrailerStart
                | State::TrailerName
                | State::TrailerValue
                | State::TrailerLf
                | State::FinalLf
        )
    }
}

/// Why a chunked body was refused; every one is a 400 for a request and a
/// 502 for a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// Not a hex digit where the size is, or whitespace not followed by `;`.
    BadSize,
    SizeOverflow,
    BadExtension,
    /// The size line is longer than [`MAX_SIZE_LINE`].
    SizeLineTooLong,
    /// Chunk data not followed by CRLF.
    MissingCrlf,
    TrailerName,
    TrailerWhitespaceBeforeColon,
    TrailerObsFold,
    TrailerValue,
    /// A trailer line (or the final empty line) not ended by CRLF.
    TrailerLineEnding,
    /// The trailer section is longer than [`MAX_TRAILER_BYTES`].
    TrailersTooLong,
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkError::BadSize => "invalid chunk size",
            ChunkError::SizeOverflow => "chunk size over 64 bits",
            ChunkError::BadExtension => "invalid chunk extension",
            ChunkError::SizeLineTooLong => "chunk size line (size and extensions) too long",
            ChunkError::MissingCrlf => "chunk data not followed by CRLF",
            ChunkError::TrailerName => "invalid trailer field name",
            ChunkError::TrailerWhitespaceBeforeColon => {
                "whitespace between trailer field name and colon"
            }
            ChunkError::TrailerObsFold => "obsolete line folding in trailer section",
            ChunkError::TrailerValue => "invalid byte in trailer field value",
            ChunkError::TrailerLineEnding => "trailer line not ended by CRLF",
            ChunkError::TrailersTooLong => "trailer section too long",
        })
    }
}

impl std::error::Error for ChunkError {}

#[derive(Clone, Copy, Debug)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    /// Bytes of the current size line so far (bounded by [`MAX_SIZE_LINE`]).
    line: u32,
    /// Bytes of the trailer section so far (bounded by [`MAX_TRAILER_BYTES`]).
    trailer: u32,
    /// Bytes of body data seen so far.
    pub data_bytes: u64,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// What one call to [`ChunkedDecoder::feed`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the input that belong to this message.
    pub consumed: usize,
    /// The last chunk and trailers have been read: the message is complete.
    pub done: bool,
}

impl ChunkedDecoder {
    pub fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size,
            size: 0,
            line: 0,
            trailer: 0,
            data_bytes: 0,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Bytes of chunk data still to come in the current chunk (0 outside data).
    pub fn data_remaining(&self) -> u64 {
        if self.state == State::Data {
            self.size
        } else {
            0
        }
    }

    /// Reads as much of `buf` as belongs to the message. Stops at the end of
    /// the message; bytes after it are the next message's.
    pub fn feed(&mut self, buf: &[u8]) -> Result<Progress, ChunkError> {
        self.feed_with(buf, |_, _| {})
    }

    /// Like [`feed`](Self::feed), calling `on_data(start, end)` for each run of
    /// body data inside `buf`.
    pub fn feed_with(
        &mut self,
        buf: &[u8],
        mut on_data: impl FnMut(usize, usize),
    ) -> Result<Progress, ChunkError> {
        let mut i = 0;
        while i < buf.len() && self.state != State::Done {
            let b = buf[i];
            if self.state == State::Data {
                let take = (buf.len() - i).min(self.size.min(usize::MAX as u64) as usize);
                on_data(i, i + take);
                self.size -= take as u64;
                self.data_bytes += take as u64;
                i += take;
                if self.size == 0 {
                    self.state = State::DataCr;
                }
                continue;
            }
            // Limits are checked before the byte is read, so that the error
            // comes at the same byte however the input is split.
            let counted_line = self.state.in_size_line() && b != b'\r';
            let counted_trailer = self.state.in_trailers();
            if counted_line && self.line == MAX_SIZE_LINE {
                return Err(ChunkError::SizeLineTooLong);
            }
            if counted_trailer && self.trailer == MAX_TRAILER_BYTES {
                return Err(ChunkError::TrailersTooLong);
            }
            self.state = self.step(b)?;
            self.line += counted_line as u32;
            self.trailer += counted_trailer as u32;
            i += 1;
        }
        Ok(Progress {
            consumed: i,
            done: self.state == State::Done,
        })
    }

    /// The state after byte `b` outside chunk data. `line` is the count of
    /// size-line bytes before `b`.
    fn step(&mut self, b: u8) -> Result<State, ChunkError> {
        let ws = b == b' ' || b == b'\t';
        let token = TOKEN[b as usize];
        Ok(match self.state {
            State::Size => {
                let d = match b {
                    b'0'..=b'9' => b - b'0',
                    b'a'..=b'f' => b - b'a' + 10,
                    b'A'..=b'F' => b - b'A' + 10,
                    // Every byte of the line so far was a digit.
                    _ if self.line == 0 => return Err(ChunkError::BadSize),
                    b'\r' => return Ok(State::SizeLf),
                    b';' => return Ok(State::ExtPreName),
                    _ if ws => return Ok(State::SizeWs),
                    _ => return Err(ChunkError::BadSize),
                };
                if self.size >> 60 != 0 {
                    return Err(ChunkError::SizeOverflow);
                }
                self.size = self.size << 4 | d as u64;
                State::Size
            }
            State::SizeWs => match b {
                b';' => State::ExtPreName,
                _ if ws => State::SizeWs,
                _ => return Err(ChunkError::BadSize),
            },
            State::ExtPreName => match b {
                _ if ws => State::ExtPreName,
                _ if token => State::ExtName,
                _ => return Err(ChunkError::BadExtension),
            },
            State::ExtName => match b {
                b'\r' => State::SizeLf,
                b';' => State::ExtPreName,
                b'=' => State::ExtPreValue,
                _ if ws => State::ExtPostName,
                _ if token => State::ExtName,
                _ => return Err(ChunkError::BadExtension),
            },
            State::ExtPostName => match b {
                b'=' => State::ExtPreValue,
                b';' => State::ExtPreName,
                _ if ws => State::ExtPostName,
                _ => return Err(ChunkError::BadExtension),
            },
            State::ExtPreValue => match b {
                b'"' => State::ExtQuoted,
                _ if ws => State::ExtPreValue,
                _ if token => State::ExtToken,
                _ => return Err(ChunkError::BadExtension),
            },
            State::ExtToken => match b {
                b'\r' => State::SizeLf,
                b';' => State::ExtPreName,
                _ if ws => State::ExtPostValue,
                _ if token => State::ExtToken,
                _ => return Err(ChunkError::BadExtension),
            },
            // qdtext and quoted-pair (RFC 9110 5.6.4).
            State::ExtQuoted => match b {
                b'"' => State::ExtQuoteEnd,
                b'\\' => State::ExtQuotedEscape,
                b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => State::ExtQuoted,
                _ => return Err(ChunkError::BadExtension),
            },
            State::ExtQuotedEscape => match b {
                b'\t' | b' '..=b'~' | 0x80..=0xff => State::ExtQuoted,
                _ => return Err(ChunkError::BadExtension),
            },
            State::ExtQuoteEnd => match b {
                b'\r' => State::SizeLf,
                b';' => State::ExtPreName,
                _ if ws => State::ExtPostValue,
                _ => return Err(ChunkError::BadExtension),
            },
            State::ExtPostValue => match b {
                b';' => State::ExtPreName,
                _ if ws => State::ExtPostValue,
                _ => return Err(ChunkError::BadExtension),
            },
            State::SizeLf => {
                if b != b'\n' {
                    return Err(ChunkError::BadSize);
                }
                self.line = 0;
                if self.size == 0 {
                    State::TrailerStart
                } else {
                    State::Data
                }
            }
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => State::Size,
            State::DataCr | State::DataLf => return Err(ChunkError::MissingCrlf),
            State::TrailerStart => match b {
                b'\r' => State::FinalLf,
                b'\n' => return Err(ChunkError::TrailerLineEnding),
                _ if ws => return Err(ChunkError::TrailerObsFold),
                _ if token => State::TrailerName,
                _ => return Err(ChunkError::TrailerName),
            },
            State::TrailerName => match b {
                b':' => State::TrailerValue,
                _ if ws => return Err(ChunkError::TrailerWhitespaceBeforeColon),
                _ if token => State::TrailerName,
                _ => return Err(ChunkError::TrailerName),
            },
            // OWS field-value OWS: all of it field-value bytes, SP and HTAB
            // included.
            State::TrailerValue => match b {
                b'\r' => State::TrailerLf,
                b'\n' => return Err(ChunkError::TrailerLineEnding),
                _ if VALUE[b as usize] => State::TrailerValue,
                _ => return Err(ChunkError::TrailerValue),
            },
            State::TrailerLf if b == b'\n' => State::TrailerStart,
            State::FinalLf if b == b'\n' => State::Done,
            State::TrailerLf | State::FinalLf => return Err(ChunkError::TrailerLineEnding),
            // `feed_with` reads data itself and stops at the end.
            State::Data | State::Done => self.state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in one piece: the data and how much was consumed, if
    /// the message ended.
    fn whole(input: &[u8]) -> Result<(usize, bool, Vec<u8>), ChunkError> {
        let mut d = ChunkedDecoder::new();
        let mut data = Vec::new();
        let p = d.feed_with(input, |s, e| data.extend_from_slice(&input[s..e]))?;
        Ok((p.consumed, p.done, data))
    }

    /// Feeds `input` cut at `cut`, as a caller whose reads end there.
    fn split(input: &[u8], cut: usize) -> Result<(usize, bool, Vec<u8>), ChunkError> {
        let mut d = ChunkedDecoder::new();
        let mut data = Vec::new();
        let (a, b) = input.split_at(cut);
        let p = d.feed_with(a, |s, e| data.extend_from_slice(&a[s..e]))?;
        if p.done {
            return Ok((p.consumed, true, data));
        }
        let q = d.feed_with(b, |s, e| data.extend_from_slice(&b[s..e]))?;
        Ok((cut + q.consumed, q.done, data))
    }

    type Case = (&'static [u8], Result<&'static [u8], ChunkError>);

    /// Complete bodies (with the data they carry) next to the malformed
    /// ones, line by line of RFC 9112 section 7.1.
    const CASES: &[Case] = &[
        // chunk-size = 1*HEXDIG
        (b"5\r\nhello\r\n0\r\n\r\n", Ok(b"hello")),
        (b"000\r\n\r\n", Ok(b"")),
        (b"0005\r\nhello\r\n0\r\n\r\n", Ok(b"hello")),
        (
            b"000000000000000F\r\n0123456789abcde\r\n0\r\n\r\n",
            Ok(b"0123456789abcde"),
        ),
        (b"a\r\n0123456789\r\n0\r\n\r\n", Ok(b"0123456789")),
        (b"x\r\n", Err(ChunkError::BadSize)),
        (b"\r\n", Err(ChunkError::BadSize)),
        (b";a\r\n", Err(ChunkError::BadSize)),
        (b" 5\r\n", Err(ChunkError::BadSize)),
        (b"5x\r\nhello\r\n", Err(ChunkError::BadSize)),
        (b"-5\r\n", Err(ChunkError::BadSize)),
        (b"+5\r\n", Err(ChunkError::BadSize)),
        (b"0x5\r\n", Err(ChunkError::BadSize)),
        (b"5\nhello\r\n", Err(ChunkError::BadSize)),
        (b"5\r\rhello\r\n", Err(ChunkError::BadSize)),
        (b"10000000000000000\r\n", Err(ChunkError::SizeOverflow)),
        // Trailing whitespace is bad whitespace only before a `;`.
        (b"5 \r\nhello\r\n", Err(ChunkError::BadSize)),
        (b"5\t\r\nhello\r\n", Err(ChunkError::BadSize)),
        // chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
        (b"5;a\r\nhello\r\n0\r\n\r\n", Ok(b"hello")),
        (b"5 ;a\r\nhello\r\n0\r\n\r\n", Ok(b"hello")),
        (b"5; a=b;c\r\nhello\r\n0\r\n\r\n", Ok(b"hello")),
        (
            b"5 ; a = \"q\\\"x; y\" ;b;c=d\r\nhello\r\n0\r\n\r\n",
            Ok(b"hello"),
        ),
        (b"5;a=\"\"\r\nhello\r\n0\r\n\r\n", Ok(b"hello")),
        (b"5;a=\"\xff\t\"\r\nhello\r\n0\r\n\r\n", Ok(b"hello")),
        (b"0;last\r\n\r\n", Ok(b"")),
        (b"0;a \r\n\r\n", Err(ChunkError::BadExtension)),
        (b"0;a\t\r\n\r\n", Err(ChunkError::BadExtension)),
        (b"0;a=b \r\n\r\n", Err(ChunkError::BadExtension)),
        (b"0;a=\"b\" \r\n\r\n", Err(ChunkError::BadExtension)),
        (b"0;a= \r\n\r\n", Err(ChunkError::BadExtension)),
        (b"0 ; \r\n\r\n", Err(ChunkError::BadExtension)),
        (b"1;a\x00\r\n", Err(ChunkError::BadExtension)),
        (b"2;\r\naa\r\n", Err(ChunkError::BadExtension)),
        (b"2;;a\r\naa\r\n", Err(ChunkError::BadExtension)),
        (b"2;a==b\r\naa\r\n", Err(ChunkError::BadExtension)),
        (b"2;a b\r\naa\r\n", Err(ChunkError::BadExtension)),
        (b"5;a=\"abc\r\nhello", Err(ChunkError::BadExtension)),
        (b"5;a=b c\r\nhello", Err(ChunkError::BadExtension)),
        (b"5;a=\"b\"c\r\nhello", Err(ChunkError::BadExtension)),
        (b"5;a=\"\\\x01\"\r\nhello", Err(ChunkError::BadExtension)),
        (b"5;a\nhello", Err(ChunkError::BadExtension)),
        (b"5;a\r\rhello", Err(ChunkError::BadSize)),
        // chunk-data CRLF
        (b"5\r\nhelloXX", Err(ChunkError::MissingCrlf)),
        (b"5\r\nhello\n0\r\n\r\n", Err(ChunkError::MissingCrlf)),
        (b"5\r\nhello\r0\r\n\r\n", Err(ChunkError::MissingCrlf)),
        // trailer-section = *( field-line CRLF ), held to the head's rules.
        (b"0\r\nX-T: y\r\n\r\n", Ok(b"")),
        (b"0\r\nA: 1\r\nB:2\r\nC:\r\nD:\t v \t\r\n\r\n", Ok(b"")),
        (b"0\r\nX-Obs: caf\xc3\xa9 \x80\xff\r\n\r\n", Ok(b"")),
        (b"0\r\n!#$%&'*+-.^_`|~09az: :\"x\"\r\n\r\n", Ok(b"")),
        (b"0\r\nfoo\r\n\r\n", Err(ChunkError::TrailerName)),
        (b"0\r\n: x\r\n\r\n", Err(ChunkError::TrailerName)),
        (b"0\r\n\x00A: b\r\n\r\n", Err(ChunkError::TrailerName)),
        (b"0\r\n\xbeA: b\r\n\r\n", Err(ChunkError::TrailerName)),
        (b"0\r\nA\x01: b\r\n\r\n", Err(ChunkError::TrailerName)),
        (b"0\r\nA(B): b\r\n\r\n", Err(ChunkError::TrailerName)),
        (
            b"0\r\nA : b\r\n\r\n",
            Err(ChunkError::TrailerWhitespaceBeforeColon),
        ),
        (
            b"0\r\nA\t: b\r\n\r\n",
            Err(ChunkError::TrailerWhitespaceBeforeColon),
        ),
        (b"0\r\n folded\r\n\r\n", Err(ChunkError::TrailerObsFold)),
        (b"0\r\nA: b\r\n c\r\n\r\n", Err(ChunkError::TrailerObsFold)),
        (b"0\r\n\tA: b\r\n\r\n", Err(ChunkError::TrailerObsFold)),
        (b"0\r\nA: b\x00c\r\n\r\n", Err(ChunkError::TrailerValue)),
        (b"0\r\nA: b\x7f\r\n\r\n", Err(ChunkError::TrailerValue)),
        (b"0\r\nA: \x1b[0m\r\n\r\n", Err(ChunkError::TrailerValue)),
        (b"0\r\nA: b\rc\r\n\r\n", Err(ChunkError::TrailerLineEnding)),
        (b"0\r\nA: b\n\r\n", Err(ChunkError::TrailerLineEnding)),
        (b"0\r\n\n", Err(ChunkError::TrailerLineEnding)),
        (b"0\r\n\rX", Err(ChunkError::TrailerLineEnding)),
        (b"0\r\nA: b\r\n\rX", Err(ChunkError::TrailerLineEnding)),
    ];

    #[test]
    fn good_and_malformed_bodies_whole_and_split() {
        for (input, want) in CASES {
            let ctx = String::from_utf8_lossy(input);
            let got = whole(input);
            match want {
                Ok(data) => {
                    let (n, done, got) = got.unwrap_or_else(|e| panic!("{ctx:?}: {e}"));
                    assert!(done && n == input.len(), "{ctx:?}: {n} {done}");
                    assert_eq!(&got[..], *data, "{ctx:?}");
                }
                Err(e) => assert_eq!(got.map(|_| ()), Err(*e), "{ctx:?}"),
            }
            for cut in 0..=input.len() {
                assert_eq!(split(input, cut), whole(input), "{ctx:?} cut at {cut}");
            }
        }
    }

    #[test]
    fn stops_at_message_end() {
        let input = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: y\r\n\r\nNEXT";
        let (n, done, data) = whole(input).unwrap();
        assert!(done);
        assert_eq!(&input[n..], b"NEXT");
        assert_eq!(data, b"hello world");
        // Fed again after the end, it reads nothing more.
        let mut d = ChunkedDecoder::new();
        d.feed(&input[..n]).unwrap();
        assert_eq!(
            d.feed(b"NEXT"),
            Ok(Progress {
                consumed: 0,
                done: true
            })
        );
    }

    #[test]
    fn every_split_gives_the_same_result() {
        let input = b"a\r\n0123456789\r\n1F\r\n0123456789012345678901234567890\r\n0\r\n\r\n";
        for cut in 0..input.len() {
            let mut d = ChunkedDecoder::new();
            let a = d.feed(&input[..cut]).unwrap();
            assert_eq!(a.consumed, cut);
            let b = d.feed(&input[cut..]).unwrap();
            assert!(
                b.done && a.consumed + b.consumed == input.len(),
                "cut {cut}"
            );
            assert_eq!(d.data_bytes, 41);
        }
    }

    /// A size line of `zeros` zeros, then `ext`, CRLF, and the end.
    fn size_line(zeros: usize, ext: &[u8]) -> Vec<u8> {
        let mut v = vec![b'0'; zeros];
        v.extend_from_slice(ext);
        v.extend_from_slice(b"\r\n\r\n");
        v
    }

    #[test]
    fn the_whole_size_line_is_bounded() {
        let max = MAX_SIZE_LINE as usize;
        let long_ext = |n: usize| {
            let mut e = b";e=".to_vec();
            e.resize(n, b'x');
            e
        };
        let cases: &[(Vec<u8>, Result<(), ChunkError>)] = &[
            (size_line(max, b""), Ok(())),
            (size_line(max + 1, b""), Err(ChunkError::SizeLineTooLong)),
            (size_line(1, &long_ext(max - 1)), Ok(())),
            (
                size_line(1, &long_ext(max)),
                Err(ChunkError::SizeLineTooLong),
            ),
            // Zeros and extension share the one limit.
            (size_line(max / 2, &long_ext(max / 2)), Ok(())),
            (
                size_line(max / 2, &long_ext(max / 2 + 1)),
                Err(ChunkError::SizeLineTooLong),
            ),
            (size_line(max - 1, b" ;a"), Err(ChunkError::SizeLineTooLong)),
        ];
        for (input, want) in cases {
            assert_eq!(whole(input).map(|_| ()), *want, "{} bytes", input.len());
            for cut in [1, max / 3, max, input.len() - 3] {
                assert_eq!(split(input, cut), whole(input), "cut at {cut}");
            }
        }
        // Each line has its own budget.
        let mut many = Vec::new();
        for _ in 0..4 {
            many.extend(vec![b'0'; max - 1]);
            many.extend_from_slice(b"1\r\nx\r\n");
        }
        many.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(whole(&many).unwrap().2, b"xxxx");
    }

    #[test]
    fn endless_zeros_fed_piecemeal_fail_at_the_limit() {
        let mut d = ChunkedDecoder::new();
        let piece = [b'0'; 1000];
        let mut fed = 0usize;
        let err = loop {
            match d.feed(&piece) {
                Ok(p) => {
                    assert_eq!(p.consumed, piece.len());
                    fed += p.consumed;
                }
                Err(e) => break e,
            }
            assert!(fed < 1 << 20, "still reading zeros after {fed} bytes");
        };
        assert_eq!(err, ChunkError::SizeLineTooLong);
        assert!(fed <= MAX_SIZE_LINE as usize);
    }

    #[test]
    fn the_trailer_section_is_bounded() {
        let max = MAX_TRAILER_BYTES as usize;
        // "0\r\n" then lines "X: aaa...\r\n" adding up to `n` bytes, then
        // the final CRLF.
        let trailers = |n: usize| {
            let mut v = b"0\r\n".to_vec();
            let mut left = n;
            while left > 0 {
                let line = left.min(100);
                assert!(line >= 6, "a trailer line is at least `X: a\\r\\n`");
                v.extend_from_slice(b"X: ");
                v.extend(std::iter::repeat_n(b'a', line - 5));
                v.extend_from_slice(b"\r\n");
                left -= line;
            }
            v.extend_from_slice(b"\r\n");
            v
        };
        assert!(whole(&trailers(max - 2)).unwrap().1);
        assert_eq!(
            whole(&trailers(max - 1)).map(|_| ()),
            Err(ChunkError::TrailersTooLong)
        );
    }
}
