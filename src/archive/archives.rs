//! `Archives`: a coordinator's archive stores — the global `archive` and each project's own
//! (`[[projects]] archive`). New archives go to their project's store; an archive is read
//! from the store its URL is in, so archives written before a project moved stay readable
//! while their store stays configured; deleting a stream's archives asks every store.

use std::collections::HashMap;
use std::sync::Arc;

use super::{ArchiveError, ArchiveStore};
use crate::config::Config;

#[derive(Clone, Debug)]
pub struct Archives {
    default: ArchiveStore,
    projects: Arc<HashMap<String, ArchiveStore>>,
    /// Each distinct store once.
    all: Arc<Vec<ArchiveStore>>,
}

impl Archives {
    /// One store for every project.
    pub fn single(store: ArchiveStore) -> Self {
        Self {
            all: Arc::new(vec![store.clone()]),
            default: store,
            projects: Arc::default(),
        }
    }

    /// The stores the config names, each location opened once (with `[archive_options]`).
    pub fn open(config: &Config) -> Result<Self, ArchiveError> {
        let open = |location: &str| {
            ArchiveStore::open_with(
                location,
                &config.archive_options,
                config.archival.index_cache_bytes,
            )
        };
        let default = open(&config.archive)?;
        let mut by_location = HashMap::from([(config.archive.clone(), default.clone())]);
        let mut all = vec![default.clone()];
        let mut projects = HashMap::new();
        for p in &config.projects {
            let Some(location) = &p.archive else {
                continue;
            };
            let store = match by_location.get(location) {
                Some(s) => s.clone(),
                None => {
                    let s = open(location)?;
                    by_location.insert(location.clone(), s.clone());
                    all.push(s.clone());
                    s
                }
            };
            projects.insert(p.name.clone(), store);
        }
        Ok(Self {
            default,
            projects: Arc::new(projects),
            all: Arc::new(all),
        })
    }

    /// Where `project`'s new archives go.
    pub fn for_project(&self, project: &str) -> &ArchiveStore {
        self.projects.get(project).unwrap_or(&self.default)
    }

    /// The store an archive URL of `project` is in (its project's when none says so).
    pub fn for_url(&self, project: &str, url: &str) -> &ArchiveStore {
        self.all
            .iter()
            .find(|s| s.holds(url))
            .unwrap_or_else(|| self.for_project(project))
    }

    /// Bytes read from every store by reads of entries and indexes.
    pub fn read_bytes(&self) -> u64 {
        self.all.iter().map(ArchiveStore::read_bytes).sum()
    }

    /// Removes a stream's archives from every store.
    pub async fn delete(&self, project: &str, id: &str) -> Result<(), ArchiveError> {
        for s in self.all.iter() {
            s.delete(project, id).await?;
        }
        Ok(())
    }
}
