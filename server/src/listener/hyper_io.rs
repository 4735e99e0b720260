//! The socket as hyper sees it: the bytes the listener already read come first, and a write that
//! makes no progress for the write timeout fails, which ends the connection. hyper has no write
//! timeout of its own, so without this a peer that stops reading would hold its connection, and
//! the buffers behind it, for ever.

use crate::transport::{Socket, WriteStall};
use bytes::{Buf, Bytes};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub(super) struct HyperIo<S> {
    /// Read before hyper took over; hyper reads these first.
    read: Bytes,
    socket: S,
    stall: WriteStall,
}

impl<S: Socket> HyperIo<S> {
    pub fn new(socket: S, read: Bytes, write_timeout: Duration) -> HyperIo<S> {
        HyperIo { read, socket, stall: WriteStall::new(write_timeout) }
    }

    /// Maps a write's outcome: progress restarts the timeout, a wait runs it, and a wait past it
    /// is an error.
    fn watch<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => match self.stall.poll_waiting(cx) {
                Poll::Ready(()) => {
                    self.socket.reset_on_close();
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "a write made no progress")))
                }
                Poll::Pending => Poll::Pending,
            },
            ready => {
                self.stall.progressed();
                ready
            }
        }
    }
}

impl<S: Socket> AsyncRead for HyperIo<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read.has_remaining() {
            let n = this.read.len().min(buf.remaining());
            buf.put_slice(&this.read[..n]);
            this.read.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.socket).poll_read(cx, buf)
    }
}

impl<S: Socket> AsyncWrite for HyperIo<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.socket).poll_write(cx, buf);
        this.watch(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.socket).poll_write_vectored(cx, bufs);
        this.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.socket).poll_flush(cx);
        this.watch(cx, polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.socket).poll_shutdown(cx);
        this.watch(cx, polled)
    }
}
