//! The two REST calls a device makes: who it is (`GET /api/v1/me`) and the templates its tasks
//! follow (`GET /api/v1/templates`). Both are kept in the store, so a device that signed in once
//! works offline from then on.

use super::ClientError;
use crate::ids::{Role, UnitId, UserId};
use crate::sync::DocumentId;
use crate::template::{Template, TemplateRegistry};
use crate::time::Millis;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// How long one REST call may take.
const TIMEOUT: Duration = Duration::from_secs(15);
/// The largest answer read.
const MAX_BODY: u64 = 8 << 20;

/// The signed-in person, as the server's records have them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Me {
    pub user: UserId,
    pub display_name: String,
    pub device: String,
    pub units: Vec<MeUnit>,
    /// The server's clock when it answered.
    #[serde(default)]
    pub server_time: Option<Millis>,
}

/// A unit the person works on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeUnit {
    pub id: UnitId,
    pub name: String,
    /// The person's roles on this unit.
    pub roles: Vec<Role>,
    /// The unit's index document (`automerge:<id>`).
    pub index_url: String,
}

impl MeUnit {
    /// The unit's index document.
    pub fn index(&self) -> Option<DocumentId> {
        self.index_url
            .strip_prefix("automerge:")
            .and_then(|id| id.parse().ok())
    }
}

impl Me {
    /// The person's roles on `unit` (none when they do not work there).
    pub fn roles_on(&self, unit: &UnitId) -> &[Role] {
        self.units
            .iter()
            .find(|u| &u.id == unit)
            .map_or(&[], |u| u.roles.as_slice())
    }
}

/// The REST API's base URL for a sync URL: `wss://host/sync` → `https://host`.
pub(crate) fn api_base(sync_url: &str) -> String {
    let url = sync_url.trim_end_matches('/');
    let url = url.strip_suffix("/sync").unwrap_or(url);
    if let Some(rest) = url.strip_prefix("wss://") {
        format!("https://{rest}")
    } else if let Some(rest) = url.strip_prefix("ws://") {
        format!("http://{rest}")
    } else {
        url.to_owned()
    }
}

/// `GET base + path` with the token, read as JSON. Runs on a blocking thread.
async fn get<T: serde::de::DeserializeOwned + Send + 'static>(
    base: &str,
    path: &str,
    token: &str,
) -> Result<T, ClientError> {
    let url = format!("{base}{path}");
    let auth = format!("Bearer {token}");
    let call = move || -> Result<T, ClientError> {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut response = agent
            .get(&url)
            .header("Authorization", &auth)
            .call()
            .map_err(|e| ClientError::Api(format!("{url}: {e}")))?;
        let status = response.status();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_string()
            .map_err(|e| ClientError::Api(format!("{url}: {e}")))?;
        if !status.is_success() {
            let error: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            return Err(ClientError::Api(format!(
                "{url} answered {status}: {}",
                error["message"].as_str().unwrap_or(&body)
            )));
        }
        serde_json::from_str(&body).map_err(|e| ClientError::Api(format!("{url}: {e}")))
    };
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|e| ClientError::Api(e.to_string()))?
}

pub(crate) async fn me(base: &str, token: &str) -> Result<Me, ClientError> {
    get(base, "/api/v1/me", token).await
}

#[derive(Deserialize)]
struct Templates {
    templates: Vec<serde_json::Value>,
}

/// The server's templates, each checked as the server checks them, and as sent (to keep).
pub(crate) async fn templates_with_json(
    base: &str,
    token: &str,
) -> Result<(TemplateRegistry, Vec<serde_json::Value>), ClientError> {
    let answer: Templates = get(base, "/api/v1/templates", token).await?;
    Ok((templates_from(&answer.templates)?, answer.templates))
}

/// A registry of `templates` (JSON values), failing on the first that does not hold.
pub(crate) fn templates_from(
    templates: &[serde_json::Value],
) -> Result<TemplateRegistry, ClientError> {
    let mut registry = TemplateRegistry::new();
    for value in templates {
        let template = Template::from_json("server", &value.to_string())
            .map_err(|e| ClientError::Api(format!("a template from the server: {e}")))?;
        registry
            .insert(template)
            .map_err(|e| ClientError::Api(format!("a template from the server: {e}")))?;
    }
    Ok(registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_lives_beside_the_sync_endpoint() {
        assert_eq!(
            api_base("wss://baton.example.org/sync"),
            "https://baton.example.org"
        );
        assert_eq!(
            api_base("ws://127.0.0.1:7700/sync/"),
            "http://127.0.0.1:7700"
        );
        assert_eq!(api_base("ws://h/x/sync"), "http://h/x");
    }
}
