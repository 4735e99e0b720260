//! `--tls-cert` / `--tls-key`: HTTPS with HTTP/2 and HTTP/1.1, streams included.
// Helpers outside #[test] functions unwrap too: a failure there is a failed test.
#![allow(clippy::unwrap_used)]

mod common;

use common::start;
use futures::StreamExt;

/// Writes a self-signed certificate for 127.0.0.1 and returns the PEM paths.
fn self_signed(dir: &std::path::Path) -> (String, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (cert_path.display().to_string(), key_path.display().to_string())
}

/// Over TLS, HTTP/2 is negotiated (and HTTP/1.1 still works), and a stream flows on both.
#[tokio::test]
async fn https_serves_http2_and_http1() {
    let dir = std::env::temp_dir().join(format!("tidings-tls-{}", std::process::id()));
    let (cert, key) = self_signed(&dir);
    let hub = start(&["--tls-cert", &cert, "--tls-key", &key]).await;
    let base = hub.base.replace("http://", "https://");
    for (client, version) in [
        (reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap(), reqwest::Version::HTTP_2),
        (
            reqwest::Client::builder().danger_accept_invalid_certs(true).http1_only().build().unwrap(),
            reqwest::Version::HTTP_11,
        ),
    ] {
        let response = client.get(format!("{base}/stream-sse?user=secure")).send().await.unwrap();
        assert_eq!(response.version(), version);
        assert_eq!(response.status(), 200);
        let mut body = response.bytes_stream();
        let first = tokio::time::timeout(common::PATIENCE, body.next()).await.unwrap().unwrap().unwrap();
        assert!(String::from_utf8_lossy(&first).contains("data: secure"), "{first:?}");
    }
    let plain = reqwest::get(format!("{}/healthz", hub.base)).await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success(), "plain HTTP is not served on a TLS port");
    hub.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// An HTTPS HTTP/1.1 stream, written from its sending key alone once its request is served,
/// carries events after its first (one larger than a TLS record among them) and ends at its
/// deadline with the body's last chunk and a close_notify: the client sees a clean end, not a
/// truncation.
#[tokio::test]
async fn an_https_http1_stream_carries_events_and_ends_cleanly() {
    let dir = std::env::temp_dir().join(format!("tidings-tls-sealed-{}", std::process::id()));
    let (cert, key) = self_signed(&dir);
    let hub = start(&["--tls-cert", &cert, "--tls-key", &key, "--stream-timeout", "3s", "--keep-alive", "0"]).await;
    let base = hub.base.replace("http://", "https://");
    let client = reqwest::Client::builder().danger_accept_invalid_certs(true).http1_only().build().unwrap();
    let response = client.get(format!("{base}/stream-sse?user=sealed")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_11);
    let mut body = response.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("data: sealed") {
        let chunk = tokio::time::timeout(common::PATIENCE, body.next()).await.unwrap().unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    let large = "x".repeat(40_000);
    for data in ["first", large.as_str(), "last"] {
        let answer = client
            .post(format!("{base}/api/events"))
            .json(&serde_json::json!({"to": "sealed", "data": data}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202);
    }
    let ended = tokio::time::timeout(common::PATIENCE, async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.expect("a clean stream, not a truncated one")));
        }
    });
    ended.await.expect("the stream ends at its deadline");
    let events: Vec<&str> = seen.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(events, ["sealed", "first", large.as_str(), "last"]);
    hub.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// A TLS 1.2 client's stream keeps rustls' connection (only TLS 1.3 streams write from their
/// sending key alone) and flows all the same.
#[tokio::test]
async fn a_tls12_stream_flows_through_rustls() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    let dir = std::env::temp_dir().join(format!("tidings-tls12-{}", std::process::id()));
    let (cert, key) = self_signed(&dir);
    let hub = start(&["--tls-cert", &cert, "--tls-key", &key]).await;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls::pki_types::CertificateDer::from_pem_file(&cert).unwrap()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let addr: std::net::SocketAddr = hub.base.trim_start_matches("http://").parse().unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let mut tls = connector.connect(rustls::pki_types::ServerName::IpAddress(addr.ip().into()), tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_2));
    tls.write_all(b"GET /stream-sse?user=older HTTP/1.1\r\nHost: hub\r\n\r\n").await.unwrap();
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains("data: older") {
        let n = tokio::time::timeout(common::PATIENCE, tls.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&chunk[..n]);
    }
    assert!(seen.starts_with(b"HTTP/1.1 200"));
    hub.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
