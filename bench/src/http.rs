//! A minimal HTTP/1.1 client for publishing: one kept-alive connection, one request at a time,
//! nothing read but the status and the body's framing (a length or chunks). A general client
//! spent more CPU per request than the hubs did, and the generator shares the cores with them,
//! so it measured itself.

use std::io;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response accepted (a batch's answer lists every event).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

pub struct Conn {
    addr: SocketAddr,
    tcp: Option<TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    /// A client for `addr`; it connects on first use and again whenever the server closed.
    pub fn new(addr: SocketAddr) -> Conn {
        Conn { addr, tcp: None, buf: Vec::new() }
    }

    /// POSTs `body` to `path`; returns the status and the response body. A failed request is
    /// not retried (it may have been accepted); the next one reconnects.
    pub async fn post(&mut self, path: &str, content_type: &str, body: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        self.post_with(path, content_type, "", body).await
    }

    /// [`Conn::post`] with `headers` (whole lines, each ending in CRLF) added.
    pub async fn post_with(
        &mut self,
        path: &str,
        content_type: &str,
        headers: &str,
        body: &[u8],
    ) -> io::Result<(u16, Vec<u8>)> {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: {content_type}\r\n{headers}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        self.send(&request).await
    }

    /// Whether a connection is open for the next request (one that failed was dropped).
    pub fn is_connected(&self) -> bool {
        self.tcp.is_some()
    }

    /// GETs `path`; returns the status and the response body, as [`Conn::post`] does.
    pub async fn get(&mut self, path: &str) -> io::Result<(u16, Vec<u8>)> {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").as_bytes()).await
    }

    async fn send(&mut self, request: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        let result = self.exchange(request).await;
        if result.is_err() {
            self.tcp = None;
        }
        result
    }

    async fn exchange(&mut self, request: &[u8]) -> io::Result<(u16, Vec<u8>)> {
        if self.tcp.is_none() {
            let tcp = TcpStream::connect(self.addr).await?;
            tcp.set_nodelay(true)?;
            self.tcp = Some(tcp);
            self.buf.clear();
        }
        let Some(tcp) = self.tcp.as_mut() else { return Err(io::ErrorKind::NotConnected.into()) };
        tcp.write_all(request).await?;

        let head_end = loop {
            if let Some(at) = find(&self.buf, b"\r\n\r\n") {
                break at + 4;
            }
            fill(tcp, &mut self.buf).await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).to_ascii_lowercase();
        self.buf.drain(..head_end);
        let status = head.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(|| io::Error::other("no status"))?;
        let header = |name: &str| head.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim));
        let answer = if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            read_chunked(tcp, &mut self.buf).await?
        } else {
            let length: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            if length > MAX_RESPONSE {
                return Err(io::Error::other("response too large"));
            }
            while self.buf.len() < length {
                fill(tcp, &mut self.buf).await?;
            }
            self.buf.drain(..length).collect()
        };
        if header("connection").is_some_and(|v| v.contains("close")) {
            self.tcp = None;
        }
        Ok((status, answer))
    }
}

async fn fill(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    if buf.len() > MAX_RESPONSE {
        return Err(io::Error::other("response too large"));
    }
    let mut chunk = [0u8; 16 * 1024];
    match tcp.read(&mut chunk).await? {
        0 => Err(io::ErrorKind::UnexpectedEof.into()),
        n => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
    }
}

/// Decodes a chunked body from `buf` (reading more as needed), leaving what follows it.
async fn read_chunked(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(at) = find(buf, b"\r\n") {
                break at;
            }
            fill(tcp, buf).await?;
        };
        let line = String::from_utf8_lossy(&buf[..line_end]).into_owned();
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| io::Error::other("bad chunk size"))?;
        while buf.len() < line_end + 2 + size + 2 {
            fill(tcp, buf).await?;
        }
        body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
        buf.drain(..line_end + 2 + size + 2);
        if size == 0 {
            return Ok(body);
        }
    }
}

pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
