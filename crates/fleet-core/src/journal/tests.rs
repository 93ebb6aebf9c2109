use std::time::Duration;

use super::*;
use crate::store::ExpectedVersion;
use crate::store::memory::MemoryStore;
use tokio::sync::watch;

/// A new thread in `store` with a running workflow root.
async fn with_root(store: &SharedStore) -> (Journal, WorkUnitId) {
    let journal = Journal::create(store.clone(), None).await.unwrap();
    let root = start_root(&journal).await;
    (journal, root)
}

/// Starts a turn with a running workflow root in `journal`'s thread.
async fn start_root(journal: &Journal) -> WorkUnitId {
    let draft = WorkUnitDraft::new(crate::work_unit::WorkUnitKind::Workflow);
    journal.start_turn(None, draft).await.unwrap().1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commands_are_batched_and_a_refused_one_stops_no_other() {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let (journal, root) = with_root(&store).await;
    let missing = WorkUnitId::new();
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let journal = journal.clone();
            tokio::spawn(async move {
                let unit = if i == 13 { missing } else { root };
                journal
                    .activity(
                        unit,
                        ActivityKind::Phase {
                            title: format!("p{i}"),
                        },
                    )
                    .await
            })
        })
        .collect();
    let mut refused = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        if task.await.unwrap().is_err() {
            refused.push(i);
        }
    }
    assert_eq!(refused, [13]);
    // The store holds exactly what the journal's read model holds.
    let stored = store
        .snapshot_dyn(journal.thread_id())
        .await
        .unwrap()
        .unwrap();
    let in_memory = journal.read(Clone::clone).await;
    assert_eq!(stored.activities.len(), 63);
    assert_eq!(stored.activities, in_memory.activities);
    assert_eq!(stored.version, in_memory.version);
}

/// A memory store whose appends wait for a gate, to see what resolves before the disk.
struct Gated {
    inner: MemoryStore,
    open: watch::Receiver<bool>,
}

impl crate::store::EventStore for Gated {
    async fn append(
        &self,
        thread: ThreadId,
        expected: ExpectedVersion,
        events: Vec<Event>,
    ) -> Result<crate::store::Appended, StoreError> {
        let mut open = self.open.clone();
        let _ = open.wait_for(|o| *o).await;
        self.inner.append(thread, expected, events).await
    }
    async fn read_stream(
        &self,
        thread: ThreadId,
        after_version: u64,
        limit: usize,
    ) -> Result<Vec<crate::event::RecordedEvent>, StoreError> {
        self.inner.read_stream(thread, after_version, limit).await
    }
    async fn read_all(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::event::RecordedEvent>, StoreError> {
        self.inner.read_all(after, limit).await
    }
    fn head(&self) -> watch::Receiver<u64> {
        self.inner.head()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_resolves_when_durable_a_write_behind_one_at_once_and_flush_waits_for_both() {
    let (gate, open) = watch::channel(true);
    let store: SharedStore = Arc::new(Gated {
        inner: MemoryStore::new(),
        open,
    });
    let (journal, root) = with_root(&store).await;
    gate.send_replace(false);
    let fast = journal.write_behind();
    let phase = |title: &str| ActivityKind::Phase {
        title: title.into(),
    };
    // Resolves although nothing can reach the store, and is visible in the read model.
    tokio::time::timeout(Duration::from_secs(5), fast.activity(root, phase("queued")))
        .await
        .expect("a write-behind write does not wait for the store")
        .unwrap();
    assert_eq!(journal.read(|t| t.activities.len()).await, 1);
    // A durable write, and a flush, wait for the gate.
    let durable = tokio::spawn({
        let journal = journal.clone();
        async move { journal.activity(root, phase("durable")).await }
    });
    let flushed = tokio::spawn({
        let fast = fast.clone();
        async move { fast.flush().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!durable.is_finished() && !flushed.is_finished());
    let stored = |store: SharedStore, id| async move {
        store
            .snapshot_dyn(id)
            .await
            .unwrap()
            .unwrap()
            .activities
            .len()
    };
    assert_eq!(stored(store.clone(), journal.thread_id()).await, 0);
    gate.send_replace(true);
    durable.await.unwrap().unwrap();
    flushed.await.unwrap().unwrap();
    assert_eq!(stored(store.clone(), journal.thread_id()).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_begun_thread_is_durable_by_the_first_flush_with_what_followed_it() {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let journal = Journal::begin(store.clone(), Some("begun".into())).unwrap();
    let fast = journal.write_behind();
    let root = start_root(&fast).await;
    fast.activity(
        root,
        ActivityKind::Phase {
            title: "one".into(),
        },
    )
    .await
    .unwrap();
    journal.flush().await.unwrap();
    let stored = store
        .snapshot_dyn(journal.thread_id())
        .await
        .unwrap()
        .expect("the thread is in the store");
    let in_memory = journal.read(Clone::clone).await;
    assert_eq!(stored.version, 3);
    assert_eq!(stored, in_memory);
    assert_eq!(stored.title.as_deref(), Some("begun"));
}

#[test]
fn beginning_a_thread_outside_a_runtime_is_an_error_not_a_panic() {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let error = Journal::begin(store, None).unwrap_err();
    assert!(error.to_string().contains("tokio runtime"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_writer_stops_the_journal_and_every_later_write_says_so() {
    let store: SharedStore = Arc::new(MemoryStore::new());
    let (journal, root) = with_root(&store).await;
    // Someone else appends to the thread behind the journal's back.
    let mut other = Recorder::open(store.clone(), journal.thread_id())
        .await
        .unwrap();
    other
        .execute(Command::AppendActivity {
            turn_id: None,
            work_unit_id: Some(root),
            kind: ActivityKind::Phase {
                title: "elsewhere".into(),
            },
        })
        .await
        .unwrap();
    let phase = ActivityKind::Phase {
        title: "mine".into(),
    };
    let refused = journal.activity(root, phase.clone()).await.unwrap_err();
    assert!(
        refused.to_string().contains("but the stream is at version"),
        "{refused}"
    );
    let later = journal
        .write_behind()
        .activity(root, phase)
        .await
        .unwrap_err();
    assert!(
        later.to_string().contains("the journal stopped recording"),
        "{later}"
    );
    assert!(journal.flush().await.is_err());
    // What the store holds is untouched by the refused writes.
    let stored = store
        .snapshot_dyn(journal.thread_id())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.activities.len(), 1);
}
