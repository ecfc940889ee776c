#!/usr/bin/env python3
"""Deterministic interop fixture (data only; no popoto, no Redis).

``fixture()`` returns ``{"Episode": [row, ...], "KitchenSink": [row, ...]}`` where each
row is a plain dict of field values in declaration order, in creation order (tenant by
tenant: acme, globex, umbrella:eu-1). ``write.py`` creates exactly these rows, one
``Model.create(**row)`` each, Episodes first.

``python fixture.py --json`` prints the same structure as typed JSON (see README.md).
No environment variables are needed for --json.
"""

import datetime as dt
import hashlib
import sys
from decimal import Decimal

TENANTS = ["acme", "globex", "umbrella:eu-1"]

UTC = dt.timezone.utc


def tz(hours, minutes=0):
    return dt.timezone(dt.timedelta(hours=hours, minutes=minutes))


def episode_id(tenant, index):
    """Fixed 32-hex AutoKeyField value: md5 of '<tenant>/<index>'."""
    return hashlib.md5(f"{tenant}/{index}".encode("utf-8")).hexdigest()


# Per tenant, 6 (title, score, rank). Scores are unique within each partition and
# across the whole fixture; ranks are unique across the fixture (rank is not
# partitioned), so every order_by / sorted range has a deterministic order.
_EPISODES = {
    "acme": [
        ("pilot", 1.5, 3),
        ("héllo wörld", -2.25, -7),
        ("zero", 0.0, 0),
        ("tiny", 1e-05, 12),
        ("big", 123456789.125, 2**40),
        ("a:b-c*d", 0.5, 5),
    ],
    "globex": [
        ("alpha", 0.25, 1),
        ("beta", -1000.5, -100),
        ("gamma", 1e300, 99),
        ("delta", 3.141592653589793, 31),
        ("epsilon", 2.0, 2),
        ("", 0.1, 42),
    ],
    "umbrella:eu-1": [
        ("u1", -0.001, 7),
        ("u2", 100.0, 1000),
        ("u3", 7.75, -3),
        ("u4", 1e-300, 8),
        ("[brackets]?", 42.0, 64),
        ("emoji \U0001F600", -5.5, 77),
    ],
}

_B300 = bytes((i * 7) % 256 for i in range(300))

# Per tenant, 4 KitchenSink rows. skus are globally unique (UniqueKeyField).
_SINKS = {
    "acme": [
        dict(
            sku="a-b",
            name="Anvil",
            count=7,
            ratio=1.5,
            active=True,
            note="first",
            blob=b"\x00\xffbin",
            tags=[1, "two", 3.0, None, True],
            attrs={"a": 1, "b": [1, 2], "c": {"x": None}},
            created=dt.datetime(2024, 1, 15, 17, 30, 0, tzinfo=tz(7)),
            updated=dt.datetime(2024, 1, 15, 10, 30, 0, 123456),
            day=dt.date(2024, 2, 29),
            at=dt.time(8, 5, 3, 250000),
            price=Decimal("12.3400"),
            flags={1, 2, 3},
            pair=(1, "a"),
            region="eu",
            seen=dt.datetime(2024, 1, 15, 10, 30, 0, 123456, tzinfo=UTC),
            due=dt.date(2024, 3, 1),
            slot=dt.time(9, 0, 0),
            level=3,
        ),
        dict(
            sku="x*y",
            name="Rocket skates",
            count=-33,
            ratio=0.1,
            active=False,
            note=None,
            blob=b"",
            tags=[],
            attrs={},
            created=dt.datetime(2024, 1, 15, 10, 30, 0, 123456, tzinfo=UTC),
            updated=dt.datetime(2023, 12, 31, 23, 59, 59),
            day=dt.date(1999, 12, 31),
            at=dt.time(0, 0, 0),
            price=Decimal("-0.001"),
            flags=set(),
            pair=(-2, "b:c"),
            region="eu",
            seen=dt.datetime(2023, 6, 1, 0, 0, 0, tzinfo=UTC),
            due=dt.date(2023, 12, 25),
            slot=dt.time(23, 59, 59, 999999),
            level=-1,
        ),
        dict(
            sku="q:1",
            name="Giant magnet",
            count=128,
            ratio=-0.0,
            active=True,
            note="umbrella:eu-1",
            blob=bytes(range(40)),
            tags=[-1, 2**33, "é", False, 0.5],
            attrs={"k": "v", "n": -5, "z": {"deep": {"er": [True, None]}}},
            created=dt.datetime(2024, 7, 4, 12, 0, 0, 5, tzinfo=tz(-5)),
            updated=dt.datetime(2024, 7, 4, 12, 0, 0, 5),
            day=dt.date(2024, 1, 1),
            at=dt.time(10, 30, 0, tzinfo=tz(7)),
            price=Decimal("1E+2"),
            flags={0, 7},
            pair=(0, ""),
            region="us-east",
            seen=dt.datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC),
            due=dt.date(2024, 1, 15),
            slot=dt.time(12, 0, 0, 1),
            level=10,
        ),
        dict(
            sku="s/lash",
            name="Earthquake pills",
            count=2**40,
            ratio=1e-05,
            active=False,
            note="",
            blob=_B300,
            tags=[[1, 2], {"k": "v"}, "x" * 40],
            attrs={"list": [1, "a", 2.5], "none": None, "str": "é:-*"},
            created=dt.datetime(2000, 1, 1, 0, 0, 0, tzinfo=tz(5, 30)),
            updated=dt.datetime(2000, 1, 1, 0, 0, 0),
            day=dt.date(2000, 1, 1),
            at=dt.time(23, 59, 59),
            price=Decimal("0"),
            flags={5},
            pair=(2**40, "é"),
            region="eu",
            seen=dt.datetime(2024, 1, 15, 10, 30, 0, 123457, tzinfo=UTC),
            due=dt.date(2024, 2, 29),
            slot=dt.time(0, 0, 1),
            level=7,
        ),
    ],
    "globex": [
        dict(
            sku="g[1]",
            name="Hammock",
            count=0,
            ratio=3.0,
            active=True,
            note="globex note",
            blob=b"globex",
            tags=["only", "strings"],
            attrs={"a": {"b": {"c": 1}}},
            created=dt.datetime(2021, 3, 14, 1, 59, 26, 535897, tzinfo=UTC),
            updated=dt.datetime(2021, 3, 14, 1, 59, 26, 535897),
            day=dt.date(2021, 3, 14),
            at=dt.time(1, 59, 26, 535897),
            price=Decimal("3.14159"),
            flags={1, 3},
            pair=(3, "pi"),
            region="ap:south",
            seen=dt.datetime(2021, 3, 14, 1, 59, 26, 535897, tzinfo=UTC),
            due=dt.date(2021, 3, 14),
            slot=dt.time(1, 59, 26, 535897),
            level=314,
        ),
        dict(
            sku="what?",
            name="Doomsday device",
            count=-2**63,
            ratio=-123.456,
            active=False,
            note=None,
            blob=b"\x80\x81",
            tags=[None],
            attrs={"nested": [[], {}]},
            created=dt.datetime(1970, 1, 1, 0, 0, 0, tzinfo=UTC),
            updated=dt.datetime(1970, 1, 1, 0, 0, 0),
            day=dt.date(1970, 1, 1),
            at=dt.time(12, 0, 0),
            price=Decimal("99999999999999999999.99"),
            flags={2, 4, 6},
            pair=(-1, "minus"),
            region="ap:south",
            seen=dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC),
            due=dt.date(1970, 1, 2),
            slot=dt.time(12, 30, 0),
            level=-314,
        ),
        dict(
            sku="it's",
            name="Tornado kit",
            count=127,
            ratio=float("inf"),
            active=True,
            note="tornado",
            blob=b"'",
            tags=[True, False],
            attrs={"f": False, "t": True},
            created=dt.datetime(2030, 6, 15, 8, 0, 0, tzinfo=tz(-3, -30)),
            updated=dt.datetime(2030, 6, 15, 8, 0, 0, 1),
            day=dt.date(2030, 6, 15),
            at=dt.time(6, 0, 0, 100),
            price=Decimal("0.10"),
            flags={0},
            pair=(5, "five"),
            region="us-east",
            seen=dt.datetime(2030, 6, 15, 11, 30, 0, tzinfo=UTC),
            due=dt.date(2030, 6, 15),
            slot=dt.time(6, 0, 0),
            level=0,
        ),
        dict(
            sku="^caret",
            name="Dehydrated boulders",
            count=65536,
            ratio=2.5,
            active=False,
            note="caret",
            blob=bytes(range(256)),
            tags=["a" * 31, "b" * 32, 65535, -129],
            attrs={"k": 1.0},
            created=dt.datetime(2024, 2, 29, 23, 0, 0, tzinfo=tz(14)),
            updated=dt.datetime(2024, 2, 29, 23, 0, 0),
            day=dt.date(2024, 2, 28),
            at=dt.time(18, 45, 0),
            price=Decimal("-12.5"),
            flags={1, 2},
            pair=(-129, "x"),
            region="eu",
            seen=dt.datetime(2024, 2, 29, 9, 0, 0, tzinfo=UTC),
            due=dt.date(2024, 2, 28),
            slot=dt.time(18, 45, 0),
            level=5,
        ),
    ],
    "umbrella:eu-1": [
        dict(
            sku="umbrella:eu-1",
            name="Umbrella",
            count=1,
            ratio=0.5,
            active=True,
            note="contains {&#58;} token",
            blob=b"{&#58;}",
            tags=["umbrella:eu-1", "{&#58;}"],
            attrs={"tenant": "umbrella:eu-1"},
            created=dt.datetime(2024, 1, 15, 10, 30, 0, tzinfo=UTC),
            updated=dt.datetime(2024, 1, 15, 10, 30, 0),
            day=dt.date(2024, 1, 15),
            at=dt.time(10, 30, 0),
            price=Decimal("1.25"),
            flags={3},
            pair=(1, "umbrella:eu-1"),
            region="eu-1",
            seen=dt.datetime(2024, 1, 15, 10, 30, 0, tzinfo=UTC),
            due=dt.date(2024, 1, 15),
            slot=dt.time(10, 30, 0),
            level=1,
        ),
        dict(
            sku="u{&#58;}raw",
            name="T-virus",
            count=-1,
            ratio=1e300,
            active=False,
            note=None,
            blob=b"\x00",
            tags=[1.5, -2.5, 1e-05],
            attrs={"a": [{"b": [{"c": None}]}]},
            created=dt.datetime(2024, 1, 16, 0, 30, 0, 999999, tzinfo=tz(7)),
            updated=dt.datetime(2024, 1, 15, 17, 30, 0, 999999),
            day=dt.date(2024, 1, 16),
            at=dt.time(0, 30, 0, 999999),
            price=Decimal("1.000"),
            flags={4, 5, 6, 7},
            pair=(2, "b"),
            region="eu-1",
            seen=dt.datetime(2024, 1, 15, 17, 30, 0, 999999, tzinfo=UTC),
            due=dt.date(2024, 1, 16),
            slot=dt.time(0, 30, 0, 999999),
            level=2,
        ),
        dict(
            sku="é-ü sp ace",
            name="Red Queen",
            count=255,
            ratio=-1.0,
            active=True,
            note="ünïcödé",
            blob="ü".encode("utf-8"),
            tags=["ü", "é"],
            attrs={"ü": "é"},
            created=dt.datetime(2024, 5, 5, 5, 5, 5, 50000, tzinfo=tz(-8)),
            updated=dt.datetime(2024, 5, 5, 5, 5, 5, 50000),
            day=dt.date(2024, 5, 5),
            at=dt.time(5, 5, 5, 50000),
            price=Decimal("5.50"),
            flags={1},
            pair=(256, "ü"),
            region="us-west",
            seen=dt.datetime(2024, 5, 5, 13, 5, 5, 50000, tzinfo=UTC),
            due=dt.date(2024, 5, 5),
            slot=dt.time(5, 5, 5, 50000),
            level=256,
        ),
        dict(
            sku="[q]^'",
            name="Hive",
            count=32767,
            ratio=6.02214076e23,
            active=False,
            note="hive",
            blob=b"hive",
            tags=[{"a": 1}],
            attrs={"x": 1, "y": 2},
            created=dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
            updated=dt.datetime(1999, 12, 31, 23, 59, 59),
            day=dt.date(1999, 12, 30),
            at=dt.time(23, 0, 0),
            price=Decimal("-0"),
            flags={2},
            pair=(-32768, "min16"),
            region="eu-1",
            seen=dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
            due=dt.date(1999, 12, 30),
            slot=dt.time(23, 0, 0),
            level=3,
        ),
    ],
}


def fixture():
    """Return {"Episode": [...], "KitchenSink": [...]}: plain dicts of field values."""
    episodes = []
    sinks = []
    for tenant in TENANTS:
        for i, (title, score, rank) in enumerate(_EPISODES[tenant]):
            episodes.append(
                {
                    "project_id": tenant,
                    "episode_id": episode_id(tenant, i),
                    "title": title,
                    "score": score,
                    "rank": rank,
                }
            )
    for tenant in TENANTS:
        for row in _SINKS[tenant]:
            r = {"tenant": tenant}
            r.update(row)
            sinks.append(r)
    return {"Episode": episodes, "KitchenSink": sinks}


KITCHEN_SINK_FIELDS = [
    "tenant", "sku", "name", "count", "ratio", "active", "note", "blob", "tags",
    "attrs", "created", "updated", "day", "at", "price", "flags", "pair", "region",
    "seen", "due", "slot", "level",
]


def _self_check(data):
    for row in data["KitchenSink"]:
        assert list(row) == KITCHEN_SINK_FIELDS, list(row)
        # SetField bytes are Python set iteration order; keep sets to ints < 8 (<= 4
        # elements) so that order is ascending and deterministic.
        assert all(isinstance(x, int) and 0 <= x < 8 for x in row["flags"])
        assert len(row["flags"]) <= 4
        assert list(row["flags"]) == sorted(row["flags"])
        assert row["seen"].utcoffset() == dt.timedelta(0)
        assert row["created"].tzinfo is not None and row["updated"].tzinfo is None
    skus = [r["sku"] for r in data["KitchenSink"]]
    assert len(skus) == len(set(skus))
    ids = [r["episode_id"] for r in data["Episode"]]
    assert len(ids) == len(set(ids)) and all(len(i) == 32 for i in ids)


if __name__ == "__main__":
    data = fixture()
    _self_check(data)
    if "--json" in sys.argv[1:]:
        from interop_common import emit, to_typed

        emit(to_typed(data))
    else:
        import pprint

        pprint.pprint(data, sort_dicts=False)
