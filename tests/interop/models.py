"""The two popoto 1.10.1 models shared by the interop tests.

Import only after ``interop_common.require_redis_url()`` (popoto reads REDIS_URL at
import time). Every field class used here exists in popoto 1.10.1.
"""

import datetime
import os
from decimal import Decimal

if not os.environ.get("REDIS_URL"):
    raise RuntimeError("models.py: REDIS_URL must be set before importing popoto")

import popoto  # noqa: E402
from popoto import (  # noqa: E402
    AutoKeyField,
    BooleanField,
    BytesField,
    DateField,
    DatetimeField,
    DecimalField,
    DictField,
    FloatField,
    IntField,
    KeyField,
    ListField,
    SetField,
    SortedField,
    StringField,
    TimeField,
    TupleField,
    UniqueKeyField,
)


class Episode(popoto.Model):
    project_id = KeyField()
    episode_id = AutoKeyField()
    title = StringField()
    score = SortedField(type=float, partition_by="project_id")
    rank = SortedField(type=int)


class KitchenSink(popoto.Model):
    tenant = KeyField()
    sku = UniqueKeyField()
    name = StringField()
    count = IntField()
    ratio = FloatField()
    active = BooleanField()
    note = StringField(null=True)
    blob = BytesField()
    tags = ListField()
    attrs = DictField()
    created = DatetimeField()
    updated = DatetimeField()
    day = DateField()
    at = TimeField()
    price = DecimalField()
    flags = SetField()
    pair = TupleField()
    region = StringField()
    seen = SortedField(type=datetime.datetime, partition_by="tenant")
    due = SortedField(type=datetime.date, partition_by="tenant")
    slot = SortedField(type=datetime.time)
    level = SortedField(type=int, partition_by=("tenant", "region"))


MODELS = {"Episode": Episode, "KitchenSink": KitchenSink}
