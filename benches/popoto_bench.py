#!/usr/bin/env python3
"""The benchmark suite's workload through Python popoto 1.10.1 (run by benches/suite.rs).

Env:    REDIS_URL (required; a private server's database that this script FLUSHes first).
Args:   JSON object of sizes (argv[1]), e.g.
        {"seq_create": 2000, "bulk_create": 20000, "tenant_rows": 2000, "gets": 2000,
         "range_queries": 150, "range_rows": 200, "counts": 2000, "memories": 1000,
         "confidence_updates": 2000, "migration_entries": 10000, "rounds": 3}
Stdout: one JSON object: {"popoto": version, "ops": {name: {"ops": n, "secs": s}, ...}}
        where s is the best (shortest) of the rounds, as the Rust side keeps its best round:
        sequential creates go to a new tenant each round, bulk creates into an emptied
        database; the migration runs once (it empties the legacy hash it moves).

The models are the Rust suite's (same class names, fields, key order and partitions), so
both sides store byte-identical data and run the same queries.
"""

import json
import os
import sys
import time
import uuid

url = os.environ.get("REDIS_URL", "").strip()
if not url.startswith("redis://"):
    sys.stderr.write("popoto_bench.py: REDIS_URL must be set to a private redis:// URL\n")
    sys.exit(2)
if url.rstrip("/").endswith("/0"):
    os.environ["POPOTO_ALLOW_DB0_FLUSH"] = "1"

import popoto  # noqa: E402  (reads REDIS_URL at import time)
from popoto import KeyField, AutoKeyField, StringField, SortedField, UniqueKeyField  # noqa: E402
from popoto.fields.confidence_field import ConfidenceField  # noqa: E402
from popoto.redis_db import get_REDIS_DB  # noqa: E402


class Episode(popoto.Model):
    project_id = KeyField()
    episode_id = AutoKeyField()
    title = StringField()
    score = SortedField(type=float, partition_by="project_id")


class Memory(popoto.Model):
    project = KeyField()
    key = UniqueKeyField()
    content = StringField()
    certainty = ConfidenceField(initial_confidence=0.5, evidence_cap=20, partition_by="project")


def timed(fn):
    start = time.perf_counter()
    n = fn()
    return n, time.perf_counter() - start


def best(rounds, fn):
    runs = [timed(fn) for _ in range(rounds)]
    return min(runs, key=lambda r: r[1])


def main():
    sizes = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    size = lambda name, default: int(sizes.get(name, default))  # noqa: E731
    rounds = max(1, size("rounds", 3))
    db = get_REDIS_DB()
    db.flushdb()
    ops = {}

    # Sequential create: Model.create, one instance at a time (a new tenant each round).
    n = size("seq_create", 2000)

    def seq(r):
        for i in range(n):
            Episode.create(project_id=f"seqp{r}", title=f"episode {i}", score=i / n)
        return n

    count, secs = min((timed(lambda: seq(r)) for r in range(rounds)), key=lambda run: run[1])
    ops["seq_create"] = {"ops": count, "secs": secs}

    # Bulk create: Model.bulk_create in popoto's batches of 1,000, each round into an emptied
    # database (the last round's rows stay for the reads).
    bulk = size("bulk_create", 20000)
    per_tenant = size("tenant_rows", 2000)
    tenants = max(1, bulk // per_tenant)
    runs = []
    for _ in range(rounds):
        db.flushdb()
        batch = [
            Episode(project_id=f"t{i % tenants}", title=f"episode {i}", score=(i // tenants) / per_tenant)
            for i in range(bulk)
        ]
        runs.append(timed(lambda: len(Episode.bulk_create(batch))))
    count, secs = min(runs, key=lambda run: run[1])
    ops["bulk_create"] = {"ops": count, "secs": secs}
    keys = [(e.project_id, e.episode_id) for e in batch if e.project_id == "t0"]

    # Get by key: every key field given, so popoto reads the derived key (one HGETALL).
    gets = size("gets", 2000)

    def get():
        for i in range(gets):
            project_id, episode_id = keys[i % len(keys)]
            if Episode.query.get(project_id=project_id, episode_id=episode_id) is None:
                raise SystemExit("get returned None")
        return gets

    count, secs = best(rounds, get)
    ops["get"] = {"ops": count, "secs": secs}

    # Range query on one tenant's partition, 200 rows.
    queries = size("range_queries", 150)
    rows = size("range_rows", 200)

    def range_query():
        for _ in range(queries):
            got = Episode.query.filter(project_id="t0", score__gte=0.5, limit=rows)
            if len(got) != rows:
                raise SystemExit(f"range query returned {len(got)} rows, expected {rows}")
        return queries

    count, secs = best(rounds, range_query)
    ops["range_query"] = {"ops": count, "secs": secs}

    # Count of one tenant's instances.
    counts = size("counts", 2000)

    def count_query():
        for _ in range(counts):
            if Episode.query.count(project_id="t0") != len(keys):
                raise SystemExit("count mismatch")
        return counts

    count, secs = best(rounds, count_query)
    ops["count"] = {"ops": count, "secs": secs}

    # Confidence update: popoto's capped Bayesian update (EXISTS + its Lua script).
    memories = [
        Memory.create(project="conf", key=f"m{i}", content=f"memory {i}")
        for i in range(size("memories", 1000))
    ]
    updates = size("confidence_updates", 2000)

    def confidence():
        for i in range(updates):
            ConfidenceField.update_confidence(memories[i % len(memories)], "certainty", (i % 10) / 10)
        return updates

    count, secs = best(rounds, confidence)
    ops["confidence_update"] = {"ops": count, "secs": secs}

    # migrate_to_partitioned of a legacy (unpartitioned) companion hash.
    entries = size("migration_entries", 10000)
    if entries > 0:
        db.flushdb()
        legacy = "$ConfidencF:Memory:certainty:data"
        initial = bytes.fromhex(
            "84aa636f6e666964656e6365cb3fe0000000000000ae65766964656e63655f636f756e7400"
            "ae636f72726f626f726174696f6e7300ae636f6e74726164696374696f6e7300"
        )
        pipe = db.pipeline(transaction=False)
        per = max(1, entries // 100)
        for i in range(entries):
            mem = Memory(project=f"p{i // per}", key=uuid.uuid4().hex, content="legacy")
            pipe.hset(mem.db_key.redis_key, mapping=_hash_of(mem))
            pipe.hset(legacy, mem.db_key.redis_key, initial)
            if i % 1000 == 999:
                pipe.execute()
        pipe.execute()

        def migrate():
            report = ConfidenceField.migrate_to_partitioned(Memory, "certainty")
            if report["migrated"] != entries:
                raise SystemExit(f"migrated {report['migrated']} of {entries}")
            return entries

        count, secs = timed(migrate)
        ops["migrate_to_partitioned"] = {"ops": count, "secs": secs}

    db.flushdb()
    json.dump({"popoto": getattr(popoto, "__version__", "?"), "ops": ops}, sys.stdout)
    sys.stdout.write("\n")


def _hash_of(mem):
    """The instance hash popoto would store for mem (msgpack values, as popoto encodes them)."""
    from popoto.models.encoding import encode_popoto_model_obj

    return encode_popoto_model_obj(mem)


if __name__ == "__main__":
    main()
