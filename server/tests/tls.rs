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
