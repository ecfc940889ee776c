#!/usr/bin/env python3
"""popoto 1.10.1 as the oracle of tests/interop_queries.rs: Q objects (|, &, ~), key-field
lookups (__startswith, __endswith) and values(), on the Episode model of models.py.

Env:    REDIS_URL (required).
Usage:  breadth.py seed    stdin: a JSON list of Episode rows (typed JSON) to create.
                           stdout: the instance keys created, in order.
        breadth.py query   stdin: a JSON list of specs, each
                             {"tenant": T, "q": TREE, "values": [field, ...] | null}
                           where TREE is {"leaf": {filter kwargs}} | {"and": [TREE, ...]} |
                           {"or": [TREE, ...]} | {"not": TREE}.
                           Runs Episode.query.filter(Q(project_id=T) & TREE) (a leaf that
                           filters the tenant-partitioned `score` also gets project_id=T, as
                           popoto requires the partition in the same Q).
                           stdout: one result per spec: the sorted instance keys, or with
                           "values" the rows as lists of typed values, sorted.
"""

import json
import sys

from interop_common import die, emit, from_typed, require_redis_url, to_typed

require_redis_url()

from popoto import Q  # noqa: E402

from models import Episode  # noqa: E402


def build(tree, tenant):
    if not isinstance(tree, dict) or len(tree) != 1:
        die(f"bad tree {tree!r}")
    (op, arg), = tree.items()
    if op == "leaf":
        kwargs = from_typed(arg)
        if any(k == "score" or k.startswith("score__") for k in kwargs):
            kwargs["project_id"] = tenant
        return Q(**kwargs)
    if op in ("and", "or"):
        parts = [build(t, tenant) for t in arg]
        out = parts[0]
        for p in parts[1:]:
            out = (out & p) if op == "and" else (out | p)
        return out
    if op == "not":
        return ~build(arg, tenant)
    die(f"bad tree op {op!r}")


def run(spec):
    tenant = spec["tenant"]
    q = Q(project_id=tenant) & build(spec["q"], tenant)
    fields = spec.get("values")
    if fields:
        rows = Episode.query.filter(q).values(*fields)
        out = [[to_typed(r[f]) for f in fields] for r in rows]
        return sorted(out, key=lambda r: json.dumps(r, sort_keys=True))
    return sorted(e.db_key.redis_key for e in Episode.query.filter(q))


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ("seed", "query"):
        die("usage: breadth.py seed|query < json")
    data = json.loads(sys.stdin.read())
    if sys.argv[1] == "seed":
        keys = []
        for row in data:
            e = Episode.create(**from_typed(row))
            if e is None:
                die(f"popoto wrote nothing for {row!r}")
            keys.append(e.db_key.redis_key)
        emit(keys)
    else:
        emit([run(spec) for spec in data])


if __name__ == "__main__":
    main()
