#!/usr/bin/env python3
"""Check a dump.py output (stdin) against the fixture, using an independent
re-implementation of the layout rules in /work/shared/popoto-layout.md (sections 1-3).

No Redis access and no popoto import. Exit 0 and print "ok ..." when every key name,
set membership, zset score and hash value is exactly what the fixture implies.
"""

import datetime as dt
import json
import sys
from decimal import Decimal

import msgpack

from fixture import fixture


def seg(v):
    if isinstance(v, bool) or v is None or isinstance(v, (int, float, Decimal, str)):
        s = str(v)
    elif isinstance(v, dt.datetime):
        u = v.astimezone(dt.timezone.utc) if v.tzinfo else v
        s = u.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    elif isinstance(v, (dt.date, dt.time)):
        s = str(v)
    else:
        raise TypeError(v)
    s = s.replace("/", "//")
    for c in "'?*^[]-":
        s = s.replace(c, "/" + c)
    s = s.replace("{&#58;}", "/{&#58;}")
    return s.replace(":", "{&#58;}")


def score(v):
    if isinstance(v, dt.datetime):
        return (v if v.tzinfo else v.replace(tzinfo=dt.timezone.utc)).timestamp()
    if isinstance(v, dt.date):
        return float(v.toordinal())
    if isinstance(v, dt.time):
        return v.hour * 3600 + v.minute * 60 + v.second + v.microsecond / 1_000_000
    return float(v)


TAGGED = {dt.datetime: "__datetime__", dt.date: "__date__", dt.time: "__time__",
          Decimal: "__Decimal__", tuple: "__tuple__", set: "__set__"}


def encode(declared, v):
    if v is not None and declared in TAGGED:
        if declared is dt.datetime:
            payload = v.isoformat()
        elif declared is dt.date:
            payload = v.strftime("%Y%m%d")
        elif declared is dt.time:
            payload = v.isoformat()
        elif declared is Decimal:
            payload = str(v)
        else:
            payload = list(v)
        v = {TAGGED[declared]: True, "as_encodable": payload}
    return msgpack.packb(v).hex()


EP_TYPES = {"project_id": str, "episode_id": str, "title": str, "score": float, "rank": int}
KS_TYPES = {
    "tenant": str, "sku": str, "name": str, "count": int, "ratio": float, "active": bool,
    "note": str, "blob": bytes, "tags": list, "attrs": dict, "created": dt.datetime,
    "updated": dt.datetime, "day": dt.date, "at": dt.time, "price": Decimal, "flags": set,
    "pair": tuple, "region": str, "seen": dt.datetime, "due": dt.date, "slot": dt.time,
    "level": int,
}


def expected():
    data = fixture()
    keys = {}

    def add_set(k, m):
        keys.setdefault(k, {"type": "set", "set": []})["set"].append(m)

    def add_z(k, m, s):
        keys.setdefault(k, {"type": "zset", "zset": []})["zset"].append([m, repr(float(s))])

    for row in data["Episode"]:
        k = f"Episode:{seg(row['episode_id'])}:{seg(row['project_id'])}"
        keys[k] = {"type": "hash", "hash": {f: encode(EP_TYPES[f], row[f]) for f in EP_TYPES}}
        add_set("$Class:Episode", k)
        add_set(f"$KeyF:Episode:project_id:{seg(row['project_id'])}", k)
        add_z(f"$SortF:Episode:score:{seg(row['project_id'])}", k, score(row["score"]))
        add_z("$SortF:Episode:rank", k, score(row["rank"]))
    for row in data["KitchenSink"]:
        t = seg(row["tenant"])
        k = f"KitchenSink:{seg(row['sku'])}:{t}"
        keys[k] = {"type": "hash", "hash": {f: encode(KS_TYPES[f], row[f]) for f in KS_TYPES}}
        add_set("$Class:KitchenSink", k)
        add_set(f"$KeyF:KitchenSink:tenant:{t}", k)
        add_set(f"$UniqueKeyF:KitchenSink:sku:{seg(row['sku'])}", k)
        add_z(f"$SortF:KitchenSink:seen:{t}", k, score(row["seen"]))
        add_z(f"$SortF:KitchenSink:due:{t}", k, score(row["due"]))
        add_z("$SortF:KitchenSink:slot", k, score(row["slot"]))
        add_z(f"$SortF:KitchenSink:level:{t}:{seg(row['region'])}", k, score(row["level"]))
    for v in keys.values():
        if v["type"] == "set":
            v["set"].sort(key=lambda m: m.encode())
        elif v["type"] == "zset":
            v["zset"].sort(key=lambda ms: ms[0].encode())
        else:
            v["hash"] = dict(sorted(v["hash"].items()))
    return dict(sorted(keys.items()))


def main():
    got = json.load(sys.stdin)
    exp = expected()
    ok = True
    for k in sorted(set(got) | set(exp)):
        if got.get(k) != exp.get(k):
            ok = False
            print(f"MISMATCH {k!r}\n  got: {got.get(k)}\n  exp: {exp.get(k)}")
    for must in ("$SortF:Episode:score:umbrella{&#58;}eu/-1",
                 "$KeyF:KitchenSink:tenant:umbrella{&#58;}eu/-1",
                 "$SortF:KitchenSink:level:umbrella{&#58;}eu/-1:eu/-1",
                 "$UniqueKeyF:KitchenSink:sku:u/{&#58;}raw"):
        if must not in got:
            ok = False
            print(f"MISSING {must!r}")
    if not ok:
        sys.exit(1)
    print(f"ok: {len(got)} keys match the fixture byte for byte")


if __name__ == "__main__":
    main()
