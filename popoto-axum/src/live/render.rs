//! Change events rendered once per process: a shared write goes to every subscriber's
//! connection as the same text, so it is turned into JSON once, not once per connection.
//! The pump hands every connection the same `Arc` of an event, which identifies it: a text
//! is only ever handed to a connection that received that very event, so it shows no one
//! anything new.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use axum::extract::ws::Utf8Bytes;
use popoto_core::feed::{ChangeEvent, FeedSource};

use super::models::Registry;
use super::ServerMsg;

/// Texts kept; beyond, the cache starts over (an event is sent within moments of its read).
const KEEP: usize = 4096;

/// Rendered events, by the address of their `Arc`; the `Weak` kept with each text holds the
/// allocation, so no other event can take that address while the entry is there.
#[derive(Default)]
pub(crate) struct Rendered {
    texts: Mutex<HashMap<usize, Entry>>,
}

/// A rendered event: the `Weak` that holds its address, and its text.
type Entry = (Weak<ChangeEvent>, Option<Utf8Bytes>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Rendered {
    /// The text of `e` as a [`ServerMsg::Event`]; `None` when it is not sent (a model the
    /// endpoint does not serve, or fields that do not convert: logged).
    pub(crate) fn event(&self, models: &Registry, e: &Arc<ChangeEvent>) -> Option<Utf8Bytes> {
        let at = Arc::as_ptr(e) as usize;
        // An entry at this address is this event's: its `Weak` keeps the address taken.
        if let Some((_, text)) = lock(&self.texts).get(&at) {
            return text.clone();
        }
        let text = render(models, e);
        let mut texts = lock(&self.texts);
        if texts.len() >= KEEP {
            texts.clear();
        }
        texts.insert(at, (Arc::downgrade(e), text.clone()));
        text
    }
}

fn render(models: &Registry, e: &ChangeEvent) -> Option<Utf8Bytes> {
    let shared = matches!(e.source, FeedSource::Shared(..));
    let fields = if shared {
        (models.shared(&e.model)?.fields)(e)
    } else {
        (models.private(&e.model)?.fields)(e)
    };
    let fields = match fields {
        Ok(f) => f,
        Err(err) => {
            tracing::warn!(error = %err, "a change event could not be sent");
            return None;
        }
    };
    let msg = ServerMsg::Event {
        model: e.model.clone(),
        key: e.key.clone(),
        shared,
        op: e.op,
        version: e.version,
        entry: e.entry.clone(),
        origin: e.origin.clone(),
        full: e.full,
        fields,
    };
    serde_json::to_string(&msg).ok().map(Utf8Bytes::from)
}
