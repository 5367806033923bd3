//! The actor's transitions: appends (planned, handed to the writer, settled), register,
//! terminate, and the lifecycle changes computed on a draft and persisted.

use super::*;
use logdog_schema::wire::TaskReason;

impl StreamActor {
    /// The error for a write to a stream this actor does not have: 412 when the prefix
    /// is missing, 403 for a wrong secret, else 404. Reads the prefix afresh, since it
    /// may have been registered since this actor loaded.
    pub(super) fn missing_stream<T: 'static>(&mut self, secret: Option<Vec<u8>>) -> Reply<T> {
        let (store, project, prefix) = (
            self.store(),
            self.key.project.clone(),
            self.path.prefix.clone(),
        );
        Box::pin(
            async move {
                blocking(move || store.read(|c| store::get_prefix(c, &project, &prefix))).await
            }
            .into_actor(self)
            .map(move |row, act, _| {
                let row = row?;
                let Some(row) = row else {
                    return Err(ActorError::FailedPrecondition(format!(
                        "prefix {:?} is not registered",
                        act.path.prefix
                    )));
                };
                let info = PrefixInfo::from(row);
                check_secret(&info, secret.as_deref(), &act.path.prefix)?;
                act.prefix = Some(info);
                Err(ActorError::stream_not_found(&act.path))
            }),
        )
    }

    /// Waits for every commit in flight and records their outcomes.
    pub(super) fn settle_inflight(&mut self) -> impl ActorFuture<Self, Output = ()> {
        let pending: Vec<(u64, CommitFuture)> =
            self.inflight.iter().map(|(b, f)| (*b, f.clone())).collect();
        async move {
            let mut out = Vec::new();
            for (b, f) in pending {
                out.push((b, f.await));
            }
            out
        }
        .into_actor(self)
        .map(|results, act, _| {
            for (b, r) in results {
                act.finish_batch(b, &r);
            }
        })
    }

    pub(super) fn finish_batch(&mut self, batch: u64, result: &WriteResult) {
        self.inflight.retain(|(b, _)| *b != batch);
        if self.inflight.is_empty() {
            // An emptied vector keeps its buffer; an idle stream's actor should not.
            self.inflight = Vec::new();
        }
        if let Some(s) = &mut self.stream {
            s.machine.commit_result(batch, result.is_ok());
        }
        self.publish();
    }

    /// After a batch committed: note its chunks and compact once enough small ones line up.
    pub(super) fn after_commit(&mut self, chunks: &[(u64, u64, u64)]) {
        let Some(s) = &mut self.stream else { return };
        s.updated_us = now_us();
        self.outline.dirty = true;
        let next = s.machine.next_index();
        let Some((start, end)) = self.compaction.observe(chunks, next) else {
            return;
        };
        let (project, id, fence) = (
            self.key.project.clone(),
            self.key.id.clone(),
            self.fence.clone(),
        );
        let done = self.deps.writer.run(move |c| {
            if let Some(f) = &fence {
                store::check_fence(c, &project, &id, f)?;
            }
            store::compact_chunks(c, &project, &id, start, end).map(|_| ())
        });
        actix::spawn(async move {
            if let Ok(Err(e)) = done.await {
                tracing::warn!(?e, "chunk compaction failed");
            }
        });
    }

    /// Terminates the stream (after the commits in flight), persisting the transition and
    /// the archive task it schedules in one transaction.
    pub(super) fn terminate(&mut self, requested: Option<i64>) -> Reply<StreamJson> {
        Box::pin(self.settle_inflight().then(move |_, act, _| {
            let Some(s) = &act.stream else {
                return reply(Err(ActorError::stream_not_found(&act.path)));
            };
            let mut next = s.clone();
            let now = now_us();
            match next.machine.terminate(requested, now) {
                Err(e) => return reply(Err(e.into())),
                Ok(false) => return reply(Ok(s.json(&act.key, &act.path))),
                Ok(true) => {}
            }
            next.updated_us = now;
            let (reason, delay) = if next.machine.is_complete() {
                (TaskReason::Terminated, act.deps.archival.complete_delay)
            } else {
                (TaskReason::Incomplete, act.deps.archival.incomplete_delay)
            };
            let due = now + delay.as_micros() as i64;
            let (store, project, id, change) = (
                act.store(),
                act.key.project.clone(),
                act.key.id.clone(),
                next.lifecycle(),
            );
            let f = act.fenced(move |c| {
                store::update_lifecycle(c, &project, &id, &change)?;
                store::schedule_task(c, &project, &id, reason, due, &task_id(), now)
            });
            let write = blocking(move || store.write(f));
            Box::pin(write.into_actor(act).map(move |r, act, _| {
                r?;
                act.deps.task_bell.ring(due);
                if let Some(s) = &mut act.stream {
                    s.updated_us = next.updated_us;
                    s.machine = next.machine;
                }
                // A complete stream's outline can now be finished.
                act.outline.dirty = true;
                act.publish();
                Ok(act
                    .stream
                    .as_ref()
                    .map(|s| s.json(&act.key, &act.path))
                    .expect("stream is loaded"))
            }))
        }))
    }

    /// Plans and submits an append; answers once it and every commit it repeats are durable.
    pub(super) fn append(&mut self, entries: Vec<IncomingEntry>) -> Reply<AppendOk> {
        let Some(s) = &mut self.stream else {
            return reply(Err(ActorError::stream_not_found(&self.path)));
        };
        let plan = match s.machine.plan_append(entries, now_us()) {
            Ok(p) => p,
            Err(e) => return reply(Err(e.into())),
        };
        let mut waits: Vec<(u64, CommitFuture)> = plan
            .waits_for
            .iter()
            .filter_map(|b| {
                let (_, f) = self.inflight.iter().find(|(i, _)| i == b)?;
                Some((*b, f.clone()))
            })
            .collect();
        let mut own = None;
        if let Some(batch) = plan.batch {
            let mut chunks = Vec::with_capacity(plan.runs.len());
            let mut meta = Vec::with_capacity(plan.runs.len());
            let mut bytes = 0;
            for run in &plan.runs {
                let run_bytes: u64 = run.iter().map(|e| e.content.payload_bytes()).sum();
                let last = run.last().expect("runs are not empty");
                chunks.push(ChunkRow {
                    project: self.key.project.clone(),
                    stream_id: self.key.id.clone(),
                    first_index: run[0].stream_index as i64,
                    count: run.len() as i64,
                    bytes: run_bytes as i64,
                    end_sequence: (last.sequence + last.content.sequence_units()) as i64,
                    data: chunk::encode(run),
                });
                meta.push((run[0].stream_index, run.len() as u64, run_bytes));
                bytes += run_bytes;
            }
            // A terminated stream that this batch completes is due for archival sooner.
            let schedule = match s.machine.terminal_index() {
                Some(t) if plan.end_after as i64 == t + 1 && plan.end_before < plan.end_after => {
                    Some(TaskSchedule {
                        reason: TaskReason::Terminated,
                        due_us: now_us() + self.deps.archival.complete_delay.as_micros() as i64,
                        new_task_id: task_id(),
                    })
                }
                _ => None,
            };
            let rings = schedule.as_ref().map(|s| s.due_us);
            let op = AppendOp {
                project: self.key.project.clone(),
                stream_id: self.key.id.clone(),
                chunks,
                advance: (plan.end_after > plan.end_before).then_some((
                    plan.end_before,
                    plan.end_after,
                    plan.sequence_after,
                )),
                schedule,
                fence: self.fence.clone(),
                entries: plan.accepted,
                bytes,
            };
            let rx = self.deps.writer.append(op);
            let fut: Pin<Box<dyn Future<Output = WriteResult> + Send>> = Box::pin(rx.map(settle));
            let shared = fut.shared();
            self.inflight.push((batch, shared.clone()));
            waits.push((batch, shared));
            own = Some((batch, meta, plan.runs, rings));
        }
        let (accepted, duplicates) = (plan.accepted, plan.duplicates);
        Box::pin(
            async move {
                let mut out = Vec::with_capacity(waits.len());
                for (b, f) in waits {
                    out.push((b, f.await));
                }
                out
            }
            .into_actor(self)
            .map(move |results, act, ctx| {
                let before = act.stream.as_ref().map_or(0, |s| s.machine.next_index());
                let mut failure = None;
                for (b, r) in &results {
                    act.finish_batch(*b, r);
                    if let Err(e) = r {
                        failure.get_or_insert(e.clone());
                    }
                }
                if let Some(e) = failure {
                    return Err(e.into());
                }
                if let Some((_, meta, runs, rings)) = own {
                    if let Some(due) = rings {
                        act.deps.task_bell.ring(due);
                    }
                    act.after_commit(&meta);
                    let after = act.stream.as_ref().map_or(0, |s| s.machine.next_index());
                    // The writer's acknowledgement first, then the viewers' frames: the reply
                    // goes out when this closure returns and the fan-out runs right after, in
                    // the same turn of the actor, so the writer's answer is queued on its
                    // worker ahead of the sessions woken by the frames (with 1,000 viewers
                    // it waited behind them: p50 9 ms instead of 1 ms).
                    let fanout = move |(), act: &mut StreamActor, _: &mut Context<StreamActor>| {
                        act.broadcast_entries(before, after, &runs);
                        act.follow_outline(before, after, runs);
                    };
                    ctx.spawn(actix::ActorFutureExt::map(actix::fut::ready(()), fanout));
                }
                let next_index = act.stream.as_ref().map_or(0, |s| s.machine.next_index());
                Ok(AppendOk {
                    next_index,
                    accepted,
                    duplicates,
                })
            }),
        )
    }

    pub(super) fn create(
        &mut self,
        descriptor: Descriptor,
        terminal_index: Option<i64>,
    ) -> Reply<(StreamJson, bool)> {
        let now = now_us();
        let descriptor_json = serde_json::to_string(&descriptor).expect("descriptor serialises");
        let mut row = StreamRow {
            project: self.key.project.clone(),
            id: self.key.id.clone(),
            path: self.path.to_string(),
            prefix: self.path.prefix.clone(),
            name: self.path.name.clone(),
            stream_type: descriptor.stream_type,
            content_type: descriptor.content_type.clone(),
            descriptor: descriptor_json,
            created_us: now,
            updated_us: now,
            next_index: 0,
            terminal_index: -1,
            terminated_us: None,
            sealed: false,
            archival: Archival::None,
            archive: None,
            archive_error: None,
            purged: false,
            next_sequence: Some(0),
        };
        let tags: Vec<TagRow> = descriptor
            .tags
            .iter()
            .map(|(k, v)| TagRow {
                project: self.key.project.clone(),
                stream_id: self.key.id.clone(),
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        let mut loaded = Loaded::new(descriptor, row.clone(), &[]);
        let timing = &self.deps.archival;
        let (reason, due) = match terminal_index {
            Some(t) if t >= 0 => {
                if let Err(e) = loaded.machine.terminate(Some(t), now) {
                    return reply(Err(e.into()));
                }
                (
                    TaskReason::Incomplete,
                    now + timing.incomplete_delay.as_micros() as i64,
                )
            }
            _ => (
                TaskReason::Expired,
                now + timing.pessimistic_delay.as_micros() as i64,
            ),
        };
        let lc = loaded.lifecycle();
        row.terminal_index = lc.terminal_index;
        row.terminated_us = lc.terminated_us;
        let task = TaskRow {
            task_id: task_id(),
            project: self.key.project.clone(),
            stream_id: self.key.id.clone(),
            reason,
            due_us: due,
            attempt: 0,
            lease_id: None,
            lease_expires_us: None,
            last_error: None,
            created_us: now,
        };
        let store = self.store();
        let f = self.fenced(move |c| store::insert_stream(c, &row, &tags, &task));
        let write = blocking(move || store.write(f));
        Box::pin(write.into_actor(self).map(move |r, act, _| {
            r?;
            let json = loaded.json(&act.key, &act.path);
            act.stream = Some(loaded);
            act.publish();
            Ok((json, true))
        }))
    }

    /// Persists a lifecycle change computed on a copy (plus `extra` in the same
    /// transaction), then adopts it and tells viewers.
    pub(super) fn transition(
        &mut self,
        next: Loaded,
        extra: impl FnOnce(&mut logdog_schema::AnyConnection) -> Result<(), logdog_schema::StoreError>
            + Send
            + 'static,
    ) -> Reply<StreamJson> {
        let (store, project, id, change) = (
            self.store(),
            self.key.project.clone(),
            self.key.id.clone(),
            next.lifecycle(),
        );
        let f = self.fenced(move |c| {
            store::update_lifecycle(c, &project, &id, &change)?;
            extra(c)
        });
        let write = blocking(move || store.write(f));
        Box::pin(write.into_actor(self).map(move |r, act, _| {
            r?;
            let json = next.json(&act.key, &act.path);
            act.stream = Some(next);
            act.publish();
            Ok(json)
        }))
    }

    /// A copy of the loaded stream to compute a transition on.
    pub(super) fn draft(&self) -> Result<Loaded, ActorError> {
        let s = self
            .stream
            .as_ref()
            .ok_or_else(|| ActorError::stream_not_found(&self.path))?;
        let mut next = s.clone();
        next.updated_us = now_us();
        Ok(next)
    }
}
