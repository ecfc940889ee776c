//! The clock of `LwwMapCrdt`: hybrid-logical-clock tags, the replicas that issue them, and the
//! per-field merge every replica and the server's script apply.
//!
//! A [`Tag`] is `(millis, counter, replica)`. A replica's clock never goes backwards and moves
//! past every tag it observes, so an edit made after seeing another edit always carries a
//! greater tag, whatever the two machines' wall clocks say ("the latest edit wins"). Edits made
//! without seeing each other are ordered by physical time, then counter, then replica id; two
//! equal tags (a replica id used twice) are ordered by their values' bytes. The order is total,
//! so the greatest tag per field is the same whatever order the tags arrive in.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// Longest replica id accepted, in bytes.
pub const MAX_REPLICA_LEN: usize = 128;

/// Largest millisecond count a tag carries: exact in a Lua number (the script compares them).
const MAX_MILLIS: u64 = (1 << 53) - 1;

/// A hybrid-logical-clock timestamp with the replica that issued it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tag {
    /// Physical part: milliseconds since the Unix epoch (never behind an observed tag).
    pub millis: u64,
    /// Logical part: orders events within one millisecond.
    pub counter: u32,
    /// The issuing replica (tie-break).
    pub replica: String,
}

impl Ord for Tag {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.millis, self.counter, self.replica.as_bytes()).cmp(&(
            other.millis,
            other.counter,
            other.replica.as_bytes(),
        ))
    }
}

impl PartialOrd for Tag {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Tag {
    /// The stored form, `<millis>:<counter>:<replica>` (what the script parses and compares).
    pub fn encode(&self) -> String {
        format!("{}:{}:{}", self.millis, self.counter, self.replica)
    }

    /// Parses the stored form, refusing anything the script would not accept.
    pub fn parse(text: &str) -> Result<Tag> {
        let bad = |reason: &str| Error::CorruptShared {
            key: String::new(),
            reason: format!("tag {:?}: {reason}", truncate(text)),
        };
        let mut parts = text.splitn(3, ':');
        let (Some(ms), Some(c), Some(replica)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("not <millis>:<counter>:<replica>"));
        };
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 16 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(c) {
            return Err(bad("millis and counter must be decimal digits"));
        }
        let millis: u64 = ms.parse().map_err(|_| bad("millis out of range"))?;
        let counter: u32 = c.parse().map_err(|_| bad("counter out of range"))?;
        if millis > MAX_MILLIS {
            return Err(bad("millis out of range"));
        }
        check_replica(replica).map_err(|_| bad("invalid replica id"))?;
        Ok(Tag {
            millis,
            counter,
            replica: replica.to_owned(),
        })
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// Refuses an empty replica id, one longer than [`MAX_REPLICA_LEN`] or with control characters.
fn check_replica(id: &str) -> Result<()> {
    let reason = if id.is_empty() {
        "empty"
    } else if id.len() > MAX_REPLICA_LEN {
        "longer than 128 bytes"
    } else if id.chars().any(char::is_control) {
        "contains a control character"
    } else {
        return Ok(());
    };
    Err(Error::InvalidValue {
        model: "shared",
        field: "replica",
        reason: format!("replica id {:?} is {reason}", truncate(id)),
    })
}

/// Whether `(new_tag, new_value)` replaces `(old_tag, old_value)` in an LWW map: a greater tag
/// wins; equal tags are ordered by the values' bytes (the same rule as the server's script).
pub fn wins(new_tag: &Tag, new_value: &[u8], old_tag: &Tag, old_value: &[u8]) -> bool {
    match new_tag.cmp(old_tag) {
        Ordering::Greater => true,
        Ordering::Less => false,
        Ordering::Equal => new_value > old_value,
    }
}

/// One writer of shared instances: an origin label and a hybrid logical clock. Cheap to clone
/// (clones share the clock). Use one per process, connection or device, never the same id for
/// two writers at once: the id is the tie-break of equal clocks, and it is shown to every
/// subscriber of the instances it writes (so never a tenant id).
#[derive(Clone, Debug)]
pub struct Replica {
    id: Arc<str>,
    clock: Arc<Mutex<(u64, u32)>>,
}

impl Replica {
    /// A replica named `id` (not empty, at most 128 bytes, no control characters).
    pub fn new(id: impl AsRef<str>) -> Result<Replica> {
        let id = id.as_ref();
        check_replica(id)?;
        Ok(Replica {
            id: id.into(),
            clock: Arc::new(Mutex::new((0, 0))),
        })
    }

    /// A replica with a fresh random id (`r-<uuid4 hex>`).
    pub fn random() -> Replica {
        Replica {
            id: format!("r-{}", uuid::Uuid::new_v4().simple()).into(),
            clock: Arc::new(Mutex::new((0, 0))),
        }
    }

    /// The replica id (the origin of its writes).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A new tag at the current wall-clock time.
    pub fn tick(&self) -> Tag {
        self.tick_at(now_millis())
    }

    /// A new tag at physical time `now` (milliseconds): greater than every tag this replica
    /// issued or observed before.
    pub fn tick_at(&self, now: u64) -> Tag {
        let mut clock = self.clock.lock().unwrap_or_else(|p| p.into_inner());
        let now = now.min(MAX_MILLIS);
        *clock = if now > clock.0 {
            (now, 0)
        } else if clock.1 == u32::MAX {
            ((clock.0 + 1).min(MAX_MILLIS), 0)
        } else {
            (clock.0, clock.1 + 1)
        };
        Tag {
            millis: clock.0,
            counter: clock.1,
            replica: self.id.to_string(),
        }
    }

    /// Moves the clock past `tag` (seen in a change event or a read), so this replica's next
    /// edit wins over it.
    pub fn observe(&self, tag: &Tag) {
        let mut clock = self.clock.lock().unwrap_or_else(|p| p.into_inner());
        if (tag.millis, tag.counter) > *clock {
            *clock = (tag.millis.min(MAX_MILLIS), tag.counter);
        }
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(MAX_MILLIS))
}

/// A replica's copy of an LWW map: per field, the bytes and tag of the greatest write seen.
/// Merging is commutative, associative and idempotent, so replicas that saw the same writes in
/// any order, any number of times, hold the same map (and the server's, which merges alike).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LwwMap {
    fields: BTreeMap<String, (Vec<u8>, Tag)>,
}

impl LwwMap {
    /// An empty map.
    pub fn new() -> LwwMap {
        LwwMap::default()
    }

    /// Merges one field write; whether it won (changed the map).
    pub fn apply(&mut self, field: &str, value: &[u8], tag: &Tag) -> bool {
        match self.fields.get(field) {
            Some((old, old_tag)) if !wins(tag, value, old_tag, old) => false,
            _ => {
                self.fields
                    .insert(field.to_owned(), (value.to_vec(), tag.clone()));
                true
            }
        }
    }

    /// Merges every field of `other`.
    pub fn merge(&mut self, other: &LwwMap) {
        for (f, (v, t)) in &other.fields {
            self.apply(f, v, t);
        }
    }

    /// The bytes and tag of `field`.
    pub fn get(&self, field: &str) -> Option<(&[u8], &Tag)> {
        self.fields.get(field).map(|(v, t)| (v.as_slice(), t))
    }

    /// Every field, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8], &Tag)> {
        self.fields
            .iter()
            .map(|(f, (v, t))| (f.as_str(), v.as_slice(), t))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the map has no field.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(ms: u64, c: u32, r: &str) -> Tag {
        Tag {
            millis: ms,
            counter: c,
            replica: r.into(),
        }
    }

    #[test]
    fn tags_order_by_time_then_counter_then_replica_and_round_trip() {
        assert!(tag(2, 0, "a") > tag(1, 9, "z"));
        assert!(tag(1, 1, "a") > tag(1, 0, "z"));
        assert!(tag(1, 1, "b") > tag(1, 1, "a"));
        for t in [tag(0, 0, "a"), tag(MAX_MILLIS, u32::MAX, "x:y")] {
            assert_eq!(Tag::parse(&t.encode()).unwrap(), t);
        }
        for bad in [
            "",
            "1:2",
            "a:1:r",
            "1:b:r",
            "1:1:",
            "-1:0:r",
            "1:99999999999:r",
        ] {
            assert!(Tag::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Tag::parse(&format!("{}:0:r", MAX_MILLIS + 1)).is_err());
    }

    /// The latest edit wins even when its replica's wall clock is behind: a replica that
    /// observed a tag issues greater ones.
    #[test]
    fn an_edit_after_observing_another_wins_whatever_the_wall_clocks() {
        let fast = Replica::new("zz-fast").unwrap();
        let slow = Replica::new("aa-slow").unwrap();
        let first = fast.tick_at(10_000);
        slow.observe(&first);
        let second = slow.tick_at(5);
        assert!(second > first);
        // Ticks are strictly increasing even when time stands still or goes back.
        let a = slow.tick_at(5);
        let b = slow.tick_at(1);
        assert!(b > a && a > second);
    }

    #[test]
    fn lww_maps_converge_whatever_the_order_and_repetition() {
        let writes = [
            ("x", b"1".to_vec(), tag(1, 0, "a")),
            ("x", b"2".to_vec(), tag(1, 0, "b")),
            ("y", b"3".to_vec(), tag(2, 0, "a")),
            ("x", b"4".to_vec(), tag(1, 0, "b")),
        ];
        let mut forward = LwwMap::new();
        for (f, v, t) in &writes {
            forward.apply(f, v, t);
        }
        let mut backward = LwwMap::new();
        for (f, v, t) in writes.iter().rev().chain(writes.iter()) {
            backward.apply(f, v, t);
        }
        assert_eq!(forward, backward);
        // Equal tags: the greater bytes win.
        assert_eq!(forward.get("x").unwrap().0, b"4");
    }
}
