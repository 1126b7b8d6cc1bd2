"""FAQ articles (service service): draft, read, list, revise, publish, retire, record a use; suggestions.

If-Match: revising, publishing and retiring are REQUIRED (an editor decides on the text they read);
recording a use only counts, so If-Match is accepted but optional.

An article's routes take its id through werkzeug's `uuid` converter, not a bare `<article_id>`: the id and
`suggestions` share a path level, and only a UUID pattern keeps `PUT /v1/faqs/suggestions` from being read
as a revision of an article named "suggestions" (404) instead of a method `/v1/faqs/suggestions` does not
have (405, Allow: GET). Anything else that is not a UUID answers the same JSON 404 as any unknown path.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from werkzeug.wrappers import Request, Response

from crm_contracts import service as contracts
from crm_gateway.auth import READ, WRITE
from crm_gateway.operation import OPTIONAL, REQUIRED, command, create, listing, read
from crm_gateway.routes.common import Routes, list_call, read_response, resource_response
from crm_gateway.schemas import FaqQuery, FaqSuggestionQuery, page_of
from crm_gateway.web import endpoint, json_response, load_body, load_query
from crm_runtime.nameko.web import http


def created(article: dict[str, Any]) -> Response:
    return resource_response(article, 201, f"/v1/faqs/{article['id']}")


class FaqRoutes(Routes):
    """/v1/faqs."""

    @http("POST", "/v1/faqs")
    @endpoint(WRITE)
    def draft_faq(self, request: Request) -> Response:
        payload = load_body(request, contracts.DraftFaqRequest)
        return self.once(request, payload, lambda command_id: self.service.draft_faq(payload, command_id), created)

    @http("GET", "/v1/faqs/<uuid:article_id>")
    @endpoint(READ)
    def get_faq(self, request: Request, article_id: UUID) -> Response:
        return read_response(request, self.service.get_faq(str(article_id)))

    @http("GET", "/v1/faqs")
    @endpoint(READ)
    def list_faqs(self, request: Request) -> Response:
        return json_response(200, self.service.list_faqs(*list_call(load_query(request, FaqQuery))))

    @http("GET", "/v1/faqs/suggestions")
    @endpoint(READ)
    def suggest_faqs(self, request: Request) -> Response:
        query = load_query(request, FaqSuggestionQuery)
        return json_response(200, self.service.suggest_faqs({"text": query["q"], "limit": query["limit"]}))

    @http("PUT", "/v1/faqs/<uuid:article_id>")
    @endpoint(WRITE)
    def revise_faq(self, request: Request, article_id: UUID) -> Response:
        return self.act(request, str(article_id), "FAQ article", self.service.revise_faq, contracts.ReviseFaqRequest,
                        if_match=True)

    @http("POST", "/v1/faqs/<uuid:article_id>/publish")
    @endpoint(WRITE)
    def publish_faq(self, request: Request, article_id: UUID) -> Response:
        return self.act(request, str(article_id), "FAQ article", self.service.publish_faq, if_match=True)

    @http("POST", "/v1/faqs/<uuid:article_id>/retire")
    @endpoint(WRITE)
    def retire_faq(self, request: Request, article_id: UUID) -> Response:
        return self.act(request, str(article_id), "FAQ article", self.service.retire_faq, contracts.RetireFaqRequest,
                        if_match=True)

    @http("POST", "/v1/faqs/<uuid:article_id>/uses")
    @endpoint(WRITE)
    def record_faq_use(self, request: Request, article_id: UUID) -> Response:
        return self.act(request, str(article_id), "FAQ article", self.service.record_faq_use,
                        contracts.RecordFaqUseRequest, if_match=False)


SCHEMAS = {
    "FaqArticle": contracts.FaqArticleSchema,
    "FaqArticlePage": page_of(contracts.FaqArticleSchema, "FaqArticlePage"),
    "DraftFaqRequest": contracts.DraftFaqRequest,
    "ReviseFaqRequest": contracts.ReviseFaqRequest,
    "RetireFaqRequest": contracts.RetireFaqRequest,
    "RecordFaqUseRequest": contracts.RecordFaqUseRequest,
}

_TAG = "faqs"
_ITEM = "/v1/faqs/{article_id}"

OPERATIONS = (
    create("/v1/faqs", "draftFaq", "Draft an FAQ article", _TAG, "FaqArticle", contracts.DraftFaqRequest),
    read(_ITEM, "getFaq", "Get an FAQ article with its usage figures", _TAG, "FaqArticle"),
    listing("/v1/faqs", "listFaqs", "List FAQ articles, a page at a time, by status", _TAG, "FaqArticlePage",
            FaqQuery, "?status=published&page=1&page_size=20"),
    read("/v1/faqs/suggestions", "suggestFaqs", "Published articles matching a question, best first", _TAG,
         "FaqSuggestion[]", etag=False, query=FaqSuggestionQuery, query_example="?q=where%20is%20my%20parcel&limit=3"),
    command("put", _ITEM, "reviseFaq", "Rewrite a draft article", _TAG, "FaqArticle", contracts.ReviseFaqRequest,
            REQUIRED),
    command("post", f"{_ITEM}/publish", "publishFaq", "Publish an article (it is suggested from then on)", _TAG,
            "FaqArticle", None, REQUIRED),
    command("post", f"{_ITEM}/retire", "retireFaq", "Retire a published article", _TAG, "FaqArticle",
            contracts.RetireFaqRequest, REQUIRED),
    command("post", f"{_ITEM}/uses", "recordFaqUse", "Record a use of the article (and whether it helped)", _TAG,
            "FaqArticle", contracts.RecordFaqUseRequest, OPTIONAL),
)
