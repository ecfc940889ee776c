//! Patches (the top-level fields a write changes) and custom merge strategies.

use std::marker::PhantomData;

use crate::error::{Error, Result};
use crate::model::{FieldHandle, Model};

/// The top-level fields of a shared instance a write sets, with their stored bytes:
/// `Patch::diff(&before, &after)` (the fields whose bytes differ), `Patch::of(&value)?
/// .with(Model::field())` (named fields), or `Patch::all(&value)` (a full write). Examples in
/// the guide (`docs/shared-models.md`, "Allow writes").
pub struct Patch<M> {
    /// Rendered bytes of every declared field of the value the patch was made from.
    values: Vec<Vec<u8>>,
    /// Which of them the patch sets.
    selected: Vec<bool>,
    _m: PhantomData<fn() -> M>,
}

impl<M> Clone for Patch<M> {
    fn clone(&self) -> Self {
        Patch {
            values: self.values.clone(),
            selected: self.selected.clone(),
            _m: PhantomData,
        }
    }
}

impl<M> std::fmt::Debug for Patch<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Patch")
            .field("fields", &self.selected.iter().filter(|s| **s).count())
            .finish()
    }
}

impl<M: Model> Patch<M> {
    /// A patch of `value` that sets no field yet (add them with [`Patch::with`]).
    pub fn of(value: &M) -> Result<Patch<M>> {
        let values = value.to_record()?.values;
        let selected = vec![false; values.len()];
        Ok(Patch {
            values,
            selected,
            _m: PhantomData,
        })
    }

    /// A patch setting every field of `value` (a full write).
    pub fn all(value: &M) -> Result<Patch<M>> {
        let mut p = Patch::of(value)?;
        p.selected.iter_mut().for_each(|s| *s = true);
        Ok(p)
    }

    /// A patch setting the fields whose stored bytes differ between `before` and `after`.
    pub fn diff(before: &M, after: &M) -> Result<Patch<M>> {
        let old = before.to_record()?.values;
        let mut p = Patch::of(after)?;
        for (i, v) in p.values.iter().enumerate() {
            p.selected[i] = old.get(i) != Some(v);
        }
        Ok(p)
    }

    /// Also sets the field of `handle`, with the value's bytes.
    pub fn with<T>(mut self, handle: impl FieldHandle<M, T>) -> Patch<M> {
        if let Some(s) = self.selected.get_mut(handle.field_index()) {
            *s = true;
        }
        self
    }

    /// Also sets the field named `name` (a patch built from field names, e.g. received as
    /// JSON); an unknown name is [`Error::InvalidValue`].
    pub fn with_name(mut self, name: &str) -> Result<Patch<M>> {
        match M::META
            .fields
            .iter()
            .position(|f| f.name == name && !f.hidden)
        {
            Some(i) if i < self.selected.len() => {
                self.selected[i] = true;
                Ok(self)
            }
            _ => Err(Error::InvalidValue {
                model: M::META.name,
                field: "<patch>",
                reason: format!(
                    "{:?} is not a field of the model",
                    name.chars().take(64).collect::<String>()
                ),
            }),
        }
    }

    /// Number of fields set.
    pub fn len(&self) -> usize {
        self.selected.iter().filter(|s| **s).count()
    }

    /// Whether the patch sets no field.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Names of the fields set, in declaration order.
    pub fn field_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.pairs().map(|(name, _)| name)
    }

    /// (field name, stored bytes) of each field set, in declaration order.
    pub fn pairs(&self) -> impl Iterator<Item = (&'static str, &[u8])> + '_ {
        M::META
            .fields
            .iter()
            .zip(&self.values)
            .zip(&self.selected)
            .filter(|(_, s)| **s)
            .map(|((f, v), _)| (f.name, v.as_slice()))
    }

    /// `current` with the patch's fields set.
    pub fn apply_to(&self, current: &M) -> Result<M> {
        let mut values = current.to_record()?.values;
        for (i, v) in values.iter_mut().enumerate() {
            if self.selected.get(i) == Some(&true) {
                *v = self.values[i].clone();
            }
        }
        decode::<M>(&values)
    }

    /// The value the patch was made from (its unset fields included).
    pub fn value(&self) -> Result<M> {
        decode::<M>(&self.values)
    }
}

/// Decodes a model from its rendered field bytes.
pub(crate) fn decode<M: Model>(values: &[Vec<u8>]) -> Result<M> {
    let fields = M::META
        .fields
        .iter()
        .zip(values)
        .map(|(f, v)| (f.name.as_bytes().to_vec(), v.clone()))
        .collect();
    M::from_hash("<patch>", fields)
}

/// A merge written in Rust: run on the client under optimistic concurrency. The writer reads
/// the current value and its version, calls `merge`, and writes the result with a version
/// check in the write script; if another write landed in between, nothing is written and the
/// merge runs again on the new value. So no update is lost, and `merge` may run more than once
/// per write (it must not have side effects).
pub trait MergeStrategy<M>: Send + Sync {
    /// The value after `patch` (written by replica `origin`) is merged into `current`.
    fn merge(&self, current: &M, patch: &Patch<M>, origin: &str) -> Result<M>;
}

/// Replaces the patch's fields: the custom-strategy form of last-write-wins.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overwrite;

impl<M: Model> MergeStrategy<M> for Overwrite {
    fn merge(&self, current: &M, patch: &Patch<M>, _origin: &str) -> Result<M> {
        patch.apply_to(current)
    }
}

/// Refuses a patch that sets nothing: a write that would change nothing is a mistake.
pub(crate) fn require_fields<M: Model>(patch: &Patch<M>, id: &str) -> Result<()> {
    if patch.is_empty() {
        return Err(Error::InvalidValue {
            model: M::META.name,
            field: "<patch>",
            reason: format!("the patch of shared instance {id:?} sets no field"),
        });
    }
    Ok(())
}
