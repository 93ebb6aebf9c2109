//! fleet-core's integration tests: every event store passes the conformance suite, and public
//! handles and futures can cross threads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod stores {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use fleet_core::store::DynEventStore;
    use fleet_core::store::memory::MemoryStore;
    use fleet_core::store::sqlite::SqliteStore;
    use fleet_core::testkit::event_store_conformance;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_store_conforms() {
        event_store_conformance(|| async { MemoryStore::new() }).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_store_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let counter = AtomicUsize::new(0);
        event_store_conformance(|| {
            let path = dir.path().join(format!(
                "store-{}.db",
                counter.fetch_add(1, Ordering::Relaxed)
            ));
            async move { SqliteStore::open(path).unwrap() }
        })
        .await;
    }

    #[tokio::test]
    async fn dyn_stores_conform() {
        event_store_conformance(|| async {
            Arc::new(MemoryStore::new()) as Arc<dyn DynEventStore>
        })
        .await;
    }
}

mod send_sync {
    use fleet_core::budget::{Budgets, Reservation};
    use fleet_core::command::Recorder;
    use fleet_core::id::ThreadId;
    use fleet_core::store::EventStore;
    use fleet_core::store::memory::MemoryStore;
    use fleet_core::store::sqlite::SqliteStore;

    fn is_send_sync<T: Send + Sync>(_: &T) {}
    fn is_send<T: Send>(_: &T) {}
    fn reservation_is_send(r: Reservation) -> impl Send {
        r
    }

    /// Public handles are `Send + Sync` and public futures are `Send`, so they work on any
    /// multi-threaded runtime.
    #[test]
    fn public_handles_and_futures_are_send() {
        let dir = tempfile::tempdir().unwrap();
        let sqlite = SqliteStore::open(dir.path().join("s.db")).unwrap();
        let memory = MemoryStore::new();
        is_send_sync(&sqlite);
        is_send_sync(&memory);
        is_send_sync(&Budgets::new());
        let id = ThreadId::new();
        is_send(&sqlite.snapshot(id));
        is_send(&memory.read_all(0, 1));
        is_send(&sqlite.append(id, fleet_core::store::ExpectedVersion::Any, vec![]));
        is_send(&Recorder::create(&sqlite, None));
        is_send(&sqlite.rebuild_projections());
        let _ = reservation_is_send;
    }
}
