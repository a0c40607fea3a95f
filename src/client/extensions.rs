//! Per-client state that layers above the client hang on it.
//!
//! The watch hub and the lock module's prefix-watch routers live as long as a client and are
//! shared by its clones, but the client must not know their types (it is the ground floor, see
//! `ARCHITECTURE.md` section 1). So the client keeps a small type map: each upper module stores one
//! value of a type it owns, created on first use, and finds it again by that type.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};

use super::{Client, Inner};

type Slot = Arc<dyn Any + Send + Sync>;

/// The type map behind [`Client::extension`]: at most one value per type, never removed
/// before the client itself is dropped.
#[derive(Default)]
pub(crate) struct Extensions {
    slots: RwLock<HashMap<TypeId, Slot>>,
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.slots.read().map_or(0, |s| s.len());
        f.debug_struct("Extensions").field("slots", &n).finish()
    }
}

/// A client reference that does not keep the client alive; for background tasks that must
/// end when the last [`Client`] clone is dropped.
#[derive(Debug, Clone)]
pub(crate) struct WeakClient(Weak<Inner>);

impl WeakClient {
    /// The client, if a clone of it still exists: always the plain client (no namespace),
    /// as the background tasks that hold this work with full keys.
    pub(crate) fn upgrade(&self) -> Option<Client> {
        self.0.upgrade().map(|inner| Client {
            inner,
            namespace: None,
        })
    }
}

impl Client {
    /// This client's value of type `T`, made by `init` on first use (under the map's lock, so
    /// exactly once per client; `init` must not ask for another extension). Clones of the
    /// client share the value; it is dropped with the last clone.
    pub(crate) fn extension<T, F>(&self, init: F) -> Arc<T>
    where
        T: Any + Send + Sync,
        F: FnOnce(&Client) -> T,
    {
        let key = TypeId::of::<T>();
        let typed = |slot: Option<&Slot>| slot.cloned().and_then(|s| s.downcast::<T>().ok());
        let found = match self.inner.extensions.slots.read() {
            Ok(slots) => typed(slots.get(&key)),
            Err(poisoned) => typed(poisoned.into_inner().get(&key)),
        };
        if let Some(value) = found {
            return value;
        }
        let mut slots = match self.inner.extensions.slots.write() {
            Ok(slots) => slots,
            Err(poisoned) => poisoned.into_inner(),
        };
        // Another caller may have made it between the two locks.
        if let Some(value) = typed(slots.get(&key)) {
            return value;
        }
        let value = Arc::new(init(self));
        slots.insert(key, Arc::clone(&value) as Slot);
        value
    }

    /// This client's value of type `T` if some caller of [`Client::extension`] made it.
    pub(crate) fn existing_extension<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let key = TypeId::of::<T>();
        let slots = match self.inner.extensions.slots.read() {
            Ok(slots) => slots,
            Err(poisoned) => poisoned.into_inner(),
        };
        slots
            .get(&key)
            .cloned()
            .and_then(|s| s.downcast::<T>().ok())
    }

    /// A weak reference to this client (see [`WeakClient`]).
    pub(crate) fn weak(&self) -> WeakClient {
        WeakClient(Arc::downgrade(&self.inner))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[derive(Debug)]
    struct Counter(AtomicUsize);

    #[tokio::test]
    async fn one_value_per_type_shared_by_clones_and_dropped_with_the_client() {
        let client = Client::builder(["127.0.0.1:1"], crate::ClientOptions::new())
            .map(|b| b.unconnected())
            .unwrap_or_else(|e| panic!("{e}"));
        let made = AtomicUsize::new(0);
        let first = client.extension(|_| {
            made.fetch_add(1, Ordering::SeqCst);
            Counter(AtomicUsize::new(0))
        });
        first.0.fetch_add(5, Ordering::SeqCst);
        let clone = client.clone();
        let again = clone.extension(|_| {
            made.fetch_add(1, Ordering::SeqCst);
            Counter(AtomicUsize::new(0))
        });
        assert_eq!(again.0.load(Ordering::SeqCst), 5);
        assert_eq!(made.load(Ordering::SeqCst), 1);
        let other: Arc<String> = client.extension(|_| "other type".to_string());
        assert_eq!(other.as_str(), "other type");
        let weak = client.weak();
        assert!(weak.upgrade().is_some());
        let held = Arc::downgrade(&first);
        drop((first, again, client, clone));
        assert!(weak.upgrade().is_none());
        assert!(held.upgrade().is_none());
    }
}
