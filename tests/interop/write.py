#!/usr/bin/env python3
"""Create the fixture with popoto 1.10.1 in $REDIS_URL.

Env:    REDIS_URL (required), POPOTO_ALLOW_DB0_FLUSH=1 (only needed with --flush on db 0)
Args:   --flush   FLUSHDB (through popoto's guarded client) before writing
Stdin:  ignored
Stdout: {"Episode": [instance key, ...], "KitchenSink": [...]}  (creation order)
Exit:   0 on success; non-zero if any save fails validation or a key is missing afterwards.
"""

import sys

from interop_common import die, emit, require_redis_url

require_redis_url()

from popoto.redis_db import get_REDIS_DB  # noqa: E402

from fixture import fixture  # noqa: E402
from models import MODELS  # noqa: E402


def main():
    db = get_REDIS_DB()
    if "--flush" in sys.argv[1:]:
        db.flushdb()
    data = fixture()
    created = {}
    for model_name in ("Episode", "KitchenSink"):
        model = MODELS[model_name]
        keys = []
        for row in data[model_name]:
            # Model.create(**row) == Model(**row).save(); a validation failure only
            # logs and writes nothing, so verify the hash exists afterwards.
            inst = model.create(**row)
            key = inst.db_key.redis_key
            if not db.exists(key):
                die(f"{model_name}.create() wrote nothing for {row!r} (validation?)", 1)
            keys.append(key)
        created[model_name] = keys
    emit(created)


if __name__ == "__main__":
    main()
