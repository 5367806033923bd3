//! The `Registry` actor: Butler prefixes. It serialises prefix creation and deletion,
//! answers op_nonce retries within the 15-minute window with the same secret, keeps only
//! the secret's SHA-256 after that window, and tells live stream actors when their prefix
//! is deleted.

use std::time::Duration;

use actix::prelude::*;
use logdog_schema::models::PrefixRow;
use logdog_schema::store;
use logdog_schema::wire::now_us;
use sha2::{Digest, Sha256};

use crate::directory::Directory;
use crate::error::{blocking, ActorError};
use crate::stream::PrefixDeleted;
use crate::stream::StreamKey;
use crate::writer::settle;

/// How long an op_nonce retry gets the original secret back (LogDog's window).
pub const NONCE_RETRY_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Secret length in bytes (LogDog's).
pub const SECRET_BYTES: usize = 36;

/// RegisterPrefix.
#[derive(Message, Clone)]
#[rtype(result = "Result<PrefixGrant, ActorError>")]
pub struct RegisterPrefix {
    pub project: String,
    pub prefix: String,
    /// Already resolved against the config; positive.
    pub expiration: Duration,
    pub op_nonce: Option<Vec<u8>>,
    pub source_info: Vec<String>,
}

/// A registered prefix and its secret.
#[derive(Debug, Clone)]
pub struct PrefixGrant {
    pub project: String,
    pub prefix: String,
    pub secret: Vec<u8>,
    pub expires_us: i64,
    /// False for an op_nonce retry.
    pub created: bool,
}

/// DeletePrefix: expire it and remove its streams. Answers the removed streams' ids (their
/// archives are the caller's to delete).
#[derive(Message, Clone)]
#[rtype(result = "Result<Vec<String>, ActorError>")]
pub struct DeletePrefix {
    pub project: String,
    pub prefix: String,
}

pub struct Registry {
    directory: Directory,
}

impl Registry {
    pub fn new(directory: Directory) -> Self {
        Self { directory }
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Plain secrets are kept only while a retry may ask for them.
        ctx.run_interval(Duration::from_secs(60), |act, _| {
            let store = act.directory.deps().store.clone();
            let before = now_us() - NONCE_RETRY_WINDOW.as_micros() as i64;
            actix::spawn(async move {
                if let Err(e) =
                    blocking(move || store.write(|c| store::forget_retry_secrets(c, before))).await
                {
                    tracing::warn!(error = %e, "forgetting retry secrets failed");
                }
            });
        });
    }
}

fn register(
    store: &logdog_schema::Store,
    msg: RegisterPrefix,
) -> Result<Result<PrefixGrant, ActorError>, logdog_schema::StoreError> {
    store.write(|c| {
        let now = now_us();
        if let Some(row) = store::get_prefix(c, &msg.project, &msg.prefix)? {
            let retry = match (&msg.op_nonce, &row.op_nonce, &row.secret) {
                (Some(n), Some(stored), Some(secret))
                    if n == stored
                        && now - row.created_us < NONCE_RETRY_WINDOW.as_micros() as i64 =>
                {
                    Some(secret.clone())
                }
                _ => None,
            };
            return Ok(match retry {
                Some(secret) => Ok(PrefixGrant {
                    project: row.project,
                    prefix: row.prefix,
                    secret,
                    expires_us: row.expires_us,
                    created: false,
                }),
                None => Err(ActorError::AlreadyExists(format!(
                    "prefix {:?} is already registered",
                    msg.prefix
                ))),
            });
        }
        let secret: Vec<u8> = (0..SECRET_BYTES).map(|_| rand::random::<u8>()).collect();
        let expires_us = now + msg.expiration.as_micros() as i64;
        store::insert_prefix(
            c,
            &PrefixRow {
                project: msg.project.clone(),
                prefix: msg.prefix.clone(),
                secret_hash: Sha256::digest(&secret).to_vec(),
                secret: msg.op_nonce.as_ref().map(|_| secret.clone()),
                op_nonce: msg.op_nonce.clone(),
                source_info: serde_json::to_string(&msg.source_info).expect("strings serialise"),
                created_us: now,
                expires_us,
            },
        )?;
        Ok(Ok(PrefixGrant {
            project: msg.project,
            prefix: msg.prefix,
            secret,
            expires_us,
            created: true,
        }))
    })
}

impl Handler<RegisterPrefix> for Registry {
    type Result = AtomicResponse<Self, Result<PrefixGrant, ActorError>>;

    fn handle(&mut self, msg: RegisterPrefix, _: &mut Context<Self>) -> Self::Result {
        let store = self.directory.deps().store.clone();
        AtomicResponse::new(Box::pin(
            async move {
                blocking(move || register(&store, msg))
                    .await
                    .and_then(|r| r)
            }
            .into_actor(self),
        ))
    }
}

impl Handler<DeletePrefix> for Registry {
    type Result = AtomicResponse<Self, Result<Vec<String>, ActorError>>;

    /// Stops the prefix's live stream actors, then deletes through the writer, so every
    /// append queued before the deletion is written (and then removed) first.
    fn handle(&mut self, msg: DeletePrefix, _: &mut Context<Self>) -> Self::Result {
        let directory = self.directory.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let store = directory.deps().store.clone();
                let (project, prefix) = (msg.project.clone(), msg.prefix.clone());
                let found = blocking(move || {
                    store.read(|c| {
                        let Some(_) = store::get_prefix(c, &project, &prefix)? else {
                            return Ok(None);
                        };
                        Ok(Some(store::stream_ids_under(c, &project, &prefix)?))
                    })
                })
                .await?;
                let not_found =
                    || ActorError::NotFound(format!("prefix {:?} not found", msg.prefix));
                let Some(ids) = found else {
                    return Err(not_found());
                };
                for id in ids {
                    let key = StreamKey {
                        project: msg.project.clone(),
                        id,
                    };
                    if let Some(addr) = directory.live(&key) {
                        let _ = addr.send(PrefixDeleted).await;
                    }
                }
                let (project, prefix) = (msg.project.clone(), msg.prefix.clone());
                // The ids the deletion removed (its archives are the caller's to delete).
                let deleted = std::sync::Arc::new(std::sync::Mutex::new(None));
                let done = directory.deps().writer.run({
                    let deleted = deleted.clone();
                    move |c| {
                        let ids = store::delete_prefix(c, &project, &prefix, now_us())?;
                        *deleted.lock().unwrap_or_else(|e| e.into_inner()) = ids;
                        Ok(())
                    }
                });
                settle(done.await)?;
                let ids = deleted.lock().unwrap_or_else(|e| e.into_inner()).take();
                ids.ok_or_else(not_found)
            }
            .into_actor(self),
        ))
    }
}
