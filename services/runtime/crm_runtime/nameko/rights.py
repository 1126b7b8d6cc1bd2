"""`CustomerRightsService`: the `erasure_status` RPC of every service that forgets customers.

Mixed into the nameko service class of a service whose application implements
crm_runtime.rights.CustomerRights:

    class OrderService(CustomerRightsService, EventSourcedService):
        application: Orders = EventSourcedApplication(Orders, translator)

The gateway's GET /v1/customers/{id}/erasure calls it on every such service and reports the
erasure complete once each answers "done".
"""

from __future__ import annotations

from typing import Any

from crm_runtime.nameko.deadletters import ForgetsDeadLetters
from crm_runtime.nameko.rpc import aggregate_id, rpc


class CustomerRightsService(ForgetsDeadLetters):
    """Where a customer's erasure stands in this service, over RPC; and the dead letters that name a
    customer erased here purged (ForgetsDeadLetters)."""

    application: Any

    @rpc
    def erasure_status(self, customer_id: str) -> dict[str, str]:
        """{"state": "done" | "pending"}: "done" once the customer's data keys here are shredded,
        CRM_DATA_KEY_TTL has passed and no dead letter here names them, or when this service never held
        data about them."""
        state = self.application.erasure_state(aggregate_id(customer_id, "customer_id"))
        # Done only once no dead letter here names them either: purged now (the timer may not have run yet).
        if state == "done" and not self.dead_letter_purge.purge_now():
            state = "pending"
        return {"state": state}
