//! Authentication and access control (API.md "Authentication and roles").
//!
//! Callers present `Authorization: Bearer <token>`; the config holds only the tokens'
//! SHA-256. Without any configured token the server is in local mode: every caller has
//! every role. Access to a project is decided here in one place, so an unknown project
//! answers exactly like a forbidden one.

use std::collections::HashMap;

use actix_web::http::{header, Method};
use actix_web::{HttpMessage as _, HttpRequest};
use sha2::{Digest, Sha256};

pub use crate::config::Role;
use crate::config::{Config, TokenConfig};
use crate::errors::ApiError;

/// What a call does to a project, from its method: GET reads, DELETE is admin-only, the
/// rest write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    Admin,
}

impl Access {
    pub fn of(method: &Method) -> Self {
        match *method {
            Method::GET | Method::HEAD => Access::Read,
            Method::DELETE => Access::Admin,
            _ => Access::Write,
        }
    }
}

/// The caller as far as authorization goes.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// May see purged streams and call admin routes.
    pub admin: bool,
}

/// A token the config declares (or the embedded archivist's). In a cluster it is also
/// the caller's identity a node forwards to a stream's owner, already verified.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Grant {
    role: Role,
    projects: Option<Vec<String>>,
}

/// A request forwarded by another node of the cluster (its secret checked): the caller's
/// verified grant, `None` for an anonymous caller.
#[derive(Debug, Clone)]
pub struct ForwardedCaller(pub Option<Grant>);

impl Grant {
    fn scope(&self) -> Scope {
        match &self.projects {
            None => Scope::All,
            Some(ps) => Scope::Only(ps.clone()),
        }
    }
}

/// The projects a caller's token reaches: all, or only those its `projects` list names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    All,
    Only(Vec<String>),
}

impl Scope {
    pub fn allows(&self, project: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Only(ps) => ps.iter().any(|p| p == project),
        }
    }

    /// The project list, for filtering in storage (None: every project).
    pub fn projects(&self) -> Option<&[String]> {
        match self {
            Scope::All => None,
            Scope::Only(ps) => Some(ps),
        }
    }
}

/// Who may do what: the configured tokens, by SHA-256.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    grants: HashMap<String, Grant>,
}

/// A new random token (32 random bytes, hex).
pub fn new_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Lowercase hex SHA-256 of a token, as the config stores it.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `path` is the watch route, `/api/v1/projects/{project}/watch/…` (the one route
/// that takes `access_token`): the verb must be the segment right after the project.
fn is_watch(path: &str) -> bool {
    path.strip_prefix("/api/v1/projects/")
        .and_then(|rest| rest.split_once('/'))
        .is_some_and(|(project, rest)| !project.is_empty() && rest.starts_with("watch/"))
}

impl Auth {
    pub fn new(tokens: &[TokenConfig]) -> Self {
        let grants = tokens
            .iter()
            .map(|t| {
                (
                    t.sha256.to_ascii_lowercase(),
                    Grant {
                        role: t.role,
                        projects: t.projects.clone(),
                    },
                )
            })
            .collect();
        Self { grants }
    }

    /// Adds a token (the embedded archivist's in-memory `service` token).
    pub fn add(&mut self, token: &str, role: Role) {
        self.grants.insert(
            token_hash(token),
            Grant {
                role,
                projects: None,
            },
        );
    }

    pub fn local_mode(&self) -> bool {
        self.grants.is_empty()
    }

    /// The grant of the request's bearer token: Ok(None) for no token, 401 for an unknown
    /// or malformed one.
    /// Browsers cannot set headers on a websocket, so the watch route (and only it) also
    /// takes the token as the query parameter `access_token`.
    pub fn grant(&self, req: &HttpRequest) -> Result<Option<Grant>, ApiError> {
        if let Some(f) = req.extensions().get::<ForwardedCaller>() {
            return Ok(f.0.clone());
        }
        let Some(value) = req.headers().get(header::AUTHORIZATION) else {
            let from_query = req.method() == actix_web::http::Method::GET && is_watch(req.path());
            if !from_query {
                return Ok(None);
            }
            let Some(token) = form_urlencoded::parse(req.query_string().as_bytes())
                .find(|(k, _)| k == "access_token")
                .map(|(_, v)| v.into_owned())
            else {
                return Ok(None);
            };
            return self
                .grants
                .get(&token_hash(&token))
                .cloned()
                .map(Some)
                .ok_or_else(|| ApiError::unauthenticated("unknown token"));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthenticated("Authorization must be \"Bearer <token>\""))?;
        self.grants
            .get(&token_hash(token))
            .cloned()
            .map(Some)
            .ok_or_else(|| ApiError::unauthenticated("unknown token"))
    }

    /// 401 for a malformed or unknown token; anonymous callers and known tokens pass.
    pub fn authenticate(&self, req: &HttpRequest) -> Result<(), ApiError> {
        if self.local_mode() {
            return Ok(());
        }
        self.grant(req).map(|_| ())
    }

    /// May the caller do `access` on `project`? Unknown projects answer like forbidden ones.
    /// A token's `projects` list limits every role, `service` and `admin` included.
    pub fn check(
        &self,
        config: &Config,
        req: &HttpRequest,
        project: &str,
        access: Access,
    ) -> Result<Caller, ApiError> {
        let exists = config.project_exists(project);
        let public = config.project(project).is_some_and(|p| p.public);
        let forbidden = || {
            ApiError::permission_denied(format!(
                "project {project:?} is not visible to this caller"
            ))
        };
        if self.local_mode() {
            return if exists || config.projects.is_empty() {
                Ok(Caller { admin: true })
            } else {
                Err(forbidden())
            };
        }
        let Some(grant) = self.grant(req)? else {
            if access == Access::Read && exists && public {
                return Ok(Caller { admin: false });
            }
            return Err(ApiError::unauthenticated("this call needs a token"));
        };
        if !exists && !config.projects.is_empty() {
            return Err(forbidden());
        }
        let in_scope = grant.scope().allows(project);
        let admin = grant.role == Role::Admin && in_scope;
        let allowed = match access {
            Access::Read => public || in_scope,
            Access::Write => in_scope && grant.role >= Role::Writer,
            Access::Admin => admin,
        };
        if !allowed {
            return Err(if in_scope || public {
                ApiError::permission_denied(format!(
                    "this call needs a role the token does not have on {project:?}"
                ))
            } else {
                forbidden()
            });
        }
        Ok(Caller { admin })
    }

    /// Routes outside any project (archive tasks, the config) need `service` or `admin`;
    /// the answer is the projects the token is limited to.
    pub fn check_service(&self, req: &HttpRequest) -> Result<Scope, ApiError> {
        if self.local_mode() {
            return Ok(Scope::All);
        }
        match self.grant(req)? {
            Some(g) if g.role >= Role::Service => Ok(g.scope()),
            Some(_) => Err(ApiError::permission_denied(
                "this call needs the service role",
            )),
            None => Err(ApiError::unauthenticated("this call needs a token")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_watch_route_takes_access_token() {
        assert!(is_watch("/api/v1/projects/p/watch/a/+/b"));
        for other in [
            "/api/v1/projects/p/logs/watch/+/x",
            "/api/v1/projects/p/logs/a/+/watch/x",
            "/api/v1/projects/p/streams/watch/+/watch/x",
            "/api/v1/projects//watch/a/+/b",
            "/logs/p/watch/a/+/b",
        ] {
            assert!(!is_watch(other), "{other}");
        }
    }

    #[test]
    fn scopes() {
        assert!(Scope::All.allows("x"));
        let s = Scope::Only(vec!["priv".into()]);
        assert!(s.allows("priv") && !s.allows("other"));
        assert_eq!(s.projects(), Some(&["priv".to_owned()][..]));
    }
}
