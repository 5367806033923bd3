//! The machine's rules, each tested without actors or storage.

use super::*;
use logdog_schema::wire::{Content, Line};

fn text(i: u64, seq: Option<u64>) -> IncomingEntry {
    IncomingEntry {
        stream_index: i,
        prefix_index: None,
        sequence: seq,
        time_offset_us: Some(0),
        content: Content::Text(vec![Line {
            value: format!("line {i}"),
            delimiter: logdog_schema::wire::Delimiter::Lf,
        }]),
    }
}

fn machine() -> StreamMachine {
    StreamMachine::new(StreamType::Text, 0)
}

#[test]
fn range_set_merges_touching_spans() {
    let mut r = RangeSet::default();
    r.insert(Span {
        start: 5,
        end: 7,
        end_sequence: 7,
    });
    r.insert(Span {
        start: 0,
        end: 2,
        end_sequence: 2,
    });
    assert_eq!(r.contiguous_end(), 2);
    r.insert(Span {
        start: 2,
        end: 5,
        end_sequence: 5,
    });
    assert_eq!(r.contiguous_end(), 7);
    assert_eq!(r.spans().count(), 1);
    assert_eq!(r.ending_at(7).unwrap().end_sequence, 7);
    assert!(r.contains(6) && !r.contains(7));
}

#[test]
fn append_commit_and_duplicates() {
    let mut m = machine();
    let p = m
        .plan_append(vec![text(0, None), text(1, None)], 10)
        .unwrap();
    assert_eq!(
        (p.accepted, p.duplicates, p.end_before, p.end_after),
        (2, 0, 0, 2)
    );
    assert_eq!(p.runs.len(), 1);
    assert_eq!(p.runs[0][1].sequence, 1);
    assert_eq!(m.next_index(), 0, "nothing is stored before the commit");
    // A retry while the first commit is in flight waits for it.
    let again = m.plan_append(vec![text(1, None)], 10).unwrap();
    assert_eq!(
        (again.accepted, again.duplicates, again.batch),
        (0, 1, None)
    );
    assert_eq!(again.waits_for, vec![p.batch.unwrap()]);
    m.commit_result(p.batch.unwrap(), true);
    assert_eq!(m.next_index(), 2);
    let after = m.plan_append(vec![text(1, None)], 10).unwrap();
    assert!(after.waits_for.is_empty());
    assert_eq!(after.duplicates, 1);
}

#[test]
fn out_of_order_entries_need_a_sequence_and_wait_for_contiguity() {
    let mut m = machine();
    assert!(matches!(
        m.plan_append(vec![text(5, None)], 0),
        Err(LifecycleError::Invalid(_))
    ));
    let p = m
        .plan_append(vec![text(5, Some(5)), text(6, None), text(8, Some(8))], 0)
        .unwrap();
    assert_eq!(p.runs.len(), 2, "5..=6 and 8 are two chunks");
    assert_eq!(p.runs[0][1].sequence, 6);
    m.commit_result(p.batch.unwrap(), true);
    assert_eq!(m.next_index(), 0);
    let q = m
        .plan_append((0..5).map(|i| text(i, None)).collect::<Vec<_>>(), 0)
        .unwrap();
    assert_eq!(q.end_after, 7);
    m.commit_result(q.batch.unwrap(), true);
    assert_eq!(m.next_index(), 7);
    assert_eq!(m.highest_index(), 8);
}

#[test]
fn failed_commit_leaves_entries_missing() {
    let mut m = machine();
    let a = m.plan_append(vec![text(0, None)], 0).unwrap();
    let b = m.plan_append(vec![text(1, None)], 0).unwrap();
    assert_eq!((b.end_before, b.end_after), (1, 2));
    m.commit_result(a.batch.unwrap(), false);
    m.commit_result(b.batch.unwrap(), true);
    assert_eq!(m.next_index(), 0);
    // The retry of 0 is accepted again and closes the gap.
    let r = m.plan_append(vec![text(0, None)], 0).unwrap();
    assert_eq!((r.accepted, r.end_after), (1, 2));
}

#[test]
fn wrong_kind_and_beyond_terminal_are_refused_whole() {
    let mut m = machine();
    let bin = IncomingEntry {
        content: Content::Binary(vec![1]),
        ..text(0, None)
    };
    assert!(matches!(
        m.plan_append(vec![text(0, None), bin], 0),
        Err(LifecycleError::Invalid(_))
    ));
    assert!(m.inflight.is_empty());
    m.terminate(Some(3), 1).unwrap();
    assert!(matches!(
        m.plan_append(vec![text(0, None), text(4, Some(4))], 0),
        Err(LifecycleError::Conflict(_))
    ));
    assert!(
        m.inflight.is_empty(),
        "nothing of a refused request is kept"
    );
}

#[test]
fn terminate_rules() {
    let mut m = machine();
    let p = m
        .plan_append(vec![text(0, None), text(1, None), text(2, None)], 0)
        .unwrap();
    m.commit_result(p.batch.unwrap(), true);
    assert!(matches!(
        m.terminate(Some(-1), 1),
        Err(LifecycleError::Invalid(_))
    ));
    assert!(matches!(
        m.terminate(Some(1), 1),
        Err(LifecycleError::Conflict(_))
    ));
    assert_eq!(m.terminate(Some(2), 1), Ok(true));
    assert!(m.is_complete());
    assert_eq!(m.terminate(Some(2), 5), Ok(false), "idempotent");
    assert_eq!(m.terminate(None, 5), Ok(false));
    assert!(matches!(
        m.terminate(Some(3), 1),
        Err(LifecycleError::Conflict(_))
    ));
    assert_eq!(m.terminated_us, Some(1));
}

#[test]
fn terminate_without_index_uses_highest_stored() {
    let mut empty = machine();
    assert_eq!(empty.terminate(None, 1), Ok(true));
    assert_eq!(empty.terminal_index, Some(-1));
    assert!(empty.is_complete());
    let mut gap = machine();
    let p = gap.plan_append(vec![text(4, Some(4))], 0).unwrap();
    gap.commit_result(p.batch.unwrap(), true);
    gap.terminate(None, 1).unwrap();
    assert_eq!(gap.terminal_index, Some(4));
    assert!(!gap.is_complete());
}

#[test]
fn sealed_and_archived_streams_refuse_appends() {
    let mut m = machine();
    m.sealed = true;
    assert!(matches!(
        m.plan_append(vec![text(0, None)], 0),
        Err(LifecycleError::Conflict(_))
    ));
    m.archival = Archival::Complete;
    assert!(matches!(
        m.plan_append(vec![text(0, None)], 0),
        Err(LifecycleError::Conflict(_))
    ));
}

#[test]
fn time_offset_defaults_to_arrival() {
    let mut m = StreamMachine::new(StreamType::Text, 1_000_000);
    let e = IncomingEntry {
        time_offset_us: None,
        ..text(0, None)
    };
    let p = m.plan_append(vec![e], 3_500_000).unwrap();
    assert_eq!(p.runs[0][0].time_offset_us, 2_500_000);
}

fn stored(m: &mut StreamMachine, n: u64) {
    let entries: Vec<_> = (0..n).map(|i| text(i, None)).collect();
    let p = m.plan_append(entries, 0).unwrap();
    m.commit_result(p.batch.unwrap(), true);
}

#[test]
fn seal_terminates_once_and_repeats_harmlessly() {
    let mut m = machine();
    stored(&mut m, 3);
    assert_eq!(m.seal(7), Ok(true));
    assert_eq!((m.terminal_index(), m.terminated_us()), (Some(2), Some(7)));
    assert!(m.is_sealed() && m.archival() == Archival::Tasked);
    assert_eq!(m.seal(9), Ok(false), "a repeated lease changes nothing");
    assert_eq!(m.terminated_us(), Some(7));
    assert!(matches!(
        m.plan_append(vec![text(3, None)], 0),
        Err(LifecycleError::Conflict(_))
    ));
    // A stream terminated earlier keeps its terminal index.
    let mut t = machine();
    stored(&mut t, 2);
    t.terminate(Some(5), 1).unwrap();
    assert_eq!(t.seal(2), Ok(true));
    assert_eq!(t.terminal_index(), Some(5));
}

#[test]
fn archives_must_end_at_the_terminal_index_of_a_sealed_stream() {
    let mut m = machine();
    stored(&mut m, 3);
    assert!(
        matches!(
            m.mark_archived(2, true, 3),
            Err(LifecycleError::Conflict(_))
        ),
        "not sealed"
    );
    m.seal(1).unwrap();
    assert!(
        matches!(
            m.mark_archived(5, true, 3),
            Err(LifecycleError::Conflict(_))
        ),
        "another end"
    );
    assert!(
        matches!(
            m.mark_archived(2, true, 2),
            Err(LifecycleError::Conflict(_))
        ),
        "fewer entries than are stored"
    );
    assert_eq!(m.mark_archived(2, false, 3), Ok(true));
    assert_eq!(m.archival(), Archival::Partial);
    assert_eq!(m.mark_archived(2, true, 3), Ok(false), "already archived");
    assert_eq!(m.archival(), Archival::Partial);
    assert!(matches!(m.seal(3), Err(LifecycleError::Conflict(_))));
}

#[test]
fn failure_and_purge_are_recorded() {
    let mut m = machine();
    m.mark_failed();
    assert_eq!(m.archival(), Archival::Failed);
    assert!(!m.is_purged());
    m.purge();
    assert!(m.is_purged());
}

fn row(next_index: i64, archival: Archival, next_sequence: Option<i64>) -> StreamRow {
    StreamRow {
        project: "p".into(),
        id: "x".into(),
        path: "a/+/b".into(),
        prefix: "a".into(),
        name: "b".into(),
        stream_type: StreamType::Text,
        content_type: "text/plain".into(),
        descriptor: "{}".into(),
        created_us: 0,
        updated_us: 0,
        next_index,
        terminal_index: next_index - 1,
        terminated_us: Some(5),
        sealed: true,
        archival,
        archive: None,
        archive_error: None,
        purged: false,
        next_sequence,
    }
}

#[test]
fn restore_reads_the_row_and_the_chunks_after_next_index() {
    let spans = [ChunkSpan {
        first_index: 9,
        count: 3,
        bytes: 30,
        end_sequence: 40,
    }];
    let m = StreamMachine::restore(
        StreamType::Text,
        0,
        &row(10, Archival::Tasked, Some(36)),
        &spans,
    );
    assert_eq!((m.next_index(), m.next_sequence()), (12, 40));
    assert_eq!(m.terminal_index(), Some(9));
    assert!(m.is_sealed() && m.archival() == Archival::Tasked);
    // Archived: no chunks, the row's sequence.
    let a = StreamMachine::restore(
        StreamType::Text,
        0,
        &row(10, Archival::Complete, Some(36)),
        &[],
    );
    assert_eq!((a.next_index(), a.next_sequence()), (10, 36));
    assert!(a.is_archived());
}

/// A request's entries in any order, with an index twice and explicit sequences: taken in
/// index order, the first of two with one index wins, a missing sequence follows its
/// predecessor's (in this request or stored), and gaps split the runs.
#[test]
fn a_request_is_taken_in_index_order() {
    let mut m = StreamMachine::new(StreamType::Text, 0);
    stored(&mut m, 2);
    let p = m
        .plan_append(
            vec![
                text(4, Some(10)),
                text(2, None),
                text(3, None),
                text(3, Some(99)),
                text(1, None),
                text(5, None),
                text(8, Some(40)),
                text(9, None),
            ],
            0,
        )
        .unwrap();
    assert_eq!(p.duplicates, 2);
    let runs: Vec<Vec<(u64, u64)>> = p
        .runs
        .iter()
        .map(|r| r.iter().map(|e| (e.stream_index, e.sequence)).collect())
        .collect();
    assert_eq!(
        runs,
        vec![
            vec![(2, 2), (3, 3), (4, 10), (5, 11)],
            vec![(8, 40), (9, 41)]
        ]
    );
    assert_eq!((p.end_before, p.end_after, p.sequence_after), (2, 6, 12));
    m.commit_result(p.batch.unwrap(), true);
    assert_eq!(m.next_index(), 6);
    assert_eq!(m.highest_index(), 9);
}
