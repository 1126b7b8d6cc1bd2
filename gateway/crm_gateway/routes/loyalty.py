"""Loyalty accounts (loyalty service), one per customer and addressed by the customer's id: enrol, read
(tier, balance, points lots, benefits), list, redeem, grant a retention benefit, review the tier.

Points are earned by the platform itself (order_paid), not through this API. If-Match is accepted but
optional everywhere here: a redemption and a benefit carry their own ids (derived from the command id)
and the balance guards a redemption; a tier review recomputes from what is recorded.
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request, Response

from crm_contracts import loyalty as contracts
from crm_gateway.auth import READ, WRITE
from crm_gateway.operation import OPTIONAL, command, create, listing, read
from crm_gateway.routes.common import Routes, list_call, read_response, resource_response
from crm_gateway.schemas import EnrolBody, LoyaltyAccountQuery, page_of
from crm_gateway.web import endpoint, json_response, load_optional_body, load_query, uuid_path
from crm_runtime.nameko.web import http


def created(account: dict[str, Any]) -> Response:
    return resource_response(account, 201, f"/v1/loyalty-accounts/{account['customer_id']}")


def granted(answer: dict[str, Any]) -> Response:
    """A redemption or benefit (201) with the account as it is now; its version is the ETag."""
    return resource_response(answer, 201, version=answer["account"]["version"])


class LoyaltyRoutes(Routes):
    """/v1/loyalty-accounts."""

    @http("PUT", "/v1/loyalty-accounts/<customer_id>")
    @endpoint(WRITE)
    def enrol(self, request: Request, customer_id: str) -> Response:
        customer_id = uuid_path(customer_id)
        payload = load_optional_body(request, EnrolBody)
        return self.once(request, payload, lambda command_id: self.loyalty.enrol(
            {**payload, "customer_id": customer_id}, command_id), created)

    @http("GET", "/v1/loyalty-accounts/<customer_id>")
    @endpoint(READ)
    def get_loyalty_account(self, request: Request, customer_id: str) -> Response:
        return read_response(request, self.loyalty.get(uuid_path(customer_id)))

    @http("GET", "/v1/loyalty-accounts")
    @endpoint(READ)
    def list_loyalty_accounts(self, request: Request) -> Response:
        return json_response(200, self.loyalty.list_accounts(*list_call(load_query(request, LoyaltyAccountQuery))))

    @http("POST", "/v1/loyalty-accounts/<customer_id>/redemptions")
    @endpoint(WRITE)
    def redeem(self, request: Request, customer_id: str) -> Response:
        return self.act(request, customer_id, "customer", self.loyalty.redeem, contracts.RedeemPointsRequest,
                        if_match=False, respond=granted)

    @http("POST", "/v1/loyalty-accounts/<customer_id>/benefits")
    @endpoint(WRITE)
    def grant_benefit(self, request: Request, customer_id: str) -> Response:
        return self.act(request, customer_id, "customer", self.loyalty.grant_benefit, contracts.GrantBenefitRequest,
                        if_match=False, respond=granted)

    @http("POST", "/v1/loyalty-accounts/<customer_id>/tier-review")
    @endpoint(WRITE)
    def review_tier(self, request: Request, customer_id: str) -> Response:
        return self.act(request, customer_id, "customer", self.loyalty.review_tier, contracts.ReviewTierRequest,
                        if_match=False)


SCHEMAS = {
    "LoyaltyAccount": contracts.LoyaltyAccountSchema,
    "LoyaltyAccountPage": page_of(contracts.LoyaltyAccountSchema, "LoyaltyAccountPage"),
    "RedemptionAnswer": contracts.RedemptionAnswerSchema,
    "BenefitGrantAnswer": contracts.BenefitGrantAnswerSchema,
    "EnrolBody": EnrolBody,
    "RedeemPointsRequest": contracts.RedeemPointsRequest,
    "GrantBenefitRequest": contracts.GrantBenefitRequest,
    "ReviewTierRequest": contracts.ReviewTierRequest,
}

_TAG = "loyalty"
_ITEM = "/v1/loyalty-accounts/{customer_id}"

OPERATIONS = (
    create(_ITEM, "enrolLoyaltyAccount", "Enrol the customer in the loyalty programme (once: a second enrolment is "
           "409); the body may be left out", _TAG, "LoyaltyAccount", EnrolBody, method="put", body_optional=True),
    read(_ITEM, "getLoyaltyAccount", "A customer's account: tier, points balance and lots (with expiry), benefits",
         _TAG, "LoyaltyAccount"),
    listing("/v1/loyalty-accounts", "listLoyaltyAccounts", "List loyalty accounts, a page at a time, by tier", _TAG,
            "LoyaltyAccountPage", LoyaltyAccountQuery, "?tier=gold&page=1&page_size=20"),
    command("post", f"{_ITEM}/redemptions", "redeemPoints",
            "Redeem points for a reward (201: the redemption and the account)", _TAG, "RedemptionAnswer",
            contracts.RedeemPointsRequest, OPTIONAL, ok_status=201),
    command("post", f"{_ITEM}/benefits", "grantBenefit",
            "Grant a retention benefit (201: the benefit and the account)", _TAG, "BenefitGrantAnswer",
            contracts.GrantBenefitRequest, OPTIONAL, ok_status=201),
    command("post", f"{_ITEM}/tier-review", "reviewTier", "Re-evaluate the tier from the rolling spend", _TAG,
            "LoyaltyAccount", contracts.ReviewTierRequest, OPTIONAL),
)
