#!/usr/bin/env python3
"""Expiry oracle: popoto 1.10.1 writes and reads expiring instances for tests/interop_expiry.rs.

Usage: ``python expiry.py <command>`` with a JSON document on stdin; prints one JSON document
on stdout (see README.md for the common contract: REDIS_URL required, exit 2 on usage errors).

Models:

* ``Login(org=KeyField, id=KeyField, at=SortedField(type=int, partition_by="org"))`` with
  ``Meta.ttl = 3600``: every save runs ``EXPIRE key 3600``.
* ``Invite(org=KeyField, email=KeyField, sent=SortedField(type=int, partition_by="org"))``:
  an instance given ``_expire_at`` (and no ``_ttl``) is saved with ``EXPIREAT key <seconds>``.

Commands:

* ``write`` -- stdin ``{"logins": [{"org", "id", "at"}], "invites": [{"org", "email", "sent",
  "expire_at": <unix seconds>}]}``: creates every login (``Login.create``) and saves every
  invite with its ``_expire_at``. stdout: ``{"keys": [instance key, ...]}`` in that order.
* ``read`` -- stdin ``{"orgs": [...]}``: every instance popoto's queries return for each org
  (``Model.query.filter(org=...)``), with the key's remaining TTL as redis-py reads it.
  stdout: ``{"logins": [{"key", "org", "id", "at", "pttl"}], "invites": [{"key", "org",
  "email", "sent", "pttl"}]}``, each sorted by key.
"""

import datetime
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from interop_common import die, emit, require_redis_url  # noqa: E402

require_redis_url()

import popoto  # noqa: E402
from popoto import KeyField, SortedField  # noqa: E402
from popoto.redis_db import get_REDIS_DB  # noqa: E402


class Login(popoto.Model):
    org = KeyField()
    id = KeyField()
    at = SortedField(type=int, partition_by="org")

    class Meta:
        ttl = 3600


class Invite(popoto.Model):
    org = KeyField()
    email = KeyField()
    sent = SortedField(type=int, partition_by="org")


def write(doc):
    db = get_REDIS_DB()
    keys = []
    for row in doc.get("logins", []):
        inst = Login.create(org=row["org"], id=row["id"], at=int(row["at"]))
        keys.append(inst.db_key.redis_key)
    for row in doc.get("invites", []):
        inst = Invite(org=row["org"], email=row["email"], sent=int(row["sent"]))
        inst._ttl = None
        inst._expire_at = datetime.datetime.fromtimestamp(
            int(row["expire_at"]), tz=datetime.timezone.utc
        )
        inst.save()
        keys.append(inst.db_key.redis_key)
    for key in keys:
        if not db.exists(key):
            die(f"popoto wrote nothing at {key}", 1)
    emit({"keys": keys})


def read(doc):
    db = get_REDIS_DB()
    out = {"logins": [], "invites": []}
    for org in doc["orgs"]:
        for inst in Login.query.filter(org=org):
            key = inst.db_key.redis_key
            out["logins"].append(
                {"key": key, "org": inst.org, "id": inst.id, "at": inst.at, "pttl": db.pttl(key)}
            )
        for inst in Invite.query.filter(org=org):
            key = inst.db_key.redis_key
            out["invites"].append(
                {
                    "key": key,
                    "org": inst.org,
                    "email": inst.email,
                    "sent": inst.sent,
                    "pttl": db.pttl(key),
                }
            )
    for rows in out.values():
        rows.sort(key=lambda r: r["key"])
    emit(out)


def main():
    if len(sys.argv) != 2 or sys.argv[1] not in ("write", "read"):
        die("usage: expiry.py write|read < doc.json")
    doc = json.load(sys.stdin)
    {"write": write, "read": read}[sys.argv[1]](doc)


if __name__ == "__main__":
    main()
