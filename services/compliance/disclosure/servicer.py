"""DisclosureService's gRPC handlers: proto -> use case -> proto, and the area's entry point.

The compliance server wires this area with `build(runtime)`: it gets the servicer to register
under `DISCLOSURE` and the access policy to merge into the server's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from limelight.compliance.v1 import disclosure_pb2, disclosure_pb2_grpc

from libs.auth.principal import Role
from libs.kit.access import AccessPolicy, method_paths
from libs.kit.server import ServiceRuntime
from services.compliance.disclosure import messages, usecases
from services.compliance.disclosure.config import DisclosureConfig
from services.compliance.disclosure.model import Market
from services.compliance.disclosure.rulebook import rule_sets

DISCLOSURE = "limelight.compliance.v1.DisclosureService"
Context = grpc.aio.ServicerContext[Any, Any]

# Ingest asks before publishing; officers may re-run a verdict; the rules are public.
POLICY = AccessPolicy(
    public=frozenset(method_paths(DISCLOSURE, {"ListDisclosureRules": frozenset()})),
    roles=method_paths(DISCLOSURE, {
        "EvaluateDisclosure": frozenset({Role.SERVICE, Role.COMPLIANCE_OFFICER}),
        "AssessAiContent": frozenset({Role.SERVICE, Role.COMPLIANCE_OFFICER}),
    }),
)


class DisclosureServicer(disclosure_pb2_grpc.DisclosureServiceServicer):
    def __init__(self, rules: usecases.RuleSource) -> None:
        self._rules = rules

    async def EvaluateDisclosure(
        self, request: disclosure_pb2.EvaluateDisclosureRequest, context: Context
    ) -> disclosure_pb2.EvaluateDisclosureResponse:
        decision = usecases.evaluate(messages.content_in(request.content), messages.market_in(request.market),
                                     self._rules)
        return messages.decision_out(decision)

    async def AssessAiContent(
        self, request: disclosure_pb2.AssessAiContentRequest, context: Context
    ) -> disclosure_pb2.AssessAiContentResponse:
        assessment = usecases.assess(messages.ai_declaration_in(request.declaration), messages.c2pa_in(request.c2pa),
                                     messages.market_in(request.market), self._rules)
        return messages.assessment_out(assessment)

    async def ListDisclosureRules(
        self, request: disclosure_pb2.ListDisclosureRulesRequest, context: Context
    ) -> disclosure_pb2.ListDisclosureRulesResponse:
        market: Market | None = messages.market_in(request.market) if request.market else None
        page = usecases.list_rules(market, request.rules_version, request.page_size, request.page_token, self._rules)
        return disclosure_pb2.ListDisclosureRulesResponse(
            rules=[messages.rule_out(rule) for rule in page.rules], next_page_token=page.next_page_token,
            rules_version=page.version)


@dataclass(frozen=True)
class DisclosureArea:
    """What the disclosure area adds to the compliance server."""

    servicer: DisclosureServicer
    policy: AccessPolicy = POLICY
    service_name: str = DISCLOSURE


def build(runtime: ServiceRuntime | None = None, *, config: DisclosureConfig | None = None) -> DisclosureArea:
    """The area, with the rule sets loaded once (no store: verdicts are pure functions)."""
    settings = config or DisclosureConfig.from_environment()
    return DisclosureArea(DisclosureServicer(usecases.RuleBook(rule_sets(settings.rulesets))))
