"""`python -m crm_contracts.export` (make contracts): write the JSON Schema of every published event
under contracts/crm_contracts/schemas/, an index of the catalog, the AsyncAPI document of them all
(asyncapi.json), and record a sample payload for each
event that has none yet. Recorded samples are never overwritten: they are what contract tests hold
every later schema to."""

from __future__ import annotations

import json

from crm_contracts import asyncapi
from crm_contracts.catalog import SAMPLES_DIR, SCHEMAS_DIR, load_all


def rendered_schemas() -> dict[str, str]:
    """File name -> JSON text of every generated schema file, index.json included."""
    catalog = load_all()
    files = {f"{c.key}.json": _json(c.json_schema()) for c in catalog}
    index = [
        {"type": c.type, "version": c.version, "origin": c.origin, "routing_key": f"{c.origin}.{c.type}",
         "schema": f"{c.key}.json", "sample": f"../samples/{c.key}.json"}
        for c in catalog
    ]
    files["index.json"] = _json({"exchange": "crm.events", "events": index})
    files["asyncapi.json"] = asyncapi.document_json(catalog)
    return files


def _json(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def main() -> None:
    SCHEMAS_DIR.mkdir(exist_ok=True)
    SAMPLES_DIR.mkdir(exist_ok=True)
    files = rendered_schemas()
    for stale in set(p.name for p in SCHEMAS_DIR.glob("*.json")) - set(files):
        (SCHEMAS_DIR / stale).unlink()
    for name, text in files.items():
        (SCHEMAS_DIR / name).write_text(text)
    recorded = 0
    for contract in load_all():
        sample = SAMPLES_DIR / f"{contract.key}.json"
        if not sample.exists():
            sample.write_text(_json(contract.sample))
            recorded += 1
    print(f"wrote {len(files)} schema files to {SCHEMAS_DIR}; recorded {recorded} new samples in {SAMPLES_DIR}")


if __name__ == "__main__":
    main()
