"""consistency: do credit service agencies show exactly what the authority discloses?

Pure core: `normalize` (value rules), `records` (fields, validation, CSV headers), `calendar`
(PRC working days), `index` (the compact authority index), `rules`, `compare` and `pii`
(the findings).
Edges: `sources` and `remote` (files and URLs), `report` (JSON and HTML), `check`
(orchestration), `watch` and `watch_store` (scheduled runs, history, metrics), `cli`.
Imports only credcore and libraries.
"""
