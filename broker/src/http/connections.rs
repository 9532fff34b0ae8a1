//! The connection cap of the client port: every connection holds a slot; at the cap the oldest idle connection is closed for the new one, and when all are busy the new one is refused.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The open connections, oldest first.
#[derive(Debug)]
pub struct Slots {
    cap: usize,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    open: BTreeMap<u64, Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    busy: Arc<AtomicUsize>,
    close: Arc<Notify>,
}

/// What became of a new connection.
#[derive(Debug)]
pub enum Admission {
    /// Served; `evicted` tells whether an idle connection was closed to make room.
    Admitted { slot: Slot, evicted: bool },
    /// Every slot is busy with a request: the connection is closed at once.
    Full,
}

/// One connection's slot, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    id: u64,
    slots: Arc<Slots>,
    busy: Arc<AtomicUsize>,
    close: Arc<Notify>,
}

impl Slots {
    pub fn new(cap: usize) -> Arc<Slots> {
        Arc::new(Slots {
            cap: cap.max(1),
            table: Mutex::new(Table::default()),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.table().open.len()
    }

    /// A slot for a new connection: free, or taken from the oldest idle one (which is told
    /// to close), or none when every open connection is inside a request.
    pub fn admit(self: &Arc<Slots>) -> Admission {
        let mut table = self.table();
        let mut evicted = false;
        if table.open.len() >= self.cap {
            let oldest_idle = table
                .open
                .iter()
                .find(|(_, entry)| entry.busy.load(Ordering::Acquire) == 0)
                .map(|(id, _)| *id);
            let Some(id) = oldest_idle else {
                return Admission::Full;
            };
            if let Some(entry) = table.open.remove(&id) {
                entry.close.notify_one();
            }
            evicted = true;
        }
        let id = table.next;
        table.next += 1;
        let entry = Entry {
            busy: Arc::new(AtomicUsize::new(0)),
            close: Arc::new(Notify::new()),
        };
        table.open.insert(id, entry.clone());
        Admission::Admitted {
            slot: Slot {
                id,
                slots: self.clone(),
                busy: entry.busy,
                close: entry.close,
            },
            evicted,
        }
    }
}

impl Slot {
    /// Resolves when the cap closes this connection for a newer one.
    pub async fn closed(&self) {
        self.close.notified().await
    }

    /// The connection's request counter, for its service: busy connections are never closed
    /// for the cap.
    pub fn busy_counter(&self) -> BusyCounter {
        BusyCounter(self.busy.clone())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.table().open.remove(&self.id);
    }
}

/// A connection's request counter, cloned into its service.
#[derive(Debug, Clone)]
pub struct BusyCounter(Arc<AtomicUsize>);

impl BusyCounter {
    /// Marks a request in progress until the guard is dropped.
    pub fn busy(&self) -> Busy {
        self.0.fetch_add(1, Ordering::AcqRel);
        Busy(self.0.clone())
    }
}

/// A request in progress on a connection.
#[derive(Debug)]
pub struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The cap actually used: `wanted`, lowered so that connections leave `reserve` descriptors
/// of the open-file limit `nofile` for everything else (files, agents, the auth service).
pub fn effective_cap(wanted: usize, nofile: u64, reserve: u64) -> usize {
    let room = usize::try_from(nofile.saturating_sub(reserve)).unwrap_or(usize::MAX);
    wanted.min(room.max(16))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(admission: Admission) -> (Slot, bool) {
        match admission {
            Admission::Admitted { slot, evicted } => (slot, evicted),
            Admission::Full => panic!("refused"),
        }
    }

    #[tokio::test]
    async fn at_the_cap_the_oldest_idle_connection_makes_room() {
        let slots = Slots::new(2);
        let (first, evicted) = admitted(slots.admit());
        assert!(!evicted);
        let (second, _) = admitted(slots.admit());
        let busy = second.busy_counter().busy();
        let (third, evicted) = admitted(slots.admit());
        assert!(evicted, "the idle first connection was closed");
        // the first one is told (the permit waits for its task)
        tokio::time::timeout(std::time::Duration::from_millis(100), first.closed())
            .await
            .expect("closed");
        assert_eq!(slots.open(), 2);
        // second busy, third idle: the third goes next
        let (_fourth, evicted) = admitted(slots.admit());
        assert!(evicted);
        tokio::time::timeout(std::time::Duration::from_millis(100), third.closed())
            .await
            .expect("closed");
        drop(first);
        assert_eq!(slots.open(), 2, "an evicted slot is not counted twice");
        drop(busy);
    }

    #[test]
    fn when_every_connection_is_busy_new_ones_are_refused() {
        let slots = Slots::new(1);
        let (only, _) = admitted(slots.admit());
        let counter = only.busy_counter();
        let busy = counter.busy();
        assert!(matches!(slots.admit(), Admission::Full));
        drop(busy);
        let (_newer, evicted) = admitted(slots.admit());
        assert!(evicted);
        drop(only);
        assert_eq!(slots.open(), 1);
    }

    #[test]
    fn the_cap_leaves_room_in_the_open_file_limit() {
        assert_eq!(effective_cap(4096, 1024, 256), 768);
        assert_eq!(effective_cap(4096, 1_048_576, 256), 4096);
        assert_eq!(effective_cap(4096, 100, 256), 16);
    }
}
