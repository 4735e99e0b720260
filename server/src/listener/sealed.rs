//! An HTTPS HTTP/1.1 stream's socket once its request is served: the stream's writes sealed into
//! TLS 1.3 records by rustls' own record protection, without rustls' connection.
//!
//! A rustls connection keeps, for as long as it lives, a 4 KB read buffer, both directions'
//! record protection, its handshake's remains and its own struct: 7.5 KB, which made an idle
//! HTTPS stream cost 12.5 KB (2.7 in cleartext). A stream only writes, so once its request is
//! read the connection's sending key is taken from rustls (as for kernel TLS) and the stream's
//! records are sealed with the suite's own encrypter, in sequence; an encrypted record not yet
//! written is the only buffer, and only while it waits.
//!
//! What the reader sends is not decrypted: [`Sealed`] reads it as it arrives, still encrypted,
//! for the stream writer to count (an EventSource sends nothing) and to see the reader leave.
//! So a reader's key update goes unanswered, and past the suite's confidentiality limit (millions
//! of records) the stream's writes fail and it ends, rather than updating the key; the client
//! reconnects. TLS 1.2 connections keep rustls' connection.

use crate::transport::Socket;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_rustls::rustls::crypto::cipher::{MessageEncrypter, OutboundChunks, OutboundPlainMessage};
use tokio_rustls::rustls::{ConnectionTrafficSecrets, ContentType, ProtocolVersion, SupportedCipherSuite};

/// Most plaintext in one record (TLS' limit).
const MAX_FRAGMENT: usize = 16 * 1024;
/// A close_notify alert: warning level, description 0.
const CLOSE_NOTIFY: [u8; 2] = [1, 0];

pub(super) struct Sealed<S> {
    socket: S,
    encrypter: Box<dyn MessageEncrypter>,
    /// The next record's sequence number.
    seq: u64,
    /// Records this key may seal (the suite's confidentiality limit).
    limit: u64,
    /// An encrypted record not yet wholly written, and how much of it was; empty (and not
    /// allocated) while the stream is idle.
    out: Vec<u8>,
    written: usize,
    /// The close_notify alert was sealed.
    closing: bool,
}

/// The TLS 1.3 connection `tls` as a [`Sealed`] socket, once what rustls still holds to send is
/// written; given back as it is when it is not TLS 1.3 or holds something it has not sent.
/// `None` when the connection broke on the way.
pub(super) async fn seal<S: Socket>(
    mut tls: Box<tokio_rustls::server::TlsStream<S>>,
) -> Option<Result<Sealed<S>, Box<tokio_rustls::server::TlsStream<S>>>> {
    let connection = tls.get_ref().1;
    let suite = match connection.negotiated_cipher_suite() {
        Some(SupportedCipherSuite::Tls13(suite)) if connection.protocol_version() == Some(ProtocolVersion::TLSv1_3) => {
            suite
        }
        _ => return Some(Err(tls)),
    };
    // Session tickets, usually, queued at the handshake's end.
    tls.flush().await.ok()?;
    if tls.get_ref().1.wants_write() {
        return Some(Err(tls));
    }
    let (socket, connection) = tls.into_inner();
    let secrets = match connection.dangerous_extract_secrets() {
        Ok(secrets) => secrets,
        Err(cause) => {
            tracing::debug!(%cause, "could not take a TLS connection's keys");
            return None;
        }
    };
    let (seq, secrets) = secrets.tx;
    let encrypter = match secrets {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv }
        | ConnectionTrafficSecrets::Aes256Gcm { key, iv }
        | ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => suite.aead_alg.encrypter(key, iv),
        _ => return None,
    };
    Some(Ok(Sealed {
        socket,
        encrypter,
        seq,
        limit: suite.common.confidentiality_limit,
        out: Vec::new(),
        written: 0,
        closing: false,
    }))
}

impl<S: Socket> Sealed<S> {
    /// Writes what is left of the last record; frees its buffer once it is all written.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            match ready!(Pin::new(&mut self.socket).poll_write(cx, &self.out[self.written..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => self.written += n,
                Err(cause) => return Poll::Ready(Err(cause)),
            }
        }
        self.out = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Seals up to [`MAX_FRAGMENT`] bytes of `parts` as one record of type `typ`, ready to
    /// write; returns how many bytes it took.
    fn seal(&mut self, typ: ContentType, parts: &[&[u8]]) -> io::Result<usize> {
        if self.seq >= self.limit {
            return Err(io::Error::other("the TLS key's confidentiality limit was reached"));
        }
        let mut taken = Vec::with_capacity(parts.len());
        let mut room = MAX_FRAGMENT;
        for part in parts {
            let part = &part[..part.len().min(room)];
            room -= part.len();
            taken.push(part);
        }
        let length = MAX_FRAGMENT - room;
        let message =
            OutboundPlainMessage { typ, version: ProtocolVersion::TLSv1_2, payload: OutboundChunks::new(&taken) };
        let record = self.encrypter.encrypt(message, self.seq).map_err(io::Error::other)?;
        self.seq += 1;
        self.out = record.encode();
        self.written = 0;
        Ok(length)
    }
}

/// Reads what the reader sends as it arrives: encrypted, for counting (see the module's doc).
impl<S: Socket> AsyncRead for Sealed<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_read(cx, buf)
    }
}

impl<S: Socket> AsyncWrite for Sealed<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    /// Seals the slices into a record once the last one is written, and starts writing it: the
    /// bytes are taken even when the socket cannot take the record yet (a flush waits for it).
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        let parts: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).filter(|b| !b.is_empty()).collect();
        if parts.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let taken = this.seal(ContentType::ApplicationData, &parts)?;
        if let Poll::Ready(Err(cause)) = this.poll_drain(cx) {
            return Poll::Ready(Err(cause));
        }
        Poll::Ready(Ok(taken))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.socket).poll_flush(cx)
    }

    /// Sends close_notify, then closes the socket's writing side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        if !this.closing {
            this.closing = true;
            this.seal(ContentType::Alert, &[&CLOSE_NOTIFY])?;
            ready!(this.poll_drain(cx))?;
        }
        Pin::new(&mut this.socket).poll_shutdown(cx)
    }
}

impl<S: Socket> Socket for Sealed<S> {
    fn reset_on_close(&self) {
        self.socket.reset_on_close();
    }
}
