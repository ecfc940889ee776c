//! Typed filters: what each kind of field handle can be filtered by.

use std::marker::PhantomData;

use crate::codec::{KeySegment, Score};
use crate::model::{render_segment, KeyField, Model, SortedField};
use crate::plan::score_arg;

/// One side of a score range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Bound {
    Unbounded,
    Incl(f64),
    Excl(f64),
}

impl Bound {
    pub(crate) fn arg(self, low: bool) -> String {
        match self {
            Bound::Unbounded if low => "-inf".into(),
            Bound::Unbounded => "+inf".into(),
            Bound::Incl(v) => score_arg(v),
            Bound::Excl(v) => format!("({}", score_arg(v)),
        }
    }

    pub(crate) fn value(self) -> Option<f64> {
        match self {
            Bound::Incl(v) | Bound::Excl(v) => Some(v),
            Bound::Unbounded => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FilterKind {
    KeyEq {
        field: usize,
        segment: String,
    },
    KeyIn {
        field: usize,
        segments: Vec<String>,
    },
    Range {
        field: usize,
        min: Bound,
        max: Bound,
    },
}

/// A filter on an indexed field of model `M`, built from its typed handle.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter<M> {
    pub(crate) kind: FilterKind,
    _m: PhantomData<fn() -> M>,
}

impl<M> Filter<M> {
    fn new(kind: FilterKind) -> Self {
        Filter {
            kind,
            _m: PhantomData,
        }
    }
}

impl<M: Model, T: KeySegment> KeyField<M, T> {
    /// Instances whose key field equals `value` (`$KeyF` set).
    pub fn eq(&self, value: impl Into<T>) -> Filter<M> {
        Filter::new(FilterKind::KeyEq {
            field: self.index(),
            segment: render_segment(&value.into()),
        })
    }

    /// Instances whose key field is one of `values` (union of `$KeyF` sets).
    pub fn is_in<V: Into<T>>(&self, values: impl IntoIterator<Item = V>) -> Filter<M> {
        let segments = values
            .into_iter()
            .map(|v| render_segment(&v.into()))
            .collect();
        Filter::new(FilterKind::KeyIn {
            field: self.index(),
            segments,
        })
    }
}

impl<M: Model, T: Score> SortedField<M, T> {
    fn range(&self, min: Bound, max: Bound) -> Filter<M> {
        Filter::new(FilterKind::Range {
            field: self.index(),
            min,
            max,
        })
    }

    /// Score equal to `value`'s.
    pub fn eq(&self, value: impl Into<T>) -> Filter<M> {
        let s = value.into().score();
        self.range(Bound::Incl(s), Bound::Incl(s))
    }

    /// Score greater than `value`'s.
    pub fn gt(&self, value: impl Into<T>) -> Filter<M> {
        self.range(Bound::Excl(value.into().score()), Bound::Unbounded)
    }

    /// Score greater than or equal to `value`'s.
    pub fn gte(&self, value: impl Into<T>) -> Filter<M> {
        self.range(Bound::Incl(value.into().score()), Bound::Unbounded)
    }

    /// Score less than `value`'s.
    pub fn lt(&self, value: impl Into<T>) -> Filter<M> {
        self.range(Bound::Unbounded, Bound::Excl(value.into().score()))
    }

    /// Score less than or equal to `value`'s.
    pub fn lte(&self, value: impl Into<T>) -> Filter<M> {
        self.range(Bound::Unbounded, Bound::Incl(value.into().score()))
    }

    /// Score between `low`'s and `high`'s, both included.
    pub fn between(&self, low: impl Into<T>, high: impl Into<T>) -> Filter<M> {
        self.range(
            Bound::Incl(low.into().score()),
            Bound::Incl(high.into().score()),
        )
    }
}

/// Marker that a field has an index to filter on; plain fields never implement it, so a
/// filter on one is a compile error that says so.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a plain field: it has no index to filter on",
    label = "plain fields cannot be filtered in Redis",
    note = "declare the field `#[popoto(key)]` or `#[popoto(sorted)]`, or filter on the client with `.matching(|m| ...)`"
)]
pub trait Indexed {
    /// Never called: no type implements the trait.
    fn unreachable() -> std::convert::Infallible;
}

macro_rules! plain_field_filters {
    ($($name:ident),*) => {
        impl<M: Model, T> crate::model::Field<M, T> {
            $(
                /// Does not compile: a plain field has no index (see [`Indexed`]).
                #[allow(unreachable_code)]
                pub fn $name<V>(&self, _value: V) -> Filter<M>
                where
                    Self: Indexed,
                {
                    match <Self as Indexed>::unreachable() {}
                }
            )*
        }
    };
}
plain_field_filters!(eq, is_in, gt, gte, lt, lte);
