//! Keeping the stream's section outline (`stream_sections`) close behind its contiguous
//! end: at most once per `OUTLINE_EVERY`, after commits, the outline is fed the new
//! entries from storage on a blocking thread (never in the append path) and saved through
//! the writer. Readers of the outline catch up the rest themselves, so this only bounds
//! what they read.

use super::*;
use logdog_schema::wire::StreamType;

/// How often a stream that is being written updates its stored outline.
pub(super) const OUTLINE_EVERY: Duration = Duration::from_secs(1);

/// The outline's bookkeeping in the actor.
#[derive(Debug, Default)]
pub(super) struct OutlineUpkeep {
    /// Entries were committed since the last update.
    pub(super) dirty: bool,
    /// An update is running.
    pub(super) busy: bool,
}

impl StreamActor {
    /// Updates the stored outline if entries were committed since the last update.
    pub(super) fn refresh_outline(&mut self, ctx: &mut Context<Self>) {
        if !self.outline.dirty || self.outline.busy || self.elsewhere.is_some() || self.retired {
            return;
        }
        let Some(s) = &self.stream else { return };
        self.outline.dirty = false;
        if s.descriptor.stream_type != StreamType::Text {
            return;
        }
        let end = s.machine.next_index();
        let complete = s.machine.terminal_index() == Some(end as i64 - 1);
        let timestamp = s.descriptor.timestamp;
        let (store, writer) = (self.store(), self.deps.writer.clone());
        let (project, id) = (self.key.project.clone(), self.key.id.clone());
        self.outline.busy = true;
        let update = async move {
            let (p, i) = (project.clone(), id.clone());
            let fed = blocking(move || {
                store.read(|c| {
                    let mut o = store::get_outline(c, &p, &i)?.unwrap_or_default();
                    let advanced =
                        store::catch_up_outline(c, &p, &i, &mut o, end, timestamp, true)?;
                    if complete && o.fed_to == end && !o.finished {
                        o.finish();
                        return Ok(Some(o));
                    }
                    Ok(advanced.then_some(o))
                })
            })
            .await?;
            if let Some(o) = fed {
                let save = writer
                    .run(move |c| store::save_outline(c, &project, &id, &o, now_us()).map(|_| ()));
                settle(save.await)?;
            }
            Ok::<(), ActorError>(())
        };
        ctx.spawn(update.into_actor(self).map(|r, act, _| {
            act.outline.busy = false;
            if let Err(e) = r {
                tracing::debug!(error = %e, stream = %act.path, "updating the section outline failed; readers catch it up");
            }
        }));
    }
}
