"""Shared helpers for the popoto interop scripts (tests/interop/).

* ``require_redis_url()`` -- must be called BEFORE ``import popoto``: popoto reads
  ``REDIS_URL`` once at import time and would otherwise fall back to
  127.0.0.1:6379/0, which these scripts must never touch.
* ``to_typed`` / ``from_typed`` -- the typed JSON encoding shared with the Rust side
  (see README.md, "Typed JSON encoding").
* ``emit`` -- print one JSON document on stdout.
"""

import datetime
import json
import math
import os
import sys
from decimal import Decimal

TAGS = ("$datetime", "$date", "$time", "$decimal", "$bytes", "$set", "$tuple", "$float")


def die(msg, code=2):
    sys.stderr.write(f"{os.path.basename(sys.argv[0])}: {msg}\n")
    sys.exit(code)


def require_redis_url():
    """Return $REDIS_URL or exit(2). Call before importing popoto."""
    url = os.environ.get("REDIS_URL", "").strip()
    if not url:
        die("REDIS_URL is not set; refusing to fall back to a default Redis")
    if not (url.startswith("redis://") or url.startswith("unix://") or url.startswith("rediss://")):
        die(f"REDIS_URL={url!r} is not a redis:// URL")
    # popoto must read exactly this URL (it reads os.environ at import time).
    os.environ["REDIS_URL"] = url
    if "popoto" in sys.modules:
        die("internal error: popoto was imported before REDIS_URL was checked")
    return url


def _sort_key(v):
    return (type(v).__name__, v if isinstance(v, (int, float, str, bytes)) else repr(v))


def to_typed(v):
    """Python value -> JSON-able value with tagged objects for non-JSON types."""
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        if math.isfinite(v):
            return v
        return {"$float": repr(v)}  # 'inf', '-inf', 'nan'
    if isinstance(v, datetime.datetime):  # before date: datetime is a date subclass
        return {"$datetime": v.isoformat()}
    if isinstance(v, datetime.date):
        return {"$date": v.isoformat()}
    if isinstance(v, datetime.time):
        return {"$time": v.isoformat()}
    if isinstance(v, Decimal):
        return {"$decimal": str(v)}
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"$bytes": bytes(v).hex()}
    if isinstance(v, (set, frozenset)):
        try:
            items = sorted(v)
        except TypeError:
            items = sorted(v, key=_sort_key)
        return {"$set": [to_typed(x) for x in items]}
    if isinstance(v, tuple):
        return {"$tuple": [to_typed(x) for x in v]}
    if isinstance(v, list):
        return [to_typed(x) for x in v]
    if isinstance(v, dict):
        out = {}
        for k, val in v.items():
            if not isinstance(k, str):
                raise TypeError(f"dict key {k!r} is not a str; cannot encode as JSON")
            out[k] = to_typed(val)
        return out
    raise TypeError(f"cannot encode {type(v).__name__} value {v!r} as typed JSON")


def from_typed(v):
    """Inverse of to_typed. A JSON object with exactly one key that is a tag is a typed value."""
    if isinstance(v, list):
        return [from_typed(x) for x in v]
    if isinstance(v, dict):
        if len(v) == 1:
            (tag, payload), = v.items()
            if tag == "$datetime":
                return datetime.datetime.fromisoformat(payload)
            if tag == "$date":
                return datetime.date.fromisoformat(payload)
            if tag == "$time":
                return datetime.time.fromisoformat(payload)
            if tag == "$decimal":
                return Decimal(payload)
            if tag == "$bytes":
                return bytes.fromhex(payload)
            if tag == "$set":
                return set(from_typed(x) for x in payload)
            if tag == "$tuple":
                return tuple(from_typed(x) for x in payload)
            if tag == "$float":
                return float(payload)
        return {k: from_typed(x) for k, x in v.items()}
    return v


def emit(obj):
    """Print one JSON document (ASCII-only, no NaN/Infinity literals) + newline."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=True, allow_nan=False) + "\n")
    sys.stdout.flush()
