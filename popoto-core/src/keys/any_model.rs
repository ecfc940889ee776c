//! The layout as seen without any model: which keys are popoto's index keys, what their
//! members are, and which model they belong to (for the index check that needs no model).

/// How an index key holds its entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexShape {
    /// A set of instance keys (`$Class`, `$KeyF`, `$UniqueKeyF`).
    Set,
    /// A sorted set of instance keys (`$SortF`).
    Sorted,
    /// A hash whose fields are instance keys (`$ConfidencF`).
    Hash,
}

impl IndexShape {
    /// The Redis type of such a key (as `TYPE` answers).
    pub fn redis_type(self) -> &'static str {
        match self {
            IndexShape::Set => "set",
            IndexShape::Sorted => "zset",
            IndexShape::Hash => "hash",
        }
    }
}

/// MATCH patterns of every index key of every model, and their shape.
pub const ANY_INDEX_PATTERNS: [(&str, IndexShape); 5] = [
    ("$Class:*", IndexShape::Set),
    ("$KeyF:*", IndexShape::Set),
    ("$UniqueKeyF:*", IndexShape::Set),
    ("$SortF:*", IndexShape::Sorted),
    ("$ConfidencF:*", IndexShape::Hash),
];

/// The shape of an index key and its model's (escaped) class name, if `key` is one.
pub fn index_shape(key: &str) -> Option<(IndexShape, &str)> {
    let (prefix, rest) = key.split_once(':')?;
    let shape = ANY_INDEX_PATTERNS
        .iter()
        .find(|(p, _)| p.strip_suffix(":*") == Some(prefix))
        .map(|(_, s)| *s)?;
    let model = rest.split(':').next().filter(|m| !m.is_empty())?;
    Some((shape, model))
}

/// Whether `member` is shaped like an instance key of `model` (an escaped class name): the
/// name, then at least one segment.
pub fn instance_of(model: &str, member: &str) -> bool {
    member
        .strip_prefix(model)
        .is_some_and(|rest| rest.starts_with(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_keys_name_their_model_and_shape() {
        assert_eq!(
            index_shape("$KeyF:Episode:project:acme"),
            Some((IndexShape::Set, "Episode"))
        );
        assert_eq!(index_shape("$Class:Note"), Some((IndexShape::Set, "Note")));
        assert_eq!(
            index_shape("$ConfidencF:Memory:certainty:data:acme"),
            Some((IndexShape::Hash, "Memory"))
        );
        assert_eq!(
            index_shape("$SortF:Note:rank"),
            Some((IndexShape::Sorted, "Note"))
        );
        for other in ["$PopotoCatalog:ids", "$Jobs:mail", "Note:1:acme", "$Class:"] {
            assert_eq!(index_shape(other), None, "{other}");
        }
        assert!(instance_of("Note", "Note:1:acme"));
        assert!(!instance_of("Note", "Notes:1"));
        assert!(!instance_of("Note", "Note"));
    }
}
