//! The message handlers: each checks what it must and hands the work to the actor's
//! transitions.

use super::*;
use logdog_schema::wire::StreamType;

impl Handler<Register> for StreamActor {
    type Result = AtomicResponse<Self, Result<(StreamJson, bool), ActorError>>;

    /// Creates the stream, or confirms an identical registration.
    fn handle(&mut self, msg: Register, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.gate(ctx) {
            return AtomicResponse::new(reply(Err(e)));
        }
        let (store, project, prefix) = (
            self.store(),
            self.key.project.clone(),
            self.path.prefix.clone(),
        );
        let fresh = async move {
            blocking(move || store.read(|c| store::get_prefix(c, &project, &prefix))).await
        };
        AtomicResponse::new(Box::pin(fresh.into_actor(self).then(move |row, act, _| {
            let row = match row {
                Ok(r) => r,
                Err(e) => return reply(Err(e)),
            };
            let Some(row) = row else {
                return reply(Err(ActorError::FailedPrecondition(format!(
                    "prefix {:?} is not registered",
                    act.path.prefix
                ))));
            };
            act.prefix = Some(PrefixInfo::from(row));
            let prefix = act.prefix.as_ref().expect("just set");
            let is_new = act.stream.is_none();
            if is_new && prefix.expires_us <= now_us() {
                return reply(Err(ActorError::FailedPrecondition(format!(
                    "prefix {:?} has expired",
                    act.path.prefix
                ))));
            }
            if let Err(e) = act.check_write(msg.secret.as_deref()) {
                return reply(Err(e));
            }
            let descriptor = match msg.descriptor {
                Ok(d) => d,
                Err(m) => return reply(Err(ActorError::Invalid(m))),
            };
            if let Some(t) = msg.terminal_index {
                if t < -1 {
                    return reply(Err(ActorError::Invalid(format!(
                        "terminal_index must be -1 or more, got {t}"
                    ))));
                }
            }
            match &act.stream {
                None => act.create(descriptor, msg.terminal_index),
                Some(s) => {
                    let d = &s.descriptor;
                    if d.stream_type != descriptor.stream_type
                        || d.content_type != descriptor.content_type
                    {
                        return reply(Err(ActorError::AlreadyExists(format!(
                            "stream {:?} exists with stream_type {} and content_type {:?}",
                            act.path.to_string(),
                            d.stream_type.as_str(),
                            d.content_type
                        ))));
                    }
                    match msg.terminal_index {
                        Some(t) if t >= 0 => {
                            Box::pin(act.terminate(Some(t)).map(|r, _, _| r.map(|j| (j, false))))
                        }
                        _ => reply(Ok((s.json(&act.key, &act.path), false))),
                    }
                }
            }
        })))
    }
}

impl Handler<Load> for StreamActor {
    type Result = Result<StreamJson, ActorError>;

    fn handle(&mut self, msg: Load, ctx: &mut Context<Self>) -> Self::Result {
        self.gate(ctx)?;
        self.visible(msg.see_purged)
    }
}

impl Handler<Follow> for StreamActor {
    type Result = Result<(StreamJson, tokio::sync::watch::Receiver<Progress>), ActorError>;

    fn handle(&mut self, msg: Follow, _: &mut Context<Self>) -> Self::Result {
        self.gate_read()?;
        let json = self.visible(msg.see_purged)?;
        let published = self.published;
        let tx = self
            .progress
            .get_or_insert_with(|| tokio::sync::watch::channel(published).0);
        Ok((json, tx.subscribe()))
    }
}

impl Handler<Subscribe> for StreamActor {
    type Result = Result<(bytestring::ByteString, Progress), ActorError>;

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) -> Self::Result {
        self.gate_read()?;
        let json = self.visible(msg.see_purged)?;
        self.subscribers.retain(|(id, _)| *id != msg.id);
        self.subscribers.push((msg.id, msg.recipient));
        let frame = logdog_schema::wire::state_frame(Some(&json));
        Ok((frame.into(), self.published))
    }
}

impl Handler<Unsubscribe> for StreamActor {
    type Result = Result<(), ActorError>;

    fn handle(&mut self, msg: Unsubscribe, _: &mut Context<Self>) -> Self::Result {
        if let Some(at) = self.subscribers.iter().position(|(id, _)| *id == msg.id) {
            self.subscribers.swap_remove(at);
        }
        Ok(())
    }
}

/// A write sent again after its first actor took the payload and then found the stream
/// owned elsewhere (its commit fenced off, nothing stored): the client sends it again.
fn taken() -> ActorError {
    ActorError::Unavailable(
        "the stream changed owner while this write was committed; nothing was stored, send it again".into(),
    )
}

impl Handler<Append> for StreamActor {
    type Result = ResponseActFuture<Self, Result<AppendOk, ActorError>>;

    fn handle(&mut self, msg: Append, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.gate(ctx) {
            return reply(Err(e));
        }
        if self.stream.is_none() {
            return self.missing_stream(msg.secret);
        }
        if let Err(e) = self.check_write(msg.secret.as_deref()) {
            return reply(Err(e));
        }
        match msg.entries.take() {
            None => reply(Err(taken())),
            Some(Err(m)) => reply(Err(ActorError::Invalid(m))),
            Some(Ok(entries)) => self.append(entries),
        }
    }
}

impl Handler<AppendText> for StreamActor {
    type Result = ResponseActFuture<Self, Result<AppendOk, ActorError>>;

    /// Numbers the lines from one past the highest stored (or in-flight) index.
    fn handle(&mut self, msg: AppendText, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.gate(ctx) {
            return reply(Err(e));
        }
        let Some(s) = &self.stream else {
            return self.missing_stream(msg.secret);
        };
        if let Err(e) = self.check_write(msg.secret.as_deref()) {
            return reply(Err(e));
        }
        let lines = match msg.lines.take() {
            Some(Ok(lines)) => lines,
            Some(Err(m)) => return reply(Err(ActorError::Invalid(m))),
            None => return reply(Err(taken())),
        };
        let first = (s.machine.highest_index() + 1) as u64;
        let last = first + (lines.len() as u64).saturating_sub(1);
        if last > logdog_schema::wire::MAX_STREAM_INDEX {
            return reply(Err(ActorError::Invalid(format!(
                "these lines would be numbered up to {last}, above 2^53 - 1"
            ))));
        }
        let entries: Vec<IncomingEntry> = lines
            .into_iter()
            .enumerate()
            .map(|(i, line)| IncomingEntry {
                stream_index: first + i as u64,
                prefix_index: None,
                sequence: None,
                time_offset_us: None,
                content: logdog_schema::wire::Content::Text(vec![line]),
            })
            .collect();
        if entries.is_empty() {
            let next_index = s.machine.next_index();
            return reply(Ok(AppendOk {
                next_index,
                accepted: 0,
                duplicates: 0,
            }));
        }
        self.append(entries)
    }
}

impl Handler<Terminate> for StreamActor {
    type Result = AtomicResponse<Self, Result<StreamJson, ActorError>>;

    fn handle(&mut self, msg: Terminate, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.gate(ctx) {
            return AtomicResponse::new(reply(Err(e)));
        }
        if self.stream.is_none() {
            return AtomicResponse::new(self.missing_stream(msg.secret));
        }
        if let Err(e) = self.check_write(msg.secret.as_deref()) {
            return AtomicResponse::new(reply(Err(e)));
        }
        match msg.terminal_index {
            Err(m) => AtomicResponse::new(reply(Err(ActorError::Invalid(m)))),
            Ok(t) => AtomicResponse::new(self.terminate(t)),
        }
    }
}

impl Handler<Purge> for StreamActor {
    type Result = AtomicResponse<Self, Result<(), ActorError>>;

    fn handle(&mut self, _: Purge, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.gate(ctx) {
            return AtomicResponse::new(reply(Err(e)));
        }
        if self.stream.is_none() {
            return AtomicResponse::new(reply(Err(ActorError::stream_not_found(&self.path))));
        }
        AtomicResponse::new(Box::pin(self.settle_inflight().then(|_, act, _| {
            let (store, project, id) = (act.store(), act.key.project.clone(), act.key.id.clone());
            let now = now_us();
            let f = act.fenced(move |c| store::purge_stream(c, &project, &id, now));
            let write = blocking(move || store.write(f));
            write.into_actor(act).map(move |r, act, _| {
                r?;
                if let Some(s) = &mut act.stream {
                    s.machine.purge();
                    s.updated_us = now;
                }
                act.publish();
                Ok(())
            })
        })))
    }
}

impl Handler<Seal> for StreamActor {
    type Result = AtomicResponse<Self, Result<StreamJson, ActorError>>;

    fn handle(&mut self, _: Seal, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.gate(ctx) {
            return AtomicResponse::new(reply(Err(e)));
        }
        AtomicResponse::new(Box::pin(self.settle_inflight().then(|_, act, _| {
            let mut next = match act.draft() {
                Ok(n) => n,
                Err(e) => return reply(Err(e)),
            };
            match next.machine.seal(next.updated_us) {
                Err(e) => reply(Err(e.into())),
                Ok(false) => reply(Ok(next.json(&act.key, &act.path))),
                Ok(true) => act.transition(next, |_| Ok(())),
            }
        })))
    }
}

impl Handler<MarkArchived> for StreamActor {
    type Result = AtomicResponse<Self, Result<StreamJson, ActorError>>;

    fn handle(&mut self, msg: MarkArchived, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.gate(ctx) {
            return AtomicResponse::new(reply(Err(e)));
        }
        let mut next = match self.draft() {
            Ok(n) => n,
            Err(e) => return AtomicResponse::new(reply(Err(e))),
        };
        match next.machine.mark_archived(
            msg.terminal_index,
            msg.archive.complete,
            msg.log_entry_count,
        ) {
            Err(e) => return AtomicResponse::new(reply(Err(e.into()))),
            Ok(false) => return AtomicResponse::new(reply(Ok(next.json(&self.key, &self.path)))),
            Ok(true) => {}
        }
        next.archive = Some(serde_json::to_string(&msg.archive).expect("archive info serialises"));
        next.archive_error = None;
        let (project, id, task) = (self.key.project.clone(), self.key.id.clone(), msg.task_id);
        let text = next.descriptor.stream_type == StreamType::Text;
        let timestamp = next.descriptor.timestamp;
        AtomicResponse::new(self.transition(next, move |c| {
            if text {
                store::finish_outline(c, &project, &id, timestamp, now_us())?;
            }
            store::delete_chunks(c, &project, &id)?;
            store::finish_task(c, &task, None)
        }))
    }
}

impl Handler<MarkFailed> for StreamActor {
    type Result = AtomicResponse<Self, Result<StreamJson, ActorError>>;

    fn handle(&mut self, msg: MarkFailed, ctx: &mut Context<Self>) -> Self::Result {
        if let Err(e) = self.gate(ctx) {
            return AtomicResponse::new(reply(Err(e)));
        }
        let mut next = match self.draft() {
            Ok(n) => n,
            Err(e) => return AtomicResponse::new(reply(Err(e))),
        };
        next.machine.mark_failed();
        next.archive_error = Some(msg.error.clone());
        let (task, error) = (msg.task_id, msg.error);
        AtomicResponse::new(
            self.transition(next, move |c| store::finish_task(c, &task, Some(&error))),
        )
    }
}

impl Handler<PrefixDeleted> for StreamActor {
    type Result = Result<(), ActorError>;

    fn handle(&mut self, _: PrefixDeleted, ctx: &mut Context<Self>) -> Self::Result {
        self.stream = None;
        self.prefix = None;
        self.publish();
        self.retire(ctx);
        Ok(())
    }
}

impl Handler<Depose> for StreamActor {
    type Result = ();

    fn handle(&mut self, _: Depose, ctx: &mut Context<Self>) {
        if !self.retired {
            self.deps.metrics.deposed.inc();
            tracing::info!(stream = %self.path, "dropping the stream's actor: another node owns it");
        }
        // Stopping releases the claim if it is still this epoch's.
        self.retire(ctx);
    }
}
