"""credstore: the reference public credit store, a stand-in for Credit China (信用中国).

It serves deterministic synthetic data on the same `/v1` paths as the gateway, without
authentication, on loopback only: the gateway's upstream in the demo and the baseline of its
benchmark. It imports nothing of credgate but `credcore`.

    generator.py   `generate(seed, ...)` -> `Dataset`: entities and records, pure and seeded
    identities.py  valid USCCs (GB 32100 + GB 11714) and resident ID numbers (GB 11643), names
    records.py     penalties, licences, list entries with the CONTRACTS section 5 fields
    penalties.py   what a penalty says (violation, category, fine, severity)
    vocab.py       the constant tables they draw from (real divisions, authorities, laws)
    db.py          the dataset in SQLite (SQLAlchemy 2 Core, async); `build_store` is idempotent
    paging.py      opaque cursors and the `{"records", "next"}` page envelope
    app.py         `make_app(source, today=...)`: every answer precomputed in memory
    __main__.py    `python -m credstore --db PATH --port 0 --port-file FILE`

The data is synthetic but shaped like the real thing, including the personal data the real
store must not release: every entity and record carries the legal representative's name and
resident ID number, so the gateway's filters have something real to remove.
"""
