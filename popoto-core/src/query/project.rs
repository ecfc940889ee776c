//! Projection: some fields of each matching instance (popoto's `values(...)`), read with
//! `HMGET` by a script that verifies each instance against the scope in the same call.

use std::marker::PhantomData;
use std::sync::LazyLock;

use tracing::Instrument;

use crate::backend::Script;
use crate::codec::Value;
use crate::error::{DecodeError, Error, Result};
use crate::model::{Field, Key, KeyField, Model, SortedField};
use crate::verify::{self, Guard, Skip};

use super::exec::page;
use super::resolve::{index_keys, Source};
use super::Query;

/// The projection script (`lua/project.lua`).
pub(crate) static PROJECT: LazyLock<Script> =
    LazyLock::new(|| Script::read_only(crate::script::lua!("project.lua")));

/// Candidate keys per script call.
const KEYS_PER_CALL: usize = 1000;

/// msgpack nil: what a field missing from the stored hash decodes from (`None` for `Option`).
const NIL: &[u8] = &[0xc0];

/// A field handle whose values a projection decodes: key, sorted and plain fields of a
/// [`Value`] type; other serde types through [`Field::via_serde`].
pub trait Projected<M> {
    /// The field's Rust type.
    type Value;
    /// Index of the field in the model's metadata.
    fn projected_index(&self) -> usize;
    /// Decodes the stored bytes (`None`: the hash lacks the field).
    fn decode(bytes: Option<&[u8]>) -> std::result::Result<Self::Value, DecodeError>;
}

fn decode_value<T: Value>(bytes: Option<&[u8]>) -> std::result::Result<T, DecodeError> {
    match bytes {
        Some(b) => T::decode(b),
        None => T::decode(NIL).map_err(|_| DecodeError::new("field missing from the stored hash")),
    }
}

macro_rules! projected {
    ($($handle:ident),*) => {$(
        impl<M, T: Value> Projected<M> for $handle<M, T> {
            type Value = T;
            fn projected_index(&self) -> usize {
                self.index()
            }
            fn decode(bytes: Option<&[u8]>) -> std::result::Result<T, DecodeError> {
                decode_value(bytes)
            }
        }
    )*};
}
projected!(Field, KeyField, SortedField);

/// A plain field projected through serde and `rmp-serde` (for types without a [`Value`]
/// encoding: lists, maps, structs), as the derive stores them.
pub struct SerdeField<M, T> {
    index: usize,
    _p: PhantomData<fn() -> (M, T)>,
}

impl<M, T> Field<M, T> {
    /// This field, projected through serde (for types that are not a [`Value`]).
    pub fn via_serde(self) -> SerdeField<M, T> {
        SerdeField {
            index: self.index(),
            _p: PhantomData,
        }
    }
}

impl<M, T: serde::de::DeserializeOwned> Projected<M> for SerdeField<M, T> {
    type Value = T;
    fn projected_index(&self) -> usize {
        self.index
    }
    fn decode(bytes: Option<&[u8]>) -> std::result::Result<T, DecodeError> {
        crate::codec::decode_serde(bytes.unwrap_or(NIL))
    }
}

/// A tuple of field handles of model `M`: what [`Query::values`] reads and returns.
pub trait Projection<M> {
    /// The tuple of field values.
    type Row;
    /// Indices of the fields, in tuple order.
    fn indices(&self) -> Vec<usize>;
    /// Decodes one instance's values (in tuple order) read at `key`.
    fn decode_row(&self, key: &str, values: Vec<Option<Vec<u8>>>) -> Result<Self::Row>;
}

macro_rules! projection {
    ($(($($h:ident $i:tt),+)),*) => {$(
        impl<M: Model, $($h: Projected<M>),+> Projection<M> for ($($h,)+) {
            type Row = ($($h::Value,)+);
            fn indices(&self) -> Vec<usize> {
                vec![$(self.$i.projected_index()),+]
            }
            fn decode_row(&self, key: &str, values: Vec<Option<Vec<u8>>>) -> Result<Self::Row> {
                let mut values = values.into_iter();
                Ok(($(
                    {
                        let raw = values.next().flatten();
                        $h::decode(raw.as_deref()).map_err(|e| Error::Decode {
                            model: M::META.name,
                            key: key.to_owned(),
                            field: M::META.fields[self.$i.projected_index()].name.to_owned(),
                            reason: e.0,
                        })?
                    },
                )+))
            }
        }
    )*};
}
projection!(
    (A 0),
    (A 0, B 1),
    (A 0, B 1, C 2),
    (A 0, B 1, C 2, D 3),
    (A 0, B 1, C 2, D 3, E 4),
    (A 0, B 1, C 2, D 3, E 4, F 5),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6),
    (A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7)
);

impl<M: Model> Query<'_, M> {
    /// Runs the query and returns only the given fields of each instance, as a tuple
    /// (`(Episode::title(), Episode::score())` gives `(String, f64)` rows), in the query's
    /// order, paged by offset and limit. Each instance's hash is read with one `HMGET` of
    /// those fields, in a script that first checks the instance belongs to the scope (its
    /// stored tenant field is the tenant's), so a projection never returns what `fetch`
    /// would not. A client-side predicate or order needs whole rows: use `fetch` then.
    pub async fn values<P: Projection<M>>(self, fields: P) -> Result<Vec<P::Row>> {
        Ok(self
            .values_keyed(fields)
            .await?
            .into_iter()
            .map(|(_, r)| r)
            .collect())
    }

    /// [`Query::values`], each row with its key.
    pub async fn values_keyed<P: Projection<M>>(self, fields: P) -> Result<Vec<(Key<M>, P::Row)>> {
        if self.needs_rows() {
            return Err(self.invalid(
                "a projection reads some fields only: a client-side predicate or order needs whole rows (use fetch)",
            ));
        }
        let names: Vec<&'static str> = fields
            .indices()
            .into_iter()
            .map(|i| M::META.fields[i].name)
            .collect();
        let span = self.span("values");
        async {
            let sources = self.resolve()?;
            let mut commands = 0;
            let keys = self.select(&sources, true, &mut commands).await?;
            let (mut rows, skipped) = self.project(&sources, keys, &names, &mut commands).await?;
            if skipped > 0 && self.is_paged() {
                let keys = self.select(&sources, false, &mut commands).await?;
                rows = self.project(&sources, keys, &names, &mut commands).await?.0;
                rows = page(rows, self.offset, self.limit);
            }
            tracing::Span::current().record("commands", commands);
            rows.into_iter()
                .map(|(k, values)| {
                    let row = fields.decode_row(&k.redis_key_in(self.session.layout()), values)?;
                    Ok((k, row))
                })
                .collect()
        }
        .instrument(span)
        .await
    }

    /// The raw values of fields `names` of the members that are instances of the scope, and
    /// how many members were skipped (reported).
    async fn project(
        &self,
        sources: &[Source],
        members: Vec<Vec<u8>>,
        names: &[&'static str],
        commands: &mut usize,
    ) -> Result<(Vec<(Key<M>, Vec<Option<Vec<u8>>>)>, usize)> {
        let scope = self.read_scope();
        let guard = Guard::of::<M>(self.session.layout(), &scope);
        let (keys, mut skipped) = guard.keys::<M, Key<M>>(members);
        let mut rows = Vec::with_capacity(keys.len());
        if !keys.is_empty() {
            let backend = self.session.backend().await?;
            let mut args = guard.args::<M>()?;
            args.extend(names.iter().map(|n| n.as_bytes().to_vec()));
            for chunk in keys.chunks(KEYS_PER_CALL) {
                let redis_keys: Vec<String> = chunk.iter().map(|(n, _)| n.clone()).collect();
                *commands += chunk.len();
                let reply = backend
                    .eval("values", M::META.name, &PROJECT, &redis_keys, &args)
                    .await?;
                let protocol = |detail: String| Error::Protocol {
                    op: "values",
                    model: M::META.name,
                    detail,
                };
                let redis::Value::Array(items) = reply else {
                    return Err(protocol(format!("{reply:?}")));
                };
                if items.len() != chunk.len() {
                    return Err(protocol(format!(
                        "{} replies for {} keys",
                        items.len(),
                        chunk.len()
                    )));
                }
                for ((name, key), item) in chunk.iter().cloned().zip(items) {
                    match item {
                        redis::Value::Array(values) if values.len() == names.len() => {
                            let values: Vec<Option<Vec<u8>>> =
                                redis::from_redis_value(redis::Value::Array(values))
                                    .map_err(|e| protocol(e.to_string()))?;
                            rows.push((key, values));
                        }
                        redis::Value::Int(0) => skipped.push((name, Skip::Stale)),
                        redis::Value::Int(2) => skipped.push((name, Skip::ForeignStored)),
                        other => return Err(protocol(format!("{other:?}"))),
                    }
                }
            }
        }
        verify::report(M::META.name, &index_keys(sources), &skipped);
        self.sweep_stale(&skipped).await?;
        Ok((rows, skipped.len()))
    }
}
