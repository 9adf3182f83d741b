//! The HTTP server's own answers to request heads too large to read, in the service's JSON error
//! form: hyper answers a head past its buffer (431) or a request target past 64 KiB (414) with a
//! bare status line before any handler sees the request. [`JsonHeadErrors`] sits between hyper
//! and the socket and writes those answers as every other error is written (`{"code",
//! "message"}`, `content-type: application/json`), telling a request line that never ended (414
//! `uri_too_long`) from too many or too large header fields (431 `headers_too_large`).
//!
//! Heads within the server's buffer are answered by the router itself (`limit_head`), with the
//! same codes; this covers the heads beyond it.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{MAX_HEADER_BYTES, MAX_HEADERS, MAX_URI_BYTES, error::ErrorBody};
use crate::error::ErrorCode;

/// A connection's socket, its automatic 414/431 answers rewritten with the JSON body.
pub struct JsonHeadErrors<S> {
    inner: S,
    /// Bytes read since the last line feed.
    line: usize,
    /// Lines read since the last empty line (the end of a head): 0 while in a request line.
    lines: usize,
    /// A rewritten answer being written, how much of it is written, and the length of the
    /// answer it replaces (reported to hyper as written once the rewrite is).
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<S> JsonHeadErrors<S> {
    pub fn new(inner: S) -> Self {
        Self { inner, line: 0, lines: 0, pending: None }
    }

    fn saw(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                // An empty line ("\r\n" or "\n") ends a head: the next line is a request line.
                self.lines = if self.line <= 1 { 0 } else { self.lines + 1 };
                self.line = 0;
            } else {
                self.line += 1;
            }
        }
    }

    /// The JSON answer replacing hyper's automatic `bare` answer, if it is one.
    fn rewrite(&self, bare: &[u8]) -> Option<Vec<u8>> {
        let automatic =
            bare.ends_with(b"\r\n\r\n") && bare.windows(19).any(|w| w.eq_ignore_ascii_case(b"content-length: 0\r\n"));
        if !automatic {
            return None;
        }
        let in_request_line = self.lines == 0 && self.line > MAX_URI_BYTES;
        let (status, code, message) = if bare.starts_with(b"HTTP/1.1 414 ")
            || (bare.starts_with(b"HTTP/1.1 431 ") && in_request_line)
        {
            (
                "414 URI Too Long",
                ErrorCode::UriTooLong,
                format!(
                    "the request target is longer than the server reads (more than {} bytes without the request line \
                     ending); at most {MAX_URI_BYTES} bytes are read",
                    self.line.max(MAX_URI_BYTES)
                ),
            )
        } else if bare.starts_with(b"HTTP/1.1 431 ") {
            (
                "431 Request Header Fields Too Large",
                ErrorCode::HeadersTooLarge,
                format!(
                    "the request head is larger than the server reads; at most {MAX_HEADERS} header fields of \
                     {MAX_HEADER_BYTES} bytes and a request target of {MAX_URI_BYTES} bytes are read"
                ),
            )
        } else {
            return None;
        };
        let body = serde_json::to_vec(&ErrorBody { code, message }).ok()?;
        let mut answer = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(&body);
        Some(answer)
    }
}

impl<S: AsyncWrite + Unpin> JsonHeadErrors<S> {
    /// Writes the pending rewrite; the length of the answer it replaced once it is written.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some((answer, done, replaced)) = &mut self.pending else { return Poll::Ready(Ok(0)) };
        while *done < answer.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &answer[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
        }
        let replaced = *replaced;
        self.pending = None;
        Poll::Ready(Ok(replaced))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonHeadErrors<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
        let this = &mut *self;
        this.saw(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonHeadErrors<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.pending.is_none()
            && let Some(answer) = this.rewrite(buf)
        {
            this.pending = Some((answer, 0, buf.len()));
        }
        if this.pending.is_some() {
            return this.poll_pending(cx);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let mut parts = bufs.iter().filter(|b| !b.is_empty());
        if this.pending.is_none()
            && let (Some(only), None) = (parts.next(), parts.next())
            && let Some(answer) = this.rewrite(only)
        {
            this.pending = Some((answer, 0, only.len()));
        }
        if this.pending.is_some() {
            return this.poll_pending(cx);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
