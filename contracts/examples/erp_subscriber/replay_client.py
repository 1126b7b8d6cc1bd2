"""Catch up over HTTP, then tail: `GET /v1/events` from a saved cursor, every event once per position.

    python replay_client.py --gateway http://127.0.0.1:8000 --token "$TOKEN" --ledger erp.sqlite \
        --types 'order.*' [--follow]

Nothing expires: from no cursor it starts at the beginning of history. The cursor is opaque; save the
`next` of each page *after* applying the page (applying is idempotent per position, so a crash between
the two only replays what the ledger drops). With --follow it long-polls (`wait=20`) for new events.
Only the standard library is needed.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from ledger import Ledger


def pages(gateway: str, token: str, cursor: str | None, types: str | None = None, limit: int = 500,
          wait: int = 0) -> Iterator[dict[str, Any]]:
    """Pages of the replay feed after `cursor` until one says there is no more (forever, with `wait`)."""
    while True:
        query = {"limit": str(limit), **({"after": cursor} if cursor else {}), **({"types": types} if types else {}),
                 **({"wait": str(wait)} if wait else {})}
        request = urllib.request.Request(f"{gateway}/v1/events?{urllib.parse.urlencode(query)}",
                                         headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=wait + 30) as answer:
                page = json.load(answer)
        except urllib.error.HTTPError as error:
            if error.code != 503:  # 503: a service is briefly unavailable; anything else is ours to fix
                raise
            time.sleep(int(error.headers.get("Retry-After", "1")))
            continue
        yield page
        cursor = page["next"]
        if not page["has_more"] and not wait:
            return


def catch_up(ledger: Ledger, gateway: str, token: str, types: str | None = None, wait: int = 0,
             stop_when_idle: bool = True) -> int:
    """Apply every event after the ledger's cursor; answer how many were new to the ledger."""
    applied = 0
    for page in pages(gateway, token, ledger.cursor(), types, wait=wait):
        applied += sum(ledger.apply(envelope) for envelope in page["events"])
        ledger.save_cursor(page["next"])
        if stop_when_idle and wait and not page["events"]:
            return applied
    return applied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gateway", required=True)
    parser.add_argument("--token", required=True, help="the API token `crm-subscribers add` printed")
    parser.add_argument("--ledger", default="erp.sqlite")
    parser.add_argument("--types", help="e.g. order.*,customer.customer_registered (default: all the token may)")
    parser.add_argument("--follow", action="store_true", help="keep tailing with long polls")
    args = parser.parse_args()
    ledger = Ledger(args.ledger)
    applied = catch_up(ledger, args.gateway, args.token, args.types, wait=20 if args.follow else 0,
                       stop_when_idle=not args.follow)
    print(f"applied {applied} new events; cursor {ledger.cursor()}")


if __name__ == "__main__":
    main()
