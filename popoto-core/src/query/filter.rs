//! Typed filters: what each kind of field handle can be filtered by, and how filters combine
//! (`&`, `|`, `!`, as popoto's `Q(a) & Q(b)`, `Q(a) | Q(b)`, `~Q(a)`).

use std::marker::PhantomData;
use std::ops::{Bound as RangeBound, RangeBounds};

use crate::codec::{KeySegment, Score};
use crate::model::{render_segment, KeyField, Model, SortedField};
use crate::script::score_arg;

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

    /// The tighter of two lower bounds (`low`) or of two upper bounds: at equal values the
    /// exclusive one.
    pub(crate) fn tighter(self, other: Bound, low: bool) -> Bound {
        match (self.value(), other.value()) {
            (None, _) => other,
            (_, None) => self,
            (Some(a), Some(b)) if a == b => match self {
                Bound::Excl(_) => self,
                _ => other,
            },
            (Some(a), Some(b)) => {
                if (a > b) == low {
                    self
                } else {
                    other
                }
            }
        }
    }
}

/// Which part of a key field's rendered value a pattern lookup compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Match {
    Prefix,
    Suffix,
    Contains,
}

impl Match {
    /// Whether the unescaped segment `value` matches `needle`.
    pub(crate) fn test(self, value: &str, needle: &str) -> bool {
        match self {
            Match::Prefix => value.starts_with(needle),
            Match::Suffix => value.ends_with(needle),
            Match::Contains => value.contains(needle),
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
    /// A prefix, suffix or substring of a key field's rendered value.
    KeyMatch {
        field: usize,
        how: Match,
        needle: String,
    },
    /// Every filter holds.
    All(Vec<FilterKind>),
    /// At least one filter holds.
    Any(Vec<FilterKind>),
    /// The filter does not hold (relative to the scope's own instances).
    Not(Box<FilterKind>),
}

impl FilterKind {
    /// Whether this filter needs the expression engine (it combines filters with OR or NOT).
    pub(crate) fn is_compound(&self) -> bool {
        match self {
            FilterKind::Any(_) | FilterKind::Not(_) => true,
            FilterKind::All(fs) => fs.iter().any(FilterKind::is_compound),
            _ => false,
        }
    }
}

/// A filter on an indexed field of model `M`, built from its typed handle; combine filters with
/// `&` (both hold), `|` (either holds) and `!` (does not hold, within the handle's scope).
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

    /// Instances matching every filter of `filters` (an empty list matches every instance).
    pub fn all(filters: impl IntoIterator<Item = Filter<M>>) -> Self {
        let mut out = Vec::new();
        for f in filters {
            match f.kind {
                FilterKind::All(inner) => out.extend(inner),
                k => out.push(k),
            }
        }
        Filter::new(FilterKind::All(out))
    }

    /// Instances matching at least one filter of `filters` (an empty list matches none): the
    /// union of their index sets, computed on the server.
    pub fn any(filters: impl IntoIterator<Item = Filter<M>>) -> Self {
        let mut out = Vec::new();
        for f in filters {
            match f.kind {
                FilterKind::Any(inner) => out.extend(inner),
                k => out.push(k),
            }
        }
        Filter::new(FilterKind::Any(out))
    }
}

impl<M> std::ops::BitAnd for Filter<M> {
    type Output = Filter<M>;
    /// Both filters hold (popoto's `Q(a) & Q(b)`).
    fn bitand(self, rhs: Filter<M>) -> Filter<M> {
        Filter::all([self, rhs])
    }
}

impl<M> std::ops::BitOr for Filter<M> {
    type Output = Filter<M>;
    /// Either filter holds (popoto's `Q(a) | Q(b)`).
    fn bitor(self, rhs: Filter<M>) -> Filter<M> {
        Filter::any([self, rhs])
    }
}

impl<M> std::ops::Not for Filter<M> {
    type Output = Filter<M>;
    /// The filter does not hold (popoto's `~Q(a)`): the scope's instances minus the filter's.
    fn not(self) -> Filter<M> {
        match self.kind {
            FilterKind::Not(inner) => Filter::new(*inner),
            k => Filter::new(FilterKind::Not(Box::new(k))),
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

    fn key_match(&self, how: Match, needle: &str) -> Filter<M> {
        Filter::new(FilterKind::KeyMatch {
            field: self.index(),
            how,
            needle: needle.to_owned(),
        })
    }

    /// Instances whose key value (as rendered in the key, e.g. `str()` of a number) starts
    /// with `prefix` (popoto's `field__startswith`). Served by an escaped `SSCAN` of the
    /// scope's own index set (the tenant's value set), so it costs a walk of the scope's
    /// instance keys, not an index lookup: see the queries guide.
    pub fn starts_with(&self, prefix: impl AsRef<str>) -> Filter<M> {
        self.key_match(Match::Prefix, prefix.as_ref())
    }

    /// Instances whose key value ends with `suffix` (popoto's `field__endswith`); costs like
    /// [`KeyField::starts_with`].
    pub fn ends_with(&self, suffix: impl AsRef<str>) -> Filter<M> {
        self.key_match(Match::Suffix, suffix.as_ref())
    }

    /// Instances whose key value contains `needle` (popoto's `field__contains`); costs like
    /// [`KeyField::starts_with`].
    pub fn contains(&self, needle: impl AsRef<str>) -> Filter<M> {
        self.key_match(Match::Contains, needle.as_ref())
    }
}

fn bound<T: Score>(b: RangeBound<&T>) -> Bound {
    match b {
        RangeBound::Included(v) => Bound::Incl(v.score()),
        RangeBound::Excluded(v) => Bound::Excl(v.score()),
        RangeBound::Unbounded => Bound::Unbounded,
    }
}

impl<M: Model, T: Score> SortedField<M, T> {
    fn bounded(&self, min: Bound, max: Bound) -> Filter<M> {
        Filter::new(FilterKind::Range {
            field: self.index(),
            min,
            max,
        })
    }

    /// Score within a Rust range of values: `a..b` (half-open), `a..=b`, `a..`, `..b`, `..=b`;
    /// one `ZRANGEBYSCORE`. Several ranges on one field are merged into one read too.
    pub fn range(&self, range: impl RangeBounds<T>) -> Filter<M> {
        self.bounded(bound(range.start_bound()), bound(range.end_bound()))
    }

    /// Score equal to `value`'s.
    pub fn eq(&self, value: impl Into<T>) -> Filter<M> {
        let s = value.into().score();
        self.bounded(Bound::Incl(s), Bound::Incl(s))
    }

    /// Score greater than `value`'s.
    pub fn gt(&self, value: impl Into<T>) -> Filter<M> {
        self.bounded(Bound::Excl(value.into().score()), Bound::Unbounded)
    }

    /// Score greater than or equal to `value`'s.
    pub fn gte(&self, value: impl Into<T>) -> Filter<M> {
        self.bounded(Bound::Incl(value.into().score()), Bound::Unbounded)
    }

    /// Score less than `value`'s.
    pub fn lt(&self, value: impl Into<T>) -> Filter<M> {
        self.bounded(Bound::Unbounded, Bound::Excl(value.into().score()))
    }

    /// Score less than or equal to `value`'s.
    pub fn lte(&self, value: impl Into<T>) -> Filter<M> {
        self.bounded(Bound::Unbounded, Bound::Incl(value.into().score()))
    }

    /// Score between `low`'s and `high`'s, both included.
    pub fn between(&self, low: impl Into<T>, high: impl Into<T>) -> Filter<M> {
        self.bounded(
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
plain_field_filters!(
    eq,
    is_in,
    gt,
    gte,
    lt,
    lte,
    starts_with,
    ends_with,
    contains
);
