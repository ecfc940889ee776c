"""ConfidenceField oracle: popoto 1.10.1 writes and reads confidence data for the Rust tests.

Usage: ``python confidence.py <command>`` with a JSON document on stdin; prints one JSON
document on stdout (see README.md for the common contract: REDIS_URL required, exit 2 on
usage errors). Model: ``Memory(project=KeyField, key=UniqueKeyField, content=StringField,
certainty=ConfidenceField(...))`` -- unpartitioned for ``legacy-seed``, ``partition_by="project"``
for every other command. Floats are reported both as JSON numbers and as ``bits``: the 16 hex
digits of their IEEE-754 float64 encoding, so the Rust side compares them to the last bit.

Commands:

* ``legacy-seed`` -- stdin ``{"items": [{"project", "key", "content"}], "signals":
  {"<key>": [signal, ...]}, "drop_instances": ["<key>", ...]}``: creates every item with the
  *unpartitioned* model, applies the signals in order with ``update_confidence``, then deletes
  the instance hash (raw ``DEL``, the legacy entry stays) of the listed keys. stdout:
  ``{"hash": "$ConfidencF:Memory:certainty:data", "entries": {member: hex of raw bytes}}``.
* ``read`` -- stdin ``[{"project", "key"}, ...]``: for each instance (loaded with
  ``Memory.query.get``), popoto's own reads of the partitioned field. stdout: a list of
  ``null`` (no instance) or ``{"key": instance key, "hash": get_data_hash_key(...),
  "confidence": ..., "confidence_bits": ..., "data": {...}, "data_confidence_bits": ...}``.
* ``create`` -- stdin ``{"project", "key", "content"}``: ``Memory.create`` (partitioned).
  stdout: ``{"key": instance key}``.
* ``update`` -- stdin ``{"project", "key", "signal"}``: one ``update_confidence`` on the
  partitioned model. stdout: ``{"returned": value, "returned_bits": ...}``.
* ``ops`` -- stdin ``{"ops": [...]}``: runs each operation in order, on ``Memory``
  (partitioned) or ``Sure`` (``project`` KeyField, ``key`` UniqueKeyField,
  ``level = ConfidenceField(initial_confidence=1.0, evidence_cap=3)``, unpartitioned):
  ``{"op": "create", "model", "fields": {...}}`` (``Model.create(**fields)``; a confidence
  field left out takes its initial), ``{"op": "update", "model", "get": {"project", "key"},
  "signal"}`` (``update_confidence``) and ``{"op": "delete", "model", "get": {...}}``.
  stdout: ``{"done": <number of operations>}``. The Rust side reads the keys' raw bytes.
* ``expect`` -- stdin ``{"initial", "cap", "signals": [...]}``, no Redis: the states popoto
  1.10.1's formula gives after each signal, computed in plain Python floats:
  ``c' = clamp(c + (s - c) / (min(n + 1, cap) + 1))``. stdout: a list of
  ``{"confidence", "bits", "evidence_count", "corroborations", "contradictions"}``.
"""

import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from interop_common import die, emit  # noqa: E402


def bits(x):
    return struct.pack(">d", float(x)).hex()


def expect(doc):
    c = float(doc["initial"])
    cap = int(doc["cap"])
    n = pro = con = 0
    out = []
    for s in doc["signals"]:
        s = float(s)
        weight = min(n + 1, cap)
        c = c + (s - c) / (weight + 1)
        c = max(0.0, min(1.0, c))
        n += 1
        if s >= 0.5:
            pro += 1
        else:
            con += 1
        out.append(
            {
                "confidence": c,
                "bits": bits(c),
                "evidence_count": n,
                "corroborations": pro,
                "contradictions": con,
            }
        )
    return out


def model(partitioned):
    import popoto
    from popoto import ConfidenceField, KeyField, StringField, UniqueKeyField

    if partitioned:

        class Memory(popoto.Model):
            project = KeyField()
            key = UniqueKeyField()
            content = StringField()
            certainty = ConfidenceField(partition_by="project")

    else:

        class Memory(popoto.Model):
            project = KeyField()
            key = UniqueKeyField()
            content = StringField()
            certainty = ConfidenceField()

    return Memory


def sure_model():
    import popoto
    from popoto import ConfidenceField, KeyField, UniqueKeyField

    class Sure(popoto.Model):
        project = KeyField()
        key = UniqueKeyField()
        level = ConfidenceField(initial_confidence=1.0, evidence_cap=3)

    return Sure


def run_ops(doc, models):
    from popoto import ConfidenceField

    done = 0
    for op in doc["ops"]:
        model = models[op["model"]]
        field = {"Memory": "certainty", "Sure": "level"}[op["model"]]
        if op["op"] == "create":
            if model.create(**op["fields"]) is None:
                die(f"popoto did not create {op!r}", 1)
        else:
            m = model.query.get(**op["get"])
            if m is None:
                die(f"no instance for {op!r}", 1)
            if op["op"] == "update":
                ConfidenceField.update_confidence(m, field, signal=op["signal"])
            elif op["op"] == "delete":
                m.delete()
            else:
                die(f"unknown operation {op!r}")
        done += 1
    return {"done": done}


def main():
    if len(sys.argv) != 2:
        die("usage: confidence.py legacy-seed|read|create|update|ops|expect < input.json")
    command = sys.argv[1]
    doc = json.load(sys.stdin)
    if command == "expect":
        emit(expect(doc))
        return
    if command not in ("legacy-seed", "read", "create", "update", "ops"):
        die(f"unknown command {command!r}")

    from interop_common import require_redis_url

    require_redis_url()
    from popoto import ConfidenceField
    from popoto.redis_db import get_REDIS_DB

    Memory = model(partitioned=command != "legacy-seed")
    redis = get_REDIS_DB()

    if command == "ops":
        emit(run_ops(doc, {"Memory": Memory, "Sure": sure_model()}))
    elif command == "legacy-seed":
        made = {}
        for item in doc["items"]:
            m = Memory.create(project=item["project"], key=item["key"], content=item["content"])
            if m is None:
                die(f"popoto did not create {item!r}", 1)
            made[item["key"]] = m
        for key, signals in doc.get("signals", {}).items():
            for s in signals:
                ConfidenceField.update_confidence(made[key], "certainty", signal=s)
        for key in doc.get("drop_instances", []):
            redis.delete(made[key].db_key.redis_key)
        hash_key = "$ConfidencF:Memory:certainty:data"
        entries = {
            k.decode(): v.hex() for k, v in sorted(redis.hgetall(hash_key).items())
        }
        emit({"hash": hash_key, "entries": entries})
    elif command == "read":
        out = []
        for item in doc:
            m = Memory.query.get(project=item["project"], key=item["key"])
            if m is None:
                out.append(None)
                continue
            field = Memory._meta.fields["certainty"]
            value = ConfidenceField.get_confidence(m, "certainty")
            data = ConfidenceField.get_confidence_data(m, "certainty")
            out.append(
                {
                    "key": m.db_key.redis_key,
                    "hash": field.get_data_hash_key(m, "certainty"),
                    "confidence": value,
                    "confidence_bits": bits(value),
                    "data": data,
                    "data_confidence_bits": bits(data["confidence"]),
                }
            )
        emit(out)
    elif command == "create":
        m = Memory.create(project=doc["project"], key=doc["key"], content=doc["content"])
        if m is None:
            die(f"popoto did not create {doc!r}", 1)
        emit({"key": m.db_key.redis_key})
    elif command == "update":
        m = Memory.query.get(project=doc["project"], key=doc["key"])
        if m is None:
            die(f"no instance {doc!r}", 1)
        returned = ConfidenceField.update_confidence(m, "certainty", signal=doc["signal"])
        emit({"returned": returned, "returned_bits": bits(returned)})


if __name__ == "__main__":
    main()
