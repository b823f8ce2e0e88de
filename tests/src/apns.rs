//! A stand-in for Apple's push service: HTTP/2 over TLS, ALPN `h2` and nothing else, on
//! 127.0.0.1 with a certificate from a CA made for the test (its root is [`ApnsReceiver::ca_pem`],
//! for the server's `--apns-ca-file`); or, as a gateway on the same host would, cleartext HTTP/2
//! ([`ApnsReceiver::start_cleartext`]).
//!
//! Each request is recorded as `{"path", "version", "alpn", "headers": {name: value}, "body"}`
//! (the body parsed as JSON). Answers are `200` with no body, or, for a token
//! [`ApnsReceiver::unregister`]ed, `410 {"reason": "Unregistered"}` as Apple answers for an app
//! removed from its phone.
#![allow(clippy::unwrap_used)]

use crate::WAIT;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::PrivateKeyDer;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, mpsc};
use tokio::net::TcpListener;

/// Device tokens Apple no longer knows.
type Gone = Arc<Mutex<HashSet<String>>>;

#[derive(Debug)]
pub struct ApnsReceiver {
    tls: bool,
    port: u16,
    ca_pem: String,
    seen: Mutex<mpsc::Receiver<Value>>,
    gone: Gone,
    task: tokio::task::JoinHandle<()>,
}

impl ApnsReceiver {
    /// Listen on a free port of 127.0.0.1, over TLS.
    pub async fn start() -> ApnsReceiver {
        ApnsReceiver::listen(true).await
    }

    /// Listen on a free port of 127.0.0.1, over cleartext HTTP/2 (prior knowledge).
    pub async fn start_cleartext() -> ApnsReceiver {
        ApnsReceiver::listen(false).await
    }

    async fn listen(tls: bool) -> ApnsReceiver {
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tls.then(|| tokio_rustls::TlsAcceptor::from(Arc::new(config)));

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, seen) = mpsc::channel();
        let gone = Gone::default();
        let known = Arc::clone(&gone);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, tx, gone) = (acceptor.clone(), tx.clone(), Arc::clone(&known));
                tokio::spawn(async move {
                    let service = |alpn: Option<String>| {
                        hyper::service::service_fn(move |request| {
                            let (tx, gone, alpn) = (tx.clone(), Arc::clone(&gone), alpn.clone());
                            async move { answer(request, alpn, &tx, &gone).await }
                        })
                    };
                    // HTTP/2 only: a client speaking HTTP/1.1 fails here, as at Apple.
                    let http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    let Some(acceptor) = acceptor else {
                        let _ = http2
                            .serve_connection(TokioIo::new(stream), service(None))
                            .await;
                        return;
                    };
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let alpn = stream
                        .get_ref()
                        .1
                        .alpn_protocol()
                        .map(|p| String::from_utf8_lossy(p).into_owned());
                    let _ = http2
                        .serve_connection(TokioIo::new(stream), service(alpn))
                        .await;
                });
            }
        });
        ApnsReceiver {
            tls,
            port,
            ca_pem: ca.pem(),
            seen: Mutex::new(seen),
            gone,
            task,
        }
    }

    /// The base URL, for `--apns-url`.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA's root certificate (PEM), for `--apns-ca-file`.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// From now on, answer pushes to `token` as for an app removed from its phone.
    pub fn unregister(&self, token: &str) {
        self.gone.lock().unwrap().insert(token.to_owned());
    }

    /// The next request it saw, within [`WAIT`].
    pub fn next(&self) -> Value {
        self.seen
            .lock()
            .unwrap()
            .recv_timeout(WAIT)
            .expect("APNs saw a request in time")
    }
}

impl Drop for ApnsReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    request: hyper::Request<hyper::body::Incoming>,
    alpn: Option<String>,
    seen: &mpsc::Sender<Value>,
    gone: &Gone,
) -> Result<hyper::Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let headers: serde_json::Map<String, Value> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), Value::String(value))
        })
        .collect();
    let _ = seen.send(json!({
        "path": parts.uri.path(),
        "version": format!("{:?}", parts.version),
        "alpn": alpn,
        "headers": headers,
        "body": serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
    }));
    let token = parts
        .uri
        .path()
        .strip_prefix("/3/device/")
        .unwrap_or_default();
    let (status, body) = if gone.lock().unwrap().contains(token) {
        let refusal = json!({ "reason": "Unregistered", "timestamp": baton_server::now_ms() });
        (410, Bytes::from(refusal.to_string()))
    } else {
        (200, Bytes::new())
    };
    Ok(hyper::Response::builder()
        .status(status)
        .header("apns-id", uuid::Uuid::new_v4().to_string())
        .body(Full::new(body))
        .unwrap())
}
