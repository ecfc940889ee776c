//! Change events rendered once per process: a shared write goes to every subscriber's
//! connection as the same text, so it is turned into JSON once, not once per connection.
//! A text is only ever handed to a connection that received the event itself (the cache is
//! keyed by the event's stream and entry), so it shows no one anything new.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::extract::ws::Utf8Bytes;
use popoto_core::feed::{ChangeEvent, FeedSource};

use super::models::Registry;
use super::ServerMsg;

/// Texts kept; beyond, the cache starts over (an event is sent within moments of its read).
const KEEP: usize = 4096;

/// Rendered events, by stream and entry.
#[derive(Default)]
pub(crate) struct Rendered {
    texts: Mutex<HashMap<String, Option<Utf8Bytes>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Rendered {
    /// The text of `e` as a [`ServerMsg::Event`]; `None` when it is not sent (a model the
    /// endpoint does not serve, or fields that do not convert: logged).
    pub(crate) fn event(&self, models: &Registry, e: &ChangeEvent) -> Option<Utf8Bytes> {
        let shared = matches!(e.source, FeedSource::Shared(..));
        let key = format!(
            "{}\n{}\n{}\n{}\n{}",
            u8::from(shared),
            e.model,
            e.key,
            e.entry,
            e.version
        );
        if let Some(text) = lock(&self.texts).get(&key) {
            return text.clone();
        }
        let text = render(models, e, shared);
        let mut texts = lock(&self.texts);
        if texts.len() >= KEEP {
            texts.clear();
        }
        texts.insert(key, text.clone());
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
