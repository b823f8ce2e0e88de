//! `baton-ffi`: Baton's device client for native apps, through uniffi.
//!
//! A shell only. Every rule, the validation, the worklist order and what a person may do live in
//! `baton-core` (`client` feature); this crate turns its types into records and enums the
//! generated Kotlin, Swift and Python can carry, runs the client on a runtime of its own, and
//! maps every error onto one enum with stable codes.
//!
//! The client's methods that talk to the network or wait for a document are `async` (Kotlin
//! `suspend`, Swift `async`, Python `async def`); the rest return at once. Listeners are
//! callback interfaces; subscribing returns a [`Listening`] handle that stops the listener when
//! it is stopped or freed.

uniffi::setup_scaffolding!();

mod convert;
mod error;

pub use convert::*;
pub use error::BatonError;

use baton_core::client::{Client, ClientConfig, OpenTask};
use baton_core::doc::Subject;
use baton_core::sync::DocumentId;
use std::sync::{Arc, Mutex, OnceLock};
use tokio::runtime::Runtime;
use tokio::task::AbortHandle;

/// The runtime every client of the process runs on.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("baton")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("the Baton runtime cannot start: {e}"))
    })
}

/// Run `work` on the client's runtime, awaited from whichever executor the app uses.
async fn run<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, BatonError>> + Send + 'static,
) -> Result<T, BatonError> {
    runtime()
        .spawn(work)
        .await
        .map_err(|e| BatonError::Internal {
            code: "task_failed".into(),
            reason: e.to_string(),
        })?
}

fn doc_id(id: &str) -> Result<DocumentId, BatonError> {
    let id = id.strip_prefix("automerge:").unwrap_or(id);
    id.parse().map_err(|_| BatonError::InvalidArgument {
        code: "bad_task_id".into(),
        reason: format!("`{id}` is not a task id"),
    })
}

/// Where the client syncs and keeps its data.
#[derive(Clone, Debug, uniffi::Record)]
pub struct Settings {
    /// The server's WebSocket endpoint, e.g. `wss://baton.example.org/sync`.
    pub sync_url: String,
    /// The store file (in the app's private storage).
    pub store_path: String,
    /// The 32-byte key the store is encrypted with, from the Keychain / Keystore.
    pub store_key: Vec<u8>,
}

/// A device's connection to Baton and everything it holds.
#[derive(uniffi::Object)]
pub struct BatonClient {
    client: Arc<Client>,
}

impl std::fmt::Debug for BatonClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatonClient").finish_non_exhaustive()
    }
}

#[uniffi::export]
impl BatonClient {
    /// Open the store (created if needed) and start syncing with the token kept from the last
    /// sign-in, if any.
    #[uniffi::constructor]
    pub fn open(settings: Settings) -> Result<Arc<Self>, BatonError> {
        let key: [u8; 32] =
            settings
                .store_key
                .as_slice()
                .try_into()
                .map_err(|_| BatonError::InvalidArgument {
                    code: "bad_store_key".into(),
                    reason: "the store key must be 32 bytes".into(),
                })?;
        let config = ClientConfig::new(settings.sync_url, settings.store_path, key);
        let client = runtime().block_on(Client::open(config))?;
        Ok(Arc::new(BatonClient {
            client: Arc::new(client),
        }))
    }

    /// Sign in with a token: kept on the device, then the server says who it belongs to.
    pub async fn sign_in(&self, token: String) -> Result<Me, BatonError> {
        let client = self.client.clone();
        run(async move { Ok(client.sign_in(token).await?.into()) }).await
    }

    /// Who is signed in, as the server last said (kept on the device, so known offline).
    pub fn me(&self) -> Option<Me> {
        self.client.me().map(Into::into)
    }

    /// Point the client at another server.
    pub fn set_sync_url(&self, url: String) {
        self.client.set_sync_url(url);
    }

    pub fn status(&self) -> SyncStatus {
        self.client.status().borrow().clone().into()
    }

    /// Wait (at most `timeout_ms`) until the device is online, the server has its changes, and
    /// what it holds is what the server holds; false if not in time. For one-shot readers (a
    /// widget, a notification handler) before they read.
    pub async fn caught_up(&self, timeout_ms: u64) -> bool {
        let client = self.client.clone();
        run(async move {
            Ok(client
                .caught_up(std::time::Duration::from_millis(timeout_ms))
                .await)
        })
        .await
        .unwrap_or(false)
    }

    /// The server's time now (ms since 1970), as well as the device knows it.
    pub fn server_now(&self) -> i64 {
        self.client.server_now()
    }

    /// My worklist across my units, ordered by risk.
    pub async fn worklist(&self, filter: WorklistFilter) -> Result<Vec<WorkItem>, BatonError> {
        let client = self.client.clone();
        run(async move {
            let items = client.my_worklist(&filter.into()).await?;
            Ok(items.into_iter().map(Into::into).collect())
        })
        .await
    }

    /// A task as I see it: its steps, history, conflicts and what I may do now.
    pub async fn task(&self, task_id: String) -> Result<TaskView, BatonError> {
        let (client, id) = (self.client.clone(), doc_id(&task_id)?);
        run(async move { TaskView::from_core(client.task(id).await?) }).await
    }

    /// Open a task from the latest version of `template` on `unit`.
    pub fn open_task(&self, new: NewTask) -> Result<ActionResult, BatonError> {
        let (id, event) = self.client.open_task(OpenTask {
            template: new.template,
            unit: new.unit.into(),
            subject: Subject {
                reference: new.subject_ref,
                label: new.subject_label,
            },
            acuity: new.acuity,
            note: new.note,
        })?;
        Ok(ActionResult::of(id, &event))
    }

    pub async fn claim(&self, task_id: String) -> Result<ActionResult, BatonError> {
        self.act(task_id, |c, id| Box::pin(async move { c.claim(id).await }))
            .await
    }

    pub async fn acknowledge(&self, task_id: String) -> Result<ActionResult, BatonError> {
        self.act(task_id, |c, id| {
            Box::pin(async move { c.acknowledge(id).await })
        })
        .await
    }

    pub async fn start_step(
        &self,
        task_id: String,
        step: String,
    ) -> Result<ActionResult, BatonError> {
        self.act(task_id, move |c, id| {
            Box::pin(async move { c.start_step(id, step.into()).await })
        })
        .await
    }

    /// Complete a step with the fields the template asks for.
    pub async fn complete_step(
        &self,
        task_id: String,
        step: String,
        fields: Vec<FieldInput>,
    ) -> Result<ActionResult, BatonError> {
        let fields = fields.into_iter().map(FieldInput::into_pair).collect();
        self.act(task_id, move |c, id| {
            Box::pin(async move { c.complete_step(id, step.into(), fields).await })
        })
        .await
    }

    /// Wait on someone (`on`), following up at `follow_up_at` or the template's default; a
    /// party outside the hospital needs `transfer`.
    pub async fn wait(
        &self,
        task_id: String,
        on: String,
        reason: Option<String>,
        follow_up_at: Option<i64>,
        transfer: Option<Transfer>,
    ) -> Result<ActionResult, BatonError> {
        let transfer = transfer.map(Into::into);
        self.act(task_id, move |c, id| {
            Box::pin(async move { c.wait(id, on, None, reason, follow_up_at, transfer).await })
        })
        .await
    }

    /// End a wait (`wait_id`, or every open wait); an outside party's needs `confirmation`.
    pub async fn resume(
        &self,
        task_id: String,
        wait_id: Option<String>,
        note: Option<String>,
        confirmation: Option<String>,
    ) -> Result<ActionResult, BatonError> {
        self.act(task_id, move |c, id| {
            Box::pin(async move {
                c.resume(id, wait_id.map(Into::into), note, confirmation)
                    .await
            })
        })
        .await
    }

    pub async fn note(&self, task_id: String, text: String) -> Result<ActionResult, BatonError> {
        self.act(task_id, move |c, id| {
            Box::pin(async move { c.note(id, text).await })
        })
        .await
    }

    /// Offer the task to `to_user`, someone else in the owner role.
    pub async fn hand_off(
        &self,
        task_id: String,
        to_user: String,
        note: Option<String>,
    ) -> Result<ActionResult, BatonError> {
        self.act(task_id, move |c, id| {
            Box::pin(async move { c.hand_off(id, to_user.into(), note).await })
        })
        .await
    }

    pub async fn accept_handoff(
        &self,
        task_id: String,
        offer_id: String,
    ) -> Result<ActionResult, BatonError> {
        self.act(task_id, move |c, id| {
            Box::pin(async move { c.accept_handoff(id, offer_id.into()).await })
        })
        .await
    }

    pub async fn decline_handoff(
        &self,
        task_id: String,
        offer_id: String,
        reason: Option<String>,
    ) -> Result<ActionResult, BatonError> {
        self.act(task_id, move |c, id| {
            Box::pin(async move { c.decline_handoff(id, offer_id.into(), reason).await })
        })
        .await
    }

    /// Escalate to the chain's next level now.
    pub async fn escalate(&self, task_id: String) -> Result<ActionResult, BatonError> {
        self.act(task_id, |c, id| {
            Box::pin(async move { c.escalate(id).await })
        })
        .await
    }

    pub async fn raise_exception(
        &self,
        task_id: String,
        alert_role: String,
        reason: String,
    ) -> Result<ActionResult, BatonError> {
        self.act(task_id, move |c, id| {
            Box::pin(async move { c.raise_exception(id, alert_role.into(), reason).await })
        })
        .await
    }

    pub async fn resolve_exception(
        &self,
        task_id: String,
        exception_id: String,
        note: Option<String>,
    ) -> Result<ActionResult, BatonError> {
        self.act(task_id, move |c, id| {
            Box::pin(async move { c.resolve_exception(id, exception_id.into(), note).await })
        })
        .await
    }

    pub async fn change_acuity(
        &self,
        task_id: String,
        acuity: String,
    ) -> Result<ActionResult, BatonError> {
        self.act(task_id, move |c, id| {
            Box::pin(async move { c.change_acuity(id, acuity).await })
        })
        .await
    }

    pub async fn cancel(
        &self,
        task_id: String,
        reason: String,
    ) -> Result<ActionResult, BatonError> {
        self.act(task_id, move |c, id| {
            Box::pin(async move { c.cancel(id, reason).await })
        })
        .await
    }

    pub async fn complete(
        &self,
        task_id: String,
        note: Option<String>,
    ) -> Result<ActionResult, BatonError> {
        self.act(task_id, move |c, id| {
            Box::pin(async move { c.complete(id, note).await })
        })
        .await
    }

    /// The sync status now and at every change, until the handle is closed or dropped.
    pub fn listen_status(&self, listener: Box<dyn StatusListener>) -> Arc<Listening> {
        let mut status = self.client.status();
        Listening::spawn(async move {
            loop {
                let now: SyncStatus = status.borrow_and_update().clone().into();
                listener.on_status(now);
                if status.changed().await.is_err() {
                    return;
                }
            }
        })
    }

    /// Every change to a task (from this device, the server, or a refusal taken out), until
    /// the handle is closed or dropped.
    pub fn listen_task(
        &self,
        task_id: String,
        listener: Box<dyn TaskListener>,
    ) -> Result<Arc<Listening>, BatonError> {
        let mut changes = self.client.subscribe(doc_id(&task_id)?);
        Ok(Listening::spawn(async move {
            while let Some(change) = changes.recv().await {
                listener.on_change(change.into());
            }
        }))
    }

    /// Changes of this device's that the server refused, as they are taken out.
    pub fn listen_refusals(&self, listener: Box<dyn RefusalListener>) -> Arc<Listening> {
        let mut refusals = self.client.refusals();
        Listening::spawn(async move {
            loop {
                match refusals.recv().await {
                    Ok(refused) => listener.on_refused(refused.into()),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    }

    /// Delete everything on this device (sign-out) and stop syncing.
    pub fn wipe(&self) {
        self.client.wipe();
    }

    /// Stop syncing for good; the store is released when the client is freed (Kotlin
    /// `close()`, Swift deinit, Python garbage collection).
    pub async fn shutdown(&self) {
        let client = self.client.clone();
        let _ = run(async move {
            client.stop().await;
            Ok(())
        })
        .await;
    }
}

type ActionFuture = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<baton_core::Event, baton_core::client::ClientError>>
            + Send,
    >,
>;

impl BatonClient {
    /// Run one action on `task_id` through the core client.
    async fn act(
        &self,
        task_id: String,
        action: impl FnOnce(Arc<Client>, DocumentId) -> ActionFuture + Send + 'static,
    ) -> Result<ActionResult, BatonError> {
        let (client, id) = (self.client.clone(), doc_id(&task_id)?);
        run(async move {
            let event = action(client, id).await?;
            Ok(ActionResult::of(id, &event))
        })
        .await
    }
}

/// Hears the sync status.
#[uniffi::export(callback_interface)]
pub trait StatusListener: Send + Sync {
    fn on_status(&self, status: SyncStatus);
}

/// Hears a task change.
#[uniffi::export(callback_interface)]
pub trait TaskListener: Send + Sync {
    fn on_change(&self, change: TaskChange);
}

/// Hears refusals.
#[uniffi::export(callback_interface)]
pub trait RefusalListener: Send + Sync {
    fn on_refused(&self, refused: Refused);
}

/// A listener at work: it stops when this is closed or dropped.
#[derive(Debug, uniffi::Object)]
pub struct Listening {
    task: Mutex<Option<AbortHandle>>,
}

impl Listening {
    fn spawn(work: impl std::future::Future<Output = ()> + Send + 'static) -> Arc<Self> {
        let handle = runtime().spawn(work).abort_handle();
        Arc::new(Listening {
            task: Mutex::new(Some(handle)),
        })
    }
}

#[uniffi::export]
impl Listening {
    /// Stop listening (freeing the handle does too: Kotlin `close()`, Swift deinit).
    pub fn stop(&self) {
        let taken = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = taken {
            task.abort();
        }
    }

    pub fn is_closed(&self) -> bool {
        self.task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .is_none_or(AbortHandle::is_finished)
    }
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.stop();
    }
}
