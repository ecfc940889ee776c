//! Warnings emitted while tests run, recorded by one global subscriber per test binary (a
//! thread-local one can miss events whose callsites another test's thread registered first).

use std::sync::{Arc, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Warning events as "field=value" text.
#[derive(Clone, Default)]
pub struct Warnings(Arc<Mutex<Vec<String>>>);

struct Text<'a>(&'a mut String);

impl Visit for Text<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push_str(&format!("{}={} ", field.name(), value));
    }
}

impl<S: tracing::Subscriber> Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if *event.metadata().level() == tracing::Level::WARN {
            let mut text = String::new();
            event.record(&mut Text(&mut text));
            self.0
                .lock()
                .unwrap_or_else(|e| panic!("poisoned: {e}"))
                .push(text);
        }
    }
}

impl Warnings {
    /// The warnings recorded so far, taken out.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| panic!("poisoned: {e}")))
    }
}

/// The test binary's recorder, installed as the global subscriber on first use.
pub fn warnings() -> Warnings {
    static GLOBAL: OnceLock<Warnings> = OnceLock::new();
    GLOBAL
        .get_or_init(|| {
            let w = Warnings::default();
            let subscriber = tracing_subscriber::registry().with(w.clone());
            tracing::subscriber::set_global_default(subscriber)
                .unwrap_or_else(|e| panic!("a global subscriber is already set: {e}"));
            w
        })
        .clone()
}
