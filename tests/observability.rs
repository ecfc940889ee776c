//! Every operation runs in a `popoto` tracing span with op, model, tenant and commands; values
//! never appear in it.

mod support;

use std::sync::{Arc, Mutex};

use support::*;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// Fields of every `popoto` span, as text.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<SpanFields>>>);

/// A span's fields as (name, value) text.
type SpanFields = Vec<(String, String)>;

struct Collect<'a>(&'a mut Vec<(String, String)>);

impl Visit for Collect<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

struct Recorder {
    spans: Spans,
    ids: Mutex<Vec<(u64, usize)>>,
}

impl<S: tracing::Subscriber> Layer<S> for Recorder {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _ctx: Context<'_, S>) {
        if attrs.metadata().name() != "popoto" {
            return;
        }
        let mut fields = Vec::new();
        attrs.record(&mut Collect(&mut fields));
        let mut all = self.spans.0.lock().unwrap();
        all.push(fields);
        self.ids
            .lock()
            .unwrap()
            .push((id.into_u64(), all.len() - 1));
    }
    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let ids = self.ids.lock().unwrap();
        if let Some((_, i)) = ids.iter().find(|(x, _)| *x == id.into_u64()) {
            let mut all = self.spans.0.lock().unwrap();
            values.record(&mut Collect(&mut all[*i]));
        }
    }
}

fn field<'a>(span: &'a [(String, String)], name: &str) -> Option<&'a str> {
    span.iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn operations_have_spans_with_model_tenant_and_command_count_but_no_values() {
    let spans = Spans::default();
    let subscriber = tracing_subscriber::registry().with(Recorder {
        spans: spans.clone(),
        ids: Mutex::new(Vec::new()),
    });
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = runtime();
    rt.block_on(async {
        let (_server, db) = setup().await;
        let acme = db.tenant("acme").unwrap();
        let ep = acme
            .create(episode("", "secret-title", 0.5, 7))
            .await
            .unwrap();
        acme.get(&Episode::key_of("acme", ep.episode_id.clone()))
            .await
            .unwrap();
        acme.query::<Episode>()
            .filter(Episode::score().gte(0.1))
            .fetch()
            .await
            .unwrap();
        acme.delete(&ep).await.unwrap();
    });
    let all = spans.0.lock().unwrap();
    let ops: Vec<&str> = all.iter().filter_map(|s| field(s, "op")).collect();
    assert_eq!(ops, ["create", "get", "fetch", "delete"]);
    for s in all.iter() {
        assert_eq!(field(s, "model"), Some("Episode"), "{s:?}");
        assert_eq!(field(s, "tenant"), Some("acme"), "{s:?}");
        let commands: usize = field(s, "commands")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        assert!(commands >= 1, "commands recorded: {s:?}");
        assert!(
            !s.iter()
                .any(|(_, v)| v.contains("secret") || v.contains("0.5")),
            "no values: {s:?}"
        );
    }
    // create: 5 index/hash writes (HSET, SADD x2, ZADD x2) plus checks.
    assert!(
        field(&all[0], "commands")
            .and_then(|c| c.parse::<usize>().ok())
            .unwrap_or(0)
            >= 5
    );
}
