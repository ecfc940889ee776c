#!/usr/bin/env python3
"""Run popoto 1.10.1 queries given as JSON on stdin against $REDIS_URL.

Env:    REDIS_URL (required).
        POPOTO_DECODE_QUARANTINE_DISABLE defaults to "1" here, so a hash value popoto
        cannot decode makes this script fail (traceback, non-zero exit) instead of
        silently reading the field's default. Set it to "0" to get popoto's tolerant
        behaviour; quarantined fields are then listed under "_corrupt".
Stdin:  a JSON list of query specs (typed JSON allowed in every value), each one of
          {"model": M, "filter": {...}, "order_by": "f"|"-f", "limit": N, "order": "popoto"|"key"}
              -> M.query.filter(**filter, order_by=..., limit=...)  (filter may be omitted/{})
          {"model": M, "count": true, "filter": {...}}
              -> M.query.count(**filter)
          {"model": M, "get": {...}}
              -> M.query.get(**get)   (all key fields -> direct HGETALL; also {"redis_key": k})
        M is "Episode" or "KitchenSink".
Stdout: a JSON list, one result per spec, same order:
          fetch -> [instance, ...]
          count -> integer
          get   -> instance or null
          a popoto QueryException/ModelException in one spec ->
                   {"$error": {"type": T, "message": msg}}; any other error aborts the
                   script (traceback on stderr, non-zero exit)
        instance = {"_key": redis key the hash was read from, "<field>": typed JSON, ...}
        with every declared field (declaration order), values exactly as popoto returns
        them (lazy filter() path: Lua-written numbers stay int/float32-widened as decoded;
        get() path: coerced to the field type).
Order of a fetch result: popoto's returned order when the spec has "order_by" or filters
exactly one sorted field (any of f, f__gt, f__gte, f__lt, f__lte, f__between for a
SortedField f); otherwise (popoto order is Python-set/SMEMBERS order, i.e. arbitrary)
sorted by "_key". "order": "key" / "popoto" overrides this.
"""

import os
import sys
import json

from interop_common import die, emit, from_typed, require_redis_url, to_typed

require_redis_url()
os.environ.setdefault("POPOTO_DECODE_QUARANTINE_DISABLE", "1")

import popoto.exceptions  # noqa: E402
import popoto.models.query  # noqa: E402

from models import MODELS  # noqa: E402

SPEC_KEYS = {"model", "filter", "order_by", "limit", "count", "get", "order"}

# popoto 1.10.1 has two unrelated QueryException classes: popoto.exceptions.QueryException
# and popoto.models.query.QueryException (the one the query engine and fields raise).
HANDLED_ERRORS = (
    popoto.models.query.QueryException,
    popoto.exceptions.QueryException,
    popoto.exceptions.ModelException,
)


def instance_json(model, inst):
    out = {"_key": inst._redis_key if inst._redis_key is not None else inst.db_key.redis_key}
    for name in model._meta.fields:
        out[name] = to_typed(getattr(inst, name))
    corrupt = getattr(inst, "_corrupt_fields", None)
    if corrupt:
        out["_corrupt"] = sorted(corrupt)
    return out


def sorted_fields_filtered(model, kwargs):
    names = []
    for f in model._meta.sorted_field_names:
        if set(kwargs) & set(model._meta.filter_query_params_by_field[f]):
            names.append(f)
    return names


def run_spec(spec):
    if not isinstance(spec, dict):
        die(f"spec must be an object, got {spec!r}")
    unknown = set(spec) - SPEC_KEYS
    if unknown:
        die(f"unknown spec keys {sorted(unknown)} in {spec!r}")
    model_name = spec.get("model")
    if model_name not in MODELS:
        die(f"unknown model {model_name!r}; expected one of {sorted(MODELS)}")
    model = MODELS[model_name]
    filt = from_typed(spec.get("filter") or {})

    if "get" in spec:
        inst = model.query.get(**from_typed(spec["get"]))
        return None if inst is None else instance_json(model, inst)

    if spec.get("count"):
        return model.query.count(**filt)

    kwargs = dict(filt)
    if spec.get("order_by") is not None:
        kwargs["order_by"] = spec["order_by"]
    if spec.get("limit") is not None:
        kwargs["limit"] = spec["limit"]
    instances = list(model.query.filter(**kwargs))
    rows = [instance_json(model, i) for i in instances]

    order = spec.get("order")
    if order is None:
        order = (
            "popoto"
            if spec.get("order_by") is not None or len(sorted_fields_filtered(model, filt)) == 1
            else "key"
        )
    if order == "key":
        rows.sort(key=lambda row: row["_key"].encode("utf-8", "surrogateescape"))
    elif order != "popoto":
        die(f"order must be 'popoto' or 'key', got {order!r}")
    return rows


def main():
    raw = sys.stdin.read()
    try:
        specs = json.loads(raw)
    except json.JSONDecodeError as e:
        die(f"stdin is not JSON: {e}")
    if isinstance(specs, dict):
        specs = [specs]
    results = []
    for spec in specs:
        try:
            results.append(run_spec(spec))
        except HANDLED_ERRORS as e:
            results.append({"$error": {"type": type(e).__name__, "message": str(e)}})
    emit(results)


if __name__ == "__main__":
    main()
