//! Confidence fields: Bayesian confidence metadata in Popoto's companion hash.
//!
//! `$ConfidencF:<Model>:<field>:data[:<partition>...]` maps each instance key to a msgpack map
//! {confidence, evidence_count, corroborations, contradictions}. Updates run server-side in one
//! Lua script implementing popoto 1.10.1's capped formula and storing its script's bytes; reads
//! never load a whole hash.

use std::borrow::Cow;
use std::sync::LazyLock;

use serde::Deserialize;
use tracing::Instrument;

use crate::admin::Admin;
use crate::backend::Form;
use crate::db::Session;
use crate::error::{Error, Result};
use crate::feed::ChangeOp;
use crate::keys::Layout;
use crate::model::{
    hidden_key_of, key_segments, ConfidenceField, FieldKind, Key, Model, ModelMeta, Record,
};
use crate::tenant::Scope;
use crate::verify::Guard;

/// Raw (field, value) pairs as HSCAN returns them.
type RawPairs = Vec<(Vec<u8>, Vec<u8>)>;

mod scan;

pub use scan::ConfidenceScan;

/// The update, after the change-feed prelude (models with a change feed get their event in
/// the update's call).
pub(crate) static UPDATE: LazyLock<crate::backend::Script> = LazyLock::new(|| {
    crate::backend::Script::new(crate::script::lua!("feed_common.lua", "confidence.lua"))
});

/// The four values of a confidence entry.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, Deserialize)]
pub struct ConfidenceState {
    /// Current confidence in [0, 1].
    pub confidence: f64,
    /// Number of signals received.
    pub evidence_count: u64,
    /// Signals >= 0.5.
    pub corroborations: u64,
    /// Signals < 0.5.
    pub contradictions: u64,
}

impl ConfidenceState {
    /// The state of an instance that has received no signal.
    pub fn initial(initial: f64) -> Self {
        ConfidenceState {
            confidence: initial,
            evidence_count: 0,
            corroborations: 0,
            contradictions: 0,
        }
    }

    /// Decodes an entry as popoto or its Lua script wrote it (either key order, int/float32/
    /// float64 confidence, positional arrays); missing values take the initial state's.
    pub fn decode(bytes: &[u8], initial: f64) -> std::result::Result<Self, String> {
        #[derive(Deserialize)]
        struct Raw {
            confidence: Option<f64>,
            evidence_count: Option<u64>,
            corroborations: Option<u64>,
            contradictions: Option<u64>,
        }
        let raw: Raw = crate::codec::decode_serde(bytes).map_err(|e| e.0)?;
        Ok(ConfidenceState {
            confidence: raw.confidence.unwrap_or(initial),
            evidence_count: raw.evidence_count.unwrap_or(0),
            corroborations: raw.corroborations.unwrap_or(0),
            contradictions: raw.contradictions.unwrap_or(0),
        })
    }
}

fn field_params(meta: &'static ModelMeta, field: usize) -> (f64, u32) {
    match meta.fields[field].kind {
        FieldKind::Confidence {
            initial,
            evidence_cap,
        } => (initial, evidence_cap),
        _ => (0.5, 20),
    }
}

/// Partition segments of confidence field `field` for a rendered instance.
fn partition_of(meta: &'static ModelMeta, field: usize, record: &Record) -> Vec<String> {
    meta.fields[field]
        .partition_by
        .iter()
        .map(|&p| {
            record
                .segments
                .get(p)
                .cloned()
                .flatten()
                .unwrap_or_default()
        })
        .collect()
}

/// The companion hash key of `value`'s confidence field (its current partition values), in
/// popoto's layout.
pub fn companion_key_of<M: Model>(value: &M, field: ConfidenceField<M, f64>) -> Result<String> {
    companion_of(Layout::Popoto, M::META, field.index(), &value.to_record()?)
}

/// The companion hash key of confidence field `field` for a rendered instance.
fn companion_of(
    layout: Layout,
    meta: &'static ModelMeta,
    field: usize,
    record: &Record,
) -> Result<String> {
    let segment = |p: usize| record.segments.get(p).and_then(|s| s.as_deref());
    let parts: Vec<&str> = meta.fields[field]
        .partition_by
        .iter()
        .map(|&p| segment(p).unwrap_or_default())
        .collect();
    layout.confidence_key(meta, meta.tenant.and_then(segment), field, &parts)
}

/// The companion hash key for explicit partition values (in `partition_by` order), in popoto's
/// layout.
pub fn companion_key<M: Model>(
    field: ConfidenceField<M, f64>,
    partition: &[&str],
) -> Result<String> {
    let f = M::META.field(field.index());
    if partition.len() != f.partition_by.len() {
        let missing = f
            .partition_by
            .get(partition.len())
            .map_or(f.name, |&p| M::META.fields[p].name);
        return Err(Error::MissingPartition {
            model: M::META.name,
            field: f.name,
            partition_field: missing,
        });
    }
    Layout::Popoto.confidence_key(M::META, None, field.index(), partition)
}

/// Confidence of one instance through a session: `session.confidence(&value, M::field())`, or
/// `session.confidence_at(&key, &value, M::field())`.
pub struct Confidence<'s, M: Model> {
    session: &'s Session,
    field: usize,
    key: Key<M>,
    member: String,
    companion: String,
    /// The value's partition segments, in `partition_by` order.
    partition: Vec<String>,
    _m: std::marker::PhantomData<fn() -> M>,
}

/// How often an update is retried when a concurrent save moved the instance's partition.
const MAX_ATTEMPTS: u32 = 8;

impl Session {
    /// The confidence field `field` of instance `value`.
    ///
    /// A model whose key is Popoto's hidden `_auto_key` is refused ([`Error::InvalidValue`]):
    /// its values do not carry their key, so use [`Session::confidence_at`].
    pub fn confidence<M: Model>(
        &self,
        value: &M,
        field: ConfidenceField<M, f64>,
    ) -> Result<Confidence<'_, M>> {
        if M::META.has_hidden_key() {
            return Err(Error::InvalidValue {
                model: M::META.name,
                field: "_auto_key",
                reason: "the model's key is Popoto's hidden _auto_key: use confidence_at with \
                         the key create_keyed returned"
                    .into(),
            });
        }
        self.check_model::<M>()?;
        self.check_value(value)?;
        let record = value.to_record()?;
        let key = Key::<M>::from_segments(key_segments::<M>(&record, None));
        self.confidence_handle(&key, &record, field)
    }

    /// The confidence field `field` of the instance stored at `key`, whose values are `value`
    /// (its partition values locate the companion hash): the way to a model keyed by Popoto's
    /// hidden `_auto_key`. A value whose key fields do not match `key` is refused.
    pub fn confidence_at<M: Model>(
        &self,
        key: &Key<M>,
        value: &M,
        field: ConfidenceField<M, f64>,
    ) -> Result<Confidence<'_, M>> {
        self.check_model::<M>()?;
        self.check_key(key)?;
        self.check_value(value)?;
        let record = value.to_record()?;
        hidden_key_of(key, &record)?;
        self.confidence_handle(key, &record, field)
    }

    /// The confidence field `field` of the instance stored at `key`, without loading it: what
    /// `update`, `state` and `get` need is found from the key (partition values of key fields)
    /// and, for a field partitioned by a non-key field, from the stored value they read anyway.
    /// An absent instance makes `update` fail with [`Error::NotFound`] and `state` return the
    /// initial state. [`Confidence::companion_key`] of such a handle is exact only when every
    /// partition field is a key field.
    pub fn confidence_by_key<M: Model>(
        &self,
        key: &Key<M>,
        field: ConfidenceField<M, f64>,
    ) -> Result<Confidence<'_, M>> {
        self.check_model::<M>()?;
        self.check_key(key)?;
        let meta = M::META;
        let mut record = Record::of_key(meta, key.segments());
        // Non-key partition values are read from the instance by `locate`; until then, the
        // rendering of an absent value (popoto's `str(None)`).
        for &p in meta.fields[field.index()].partition_by {
            if record.segments[p].is_none() {
                record.segments[p] = Some("None".to_owned());
            }
        }
        self.confidence_handle(key, &record, field)
    }

    fn confidence_handle<M: Model>(
        &self,
        key: &Key<M>,
        record: &Record,
        field: ConfidenceField<M, f64>,
    ) -> Result<Confidence<'_, M>> {
        Ok(Confidence {
            session: self,
            field: field.index(),
            key: key.clone(),
            member: key.redis_key_in(self.layout()),
            companion: companion_of(self.layout(), M::META, field.index(), record)?,
            partition: partition_of(M::META, field.index(), record),
            _m: Default::default(),
        })
    }
}

impl<M: Model> Confidence<'_, M> {
    fn span(&self, op: &'static str) -> tracing::Span {
        let span = self.session.span::<M>(op);
        span.record("commands", 1);
        span
    }

    /// The companion hash key of this entry, as computed from the value the handle was built
    /// from. When the field is partitioned by a non-key field, [`Confidence::update`] and
    /// [`Confidence::state`] use the instance's stored partition value instead, so a handle
    /// built from a stale value still reaches the instance's one entry.
    pub fn companion_key(&self) -> &str {
        &self.companion
    }

    /// The companion hash of the instance as stored, and the script's checks of the stored
    /// non-key partition values it was computed from (none, and no command, when every
    /// partition field is a key field).
    async fn locate(
        &self,
        backend: &crate::backend::Backend,
    ) -> Result<(Cow<'_, str>, Vec<Vec<u8>>)> {
        let meta = M::META;
        let f = meta.field(self.field);
        let movable: Vec<(usize, usize)> = f
            .partition_by
            .iter()
            .enumerate()
            .filter(|(_, &p)| !meta.fields[p].kind.is_key())
            .map(|(pos, &p)| (pos, p))
            .collect();
        if movable.is_empty() {
            return Ok((Cow::Borrowed(&self.companion), Vec::new()));
        }
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(&self.member);
        for &(_, p) in &movable {
            cmd.arg(meta.fields[p].name);
        }
        let stored: Vec<Option<Vec<u8>>> =
            backend.query("confidence locate", meta.name, &cmd).await?;
        let mut partition = self.partition.clone();
        let mut checks = Vec::with_capacity(movable.len() * 3);
        for (&(pos, p), raw) in movable.iter().zip(stored) {
            checks.push(meta.fields[p].name.as_bytes().to_vec());
            match raw {
                Some(raw) => {
                    if let Some(slot) = partition.get_mut(pos) {
                        *slot = M::segment_from_stored(&self.member, p, &raw)?;
                    }
                    checks.push(b"G".to_vec());
                    checks.push(raw);
                }
                None => checks.push(b"N".to_vec()),
            }
        }
        let parts: Vec<&str> = partition.iter().map(String::as_str).collect();
        let companion = Cow::Owned(self.session.layout().confidence_key(
            meta,
            self.key.tenant(),
            self.field,
            &parts,
        )?);
        Ok((companion, checks))
    }

    /// Applies one signal in [0, 1] server-side and returns the new state.
    ///
    /// The arithmetic is popoto 1.10.1's: `c' = clamp(c + (s - c) / (min(n + 1, cap) + 1))`,
    /// and so are the stored bytes (its script's `cmsgpack.pack` of the same table).
    pub async fn update(&self, signal: f64) -> Result<ConfidenceState> {
        let meta = M::META;
        let fname = meta.fields[self.field].name;
        if !(0.0..=1.0).contains(&signal) {
            return Err(Error::InvalidValue {
                model: meta.name,
                field: fname,
                reason: format!("a confidence signal must be within [0, 1], got {signal}"),
            });
        }
        let (initial, cap) = field_params(meta, self.field);
        let backend = self.session.backend().await?;
        let protocol = |detail: String| Error::Protocol {
            op: "confidence update",
            model: meta.name,
            detail,
        };
        // The change event (models with a change feed): its fields end with the confidence
        // field's name, whose new value the script appends.
        let event = self
            .session
            .feed_event(ChangeOp::Confidence, &self.key, None, None)?;
        let feed_args: Vec<Vec<u8>> = event.as_ref().map_or_else(Vec::new, |e| {
            e.fields
                .iter()
                .flat_map(|(k, v)| [k.clone(), v.clone()])
                .chain([format!("f:{fname}").into_bytes()])
                .collect()
        });
        for _ in 0..MAX_ATTEMPTS {
            let (companion, checks) = self.locate(&backend).await?;
            // The call built in place: keys, then the member, the signal, the field's initial
            // value and cap, the feed's fields and the partition checks.
            let keys = if event.is_some() { 4 } else { 2 };
            let args = 5 + feed_args.len() + checks.len();
            let bytes = companion.len()
                + 2 * self.member.len()
                + feed_args.iter().chain(&checks).map(Vec::len).sum::<usize>()
                + 96;
            let mut cmd = UPDATE.command(Form::Sha, 1 + keys + args, bytes);
            cmd.arg(keys).arg(&companion).arg(&self.member);
            if let Some(e) = &event {
                cmd.arg(&e.stream).arg(&e.meta);
            }
            // Numbers as their shortest round-trip text (the script reads them with tonumber).
            cmd.arg(&self.member)
                .arg(signal)
                .arg(initial)
                .arg(cap)
                .arg(feed_args.len())
                .arg(&feed_args)
                .arg(&checks);
            let reply = backend
                .eval_cmd("confidence update", meta.name, &UPDATE, &cmd)
                .instrument(self.span("confidence_update"))
                .await?;
            // Applied: one string of the four values; refused: a table.
            let (text, table): (String, Vec<String>);
            let items: Vec<&str> = match reply {
                redis::Value::BulkString(b) => {
                    text = String::from_utf8(b).map_err(|e| protocol(e.to_string()))?;
                    text.split(' ').collect()
                }
                other => {
                    table = redis::from_redis_value(other).map_err(|e| protocol(e.to_string()))?;
                    table.iter().map(String::as_str).collect()
                }
            };
            let item = |i: usize| items.get(i).map_or_else(String::new, |s| (*s).to_owned());
            match items.first().copied() {
                // A concurrent save moved the instance to another partition: locate it again.
                Some("changed") => continue,
                Some("wrongtype") => {
                    return Err(Error::WrongType {
                        model: meta.name,
                        key: item(1),
                        found: item(2),
                    })
                }
                Some("corrupt") => {
                    return Err(Error::Decode {
                        model: meta.name,
                        key: companion.into_owned(),
                        field: self.member.clone(),
                        reason: item(1),
                    })
                }
                _ => return self.parse_update(&items),
            }
        }
        Err(Error::Contention {
            model: meta.name,
            key: self.member.clone(),
            attempts: MAX_ATTEMPTS,
        })
    }

    fn parse_update(&self, items: &[&str]) -> Result<ConfidenceState> {
        let meta = M::META;
        let protocol = |detail: String| Error::Protocol {
            op: "confidence update",
            model: meta.name,
            detail,
        };
        match items.first().copied() {
            Some("missing") => Err(Error::NotFound {
                model: meta.name,
                key: self.member.clone(),
            }),
            Some("ok") if items.len() == 5 => {
                let num = |i: usize| items[i].parse::<u64>().map_err(|e| protocol(e.to_string()));
                Ok(ConfidenceState {
                    confidence: items[1]
                        .parse::<f64>()
                        .map_err(|e| protocol(e.to_string()))?,
                    evidence_count: num(2)?,
                    corroborations: num(3)?,
                    contradictions: num(4)?,
                })
            }
            _ => Err(protocol(format!("{items:?}"))),
        }
    }

    /// The four values (the initial state when the entry is missing).
    pub async fn state(&self) -> Result<ConfidenceState> {
        let meta = M::META;
        let (initial, _) = field_params(meta, self.field);
        let backend = self.session.backend().await?;
        let (companion, _) = self.locate(&backend).await?;
        let raw: Option<Vec<u8>> = backend
            .query(
                "confidence get",
                meta.name,
                redis::cmd("HGET").arg(&companion).arg(&self.member),
            )
            .instrument(self.span("confidence_get"))
            .await?;
        match raw {
            None => Ok(ConfidenceState::initial(initial)),
            Some(bytes) => {
                ConfidenceState::decode(&bytes, initial).map_err(|reason| Error::Decode {
                    model: meta.name,
                    key: companion.into_owned(),
                    field: self.member.clone(),
                    reason,
                })
            }
        }
    }

    /// The confidence value alone.
    pub async fn get(&self) -> Result<f64> {
        Ok(self.state().await?.confidence)
    }
}

/// The confidence fields of any tenant's instances, through the admin handle.
impl Admin {
    /// [`Session::confidence`] of any tenant's instance.
    pub fn confidence<'s, M: Model>(
        &'s self,
        value: &M,
        field: ConfidenceField<M, f64>,
    ) -> Result<Confidence<'s, M>> {
        self.session().confidence(value, field)
    }

    /// [`Session::confidence_at`] of any tenant's instance.
    pub fn confidence_at<'s, M: Model>(
        &'s self,
        key: &Key<M>,
        value: &M,
        field: ConfidenceField<M, f64>,
    ) -> Result<Confidence<'s, M>> {
        self.session().confidence_at(key, value, field)
    }

    /// [`Session::confidence_by_key`] of any tenant's instance.
    pub fn confidence_by_key<M: Model>(
        &self,
        key: &Key<M>,
        field: ConfidenceField<M, f64>,
    ) -> Result<Confidence<'_, M>> {
        self.session().confidence_by_key(key, field)
    }

    /// [`Session::confidence_scan`] across tenants.
    pub fn confidence_scan<M: Model>(
        &self,
        field: ConfidenceField<M, f64>,
    ) -> ConfidenceScan<'_, M> {
        self.session().confidence_scan(field)
    }

    /// A confidence scan whose member names match a raw, unescaped Redis glob.
    pub fn confidence_scan_raw<M: Model>(
        &self,
        field: ConfidenceField<M, f64>,
        pattern: impl Into<String>,
    ) -> ConfidenceScan<'_, M> {
        self.session().confidence_scan(field).raw(pattern.into())
    }
}
