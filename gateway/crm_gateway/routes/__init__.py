"""The gateway's routes, one module per resource: each a mixin of `@http` handlers with its OpenAPI
operations (`OPERATIONS`) and answer schemas (`SCHEMAS`) declared beside them. GatewayService combines
the mixins; openapi.py collects the operations."""
