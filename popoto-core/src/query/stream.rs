//! Streaming: every row of a query as an async `Stream`, read page by page with cursors, so
//! memory stays at one page whatever the number of rows.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;

use crate::error::Result;
use crate::model::{Key, Model};

use super::cursor::Cursor;
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
