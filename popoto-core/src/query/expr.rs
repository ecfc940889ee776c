//! Filters combined with OR / NOT: the program `lua/select.lua` evaluates on the server, and
//! the client-side resolution of key-field lookups (`starts_with`, ...) by an escaped `SSCAN`.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::LazyLock;

use crate::backend::{Backend, Script};
use crate::error::{Error, Result};
use crate::model::{Key, Model};

use super::filter::Match;
use super::resolve::{Node, Source};

/// The expression script (`lua/select.lua`).
pub(crate) static SELECT: LazyLock<Script> =
    LazyLock::new(|| Script::read_only(crate::script::lua!("select.lua")));

/// Members per `SSCAN` call.
const SCAN_COUNT: usize = 1000;

/// A `select.lua` call: the index keys it reads and its arguments.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Program {
    pub(super) keys: Vec<String>,
    pub(super) args: Vec<Vec<u8>>,
}

impl Program {
    /// The intersection of `sources`, iterated in the order of `sources[driver]` (else of the
    /// smallest).
    pub(super) fn of(sources: &[Resolved], driver: Option<usize>) -> Program {
        let mut p = Program::default();
        p.arg(driver.map_or(0, |d| d + 1));
        p.arg(sources.len());
        for s in sources {
            p.source(s);
        }
        p
    }

    fn arg(&mut self, a: impl ToString) {
        self.args.push(a.to_string().into_bytes());
    }

    fn key(&mut self, k: &str) -> usize {
        self.keys.push(k.to_owned());
        self.keys.len()
    }

    fn source(&mut self, s: &Resolved) {
        match s {
            Resolved::Index(Source::Set(k)) => {
                let i = self.key(k);
                self.arg("S");
                self.arg(i);
            }
            Resolved::Index(Source::Union(ks)) => {
                let idx: Vec<usize> = ks.iter().map(|k| self.key(k)).collect();
                self.arg("U");
                self.arg(idx.len());
                for i in idx {
                    self.arg(i);
                }
            }
            Resolved::Index(Source::Range { zset, min, max, .. }) => {
                let i = self.key(zset);
                self.arg("R");
                self.arg(i);
                self.arg(min.arg(true));
                self.arg(max.arg(false));
            }
            Resolved::List(items) => {
                self.arg("L");
                self.arg(items.len());
                self.args.extend(items.iter().cloned());
            }
            Resolved::Expr { node, universe } => self.node(node, universe),
            // Scans and expressions are resolved before a program is built.
            Resolved::Index(other) => unreachable_source(other),
        }
    }

    fn node(&mut self, n: &RNode, universe: &str) {
        match n {
            RNode::Leaf(s) => self.source(s),
            RNode::And(ns) | RNode::Or(ns) => {
                for c in ns {
                    self.node(c, universe);
                }
                self.arg(if matches!(n, RNode::And(_)) { "A" } else { "O" });
                self.arg(ns.len());
            }
            RNode::Not(c) => {
                self.source(&Resolved::Index(Source::Set(universe.to_owned())));
                self.node(c, universe);
                self.arg("N");
            }
        }
    }
}

#[track_caller]
fn unreachable_source(s: &Source) {
    debug_assert!(false, "unresolved source in a program: {s:?}");
}

/// A source whose lookups have been run: index reads, literal lists, expressions.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Resolved {
    Index(Source),
    List(Vec<Vec<u8>>),
    Expr { node: Box<RNode>, universe: String },
}

/// [`Node`] with lookups run.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum RNode {
    Leaf(Resolved),
    And(Vec<RNode>),
    Or(Vec<RNode>),
    Not(Box<RNode>),
}

impl Resolved {
    /// Whether this source needs the script.
    pub(super) fn is_expr(&self) -> bool {
        matches!(self, Resolved::Expr { .. })
    }
}

/// A boxed future (the lookups recurse through expression trees; naming the type keeps the
/// `Send` check of callers finite).
type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// Runs every key-field lookup of `sources` (an escaped `SSCAN` of the scope's own set, each
/// match compared exactly) and returns the sources with the matches as literal lists.
pub(super) async fn run_lookups<M: Model>(
    backend: &Backend,
    sources: &[Source],
    commands: &mut usize,
) -> Result<Vec<Resolved>> {
    let mut out = Vec::with_capacity(sources.len());
    for s in sources {
        out.push(resolve_source::<M>(backend, s, commands).await?);
    }
    Ok(out)
}

fn resolve_source<'a, M: Model>(
    backend: &'a Backend,
    s: &'a Source,
    commands: &'a mut usize,
) -> Boxed<'a, Resolved> {
    Box::pin(async move {
        Ok(match s {
            Source::Scan {
                set,
                pattern,
                field,
                how,
                needle,
            } => Resolved::List(
                scan::<M>(backend, set, pattern, *field, *how, needle, commands).await?,
            ),
            Source::Expr { node, universe } => Resolved::Expr {
                node: Box::new(resolve_node::<M>(backend, node, commands).await?),
                universe: universe.clone(),
            },
            other => Resolved::Index(other.clone()),
        })
    })
}

fn resolve_node<'a, M: Model>(
    backend: &'a Backend,
    n: &'a Node,
    commands: &'a mut usize,
) -> Boxed<'a, RNode> {
    Box::pin(async move {
        Ok(match n {
            Node::Leaf(s) => RNode::Leaf(resolve_source::<M>(backend, s, commands).await?),
            Node::And(ns) | Node::Or(ns) => {
                let mut out = Vec::with_capacity(ns.len());
                for c in ns {
                    out.push(resolve_node::<M>(backend, c, &mut *commands).await?);
                }
                if matches!(n, Node::And(_)) {
                    RNode::And(out)
                } else {
                    RNode::Or(out)
                }
            }
            Node::Not(c) => RNode::Not(Box::new(resolve_node::<M>(backend, c, commands).await?)),
        })
    })
}

/// The members of `set` (the scope's own index set) whose key field `field` matches `needle`:
/// an `SSCAN` narrowed by `pattern`, then an exact comparison of the parsed segment.
async fn scan<M: Model>(
    backend: &Backend,
    set: &str,
    pattern: &str,
    field: usize,
    how: Match,
    needle: &str,
    commands: &mut usize,
) -> Result<Vec<Vec<u8>>> {
    let pos = M::META
        .key_fields
        .iter()
        .position(|&i| i == field)
        .ok_or_else(|| Error::WrongFieldKind {
            model: M::META.name,
            field: M::META.fields[field].name,
            expected: "key",
        })?;
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    let mut cursor = 0u64;
    loop {
        let cmd = redis::cmd("SSCAN")
            .arg(set)
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(SCAN_COUNT)
            .clone();
        *commands += 1;
        let (next, members): (u64, Vec<Vec<u8>>) =
            backend.query("query", M::META.name, &cmd).await?;
        for m in members {
            let hit = std::str::from_utf8(&m)
                .ok()
                .and_then(|k| Key::<M>::parse_in(backend.layout(), k).ok())
                .is_some_and(|k| how.test(&k.segments()[pos], needle));
            // SSCAN may return a member twice.
            if hit && seen.insert(m.clone()) {
                found.push(m);
            }
        }
        if next == 0 {
            return Ok(found);
        }
        cursor = next;
    }
}

/// Runs `program` and returns the members it selects, in order.
pub(super) async fn run(
    backend: &Backend,
    model: &'static str,
    program: &Program,
) -> Result<Vec<Vec<u8>>> {
    let reply = backend
        .eval("query", model, &SELECT, &program.keys, &program.args)
        .await?;
    redis::from_redis_value(reply).map_err(|e| Error::Protocol {
        op: "query",
        model,
        detail: e.to_string(),
    })
}
