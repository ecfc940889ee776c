//! Filtered reads of a confidence field's companion hash (HSCAN with a cursor).

use super::*;

/// A filtered read of a confidence field's companion hash, by HSCAN with a cursor.
///
/// The hash is the tenant's partition when the partition values are known (a tenant handle
/// supplies the tenant's), else the unpartitioned one. Members are matched by a MATCH pattern
/// built from key-field values with glob metacharacters escaped, then checked exactly on the
/// client, so a tenant named `a*` or `[ab]` sees only its own entries.
pub struct ConfidenceScan<'s, M: Model> {
    session: &'s Session,
    field: usize,
    known: Vec<(usize, String)>,
    legacy: bool,
    raw_pattern: Option<String>,
    count: usize,
    _m: std::marker::PhantomData<fn() -> M>,
}

impl Session {
    /// A filtered read of confidence field `field`.
    pub fn confidence_scan<M: Model>(
        &self,
        field: ConfidenceField<M, f64>,
    ) -> ConfidenceScan<'_, M> {
        ConfidenceScan {
            session: self,
            field: field.index(),
            known: Vec::new(),
            legacy: false,
            raw_pattern: None,
            count: 1000,
            _m: Default::default(),
        }
    }
}

impl<'s, M: Model> ConfidenceScan<'s, M> {
    /// Restricts to instances whose field `handle` (a key or partition field) equals `value`.
    pub fn with<T: crate::codec::KeySegment>(
        mut self,
        handle: impl crate::model::FieldHandle<M, T>,
        value: impl Into<T>,
    ) -> Self {
        self.known.push((
            handle.field_index(),
            crate::model::render_segment(&value.into()),
        ));
        self
    }

    /// Reads the unpartitioned (legacy) hash even for a partitioned field.
    pub fn legacy(mut self) -> Self {
        self.legacy = true;
        self
    }

    /// Entries per HSCAN call (a hint to Redis; default 1000).
    pub fn batch(mut self, count: usize) -> Self {
        self.count = count.max(1);
        self
    }

    /// Matches member names with a raw Redis glob, unescaped ([`crate::Admin::confidence_scan_raw`]).
    pub(crate) fn raw(mut self, pattern: String) -> Self {
        self.raw_pattern = Some(pattern);
        self
    }

    /// Known values, the tenant's included; a value of another tenant is refused.
    fn known(&self) -> Result<Vec<(usize, String)>> {
        let meta = M::META;
        self.session.check_model::<M>()?;
        let mut known = self.known.clone();
        if let (Scope::Tenant(t), Some(tf)) = (self.session.scope(), meta.tenant) {
            for (_, v) in known.iter().filter(|(f, _)| *f == tf) {
                self.session.require_tenant::<M>(Some(v))?;
            }
            known.push((tf, t.to_string()));
        }
        Ok(known)
    }

    /// The hash to scan and the MATCH pattern.
    fn target(&self, known: &[(usize, String)]) -> Result<(String, String)> {
        let meta = M::META;
        let f = meta.field(self.field);
        let value = |i: usize| known.iter().find(|(k, _)| *k == i).map(|(_, v)| v.as_str());
        let layout = self.session.layout();
        // The keyspace: the tenant's (known through a tenant handle, or given to the admin).
        let tenant = meta.tenant.and_then(value);
        if layout != Layout::Popoto && tenant.is_none() && meta.tenant.is_some() {
            return Err(Error::Layout {
                model: meta.name,
                op: "a confidence scan across tenants",
                layout,
            });
        }
        let hash = if self.legacy || f.partition_by.is_empty() {
            layout.confidence_key(meta, tenant, self.field, &[])?
        } else {
            let mut part = Vec::with_capacity(f.partition_by.len());
            for &p in f.partition_by {
                part.push(value(p).ok_or(Error::MissingPartition {
                    model: meta.name,
                    field: f.name,
                    partition_field: meta.fields[p].name,
                })?);
            }
            layout.confidence_key(meta, tenant, self.field, &part)?
        };
        let pattern = match &self.raw_pattern {
            Some(p) => p.clone(),
            None => layout.instance_match(meta, tenant, &|i| value(i)),
        };
        Ok((hash, pattern))
    }

    /// One HSCAN call from `cursor`; returns the next cursor (0 when done) and the entries.
    pub async fn page(&self, cursor: u64) -> Result<(u64, Vec<(Key<M>, ConfidenceState)>)> {
        let meta = M::META;
        let known = self.known()?;
        let (hash, pattern) = self.target(&known)?;
        let (initial, _) = field_params(meta, self.field);
        let cmd = redis::cmd("HSCAN")
            .arg(&hash)
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(self.count)
            .clone();
        let (next, flat): (u64, RawPairs) = self
            .session
            .backend()
            .await?
            .query("confidence scan", meta.name, &cmd)
            .instrument(tracing::debug_span!(
                "popoto",
                op = "confidence_scan",
                model = meta.name,
                tenant = self.session.scope().label(),
                commands = 1
            ))
            .await?;
        let mut out = Vec::with_capacity(flat.len());
        for (member, value) in flat {
            let Ok(member) = String::from_utf8(member) else {
                continue;
            };
            // Exact check: the pattern is a prefilter (`*` may span segments).
            let Ok(key) = Key::<M>::parse_in(self.session.layout(), &member) else {
                continue;
            };
            let matches = self.raw_pattern.is_some()
                || known
                    .iter()
                    .all(|(f, v)| match meta.key_fields.iter().position(|k| k == f) {
                        Some(pos) => key.segments().get(pos) == Some(v),
                        None => true,
                    });
            if !matches {
                continue;
            }
            let state =
                ConfidenceState::decode(&value, initial).map_err(|reason| Error::Decode {
                    model: meta.name,
                    key: hash.clone(),
                    field: member.clone(),
                    reason,
                })?;
            out.push((member, key, state));
        }
        // Through a tenant handle, an entry is returned only if its instance is the tenant's
        // (an entry planted under a key of the tenant's shape is not proof of ownership).
        let guard = Guard::of::<M>(self.session.layout(), self.session.scope());
        if !guard.is_tenant() || out.is_empty() {
            return Ok((next, out.into_iter().map(|(_, k, s)| (k, s)).collect()));
        }
        let members: Vec<String> = out.iter().map(|(m, _, _)| m.clone()).collect();
        let backend = self.session.backend().await?;
        let flags = guard.verify::<M>(&backend, &members).await?;
        let mut kept = Vec::with_capacity(out.len());
        let mut skipped = Vec::new();
        for ((member, key, state), flag) in out.into_iter().zip(flags) {
            match flag {
                None => kept.push((key, state)),
                Some(why) => skipped.push((member, why)),
            }
        }
        crate::verify::report(meta.name, std::slice::from_ref(&hash), &skipped);
        Ok((next, kept))
    }

    /// Every matching entry, page by page. Through the admin handle on a layout that gives
    /// each tenant its own keyspace (the cluster layout), a scan naming no tenant reads each
    /// tenant's keyspace in turn (explicit, not atomic; [`ConfidenceScan::page`] stays
    /// confined to one keyspace there).
    pub async fn fetch_all(&self) -> Result<Vec<(Key<M>, ConfidenceState)>> {
        let meta = M::META;
        let tenant_known = meta
            .tenant
            .is_some_and(|tf| self.known.iter().any(|(f, _)| *f == tf));
        if matches!(self.session.scope(), Scope::Admin)
            && !tenant_known
            && crate::keyspaces::per_keyspace(self.session.layout(), meta)
        {
            let backend = self.session.backend().await?;
            let mut out = Vec::new();
            let tf = meta.tenant.expect("a tenant model");
            for t in crate::keyspaces::tenants(&backend, meta, "confidence scan").await? {
                let mut known = self.known.clone();
                known.push((tf, t.as_str().to_owned()));
                let one = ConfidenceScan::<M> {
                    session: self.session,
                    field: self.field,
                    known,
                    legacy: self.legacy,
                    raw_pattern: self.raw_pattern.clone(),
                    count: self.count,
                    _m: Default::default(),
                };
                out.extend(Box::pin(one.fetch_all()).await?);
            }
            return Ok(out);
        }
        let mut cursor = 0;
        let mut out = Vec::new();
        loop {
            let (next, mut entries) = self.page(cursor).await?;
            out.append(&mut entries);
            if next == 0 {
                return Ok(out);
            }
            cursor = next;
        }
    }
}
