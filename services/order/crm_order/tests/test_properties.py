"""Property tests: random amounts and random command sequences never break an order's invariants.

Pure domain, no store: hypothesis drives the Order aggregate directly. A command the domain refuses
must raise a typed CrmError and leave the order exactly as it was; one it accepts must be rebuilt
identically from the events alone.
"""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from crm_contracts.errors import CrmError
from crm_order.domain import Order, OverpaymentError, returned_value
from crm_order.tests.support import an_order, assert_invariants, replay

SKUS = ("LIC", "DAY", "NOPE")
CENTS = st.integers(min_value=1, max_value=1_500_000).map(lambda cents: Decimal(cents).scaleb(-2))


@given(st.lists(CENTS, max_size=20))
def test_payments_never_exceed_the_total_and_paid_is_recorded_exactly_once(amounts):
    order = an_order()
    accepted = Decimal("0.00")
    for index, amount in enumerate(amounts):
        try:
            order.record_payment(f"P{index}", amount, "CNY", "card")
        except OverpaymentError:
            assert accepted + amount > order.total
        else:
            accepted += amount
        assert order.paid == accepted <= order.total
    paid_events = [e for e in order.collect_events() if isinstance(e, Order.Paid)]
    assert len(paid_events) == (1 if accepted == order.total else 0)
    assert order.payment_status == ("paid" if accepted == order.total else "partially_paid" if accepted else "unpaid")


@given(st.lists(st.tuples(st.sampled_from(["P1", "P2", "P3"]), CENTS), max_size=15))
def test_resent_payments_never_count_twice(payments):
    order = an_order()
    for payment_id, amount in payments:
        try:
            order.record_payment(payment_id, amount, "CNY", "card")
        except CrmError:
            pass  # over the total, or the id already used for another amount: refused, unchanged
    assert order.paid == sum((p["amount"] for p in order.payments.values()), Decimal(0)) <= order.total


class OrderLifecycle(RuleBasedStateMachine):
    """Random confirm/ship/deliver/pay/cancel/return commands against one order."""

    def __init__(self) -> None:
        super().__init__()
        self.order = an_order()
        self.history = list(self.order.collect_events())
        self.shipment_ids: list[str] = []
        self.counter = 0

    def attempt(self, command) -> None:  # type: ignore[no-untyped-def]
        """Run a command; refused means a typed error and no change at all."""
        before = self.order.progress()
        try:
            command()
        except CrmError:
            assert self.order.progress() == before
            assert self.order.collect_events() == []
        else:
            self.history.extend(self.order.collect_events())

    def next_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    @rule()
    def confirm(self) -> None:
        self.attempt(lambda: self.order.confirm("ERP-1"))

    @rule(reason=st.sampled_from(["changed their mind", " "]))
    def cancel(self, reason: str) -> None:
        self.attempt(lambda: self.order.cancel(reason))

    @rule(lines=st.dictionaries(st.sampled_from(SKUS), st.integers(min_value=0, max_value=12), max_size=3))
    def ship(self, lines: dict[str, int]) -> None:
        shipment_id = self.next_id("S")
        self.attempt(lambda: self.order.ship(shipment_id, "SF Express", lines))
        if shipment_id in self.order.shipments:
            self.shipment_ids.append(shipment_id)

    @rule()
    def ship_the_rest(self) -> None:
        rest = {line["sku"]: line["quantity"] - self.order.shipped[line["sku"]] for line in self.order.lines}
        self.ship({sku: quantity for sku, quantity in rest.items() if quantity})

    @rule(pick=st.integers(min_value=0, max_value=10))
    def deliver(self, pick: int) -> None:
        # Mostly a real shipment (sometimes again: a resend), now and then one that does not exist.
        known = self.shipment_ids
        shipment_id = known[pick % len(known)] if known and pick < 9 else "S-unknown"
        self.attempt(lambda: self.order.record_delivery(shipment_id))

    @rule()
    def deliver_everything_shipped(self) -> None:
        for shipment_id in self.shipment_ids:
            self.attempt(lambda shipment_id=shipment_id: self.order.record_delivery(shipment_id))

    @rule(amount=CENTS, currency=st.sampled_from(["CNY", "CNY", "CNY", "USD"]), resend=st.booleans())
    def pay(self, amount: Decimal, currency: str, resend: bool) -> None:
        payment_id = "P-resent" if resend else self.next_id("P")
        self.attempt(lambda: self.order.record_payment(payment_id, amount, currency, "card"))

    @rule()
    def pay_the_rest(self) -> None:
        self.pay(self.order.outstanding, "CNY", resend=False)

    @rule(
        lines=st.dictionaries(st.sampled_from(SKUS), st.integers(min_value=0, max_value=4), max_size=2),
        refund=st.integers(min_value=0, max_value=150_000).map(lambda cents: Decimal(cents).scaleb(-2)),
    )
    def give_back(self, lines: dict[str, int], refund: Decimal) -> None:
        self.attempt(lambda: self.order.record_return(self.next_id("R"), lines, refund, "CNY"))

    @rule(refund_in_full=st.booleans())
    def give_back_one_unit(self, refund_in_full: bool) -> None:
        order = self.order
        returnable = [line for line in order.lines if order.delivered[line["sku"]] > order.returned[line["sku"]]]
        if not returnable:
            return
        line = returnable[0]
        value = returned_value(line, order.returned[line["sku"]], 1)
        refund = min(value, order.paid - order.refunded) if refund_in_full else Decimal("0.00")
        self.attempt(lambda: order.record_return(self.next_id("R"), {line["sku"]: 1}, refund, "CNY", "faulty"))

    @invariant()
    def never_an_illegal_state(self) -> None:
        assert_invariants(self.order)

    @invariant()
    def the_events_alone_rebuild_the_order(self) -> None:
        assert replay(self.history).progress() == self.order.progress()


OrderLifecycle.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestOrderLifecycle = OrderLifecycle.TestCase
