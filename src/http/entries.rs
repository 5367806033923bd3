//! Where a stream's entries are read from: intermediate storage, or its archive once it is
//! archived. Get, Tail, the followed text form and the websocket sessions all read here.

use logdog_schema::names::StreamPath;
use logdog_schema::store::{self, ReadRange};
use logdog_schema::wire::{ArchiveInfo, Entry, StreamJson};
use logdog_schema::Store;

use super::{blocking, State};
use crate::errors::ApiError;

/// Reads a stream's entries from wherever they are: intermediate storage, or the archive
/// once the stream is archived (a read that finds the chunks gone checks for that).
#[derive(Clone)]
pub struct EntrySource {
    pub store: Store,
    pub directory: logdog_actors::Directory,
    pub project: String,
    pub path: StreamPath,
    pub id: String,
    pub archive: Option<ArchiveInfo>,
    pub archive_store: crate::archive::Archives,
}

impl EntrySource {
    pub fn new(state: &State, project: &str, path: &StreamPath, stream: &StreamJson) -> Self {
        Self {
            store: state.store.clone(),
            directory: state.directory.clone(),
            project: project.to_owned(),
            path: path.clone(),
            id: stream.id.clone(),
            archive: stream.state.archive.clone(),
            archive_store: state.archive.clone(),
        }
    }

    /// The entries `read` would answer, as Get's binary records in pieces to send one
    /// after another, with the next index to ask for. From intermediate storage the records
    /// are the chunks' own bytes, not decoded (and chunks taken whole not even copied).
    pub async fn read_records(
        &mut self,
        range: ReadRange,
    ) -> Result<(Vec<bytes::Bytes>, u64), ApiError> {
        if self.archive.is_none() {
            let (s, project, id) = (self.store.clone(), self.project.clone(), self.id.clone());
            let (records, last) =
                blocking(move || s.read(|c| store::read_records(c, &project, &id, range))).await?;
            if let Some(last) = last {
                return Ok((records, last + 1));
            }
            if range.from >= range.end {
                return Ok((records, range.from));
            }
            // Nothing where something was expected: the stream may have just been archived.
            self.find_archive().await?;
        }
        match &self.archive {
            Some(a) => {
                let (records, last) = self
                    .archive_store
                    .for_url(&self.project, &a.stream_url)
                    .read_records(&a.stream_url, &a.index_url, range)
                    .await?;
                Ok((records, last.map_or(range.from, |l| l + 1)))
            }
            None => Ok((Vec::new(), range.from)),
        }
    }

    pub async fn read(&mut self, range: ReadRange) -> Result<Vec<Entry>, ApiError> {
        loop {
            if let Some(a) = &self.archive {
                let (entries, index) = (a.stream_url.clone(), a.index_url.clone());
                return Ok(self
                    .archive_store
                    .for_url(&self.project, &entries)
                    .read_entries(&entries, &index, range)
                    .await?);
            }
            let (s, project, id) = (self.store.clone(), self.project.clone(), self.id.clone());
            let entries =
                blocking(move || s.read(|c| store::read_entries(c, &project, &id, range))).await?;
            if !entries.is_empty() || range.from >= range.end {
                return Ok(entries);
            }
            // Nothing where something was expected: the stream may have just been archived.
            if !self.find_archive().await? {
                return Ok(entries);
            }
        }
    }

    /// Looks for the stream's archive (the chunks go in the transaction that records it,
    /// on any node); true when there is one, now in `archive`.
    async fn find_archive(&mut self) -> Result<bool, ApiError> {
        let (s, project, id) = (self.store.clone(), self.project.clone(), self.id.clone());
        let row = blocking(move || s.read(|c| store::get_stream(c, &project, &id))).await?;
        if let Some(a) = row.and_then(|r| r.archive) {
            self.archive =
                Some(serde_json::from_str(&a).map_err(|e| {
                    ApiError::internal(format!("stored archive info is invalid: {e}"))
                })?);
        }
        Ok(self.archive.is_some())
    }
}
