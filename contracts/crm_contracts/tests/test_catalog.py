"""Contract tests: every published event's recorded sample still loads, and the committed JSON
Schemas are what the code generates (run `make contracts` after changing a contract)."""

import pytest

from crm_contracts.catalog import SCHEMAS_DIR, load_all
from crm_contracts.export import rendered_schemas

CONTRACTS = list(load_all())


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.key)
def test_recorded_sample_still_loads(contract):
    recorded = contract.recorded_sample()
    assert recorded is not None, f"no recorded sample for {contract.key}: run `make contracts`"
    assert contract.schema().validate(recorded) == {}


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.key)
def test_declared_sample_loads(contract):
    assert contract.schema().validate(contract.sample) == {}


def test_committed_json_schemas_match_the_code():
    generated = rendered_schemas()
    committed = {p.name: p.read_text() for p in SCHEMAS_DIR.glob("*.json")}
    stale = sorted(name for name in generated.keys() | committed.keys() if generated.get(name) != committed.get(name))
    assert not stale, f"JSON Schemas out of date ({', '.join(stale)}): run `make contracts` and commit"

