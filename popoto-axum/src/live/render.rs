//! Change events rendered once per process: a shared write goes to every subscriber's
//! connection as the same text, so it is turned into JSON once, not once per connection.
//! A text is only ever handed to a connection that received the event itself (the cache is
//! keyed by the event's stream and entry), so it shows no one anything new.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use axum::extract::ws::Utf8Bytes;
use popoto_core::feed::{ChangeEvent, FeedSource};

use super::models::Registry;
use super::ServerMsg;

/// Texts kept; beyond, the cache starts over (an event is sent within moments of its read).
const KEEP: usize = 4096;

/// One rendered event and what identifies it.
struct Text {
    shared: bool,
    model: String,
    key: String,
    entry: String,
    version: u64,
    text: Option<Utf8Bytes>,
}

impl Text {
    fn is(&self, e: &ChangeEvent, shared: bool) -> bool {
        self.shared == shared
            && self.version == e.version
            && self.entry == e.entry
            && self.key == e.key
            && self.model == e.model
    }
}

/// Rendered events, by the hash of their stream and entry.
#[derive(Default)]
pub(crate) struct Rendered {
    texts: Mutex<HashMap<u64, Text>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Rendered {
    /// The text of `e` as a [`ServerMsg::Event`]; `None` when it is not sent (a model the
    /// endpoint does not serve, or fields that do not convert: logged).
    pub(crate) fn event(&self, models: &Registry, e: &ChangeEvent) -> Option<Utf8Bytes> {
        let shared = matches!(e.source, FeedSource::Shared(..));
        let hash = {
            let mut h = DefaultHasher::new();
            (shared, &e.model, &e.key, &e.entry, e.version).hash(&mut h);
            h.finish()
        };
        if let Some(t) = lock(&self.texts).get(&hash).filter(|t| t.is(e, shared)) {
            return t.text.clone();
        }
        let text = render(models, e, shared);
        let mut texts = lock(&self.texts);
        if texts.len() >= KEEP {
            texts.clear();
        }
        texts.insert(
            hash,
            Text {
                shared,
                model: e.model.clone(),
                key: e.key.clone(),
                entry: e.entry.clone(),
                version: e.version,
                text: text.clone(),
            },
        );
        text
    }
}

fn render(models: &Registry, e: &ChangeEvent, shared: bool) -> Option<Utf8Bytes> {
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
