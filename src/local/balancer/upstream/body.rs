//! A backend's response body read straight off its connection (by `Content-Length`, chunked, or to the close), which goes back to the idle list at the body's end.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};

use super::{Conn, Upstream};

/// The longest chunk-size or trailer line accepted.
const MAX_LINE: usize = 4096;

/// How a response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// This many bytes remain.
    Length(u64),
    /// `Transfer-Encoding: chunked`, at this point of a chunk.
    Chunked(Chunk),
    /// Everything until the backend closes the connection.
    Close,
    /// The body has ended.
    Done,
}

/// Where a chunked decoder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// This many bytes of the chunk's data remain.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines up to an empty line.
    Trailer,
}

/// What one decoding step found in the buffered bytes.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Body data to pass on.
    Data(Bytes),
    /// The buffered bytes are not enough: read more.
    More,
    /// The body has ended.
    Done,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// Takes up to `remaining` bytes off the front of `buf`.
fn take(buf: &mut BytesMut, remaining: &mut u64) -> Option<Bytes> {
    if buf.is_empty() {
        return None;
    }
    let n = buf
        .len()
        .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
    *remaining -= n as u64;
    Some(buf.split_to(n).freeze())
}

/// The position of the first CRLF in `buf`; an error once a line is longer than a chunk-size
/// line or a trailer may be.
fn line_end(buf: &[u8]) -> io::Result<Option<usize>> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(pos) if pos <= MAX_LINE => Ok(Some(pos)),
        Some(_) => Err(invalid("chunk line too long")),
        None if buf.len() > MAX_LINE => Err(invalid("chunk line too long")),
        None => Ok(None),
    }
}

/// The size on a chunk-size line (hex digits, then optional extensions after `;`).
fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let digits = line.split(|&b| b == b';').next().unwrap_or_default();
    let digits = std::str::from_utf8(digits)
        .map_err(|_| invalid("chunk size is not text"))?
        .trim_matches([' ', '\t']);
    u64::from_str_radix(digits, 16).map_err(|_| invalid("bad chunk size"))
}

impl Framing {
    /// Decodes what `buf` holds of the body, consuming it.
    pub fn step(&mut self, buf: &mut BytesMut) -> io::Result<Step> {
        loop {
            match self {
                Framing::Done | Framing::Length(0) => {
                    *self = Framing::Done;
                    return Ok(Step::Done);
                }
                Framing::Length(remaining) => {
                    let Some(data) = take(buf, remaining) else {
                        return Ok(Step::More);
                    };
                    if *remaining == 0 {
                        *self = Framing::Done;
                    }
                    return Ok(Step::Data(data));
                }
                Framing::Close if buf.is_empty() => return Ok(Step::More),
                Framing::Close => return Ok(Step::Data(buf.split().freeze())),
                Framing::Chunked(chunk) => match chunk {
                    Chunk::Size => {
                        let Some(end) = line_end(buf)? else {
                            return Ok(Step::More);
                        };
                        let size = chunk_size(&buf[..end])?;
                        buf.advance(end + 2);
                        *chunk = if size == 0 {
                            Chunk::Trailer
                        } else {
                            Chunk::Data(size)
                        };
                    }
                    Chunk::Data(remaining) => {
                        let Some(data) = take(buf, remaining) else {
                            return Ok(Step::More);
                        };
                        if *remaining == 0 {
                            *chunk = Chunk::DataEnd;
                        }
                        return Ok(Step::Data(data));
                    }
                    Chunk::DataEnd if buf.len() < 2 => return Ok(Step::More),
                    Chunk::DataEnd if &buf[..2] == b"\r\n" => {
                        buf.advance(2);
                        *chunk = Chunk::Size;
                    }
                    Chunk::DataEnd => return Err(invalid("no CRLF after chunk data")),
                    Chunk::Trailer => {
                        let Some(end) = line_end(buf)? else {
                            return Ok(Step::More);
                        };
                        // Trailer fields are dropped, as hop-by-hop framing.
                        buf.advance(end + 2);
                        if end == 0 {
                            *self = Framing::Done;
                        }
                    }
                },
            }
        }
    }
}

/// A response body read from its connection; at its end the connection goes back to the idle
/// list (a body dropped before its end closes the connection: its rest was never read).
#[derive(Debug)]
pub(in crate::local::balancer) struct Returning {
    conn: Option<Conn>,
    home: Arc<Upstream>,
    framing: Framing,
    /// Whether the connection may carry another request after this body.
    reusable: bool,
}

impl Returning {
    pub(super) fn new(conn: Conn, home: Arc<Upstream>, framing: Framing, reusable: bool) -> Self {
        let mut body = Self {
            conn: Some(conn),
            home,
            framing,
            reusable,
        };
        if body.framing == Framing::Length(0) {
            body.framing = Framing::Done;
            body.finish();
        }
        body
    }

    /// Puts the connection back if the backend keeps it open and nothing follows the body.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.reusable
            && conn.buf.is_empty()
        {
            self.home.put_back(conn);
        }
    }
}

impl Body for Returning {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match this.framing.step(&mut conn.buf) {
                Ok(Step::Data(data)) => {
                    if this.framing == Framing::Done {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(Step::Done) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(Step::More) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if this.framing == Framing::Close => {
                    this.framing = Framing::Done;
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.conn = None;
                    let e = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the backend closed the connection before the body's end",
                    );
                    return Poll::Ready(Some(Err(e)));
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.framing == Framing::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(n) => SizeHint::with_exact(n),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(mut framing: Framing, wire: &[&[u8]]) -> io::Result<(Vec<u8>, BytesMut)> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in wire {
            buf.extend_from_slice(piece);
            loop {
                match framing.step(&mut buf)? {
                    Step::Data(d) => out.extend_from_slice(&d),
                    Step::More => break,
                    Step::Done => return Ok((out, buf)),
                }
            }
        }
        Err(invalid("the body did not end"))
    }

    #[test]
    fn a_length_body_ends_at_its_length_and_leaves_what_follows() {
        let (body, rest) = decode_all(Framing::Length(5), &[b"he", b"llo", b"HTTP/1.1"]).unwrap();
        assert_eq!(body, b"hello");
        assert_eq!(&rest[..], b"");
        let (body, rest) = decode_all(Framing::Length(5), &[b"helloHTTP"]).unwrap();
        assert_eq!((&body[..], &rest[..]), (&b"hello"[..], &b"HTTP"[..]));
    }

    #[test]
    fn chunks_split_anywhere_decode_to_the_same_body() {
        let wire: &[u8] = b"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n";
        for cut in 0..wire.len() {
            let (a, b) = wire.split_at(cut);
            let (body, rest) = decode_all(Framing::Chunked(Chunk::Size), &[a, b]).unwrap();
            assert_eq!(body, b"hello, world", "cut at {cut}");
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for wire in [&b"zz\r\nhello\r\n"[..], b"5\r\nhelloXX0\r\n\r\n"] {
            assert!(decode_all(Framing::Chunked(Chunk::Size), &[wire]).is_err());
        }
        let long = vec![b'1'; MAX_LINE + 2];
        assert!(decode_all(Framing::Chunked(Chunk::Size), &[&long]).is_err());
    }
}
