"""The gateway's configuration, read once from the environment."""

from __future__ import annotations

from functools import cache

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class GatewaySettings(BaseSettings):
    """Environment variable names are spelled out per field so they match the manifest."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    table_name: str = Field(default="agentwire-gateway-main", validation_alias="GATEWAY_TABLE_NAME")
    event_bus_name: str = Field(default="agentwire", validation_alias="AGENTWIRE_EVENT_BUS_NAME")
    #: Runs and their steps leave the read model after this many days (DynamoDB TTL on `expires_at`).
    run_retention_days: int = Field(default=30, ge=1, validation_alias="AGENTWIRE_GATEWAY_RUN_RETENTION_DAYS")

    # --- OIDC bearer tokens (off unless an issuer and its JWKS are configured) ----------------------
    jwt_issuer: str | None = Field(default=None, validation_alias="AGENTWIRE_GATEWAY_JWT_ISSUER")
    #: https://… of the issuer's JWKS (file://… works too, for tests and air-gapped setups).
    jwt_jwks_url: str | None = Field(default=None, validation_alias="AGENTWIRE_GATEWAY_JWT_JWKS_URL")
    jwt_audience: str | None = Field(default=None, validation_alias="AGENTWIRE_GATEWAY_JWT_AUDIENCE")
    jwt_tenant_claim: str = Field(default="tenant_id", validation_alias="AGENTWIRE_GATEWAY_JWT_TENANT_CLAIM")
    jwt_user_claim: str = Field(default="sub", validation_alias="AGENTWIRE_GATEWAY_JWT_USER_CLAIM")
    #: A space-separated string or a list of scopes; tokens without it get runs:read and runs:write.
    jwt_scope_claim: str = Field(default="scope", validation_alias="AGENTWIRE_GATEWAY_JWT_SCOPE_CLAIM")
    jwt_algorithms: str = Field(default="RS256,ES256", validation_alias="AGENTWIRE_GATEWAY_JWT_ALGORITHMS")

    # --- limits -------------------------------------------------------------------------------------
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, validation_alias="AGENTWIRE_GATEWAY_MAX_BODY_BYTES")
    #: Requests per tenant per minute, unless the tenant has its own limit.
    rate_limit_per_minute: int = Field(default=1200, ge=1, validation_alias="AGENTWIRE_GATEWAY_RATE_LIMIT")
    idempotency_ttl_hours: int = Field(default=24, ge=1, validation_alias="AGENTWIRE_GATEWAY_IDEMPOTENCY_TTL_HOURS")
    #: The longest `wait` of a long poll (API Gateway's integration timeout is 30 s).
    max_wait_s: int = Field(default=20, ge=0, le=25, validation_alias="AGENTWIRE_GATEWAY_MAX_WAIT_S")
    #: An admin key of this tenant administers every tenant; other admin keys only their own.
    operator_tenant: str = Field(default="operator", validation_alias="AGENTWIRE_GATEWAY_OPERATOR_TENANT")

    @model_validator(mode="after")
    def _an_issuer_needs_an_audience(self) -> GatewaySettings:
        # Without an audience check, any token the issuer signed for another application would be accepted.
        if self.jwt_enabled and not (self.jwt_audience or "").strip():
            raise ValueError(
                "AGENTWIRE_GATEWAY_JWT_AUDIENCE is required with AGENTWIRE_GATEWAY_JWT_ISSUER: without it a "
                "token the issuer made for any other application would be accepted"
            )
        return self

    @property
    def jwt_enabled(self) -> bool:
        return bool(self.jwt_issuer and self.jwt_jwks_url)


@cache
def get_settings() -> GatewaySettings:
    return GatewaySettings()
