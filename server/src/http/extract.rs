//! Who is calling: the address a request came from, and the session its token opens.

use super::ApiError;
use crate::AppState;
use crate::auth::{AuthError, Session};
use crate::db::AdminScope;
use crate::ws::bearer;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use baton_core::ids::UnitId;

/// The address a request came from, when the server knows it.
pub(crate) struct PeerAddr(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let addr = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0.ip());
        Ok(PeerAddr(addr))
    }
}

/// The authenticated caller of a REST endpoint.
pub(crate) struct Caller(pub Session);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let Ok(PeerAddr(from)) = PeerAddr::from_request_parts(parts, app).await;
        Ok(Caller(
            app.session(bearer(&parts.headers, None), from).await?,
        ))
    }
}

/// An authenticated caller who administers something: the server or some units. Each handler
/// checks that what it changes or shows is theirs ([`Admin::of`]).
pub(crate) struct Admin(pub Session);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let Caller(session) = Caller::from_request_parts(parts, app).await?;
        if !session.admin.is_admin() {
            return Err(AuthError::NotAdmin.into());
        }
        Ok(Admin(session))
    }
}

impl Admin {
    /// Refuse, as `403 not_unit_admin`, a unit this admin does not administer.
    pub(crate) fn of(&self, unit: &UnitId) -> Result<(), ApiError> {
        if self.0.admin.administers(unit) {
            Ok(())
        } else {
            Err(ApiError::not_unit_admin(unit.as_str()))
        }
    }
}

/// An authenticated caller who administers the server: every unit, and what belongs to none.
#[allow(dead_code)] // The session: for handlers that record who acted.
pub(crate) struct ServerAdmin(pub Session);

impl FromRequestParts<AppState> for ServerAdmin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let Admin(session) = Admin::from_request_parts(parts, app).await?;
        if session.admin != AdminScope::Server {
            return Err(ApiError::not_server_admin());
        }
        Ok(ServerAdmin(session))
    }
}
