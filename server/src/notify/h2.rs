//! An HTTP/2 client, for APNs (Apple's push service speaks nothing else).
//!
//! `https://` URLs are reached over TLS with ALPN `h2`, trusting the public web roots plus any
//! roots configured (a gateway with a private CA). `http://` URLs are reached over cleartext
//! HTTP/2 with prior knowledge (RFC 9113 §3.3): a local gateway, or a test's receiver.
//! Connections are pooled and requests multiplexed on them, as Apple asks of providers.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::StatusCode;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::CertificateDer;
use std::sync::Arc;
use std::time::Duration;

/// The longest a request may take, answer included.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The most of an answer read: APNs answers `{"reason": …}` or nothing.
const ANSWER_LIMIT: usize = 16 * 1024;

/// A pooled HTTP/2 client.
#[derive(Clone)]
pub(super) struct H2Client {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for H2Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("H2Client")
    }
}

/// What the server answered.
#[derive(Debug)]
pub(super) struct Answer {
    pub status: StatusCode,
    pub body: String,
}

impl H2Client {
    /// A client trusting the public web roots and `extra_roots`.
    pub(super) fn new(extra_roots: &[CertificateDer<'static>]) -> Result<H2Client, String> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for root in extra_roots {
            roots
                .add(root.clone())
                .map_err(|e| format!("a trusted root certificate: {e}"))?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http2()
            .build();
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .http2_only(true)
            .http2_keep_alive_interval(Some(Duration::from_secs(60)))
            .pool_idle_timeout(Duration::from_secs(15 * 60))
            .build(connector);
        Ok(H2Client { client })
    }

    /// POST `body` to `url` with `headers`; the answer's status and (bounded) body.
    pub(super) async fn post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer, String> {
        let mut request = hyper::Request::post(url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("the request: {e}"))?;
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| describe(&e))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), ANSWER_LIMIT)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok(Answer {
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            })
        };
        tokio::time::timeout(TIMEOUT, exchange)
            .await
            .map_err(|_| format!("no answer within {} s", TIMEOUT.as_secs()))?
    }
}

/// An error and its causes on one line: hyper's own message alone says little ("client error
/// (Connect)").
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
