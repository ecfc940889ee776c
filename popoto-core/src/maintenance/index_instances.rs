//! Index checks and rebuilds, phase 2: every instance hash of a model (missing entries, keys
//! that disagree with the stored values).

use super::index_check::{Expected, IndexScan, Pending};
use super::*;

use crate::backend::KeyScan;
use crate::model::FieldKind;
use crate::plan::entries;
use crate::plan::{movable_partition_fields, Instance, Write};

impl<M: Model> IndexScan<M> {
    // ---- phase 2: every instance hash of the model: (b) and (d)

    pub(super) async fn instance_phase(&mut self) -> Result<()> {
        let meta = M::META;
        let pattern = self
            .backend
            .layout()
            .instance_pattern(meta, self.keyspace.as_deref());
        let mut scan = KeyScan::new(pattern, self.batch);
        while let Some(keys) = scan.next(&self.backend, Self::OP, meta.name).await? {
            let found: Vec<String> = keys
                .into_iter()
                .filter(|k| Key::<M>::parse_in(self.backend.layout(), k).is_ok())
                .collect();
            self.instances(found).await?;
        }
        Ok(())
    }

    /// Checks one batch of instance keys.
    async fn instances(&mut self, mut todo: Vec<String>) -> Result<()> {
        let meta = M::META;
        // Fields whose stored bytes decide an index entry: a repair re-checks them on the server.
        let mut guarded = movable_partition_fields(meta);
        for (i, f) in meta.fields.iter().enumerate() {
            if f.kind == FieldKind::Sorted && !guarded.contains(&i) {
                guarded.push(i);
            }
        }
        for attempt in 1..=MAX_ATTEMPTS {
            if todo.is_empty() {
                return Ok(());
            }
            let mut pipe = redis::pipe();
            for k in &todo {
                pipe.cmd("HGETALL").arg(k);
            }
            let replies = pipeline_results(&self.backend, Self::OP, meta, &mut pipe).await?;
            // Instances to verify, with their expected index writes.
            let mut expected: Vec<Expected> = Vec::new();
            for (key_str, reply) in std::mem::take(&mut todo).into_iter().zip(replies) {
                // Not a hash (a capped list, a foreign key): not an instance.
                let Ok(value) = reply else { continue };
                let Ok(fields) = redis::from_redis_value::<Vec<(Vec<u8>, Vec<u8>)>>(value) else {
                    continue;
                };
                if fields.is_empty() {
                    continue;
                }
                if attempt == 1 {
                    self.report.instances += 1;
                }
                let Ok(key) = Key::<M>::parse_in(self.backend.layout(), &key_str) else {
                    continue;
                };
                let raw: Vec<Option<Vec<u8>>> = guarded
                    .iter()
                    .map(|&g| {
                        let name = meta.fields[g].name.as_bytes();
                        fields
                            .iter()
                            .find(|(n, _)| n.as_slice() == name)
                            .map(|(_, v)| v.clone())
                    })
                    .collect();
                let unreadable = |detail: String| {
                    Self::finding(FindingKind::Unreadable, &key_str, &key_str, None, detail)
                };
                let record = match M::from_hash(&key_str, fields).and_then(|v| v.to_record()) {
                    Ok(r) => r,
                    Err(e) => {
                        self.record(unreadable(e.to_string()));
                        continue;
                    }
                };
                let mut mismatch = false;
                for (pos, &i) in meta.key_fields.iter().enumerate() {
                    if meta.fields[i].hidden {
                        continue;
                    }
                    let stored = record
                        .segments
                        .get(i)
                        .cloned()
                        .flatten()
                        .unwrap_or_default();
                    let in_key = key.segments().get(pos).cloned().unwrap_or_default();
                    if stored != in_key {
                        mismatch = true;
                        let f = Self::finding(
                            FindingKind::KeyMismatch,
                            &key_str,
                            &key_str,
                            Some(meta.fields[i].name),
                            format!("the key says {in_key:?}, the stored value is {stored:?}"),
                        );
                        self.record(f);
                    }
                }
                // Which indexes such an instance belongs to is ambiguous: reported, not repaired.
                if mismatch {
                    continue;
                }
                let hidden = if meta.has_hidden_key() {
                    key.segments().last().map(String::as_str)
                } else {
                    None
                };
                let inst = Instance {
                    layout: self.backend.layout(),
                    meta,
                    key: key_str.clone(),
                    record: &record,
                    hidden_key: hidden,
                };
                let mut plan = Plan::default();
                if let Err(e) = inst.add_indexes(&mut plan) {
                    self.record(unreadable(e.to_string()));
                    continue;
                }
                expected.push(Expected {
                    key: key_str,
                    plan,
                    raw,
                });
            }
            if expected.is_empty() {
                return Ok(());
            }
            let mut pipe = redis::pipe();
            for Expected { plan, .. } in &expected {
                for w in plan.writes() {
                    match w {
                        Write::SAdd { key, member } => {
                            pipe.cmd("SISMEMBER").arg(&plan.keys()[*key]).arg(member)
                        }
                        Write::ZAdd { key, member, .. } => {
                            pipe.cmd("ZSCORE").arg(&plan.keys()[*key]).arg(member)
                        }
                        Write::HSetNx { key, field, .. } => {
                            pipe.cmd("HEXISTS").arg(&plan.keys()[*key]).arg(field)
                        }
                        // add_indexes writes nothing else; keep replies aligned anyway.
                        _ => pipe.cmd("PING"),
                    };
                }
            }
            let replies = pipeline_results(&self.backend, Self::OP, meta, &mut pipe).await?;
            let mut it = replies.into_iter();
            let mut pending = Vec::new();
            for Expected {
                key: key_str,
                plan,
                raw,
            } in expected
            {
                let mut missing: Vec<(Write, String)> = Vec::new();
                for w in plan.writes() {
                    let reply = next_reply(&mut it, Self::OP, meta)?;
                    let detail = match w {
                        Write::SAdd { .. } | Write::HSetNx { .. } => {
                            (reply_int(reply) != Some(1)).then(|| "not in the index".to_owned())
                        }
                        Write::ZAdd { score, .. } => {
                            let found = reply_text(reply).and_then(|s| s.parse::<f64>().ok());
                            match found {
                                Some(f) if f == *score => None,
                                Some(f) => Some(format!(
                                    "score {} in the index, {} from the stored value",
                                    crate::script::score_arg(f),
                                    crate::script::score_arg(*score)
                                )),
                                None => Some("not in the index".to_owned()),
                            }
                        }
                        _ => None,
                    };
                    if let Some(d) = detail {
                        missing.push((w.clone(), d));
                    }
                }
                if missing.is_empty() {
                    continue;
                }
                // One repair per instance, in one script call: only the missing writes.
                let repair = match self.repair {
                    true => {
                        let writes: Vec<&Write> = missing.iter().map(|(w, _)| w).collect();
                        entries::restore(meta, &key_str, (&guarded, &raw), &plan, &writes)
                    }
                    false => Plan::default(),
                };
                let findings = missing
                    .into_iter()
                    .map(|(w, detail)| {
                        let index = match &w {
                            Write::SAdd { key, .. }
                            | Write::ZAdd { key, .. }
                            | Write::HSetNx { key, .. } => plan.keys()[*key].clone(),
                            _ => String::new(),
                        };
                        let field = self
                            .backend
                            .layout()
                            .parse_index_key(meta, &index)
                            .and_then(Self::field_of);
                        Self::finding(FindingKind::Missing, &index, &key_str, field, detail)
                    })
                    .collect();
                pending.push(Pending {
                    token: key_str,
                    findings,
                    plan: self.repair.then_some(repair),
                });
            }
            todo = self.settle(pending).await?;
            if attempt == MAX_ATTEMPTS {
                for member in &todo {
                    let f = Self::finding(
                        FindingKind::Missing,
                        member,
                        member,
                        None,
                        "kept changing during the rebuild; not repaired".into(),
                    );
                    self.record(f);
                }
            }
        }
        Ok(())
    }
}
