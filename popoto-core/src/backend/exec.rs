//! Lua scripts: each call can go as `EVALSHA` or as `EVAL` with the source, and a `NOSCRIPT`
//! refusal (nothing ran) is sent again as `EVAL`, never behind a later write of the same batch.

use redis::{Arg, ErrorKind, RedisError, RedisResult, ServerErrorKind, Value};

use super::conn::Link;

/// A Lua script with its source, so that a call can go as `EVAL` as well as `EVALSHA`.
///
/// Derefs to the `redis::Script` (its SHA1), which builds the usual `EVALSHA`.
pub(crate) struct Script {
    code: &'static str,
    inner: redis::Script,
    /// Whether the script only reads (a recording backend runs it).
    pub(super) read_only: bool,
}

impl Script {
    /// The script of this source (one that writes).
    pub(crate) fn new(code: &'static str) -> Script {
        Script {
            code,
            inner: redis::Script::new(code),
            read_only: false,
        }
    }

    /// A script of this source that only reads: a dry run ([`super::Backend::recording`])
    /// runs it.
    pub(crate) fn read_only(code: &'static str) -> Script {
        Script {
            read_only: true,
            ..Script::new(code)
        }
    }

    /// The script's source, as `EVAL` sends it.
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn source(&self) -> &'static str {
        self.code
    }

    /// Starts a call of the script: `EVALSHA <sha1>` or `EVAL <source>`, with room for
    /// `args` more arguments of `bytes` bytes in all.
    pub(crate) fn command(&self, form: Form, args: usize, bytes: usize) -> redis::Cmd {
        let head = match form {
            Form::Sha => 48,
            Form::Eval => 16 + self.code.len(),
        };
        let mut cmd = redis::Cmd::with_capacity(args + 2, bytes + head);
        match form {
            Form::Sha => cmd.arg("EVALSHA").arg(self.inner.get_hash()),
            Form::Eval => cmd.arg("EVAL").arg(self.code),
        };
        cmd
    }

    /// The `EVAL` (source sent in full) of a call built as `EVALSHA` of this script.
    pub(crate) fn to_eval(&self, cmd: &redis::Cmd) -> RedisResult<redis::Cmd> {
        let mut args = cmd.args_iter();
        let head = (args.next(), args.next());
        let sha = self.inner.get_hash().as_bytes();
        if !matches!(head, (Some(Arg::Simple(name)), Some(Arg::Simple(hash)))
            if name.eq_ignore_ascii_case(b"EVALSHA") && hash == sha)
        {
            return Err(RedisError::from((
                ErrorKind::Client,
                "not an EVALSHA of this script",
            )));
        }
        let mut out = self.command(Form::Eval, args.len(), 0);
        for arg in args {
            match arg {
                Arg::Simple(bytes) => out.arg(bytes),
                _ => {
                    return Err(RedisError::from((
                        ErrorKind::Client,
                        "a script call with a cursor argument",
                    )))
                }
            };
        }
        Ok(out)
    }
}

impl std::ops::Deref for Script {
    type Target = redis::Script;

    fn deref(&self) -> &redis::Script {
        &self.inner
    }
}

/// How a script call is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    /// `EVALSHA`: refused with `NOSCRIPT` when the server's script cache lacks the script.
    Sha,
    /// `EVAL` with the source: always runs (and caches the script).
    Eval,
}

/// Times one script call is sent before a `NOSCRIPT` is given up: the first try may be an
/// `EVALSHA`, every later one is an `EVAL`, which a server cannot refuse with `NOSCRIPT`; the
/// bound only stops a loop should something between us and Redis (a proxy) refuse it anyway.
pub(crate) const SCRIPT_ATTEMPTS: usize = 5;

/// The tries of one script call: first in a given form, then, while the server answers
/// `NOSCRIPT` (nothing ran), again as `EVAL`, at most [`SCRIPT_ATTEMPTS`] times in all; the
/// last `NOSCRIPT` is the call's reply when every try was refused.
///
/// Only for a call behind which no later call of the same ordered batch was sent: resending it
/// must not land after a later write (see [`super::Backend::eval_many`]).
pub(crate) struct Tries {
    form: Form,
    attempt: usize,
}

impl Tries {
    /// The first try goes as `first`.
    pub(crate) fn new(first: Form) -> Tries {
        Tries {
            form: first,
            attempt: 1,
        }
    }

    /// The form of the next try.
    pub(crate) fn form(&self) -> Form {
        self.form
    }

    /// Whether `reply` is a `NOSCRIPT` to send again (as `EVAL`), within the bound.
    pub(crate) fn again<T>(&mut self, reply: &RedisResult<T>) -> bool {
        let again = matches!(reply, Err(e) if is_noscript(e)) && self.attempt < SCRIPT_ATTEMPTS;
        if again {
            self.form = Form::Eval;
            self.attempt += 1;
        }
        again
    }
}

/// Whether the server refused a script call because its script cache lacks the script.
pub(crate) fn is_noscript(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

/// Plans applied by one script call in [`super::Backend::eval_many`]: large enough that the call's own
/// cost is spread thin, small enough that one call blocks the server for about a millisecond.
pub(crate) const PLANS_PER_CALL: usize = 100;

/// Plans sent per pipelined round trip in [`super::Backend::eval_many`].
pub(crate) const PLANS_PER_ROUND_TRIP: usize = 1000;

/// The calls of one round trip of [`super::Backend::eval_many`] (at most
/// [`PLANS_PER_ROUND_TRIP`] plans), as first sent: [`PLANS_PER_CALL`] plans per call, every call
/// `EVAL` but the last, which is `EVALSHA`.
pub(crate) fn round_trip(
    script: &Script,
    chunk: &[(Vec<String>, Vec<Vec<u8>>)],
) -> Vec<redis::Cmd> {
    let batches: Vec<_> = chunk.chunks(PLANS_PER_CALL).collect();
    let last = batches.len().saturating_sub(1);
    batches
        .iter()
        .enumerate()
        .map(|(i, batch)| {
            let form = if i == last { Form::Sha } else { Form::Eval };
            batch_call(script, form, batch)
        })
        .collect()
}

/// One call applying several plans (the batch protocol of `lua/apply.lua`).
pub(crate) fn batch_call(
    script: &Script,
    form: Form,
    plans: &[(Vec<String>, Vec<Vec<u8>>)],
) -> redis::Cmd {
    let nkeys: usize = plans.iter().map(|(keys, _)| keys.len()).sum();
    let nargs: usize = plans.iter().map(|(_, args)| args.len() + 2).sum();
    let mut cmd = script.command(form, 2 + nkeys + nargs, 0);
    cmd.arg(nkeys);
    for (keys, _) in plans {
        cmd.arg(keys);
    }
    cmd.arg("*");
    for (keys, args) in plans {
        cmd.arg(keys.len()).arg(args.len()).arg(args);
    }
    cmd
}

/// A call of `script` with these keys and arguments.
pub(crate) fn script_call(
    script: &Script,
    form: Form,
    keys: &[String],
    args: &[Vec<u8>],
) -> redis::Cmd {
    let mut cmd = script.command(form, 1 + keys.len() + args.len(), 0);
    cmd.arg(keys.len()).arg(keys).arg(args);
    cmd
}

/// The `EVALSHA` of `script` with these keys and arguments.
pub(crate) fn evalsha(script: &Script, keys: &[String], args: &[Vec<u8>]) -> redis::Cmd {
    script_call(script, Form::Sha, keys, args)
}

/// The replies of a batch call of `n` instances (`what` names it in errors): one per instance,
/// in order; an instance's error element is its error, and a reply of another shape or a failed
/// call is every instance's error.
pub(crate) fn split_batch_replies(
    reply: RedisResult<Value>,
    n: usize,
    what: &str,
) -> impl Iterator<Item = RedisResult<Value>> {
    let (items, error) = match reply {
        Ok(Value::Array(items)) if items.len() == n => (items, None),
        Ok(other) => (
            Vec::new(),
            Some(RedisError::from((
                ErrorKind::Parse,
                "unexpected reply to a batch call",
                format!("{what}: {other:?}"),
            ))),
        ),
        Err(e) => (Vec::new(), Some(e)),
    };
    let failed = error.map(|e| (0..n).map(move |_| Err(e.clone())));
    items
        .into_iter()
        .map(|v| match v {
            Value::ServerError(e) => Err(e.into()),
            v => Ok(v),
        })
        .chain(failed.into_iter().flatten())
}

/// Sends `cmd`, an `EVALSHA` of `script`; on `NOSCRIPT` (nothing ran) it is sent again as
/// `EVAL`, which runs whatever the script cache holds.
pub(super) async fn send_script(
    c: &mut Link,
    script: &Script,
    cmd: &redis::Cmd,
) -> RedisResult<redis::Value> {
    let mut tries = Tries::new(Form::Sha);
    loop {
        let reply = match tries.form() {
            Form::Sha => cmd.query_async(c).await,
            Form::Eval => script.to_eval(cmd)?.query_async(c).await,
        };
        if !tries.again(&reply) {
            return reply;
        }
    }
}

/// The error for a pipeline that answered nothing.
pub(super) fn no_reply() -> RedisError {
    RedisError::from((ErrorKind::Parse, "no reply to a script call"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &redis::Cmd) -> Vec<Vec<u8>> {
        cmd.args_iter()
            .map(|a| match a {
                Arg::Simple(b) => b.to_vec(),
                _ => panic!("a cursor argument"),
            })
            .collect()
    }

    /// A call built as `EVALSHA` becomes the same call as `EVAL` with the source; a command
    /// that is not an `EVALSHA` of the script is refused, never sent with another source.
    #[test]
    fn an_evalsha_becomes_the_same_eval() {
        let script = Script::new("return ARGV[1]");
        let keys = vec!["k1".to_owned(), "k2".to_owned()];
        let argv = vec![b"a".to_vec(), vec![0, 255]];
        let sha = evalsha(&script, &keys, &argv);
        let eval = script.to_eval(&sha).unwrap();
        assert_eq!(
            args(&eval),
            args(&script_call(&script, Form::Eval, &keys, &argv))
        );
        let mut expected = vec![b"EVAL".to_vec(), b"return ARGV[1]".to_vec(), b"2".to_vec()];
        expected.extend([b"k1".to_vec(), b"k2".to_vec(), b"a".to_vec(), vec![0, 255]]);
        assert_eq!(args(&eval), expected);
        let other = Script::new("return 2");
        assert!(other.to_eval(&sha).is_err());
        assert!(script.to_eval(redis::cmd("GET").arg("k")).is_err());
    }

    /// A refused call is tried again as `EVAL`, at most `SCRIPT_ATTEMPTS` times in all; any
    /// other reply ends the tries.
    #[test]
    fn noscript_is_retried_as_eval_a_bounded_number_of_times() {
        let noscript: RedisResult<()> = Err(RedisError::from((
            ErrorKind::Server(ServerErrorKind::NoScript),
            "no script",
        )));
        let mut tries = Tries::new(Form::Sha);
        assert_eq!(tries.form(), Form::Sha);
        let mut sent = 1;
        while tries.again(&noscript) {
            assert_eq!(tries.form(), Form::Eval);
            sent += 1;
        }
        assert_eq!(sent, SCRIPT_ATTEMPTS);
        let mut tries = Tries::new(Form::Sha);
        assert!(!tries.again(&Ok(())));
        let other: RedisResult<()> = Err(RedisError::from((ErrorKind::Client, "other")));
        assert!(!tries.again(&other));
    }
}
