#!/usr/bin/env python3
"""Dump every key of $REDIS_URL as JSON, raw bytes via plain redis-py (not popoto).

Env:    REDIS_URL (required). Only that database is read (SCAN + per-type reads).
Stdin:  ignored
Stdout: one JSON object, keys sorted:
  {"<key>": {"type": "hash",   "hash": {"<field>": "<hex of raw value bytes>", ...}},
   "<key>": {"type": "set",    "set":  ["<member>", ...]},               # sorted
   "<key>": {"type": "zset",   "zset": [["<member>", "<repr(float(score))>"], ...]},  # sorted by member
   "<key>": {"type": "list",   "list": ["<hex of element>", ...]},      # in list order
   "<key>": {"type": "string", "string": "<hex of value>"},
   ...}
  plus "ttl_ms": <int> on an entry only if the key has an expiry.
Text (keys, hash field names, set/zset members) is the UTF-8 decoding of the raw bytes;
bytes that are not valid UTF-8 are rendered as "$hex:" + lowercase hex of the raw bytes.
Sorting is by raw bytes (== code-point order for UTF-8).
Scores: Python repr of the float redis returns, e.g. "1.5", "0.0", "-7.0", "1e-05",
"1704067200.0", "1099511627776.0", "1e+300", "inf".
"""

import redis

from interop_common import emit, require_redis_url


def text(b):
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return "$hex:" + b.hex()


def main():
    url = require_redis_url()
    r = redis.Redis.from_url(url, decode_responses=False)
    keys = sorted(set(r.scan_iter(match=None, count=1000)))
    out = {}
    for key in keys:
        t = r.type(key).decode()
        entry = {"type": t}
        if t == "hash":
            h = r.hgetall(key)
            entry["hash"] = {text(f): h[f].hex() for f in sorted(h)}
        elif t == "set":
            entry["set"] = [text(m) for m in sorted(r.smembers(key))]
        elif t == "zset":
            z = r.zrange(key, 0, -1, withscores=True)
            entry["zset"] = [[text(m), repr(float(s))] for m, s in sorted(z, key=lambda ms: ms[0])]
        elif t == "list":
            entry["list"] = [e.hex() for e in r.lrange(key, 0, -1)]
        elif t == "string":
            entry["string"] = r.get(key).hex()
        elif t == "none":
            continue  # vanished between SCAN and TYPE
        else:
            entry["unsupported"] = True
        pttl = r.pttl(key)
        if pttl is not None and pttl >= 0:
            entry["ttl_ms"] = pttl
        out[text(key)] = entry
    emit(dict(sorted(out.items())))


if __name__ == "__main__":
    main()
