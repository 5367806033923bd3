//! Authentication and access control (API.md "Authentication and roles").
//!
//! Callers present `Authorization: Bearer <token>`; the config holds only the tokens'
//! SHA-256. Without any configured token the server is in local mode: every caller has
//! every role. Access to a project is decided here in one place, so an unknown project
//! answers exactly like a forbidden one.

use std::collections::HashMap;

use actix_web::http::{header, Method};
use actix_web::HttpRequest;
use sha2::{Digest, Sha256};

use crate::config::{Config, TokenConfig};
use crate::errors::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Reader,
    Writer,
    Service,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "reader" => Role::Reader,
            "writer" => Role::Writer,
            "service" => Role::Service,
            "admin" => Role::Admin,
            _ => return None,
        })
    }
}

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

/// A token the config declares (or the embedded archivist's).
#[derive(Debug, Clone)]
struct Grant {
    role: Role,
    projects: Option<Vec<String>>,
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

impl Auth {
    pub fn new(tokens: &[TokenConfig]) -> Self {
        let grants = tokens
            .iter()
            .filter_map(|t| {
                let role = Role::parse(&t.role)?;
                Some((
                    t.sha256.to_ascii_lowercase(),
                    Grant {
                        role,
                        projects: t.projects.clone(),
                    },
                ))
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
    fn grant(&self, req: &HttpRequest) -> Result<Option<&Grant>, ApiError> {
        let Some(value) = req.headers().get(header::AUTHORIZATION) else {
            let from_query = req.method() == actix_web::http::Method::GET
                && req.path().starts_with("/api/v1/projects/")
                && req.path().contains("/watch/");
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
            .map(Some)
            .ok_or_else(|| ApiError::unauthenticated("unknown token"))
    }

    /// May the caller do `access` on `project`? Unknown projects answer like forbidden ones.
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
        let in_project = grant
            .projects
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| p == project));
        let admin = grant.role == Role::Admin && in_project;
        let allowed = match access {
            Access::Read => public || grant.role >= Role::Service || in_project,
            Access::Write => in_project && grant.role >= Role::Writer,
            Access::Admin => admin,
        };
        if !allowed {
            return Err(if in_project || public {
                ApiError::permission_denied(format!(
                    "this call needs a role the token does not have on {project:?}"
                ))
            } else {
                forbidden()
            });
        }
        Ok(Caller { admin })
    }

    /// Routes outside any project (archive tasks, the config) need `service` or `admin`.
    pub fn check_service(&self, req: &HttpRequest) -> Result<(), ApiError> {
        if self.local_mode() {
            return Ok(());
        }
        match self.grant(req)? {
            Some(g) if g.role >= Role::Service => Ok(()),
            Some(_) => Err(ApiError::permission_denied(
                "this call needs the service role",
            )),
            None => Err(ApiError::unauthenticated("this call needs a token")),
        }
    }
}
