//! Streaming: every row of a query as an async `Stream`, read page by page with cursors, so
//! memory stays at one page whatever the number of rows.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::error::Result;
use crate::model::{Key, Model};

use super::cursor::Cursor;
use super::expr::{self, Program, Resolved};
use super::resolve::Source;
use super::Query;

type Inner<'s, M> = Pin<Box<dyn Stream<Item = Result<(Key<M>, M)>> + Send + 's>>;

/// The rows of a query, read one cursor page at a time ([`Query::stream`]). A `Stream`; also
/// usable without a futures crate through [`Rows::next`].
pub struct Rows<'s, M: Model> {
    inner: Inner<'s, M>,
}

impl<M: Model> Rows<'_, M> {
    /// The next row, `None` at the end. After an error the stream ends.
    pub async fn next(&mut self) -> Option<Result<(Key<M>, M)>> {
        std::future::poll_fn(|cx| self.inner.as_mut().poll_next(cx)).await
    }
}

impl<M: Model> Stream for Rows<'_, M> {
    type Item = Result<(Key<M>, M)>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Where a stream is: the next page's cursor (`Some(None)`: the first page), `None` once the
/// last page was read; and the rows of the current page not yet yielded.
struct State<'s, M: Model> {
    query: Query<'s, M>,
    next: Option<Option<Cursor>>,
    buffer: VecDeque<(Key<M>, M)>,
    size: usize,
}

impl<'s, M: Model> Query<'s, M> {
    /// Every matching row, in the order of [`Query::order_by`] (which a stream needs), read
    /// `page_size` rows at a time with [`Query::page`]: one page in memory, rows inserted
    /// during the stream neither repeat nor hide others, each row is verified like `fetch`.
    pub fn stream(self, page_size: usize) -> Rows<'s, M> {
        let state = State {
            query: self,
            next: Some(None),
            buffer: VecDeque::new(),
            size: page_size,
        };
        let inner = futures_util::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(row) = st.buffer.pop_front() {
                    return Some((Ok(row), st));
                }
                let cursor = st.next.take()?;
                match st.query.clone().page(cursor.as_ref(), st.size).await {
                    Ok(page) => {
                        st.buffer.extend(page.rows);
                        st.next = page.next.map(Some);
                    }
                    Err(e) => return Some((Err(e), st)),
                }
            }
        });
        Rows {
            inner: Box::pin(inner),
        }
    }
}

/// Where a scan is: the `SSCAN` cursor of the scope's own set (`None` once it returned 0), and
/// the rows of the current batch not yet yielded.
struct ScanState<'s, M: Model> {
    query: Query<'s, M>,
    cursor: Option<u64>,
    buffer: VecDeque<(Key<M>, M)>,
    batch: usize,
    /// The query's other filters, with their lookups run once (at the first batch).
    others: Option<Vec<Resolved>>,
}

impl<'s, M: Model> Query<'s, M> {
    /// Every matching row in no particular order, for models without a sorted field to order
    /// by: an `SSCAN` of the scope's own set (the tenant's value set; the class set through the
    /// admin handle), `batch` members a call, each batch filtered by the query's other filters
    /// (one `select.lua` call), verified and loaded; memory stays at one batch. `SSCAN`'s
    /// guarantee applies: an instance present from start to end is returned at least once,
    /// and twice only if the set is resized during the scan. Order, offset and limit do not
    /// apply (the stream yields `Error::InvalidQuery`).
    pub fn scan(self, batch: usize) -> Rows<'s, M> {
        let state = ScanState {
            query: self,
            cursor: Some(0),
            buffer: VecDeque::new(),
            batch: batch.max(1),
            others: None,
        };
        let inner = futures_util::stream::unfold(state, |mut st| async move {
            loop {
                if let Some(row) = st.buffer.pop_front() {
                    return Some((Ok(row), st));
                }
                let cursor = st.cursor.take()?;
                match st.query.scan_batch(cursor, st.batch, &mut st.others).await {
                    Ok((next, rows)) => {
                        st.buffer.extend(rows);
                        st.cursor = (next != 0).then_some(next);
                    }
                    Err(e) => return Some((Err(e), st)),
                }
            }
        });
        Rows {
            inner: Box::pin(inner),
        }
    }

    /// One `SSCAN` call of the scope's set from `cursor`: the next cursor and the rows of the
    /// batch that pass the query's filters, verification and predicate.
    async fn scan_batch(
        &self,
        cursor: u64,
        batch: usize,
        others: &mut Option<Vec<Resolved>>,
    ) -> Result<(u64, Vec<(Key<M>, M)>)> {
        if self.order.is_some() || self.client_order.is_some() || self.is_paged() {
            return Err(self.invalid(
                "a scan has no order, offset or limit (use stream with order_by for an order)",
            ));
        }
        let sources = self.resolve()?;
        let own = self.scope_set();
        let backend = self.session.backend().await?;
        let mut commands = 1;
        let others = match others {
            Some(o) => o,
            None => {
                let rest: Vec<Source> = sources
                    .iter()
                    .filter(|s| !matches!(s, Source::Set(k) if *k == own))
                    .cloned()
                    .collect();
                others.insert(expr::run_lookups::<M>(&backend, &rest, &mut commands).await?)
            }
        };
        let cmd = redis::cmd("SSCAN")
            .arg(&own)
            .arg(cursor)
            .arg("COUNT")
            .arg(batch)
            .clone();
        let (next, members): (u64, Vec<Vec<u8>>) =
            backend.query("scan", M::META.name, &cmd).await?;
        let candidates = if others.is_empty() || members.is_empty() {
            members
        } else {
            let mut srcs = vec![Resolved::List(members)];
            srcs.extend(others.iter().cloned());
            expr::run(&backend, M::META.name, &Program::of(&srcs, Some(0))).await?
        };
        let (loaded, _) = self.hydrate(&sources, candidates, &mut commands).await?;
        let mut rows = Vec::with_capacity(loaded.len());
        for row in loaded {
            let (key, value) = row?;
            if self.predicate.as_ref().is_none_or(|p| p(&value)) {
                rows.push((key, value));
            }
        }
        Ok((next, rows))
    }
}
