//! Tokens and sessions.
//!
//! Everyone authenticates with a JWT. The embedded issuer signs with an Ed25519 key generated in
//! the data directory on first start (`baton-server token issue` uses the same key). A token says
//! who the caller is; what they may do comes from the server's own records, checked on every
//! connection: the user must exist and be enabled, the device must not be revoked, and the units
//! and roles a session gets are those the token names **and** the records grant. Admin rights
//! likewise need the token's `admin` claim **and** a row in the `admins` table.
//!
//! A session's grants are live: a sync connection keeps its [`Session`] while it lasts, and
//! [`Session::update_grants`] brings it in line with the records when a membership changes.
//!
//! An **integration** (the EHR, say) has tokens of its own kind: they carry an `integration`
//! claim naming it and the units it may open tasks on, and no device, roles or admin claim.
//! Such a token is good for `POST /api/v1/triggers` ([`Integration`]) and nothing else: every
//! user's door ([`Session::establish`]) refuses it, and the trigger endpoint refuses a user's.

use crate::config::TokenConfig;
use crate::db::AdminScope;
use crate::db::{Db, DbError};
use baton_core::ids::{DeviceId, Role, UnitId, UserId};
use baton_core::validate::AuthContext;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The file in the data directory that holds the embedded signing key.
pub const KEY_FILE: &str = "signing-key.pem";

/// What a Baton token claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user; for an integration, `integration:<name>`.
    pub sub: String,
    /// The device the token was issued to; every user's token names one, an integration's none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device: String,
    /// The integration the token was issued to: present on integration tokens only, which are
    /// good for `POST /api/v1/triggers` alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration: Option<String>,
    /// Roles the token may act in; absent: whatever the server's records grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// Units the token may act on; absent: whatever the server's records grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub units: Option<Vec<String>>,
    /// May use the admin API.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub admin: bool,
    #[serde(default)]
    pub iss: String,
    /// A string or a list of strings; checked by the verifier.
    #[serde(default)]
    pub aud: serde_json::Value,
    pub exp: i64,
    /// Not valid before (Unix seconds); checked when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default)]
    pub iat: i64,
    #[serde(default)]
    pub jti: String,
}

/// Why a caller was not let in. The variants are what the caller may be told.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("a bearer token is required")]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (`nbf` is in the future)")]
    NotYetValid,
    #[error("the token says it was issued in the future (`iat`); check the issuer's clock")]
    IssuedInFuture,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("user `{0}` is not known here")]
    UnknownUser(String),
    #[error("user `{0}` is disabled")]
    UserDisabled(String),
    #[error("device `{0}` has been revoked; wipe its local data")]
    DeviceRevoked(String),
    #[error("this token grants no role on any unit the user belongs to")]
    NoAccess,
    #[error("admin rights are required")]
    NotAdmin,
    #[error("an integration token may only call POST /api/v1/triggers")]
    IntegrationToken,
    #[error("only an integration token may call this endpoint")]
    NotIntegration,
    #[error("the identity provider's keys could not be fetched: {0}")]
    Keys(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl AuthError {
    /// The stable code this refusal goes by, in HTTP error bodies and audit records.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "token_missing",
            AuthError::Expired => "token_expired",
            AuthError::NotYetValid => "token_not_yet_valid",
            AuthError::IssuedInFuture => "token_issued_in_future",
            AuthError::Invalid(_) => "token_invalid",
            AuthError::UnknownUser(_) => "unknown_user",
            AuthError::UserDisabled(_) => "user_disabled",
            AuthError::DeviceRevoked(_) => "device_revoked",
            AuthError::NoAccess => "no_access",
            AuthError::NotAdmin => "not_admin",
            AuthError::IntegrationToken => "integration_token",
            AuthError::NotIntegration => "not_integration",
            AuthError::Keys(_) => "keys_unavailable",
            AuthError::Db(_) => "internal",
        }
    }
}

/// Why the signing key could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("signing key {path}: {detail}")]
    Key { path: String, detail: String },
}

/// The embedded issuer's key pair.
#[derive(Clone)]
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    /// Read the key from `data_dir`, generating it on first use (readable by the owner only).
    pub fn load_or_create(data_dir: &Path) -> Result<Keys, KeyError> {
        let path = data_dir.join(KEY_FILE);
        let fail = |detail: String| KeyError::Key {
            path: path.display().to_string(),
            detail,
        };
        let signing = match std::fs::read_to_string(&path) {
            Ok(pem) => SigningKey::from_pkcs8_pem(&pem).map_err(|e| fail(e.to_string()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|e| fail(e.to_string()))?;
                let key = SigningKey::from_bytes(&seed);
                let pem = key
                    .to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| fail(e.to_string()))?;
                std::fs::create_dir_all(data_dir).map_err(|e| fail(e.to_string()))?;
                write_private(&path, pem.as_bytes()).map_err(|e| fail(e.to_string()))?;
                key
            }
            Err(e) => return Err(fail(e.to_string())),
        };
        let private = signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| fail(e.to_string()))?;
        let public = signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| fail(e.to_string()))?;
        Ok(Keys {
            encoding: EncodingKey::from_ed_pem(private.as_bytes())
                .map_err(|e| fail(e.to_string()))?,
            decoding: DecodingKey::from_ed_pem(public.as_bytes())
                .map_err(|e| fail(e.to_string()))?,
        })
    }

    /// Sign `claims`.
    pub fn issue(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), claims, &self.encoding)
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// What a token for the embedded issuer says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    pub user: String,
    pub device: String,
    pub roles: Vec<String>,
    pub units: Vec<String>,
    pub admin: bool,
    /// Lifetime in seconds.
    pub ttl_secs: i64,
}

impl TokenRequest {
    /// The claims of this token, issued at `now` (Unix seconds).
    pub fn claims(&self, tokens: &TokenConfig, now: i64) -> Claims {
        Claims {
            sub: self.user.clone(),
            device: self.device.clone(),
            integration: None,
            roles: Some(self.roles.clone()),
            units: Some(self.units.clone()),
            admin: self.admin,
            iss: tokens.issuer.clone(),
            aud: serde_json::Value::String(tokens.audience.clone()),
            exp: now.saturating_add(self.ttl_secs),
            nbf: None,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
        }
    }
}

/// What a token for an integration says: its name and the units it may open tasks on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntegrationTokenRequest {
    pub name: String,
    pub units: Vec<String>,
    /// Lifetime in seconds.
    pub ttl_secs: i64,
}

/// The subject of an integration's tokens.
fn integration_subject(name: &str) -> String {
    format!("integration:{name}")
}

/// The longest integration name.
pub const MAX_INTEGRATION_NAME: usize = 64;

impl IntegrationTokenRequest {
    /// The claims of this token, issued at `now` (Unix seconds).
    pub fn claims(&self, tokens: &TokenConfig, now: i64) -> Claims {
        Claims {
            sub: integration_subject(&self.name),
            device: String::new(),
            integration: Some(self.name.clone()),
            roles: None,
            units: Some(self.units.clone()),
            admin: false,
            iss: tokens.issuer.clone(),
            aud: serde_json::Value::String(tokens.audience.clone()),
            exp: now.saturating_add(self.ttl_secs),
            nbf: None,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
        }
    }
}

/// An integration, as its token names it: it may open tasks on its units by trigger, and do
/// nothing else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Integration {
    pub name: String,
    pub units: Vec<UnitId>,
    /// When the token expires (Unix seconds).
    pub expires_at: i64,
}

impl Integration {
    /// Check an integration's token. A user's token is refused (`not_integration`), and so is a
    /// token that claims to be both.
    pub async fn establish(
        verifier: &Verifier,
        token: &str,
        now_ms: i64,
    ) -> Result<Integration, AuthError> {
        let claims = verified(verifier, token, now_ms).await?;
        let Some(name) = claims.integration else {
            return Err(AuthError::NotIntegration);
        };
        let invalid = |why: &str| Err(AuthError::Invalid(why.to_owned()));
        if name.is_empty() || name.len() > MAX_INTEGRATION_NAME {
            return invalid("the integration's name is empty or too long");
        }
        if claims.sub != integration_subject(&name) {
            return invalid("an integration token's subject is `integration:<its name>`");
        }
        if !claims.device.is_empty() || claims.roles.is_some() || claims.admin {
            return invalid("an integration token claims no device, roles or admin rights");
        }
        let units: Vec<UnitId> = claims
            .units
            .unwrap_or_default()
            .into_iter()
            .map(UnitId::new)
            .collect();
        if units.is_empty() {
            return invalid("an integration token names the units it covers");
        }
        Ok(Integration {
            name,
            units,
            expires_at: claims.exp,
        })
    }

    /// Whether the token lets the integration open tasks on `unit`.
    pub fn covers(&self, unit: &UnitId) -> bool {
        self.units.contains(unit)
    }
}

/// A token's claims, once its signature, expiry, issuer and audience are checked, and its `iat`
/// is not ahead of the server's clock.
async fn verified(verifier: &Verifier, token: &str, now_ms: i64) -> Result<Claims, AuthError> {
    let claims = verifier.verify(token).await?;
    let leeway = i64::try_from(LEEWAY_SECS).unwrap_or(i64::MAX);
    if claims.iat > (now_ms / 1000).saturating_add(leeway) {
        return Err(AuthError::IssuedInFuture);
    }
    Ok(claims)
}

/// Checks tokens' signatures, expiry, issuer and audience: against the embedded issuer's key,
/// or against an identity provider's published keys (JWKS).
#[derive(Clone)]
pub enum Verifier {
    Embedded {
        key: DecodingKey,
        validation: Box<Validation>,
    },
    Jwks(Arc<Jwks>),
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verifier::Embedded { .. } => f.write_str("Verifier::Embedded"),
            Verifier::Jwks(jwks) => write!(f, "Verifier::Jwks({})", jwks.url),
        }
    }
}

/// The checks every token passes, whoever signed it.
fn validation(algorithm: Algorithm, tokens: &TokenConfig) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.set_issuer(&[&tokens.issuer]);
    validation.set_audience(&[&tokens.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.leeway = LEEWAY_SECS;
    validation.validate_nbf = true;
    validation
}

/// How far the server's clock and an issuer's may disagree, in seconds: on `exp`, `nbf` and
/// `iat`.
pub const LEEWAY_SECS: u64 = 30;

fn decode(token: &str, key: &DecodingKey, validation: &Validation) -> Result<Claims, AuthError> {
    use jsonwebtoken::errors::ErrorKind;
    jsonwebtoken::decode::<Claims>(token, key, validation)
        .map(|data| data.claims)
        .map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::ImmatureSignature => AuthError::NotYetValid,
            _ => AuthError::Invalid(e.to_string()),
        })
}

impl Verifier {
    /// Verify tokens of the embedded issuer.
    pub fn embedded(keys: &Keys, tokens: &TokenConfig) -> Self {
        Verifier::Embedded {
            key: keys.decoding.clone(),
            validation: Box::new(validation(Algorithm::EdDSA, tokens)),
        }
    }

    /// Verify an identity provider's tokens with the keys it publishes at `url`, fetching them
    /// again for an unknown key id at most once per `min_refresh`. Fetches them once now, so a
    /// wrong URL stops the server at start.
    pub async fn jwks(
        url: &str,
        tokens: &TokenConfig,
        min_refresh: Duration,
    ) -> Result<Self, AuthError> {
        let jwks = Jwks {
            url: url.to_owned(),
            tokens: tokens.clone(),
            min_refresh,
            keys: RwLock::new(None),
            refresh: tokio::sync::Mutex::new(None),
        };
        jwks.refresh().await?;
        Ok(Verifier::Jwks(Arc::new(jwks)))
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        match self {
            Verifier::Embedded { key, validation } => decode(token, key, validation),
            Verifier::Jwks(jwks) => jwks.verify(token).await,
        }
    }
}

/// An identity provider's signing keys, fetched from its JWKS URL and refreshed when a token
/// names a key id not seen yet (at most once per `min_refresh`, so made-up key ids cannot make
/// the server hammer the provider).
#[derive(Debug)]
pub struct Jwks {
    url: String,
    tokens: TokenConfig,
    min_refresh: Duration,
    keys: RwLock<Option<JwkSet>>,
    /// When the keys were last fetched; held while fetching, so one fetch runs at a time.
    refresh: tokio::sync::Mutex<Option<Instant>>,
}

impl Jwks {
    async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Invalid("the token names no key (`kid`)".into()))?;
        let jwk = match self.find(&kid) {
            Some(jwk) => jwk,
            None => {
                self.refresh_if_stale().await?;
                self.find(&kid)
                    .ok_or_else(|| AuthError::Invalid(format!("unknown key `{kid}`")))?
            }
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| AuthError::Invalid(e.to_string()))?;
        // The algorithm comes from the key where it says, else from the token; jsonwebtoken
        // refuses an algorithm of another family than the key's.
        let algorithm = jwk
            .common
            .key_algorithm
            .and_then(|a| a.to_string().parse().ok())
            .unwrap_or(header.alg);
        decode(token, &key, &validation(algorithm, &self.tokens))
    }

    fn find(&self, kid: &str) -> Option<jsonwebtoken::jwk::Jwk> {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        keys.as_ref()?.find(kid).cloned()
    }

    async fn refresh_if_stale(&self) -> Result<(), AuthError> {
        let last = *self.refresh.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.min_refresh) {
            return Ok(());
        }
        self.refresh().await
    }

    async fn refresh(&self) -> Result<(), AuthError> {
        let mut last = self.refresh.lock().await;
        let url = self.url.clone();
        let fetched = tokio::task::spawn_blocking(move || fetch_jwks(&url))
            .await
            .map_err(|e| AuthError::Keys(e.to_string()))?;
        *last = Some(Instant::now());
        let set = fetched?;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Some(set);
        Ok(())
    }
}

fn fetch_jwks(url: &str) -> Result<JwkSet, AuthError> {
    let agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .new_agent();
    let body = agent
        .get(url)
        .call()
        .and_then(|mut r| {
            r.body_mut()
                .with_config()
                .limit(1024 * 1024)
                .read_to_string()
        })
        .map_err(|e| AuthError::Keys(format!("{url}: {e}")))?;
    serde_json::from_str(&body).map_err(|e| AuthError::Keys(format!("{url}: {e}")))
}

/// What a token names, which narrows what the records grant: `None` is "whatever the records
/// grant".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    pub units: Option<Vec<String>>,
    pub roles: Option<Vec<String>>,
}

impl Scope {
    /// The (unit, role) pairs of `records` this scope lets through.
    pub fn narrow(&self, records: Vec<(UnitId, Role)>) -> Vec<(UnitId, Role)> {
        let named = |list: &Option<Vec<String>>, item: &str| {
            list.as_ref().is_none_or(|l| l.iter().any(|x| x == item))
        };
        records
            .into_iter()
            .filter(|(unit, role)| {
                named(&self.units, unit.as_str()) && named(&self.roles, role.as_str())
            })
            .collect()
    }
}

/// A session's (unit, role) grants, which follow the server's membership records while the
/// session lasts. Each update carries a sequence number taken before its records were read, so
/// an update read earlier never overwrites one read later.
#[derive(Debug, Default)]
struct Grants {
    seq: u64,
    pairs: Vec<(UnitId, Role)>,
}

/// An authenticated caller, as the server's records allow them. Its grants are live: when the
/// records change, [`Session::update_grants`] changes them for every connection holding the
/// session.
#[derive(Debug)]
pub struct Session {
    pub user: UserId,
    pub display_name: String,
    pub device: DeviceId,
    /// What the user administers: nothing unless the token claims admin rights, and then what
    /// the server's records list (the server, some units, or nothing).
    pub admin: AdminScope,
    /// The address the session was established from, when known.
    pub address: Option<IpAddr>,
    /// What the token names.
    pub scope: Scope,
    grants: RwLock<Grants>,
    /// When the token expires (Unix seconds).
    pub expires_at: i64,
}

impl Session {
    /// Check a token and the caller's records, and enroll the device on first use.
    pub async fn establish(
        db: &Db,
        verifier: &Verifier,
        token: &str,
        now_ms: i64,
    ) -> Result<Session, AuthError> {
        let claims = verified(verifier, token, now_ms).await?;
        // An integration's token opens no session, whatever else it claims.
        if claims.integration.is_some() {
            return Err(AuthError::IntegrationToken);
        }
        if claims.device.is_empty() {
            return Err(AuthError::Invalid("the token names no device".to_owned()));
        }
        let user = db
            .user(&claims.sub)
            .await?
            .ok_or_else(|| AuthError::UnknownUser(claims.sub.clone()))?;
        if user.disabled_at.is_some() {
            return Err(AuthError::UserDisabled(claims.sub));
        }
        if let Some(device) = db.device(&claims.device).await?
            && device.revoked_at.is_some()
        {
            return Err(AuthError::DeviceRevoked(claims.device));
        }
        let scope = Scope {
            units: claims.units,
            roles: claims.roles,
        };
        let grants = scope.narrow(db.memberships(&claims.sub).await?);
        // Admin rights need the claim and the record: a token alone makes no one an admin.
        let admin = if claims.admin {
            db.admin_scope(&claims.sub).await?
        } else {
            AdminScope::None
        };
        if grants.is_empty() && !admin.is_admin() {
            return Err(AuthError::NoAccess);
        }
        db.touch_device(&claims.device, &claims.sub, now_ms).await?;
        Ok(Session {
            user: user.id,
            display_name: user.display_name,
            device: DeviceId::new(claims.device),
            admin,
            address: None,
            scope,
            grants: RwLock::new(Grants {
                seq: 0,
                pairs: grants,
            }),
            expires_at: claims.exp,
        })
    }

    /// Check again that the user is enabled and the device not revoked, and take the user's
    /// grants afresh (`seq` taken before reading them). For a connection that registered itself
    /// after [`Session::establish`]: a revocation or a membership change made in between is
    /// seen here, one made later reaches it through the registry.
    pub async fn recheck(&self, db: &Db, seq: u64) -> Result<(), AuthError> {
        let user = db
            .user(self.user.as_str())
            .await?
            .ok_or_else(|| AuthError::UnknownUser(self.user.to_string()))?;
        if user.disabled_at.is_some() {
            return Err(AuthError::UserDisabled(self.user.to_string()));
        }
        if let Some(device) = db.device(self.device.as_str()).await?
            && device.revoked_at.is_some()
        {
            return Err(AuthError::DeviceRevoked(self.device.to_string()));
        }
        let records = db.memberships(self.user.as_str()).await?;
        self.update_grants(seq, records);
        Ok(())
    }

    /// Replace the grants with `records` (the user's memberships as read after `seq` was taken),
    /// narrowed by the token, unless an update read later is already in. Returns the units the
    /// session could see before and can no longer.
    pub fn update_grants(&self, seq: u64, records: Vec<(UnitId, Role)>) -> Vec<UnitId> {
        let pairs = self.scope.narrow(records);
        let mut grants = self.grants.write().unwrap_or_else(|e| e.into_inner());
        if seq < grants.seq {
            return Vec::new();
        }
        let mut lost: Vec<UnitId> = grants
            .pairs
            .iter()
            .filter(|(u, _)| !pairs.iter().any(|(p, _)| p == u))
            .map(|(u, _)| u.clone())
            .collect();
        lost.dedup();
        grants.seq = seq;
        grants.pairs = pairs;
        lost
    }

    /// The (unit, role) pairs this session may act in, now.
    pub fn grants(&self) -> Vec<(UnitId, Role)> {
        self.grants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .pairs
            .clone()
    }

    /// The units this session may act on, each once, in order.
    pub fn units(&self) -> Vec<UnitId> {
        let mut units: Vec<UnitId> = self.grants().into_iter().map(|(u, _)| u).collect();
        units.dedup();
        units
    }

    /// Whether the session may read `unit`'s tasks over REST: it holds a role there, or
    /// administers it.
    pub fn may_read(&self, unit: &UnitId) -> bool {
        self.admin.administers(unit) || self.may_see(unit)
    }

    /// The units whose tasks the session may read over REST, or `None` for every unit.
    pub fn readable_units(&self) -> Option<Vec<UnitId>> {
        let administered = self.admin.units()?;
        let mut units = self.units();
        units.extend(administered.iter().cloned());
        units.sort();
        units.dedup();
        Some(units)
    }

    pub fn may_see(&self, unit: &UnitId) -> bool {
        self.grants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .pairs
            .iter()
            .any(|(u, _)| u == unit)
    }

    /// What validation needs to know about the sender acting on a document of `unit`: the roles
    /// it holds there, and that unit alone (none, when the unit is unknown).
    pub fn auth_context_on(&self, unit: Option<&UnitId>) -> AuthContext {
        let roles: Vec<Role> = self
            .grants
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .pairs
            .iter()
            .filter(|(u, _)| Some(u) == unit)
            .map(|(_, r)| r.clone())
            .collect();
        AuthContext {
            user: self.user.clone(),
            device: self.device.clone(),
            units: if roles.is_empty() {
                Vec::new()
            } else {
                unit.into_iter().cloned().collect()
            },
            roles,
            system: false,
        }
    }
}
