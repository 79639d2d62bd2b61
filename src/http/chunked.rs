//! A streaming validator for the chunked transfer coding (RFC 9112 section 7.1).
//!
//! The proxy forwards chunked bodies byte for byte (the framing is already
//! the one it would produce), so the decoder's job is to find exactly where
//! the message ends and to refuse anything two readers could disagree on.
//! It also reports data spans, for a sink that wants the body without the
//! framing.
#![forbid(unsafe_code)]

use super::scan::TOKEN;
use std::fmt;

/// Longest chunk-extension or trailer section accepted: bounds the work
/// spent on bytes that carry no body.
const MAX_META_BYTES: u32 = 8192;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading hex digits of the size; `digits` so far.
    Size,
    /// After the size: optional whitespace then `;` extension, or CR.
    AfterSize,
    /// Whitespace after the size: only `;` may follow.
    SizeWs,
    /// Chunk extensions (RFC 9112 7.1.1): `;` BWS name [BWS `=` BWS value].
    ExtPreName,
    ExtName,
    ExtPostName,
    ExtPreValue,
    ExtToken,
    ExtQuoted,
    ExtQuotedEscape,
    ExtPostValue,
    /// Expecting the LF of the size line.
    SizeLf,
    Data,
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    TrailerLf,
    FinalLf,
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    BadSize,
    SizeOverflow,
    BadExtension,
    MissingCrlf,
    BadTrailer,
    TooMuchMetadata,
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChunkError::BadSize => "invalid chunk size",
            ChunkError::SizeOverflow => "chunk size over 64 bits",
            ChunkError::BadExtension => "invalid chunk extension",
            ChunkError::MissingCrlf => "chunk data not followed by CRLF",
            ChunkError::BadTrailer => "invalid trailer field",
            ChunkError::TooMuchMetadata => "chunk extensions or trailers too long",
        })
    }
}

impl std::error::Error for ChunkError {}

#[derive(Clone, Copy, Debug)]
pub struct ChunkedDecoder {
    state: State,
    size: u64,
    digits: u32,
    meta: u32,
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
            digits: 0,
            meta: 0,
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
        while i < buf.len() {
            let b = buf[i];
            match self.state {
                State::Size => {
                    let d = match b {
                        b'0'..=b'9' => b - b'0',
                        b'a'..=b'f' => b - b'a' + 10,
                        b'A'..=b'F' => b - b'A' + 10,
                        _ if self.digits > 0 => {
                            self.state = State::AfterSize;
                            continue;
                        }
                        _ => return Err(ChunkError::BadSize),
                    };
                    if self.size >> 60 != 0 {
                        return Err(ChunkError::SizeOverflow);
                    }
                    self.size = self.size << 4 | d as u64;
                    self.digits += 1;
                }
                State::AfterSize => match b {
                    b'\r' => self.state = State::SizeLf,
                    b';' => self.state = State::ExtPreName,
                    // Bad whitespace is allowed only before an extension.
                    b' ' | b'\t' => self.state = State::SizeWs,
                    _ => return Err(ChunkError::BadSize),
                },
                State::SizeWs => match b {
                    b';' => self.state = State::ExtPreName,
                    b' ' | b'\t' => self.meta_byte()?,
                    _ => return Err(ChunkError::BadSize),
                },
                State::ExtPreName => {
                    self.meta_byte()?;
                    match b {
                        b' ' | b'\t' => {}
                        _ if TOKEN[b as usize] => self.state = State::ExtName,
                        _ => return Err(ChunkError::BadExtension),
                    }
                }
                State::ExtName | State::ExtToken => {
                    self.meta_byte()?;
                    match b {
                        b'\r' => self.state = State::SizeLf,
                        b';' => self.state = State::ExtPreName,
                        b'=' if self.state == State::ExtName => self.state = State::ExtPreValue,
                        b' ' | b'\t' if self.state == State::ExtName => {
                            self.state = State::ExtPostName
                        }
                        b' ' | b'\t' => self.state = State::ExtPostValue,
                        _ if TOKEN[b as usize] => {}
                        _ => return Err(ChunkError::BadExtension),
                    }
                }
                State::ExtPostName => {
                    self.meta_byte()?;
                    match b {
                        b' ' | b'\t' => {}
                        b'=' => self.state = State::ExtPreValue,
                        b';' => self.state = State::ExtPreName,
                        b'\r' => self.state = State::SizeLf,
                        _ => return Err(ChunkError::BadExtension),
                    }
                }
                State::ExtPreValue => {
                    self.meta_byte()?;
                    match b {
                        b' ' | b'\t' => {}
                        b'"' => self.state = State::ExtQuoted,
                        _ if TOKEN[b as usize] => self.state = State::ExtToken,
                        _ => return Err(ChunkError::BadExtension),
                    }
                }
                State::ExtQuoted => {
                    self.meta_byte()?;
                    match b {
                        b'"' => self.state = State::ExtPostValue,
                        b'\\' => self.state = State::ExtQuotedEscape,
                        b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => {}
                        _ => return Err(ChunkError::BadExtension),
                    }
                }
                State::ExtQuotedEscape => {
                    self.meta_byte()?;
                    match b {
                        b'\t' | b' '..=b'~' | 0x80..=0xff => self.state = State::ExtQuoted,
                        _ => return Err(ChunkError::BadExtension),
                    }
                }
                State::ExtPostValue => {
                    self.meta_byte()?;
                    match b {
                        b' ' | b'\t' => {}
                        b';' => self.state = State::ExtPreName,
                        b'\r' => self.state = State::SizeLf,
                        _ => return Err(ChunkError::BadExtension),
                    }
                }
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(ChunkError::BadSize);
                    }
                    self.meta = 0;
                    self.state = if self.size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data
                    };
                }
                State::Data => {
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
                State::DataCr => {
                    if b != b'\r' {
                        return Err(ChunkError::MissingCrlf);
                    }
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if b != b'\n' {
                        return Err(ChunkError::MissingCrlf);
                    }
                    self.digits = 0;
                    self.state = State::Size;
                }
                State::TrailerStart => match b {
                    b'\r' => self.state = State::FinalLf,
                    b' ' | b'\t' | b'\n' | b':' => return Err(ChunkError::BadTrailer),
                    _ => {
                        self.meta_byte()?;
                        self.state = State::Trailer;
                    }
                },
                State::Trailer => match b {
                    b'\r' => self.state = State::TrailerLf,
                    b'\t' | b' '..=b'~' | 0x80..=0xff => self.meta_byte()?,
                    _ => return Err(ChunkError::BadTrailer),
                },
                State::TrailerLf => {
                    if b != b'\n' {
                        return Err(ChunkError::BadTrailer);
                    }
                    self.state = State::TrailerStart;
                }
                State::FinalLf => {
                    if b != b'\n' {
                        return Err(ChunkError::BadTrailer);
                    }
                    self.state = State::Done;
                    return Ok(Progress {
                        consumed: i + 1,
                        done: true,
                    });
                }
                State::Done => {
                    return Ok(Progress {
                        consumed: i,
                        done: true,
                    })
                }
            }
            i += 1;
        }
        Ok(Progress {
            consumed: i,
            done: self.state == State::Done,
        })
    }

    fn meta_byte(&mut self) -> Result<(), ChunkError> {
        self.meta += 1;
        if self.meta > MAX_META_BYTES {
            Err(ChunkError::TooMuchMetadata)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(input: &[u8]) -> Result<(usize, bool, Vec<u8>), ChunkError> {
        let mut d = ChunkedDecoder::new();
        let mut data = Vec::new();
        let p = d.feed_with(input, |s, e| data.extend_from_slice(&input[s..e]))?;
        Ok((p.consumed, p.done, data))
    }

    #[test]
    fn decodes_and_stops_at_message_end() {
        let input = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: y\r\n\r\nNEXT";
        let (n, done, data) = whole(input).unwrap();
        assert!(done);
        assert_eq!(&input[n..], b"NEXT");
        assert_eq!(data, b"hello world");
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

    #[test]
    fn rejects_ambiguous_chunks() {
        let bad: &[(&[u8], ChunkError)] = &[
            (b"x\r\n", ChunkError::BadSize),
            (b"\r\n", ChunkError::BadSize),
            (b"5x\r\nhello\r\n", ChunkError::BadSize),
            (b"5 \r\nhello\r\n", ChunkError::BadSize),
            (b"-5\r\n", ChunkError::BadSize),
            (b"0x5\r\n", ChunkError::BadSize),
            (b"5\nhello\r\n", ChunkError::BadSize),
            (b"5\r\nhelloXX", ChunkError::MissingCrlf),
            (b"5\r\nhello\n0\r\n\r\n", ChunkError::MissingCrlf),
            (b"10000000000000000\r\n", ChunkError::SizeOverflow),
            (b"1;a\x00\r\n", ChunkError::BadExtension),
            (b"2;\r\naa\r\n", ChunkError::BadExtension),
            (b"5;a=\"abc\r\nhello", ChunkError::BadExtension),
            (b"5;a=b c\r\nhello", ChunkError::BadExtension),
            (b"0\r\n folded\r\n\r\n", ChunkError::BadTrailer),
            (b"0\r\nA: b\n\r\n", ChunkError::BadTrailer),
        ];
        for (input, want) in bad {
            assert_eq!(
                whole(input).unwrap_err(),
                *want,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert!(
            whole(b"5 ; a = \"q\\\"x; y\" ;b;c=d\r\nhello\r\n0\r\n\r\n")
                .unwrap()
                .1
        );
        // 16 hex digits is the most a u64 holds.
        assert!(whole(b"000000000000000F\r\n").is_ok());
    }
}
