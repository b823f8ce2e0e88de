//! Production mode: the server verifies an identity provider's tokens with the keys it publishes
//! (JWKS), with issuer and audience checks, and accepts nothing else.
#![allow(clippy::unwrap_used)]

use baton_e2e::{Backend, Phone, TestServer};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The identity provider's signing key (a test key) and its public half, as the JWKS gives it.
const IDP_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIAHe52n6FuPR213H5IbfY+gMgWipwAyVzfktGzO6nXWM
-----END PRIVATE KEY-----
";
const IDP_X: &str = "vMlbVT5X2ZMOnQCLoz1vNqDAFJwCWrdmlB9-k1owCgo";
/// Another key, not published.
const OTHER_KEY: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIFXti9dwsvbuNS2O/O/k2UtbJ2q/CBrMikc7F2MkoOLB
-----END PRIVATE KEY-----
";
const ISSUER: &str = "https://idp.hospital.example";

/// Serve the JWKS over plain HTTP on 127.0.0.1; returns its URL and a count of fetches.
async fn identity_provider() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    let fetches = Arc::new(AtomicUsize::new(0));
    let counter = fetches.clone();
    let body = json!({ "keys": [
        { "kty": "OKP", "crv": "Ed25519", "kid": "idp-1", "alg": "EdDSA", "use": "sig", "x": IDP_X }
    ]})
    .to_string();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    (url, fetches)
}

fn idp_token(key: &str, kid: &str, claims: serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(
        &header,
        &claims,
        &EncodingKey::from_ed_pem(key.as_bytes()).unwrap(),
    )
    .unwrap()
}

fn claims(issuer: &str, audience: &str, expires_in: i64) -> serde_json::Value {
    let now = baton_server::now_ms() / 1000;
    json!({ "sub": "rn.evans", "device": "idp-phone", "iss": issuer, "aud": audience,
            "iat": now, "exp": now + expires_in })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_provider_tokens_are_verified_with_its_published_keys() {
    let (jwks_url, fetches) = identity_provider().await;
    let server = TestServer::start_with(Backend::Sqlite, |config| {
        config.jwks_url = Some(jwks_url.clone());
        config.tokens.issuer = ISSUER.to_owned();
        config.jwks_min_refresh = baton_core::time::Span::from_millis(1_000);
    })
    .await;
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        1,
        "keys are fetched at start"
    );

    // A token from the identity provider: no roles or units in it, so the server's records
    // decide (rn.evans is a nurse on 4W).
    let good = idp_token(IDP_KEY, "idp-1", claims(ISSUER, "baton", 600));
    let (status, me) = server.get("/api/v1/me", Some(&good)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["units"][0]["id"], "4W");
    assert_eq!(me["units"][0]["roles"], json!(["nurse"]));
    assert!(Phone::connect(server.addr(), &good).await.is_ok());

    let refused = |token: String| {
        let server = &server;
        async move { server.get("/api/v1/me", Some(&token)).await }
    };
    let (status, body) = refused(idp_token(
        IDP_KEY,
        "idp-1",
        claims("https://evil.example", "baton", 600),
    ))
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("token_invalid")),
        "issuer"
    );
    let (status, _) = refused(idp_token(
        IDP_KEY,
        "idp-1",
        claims(ISSUER, "another-app", 600),
    ))
    .await;
    assert_eq!(status, 401, "audience");
    let (status, body) = refused(idp_token(IDP_KEY, "idp-1", claims(ISSUER, "baton", -600))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("token_expired"))
    );
    let (status, _) = refused(idp_token(OTHER_KEY, "idp-1", claims(ISSUER, "baton", 600))).await;
    assert_eq!(
        status, 401,
        "a key the provider did not publish, under its key id"
    );
    // The embedded issuer's tokens are not accepted in this mode.
    let (status, _) = refused(server.token("rn.evans", "idp-phone", &["nurse"], &["4W"])).await;
    assert_eq!(status, 401, "embedded token");

    // An unknown key id makes the server fetch the keys again, at most once per second here (a
    // flood of made-up key ids cannot make it hammer the provider).
    let unknown = |kid: &str| idp_token(IDP_KEY, kid, claims(ISSUER, "baton", 600));
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let before = fetches.load(Ordering::SeqCst);
    let (status, _) = refused(unknown("rotated-2")).await;
    assert_eq!(status, 401);
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        before + 1,
        "refetched for a new key id"
    );
    let (status, _) = refused(unknown("rotated-3")).await;
    assert_eq!(status, 401);
    assert_eq!(
        fetches.load(Ordering::SeqCst),
        before + 1,
        "not again within the interval"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_whose_identity_provider_is_unreachable_does_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = baton_server::Config::new("127.0.0.1:0".parse().unwrap(), dir.path());
    // Nothing listens on port 9 of loopback.
    config.jwks_url = Some("http://127.0.0.1:9/jwks.json".to_owned());
    let error = baton_server::Server::start(config).await.unwrap_err();
    assert!(error.to_string().contains("127.0.0.1:9"), "{error}");
}
