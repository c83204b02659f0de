"""The bus stack: the custom event bus, its archive, the payload bucket and the schema registry.

It hands the names the service stacks need to them through SSM parameters only (no exports).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agentwire_contracts import manifest as names
from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_eventschemas as eventschemas
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from agentwire_infra.cdk.constructs import acknowledge
from agentwire_infra.cdk.observability import AlarmTopic, SystemObservability
from agentwire_infra.cdk.settings import SCHEMAS_DIR, SharedParameter, all_manifests

ARCHIVE_RETENTION = Duration.days(30)
#: Claim-checked payloads are needed while a run is alive and for a while after (replay, debugging).
PAYLOAD_EXPIRATION = Duration.days(30)
ACCESS_LOG_EXPIRATION = Duration.days(90)


def schema_files(directory: Path = SCHEMAS_DIR) -> list[Path]:
    return sorted(directory.glob("*.json"))


def schema_name(path: Path) -> str:
    """The registry's name for a schema: its detail-type (the file's stem)."""
    return path.stem


#: The registry knows two schema types, `OpenApi3` and `JSONSchemaDraft4` (AWS::EventSchemas::Schema);
#: the contracts are JSON Schema 2020-12, so each is registered as the draft 4 rendering below.
REGISTRY_SCHEMA_TYPE = "JSONSchemaDraft4"
DRAFT4 = "http://json-schema.org/draft-04/schema#"
_DEFS_REF = "#/$defs/"
#: 2020-12 keywords draft 4 has no equivalent for: a schema using one cannot be registered faithfully.
_NO_DRAFT4 = frozenset(
    {
        "prefixItems",
        "unevaluatedProperties",
        "unevaluatedItems",
        "dependentRequired",
        "dependentSchemas",
        "if",
        "then",
        "else",
        "contains",
        "minContains",
        "maxContains",
        "propertyNames",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "$anchor",
        "$dynamicRef",
        "$dynamicAnchor",
    }
)
#: Keywords whose value maps names to schemas (the names are data, not keywords).
_SCHEMA_MAPS = frozenset({"properties", "patternProperties", "$defs", "definitions"})


def _ref(value: str) -> str:
    return "#/definitions/" + value.removeprefix(_DEFS_REF) if value.startswith(_DEFS_REF) else value


def draft4(schema: Any) -> Any:
    """The draft 4 rendering of a 2020-12 contract schema, accepting exactly the same documents.

    `$defs` → `definitions` (and every `#/$defs/` reference), `$id` → `id`, `const` → a one-value
    `enum`, and a `$ref` with sibling keywords (ignored beside `$ref` in draft 4) → `allOf: [{$ref}]`
    beside them. `discriminator` (an OpenAPI annotation, no assertion) keeps its mapping, re-pointed.
    Raises ValueError on a 2020-12 keyword draft 4 cannot express."""
    if isinstance(schema, list):
        return [draft4(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _NO_DRAFT4:
            raise ValueError(f"JSON Schema keyword {key!r} has no draft 4 equivalent")
        if key in _SCHEMA_MAPS:
            out["definitions" if key == "$defs" else key] = {name: draft4(sub) for name, sub in value.items()}
        elif key == "$schema":
            out[key] = DRAFT4
        elif key == "$id":
            out["id"] = value
        elif key == "const":
            if "enum" in schema:
                raise ValueError("both const and enum")
            out["enum"] = [value]
        elif key == "$ref":
            out[key] = _ref(value)
        elif key == "discriminator":
            out[key] = {**value, "mapping": {k: _ref(v) for k, v in value.get("mapping", {}).items()}}
        else:
            out[key] = draft4(value)
    if "$ref" in out and len(out) > 1:
        out["allOf"] = [{"$ref": out.pop("$ref")}, *out.get("allOf", [])]
    return out


def registry_content(path: Path) -> str:
    """What the registry stores for a contract schema file: its draft 4 rendering."""
    return json.dumps(draft4(json.loads(path.read_text())), indent=2, sort_keys=True)


def payload_bucket_physical_name(prefix: str) -> str:
    """S3 names are global: the manifest's name, made unique per account and region."""
    return f"{names.payload_bucket_name(prefix)}-{Aws.ACCOUNT_ID}-{Aws.REGION}"


class BusStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, prefix: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.prefix = prefix
        self.bus = events.EventBus(
            self,
            "Bus",
            event_bus_name=names.bus_name(prefix),
            description="agentwire: every versioned contract event between the services",
        )
        self.archive = self.bus.archive(
            "Archive",
            archive_name=f"{prefix}-events",
            description="Every agentwire event, for replay after a fix or into a new consumer",
            event_pattern=events.EventPattern(source=events.Match.prefix("agentwire.")),
            retention=ARCHIVE_RETENTION,
        )

        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
            versioned=False,
            lifecycle_rules=[s3.LifecycleRule(id="expire-access-logs", expiration=ACCESS_LOG_EXPIRATION)],
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(
            self.access_logs,
            "AwsSolutions-S1",
            "This bucket is the server-access-log destination of the payload bucket; logging the "
            "log bucket itself would only produce logs about log delivery.",
        )
        self.payload_bucket = s3.Bucket(
            self,
            "Payloads",
            bucket_name=payload_bucket_physical_name(prefix),
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="payloads/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-payloads",
                    expiration=PAYLOAD_EXPIRATION,
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )

        self.registry = eventschemas.CfnRegistry(
            self,
            "SchemaRegistry",
            registry_name=f"{prefix}-events",
            description="JSON Schema of every agentwire detail-type (generated from agentwire_contracts)",
        )
        self.schemas: dict[str, eventschemas.CfnSchema] = {}
        for path in schema_files():
            schema = eventschemas.CfnSchema(
                self,
                f"Schema-{schema_name(path)}",
                registry_name=self.registry.attr_registry_name,
                schema_name=schema_name(path),
                type=REGISTRY_SCHEMA_TYPE,
                content=registry_content(path),
                description=f"detail of {schema_name(path)} (draft 4 rendering of contracts/schemas/{path.name})",
            )
            self.schemas[schema_name(path)] = schema

        for parameter_id, parameter_name, value in (
            ("BusNameParameter", SharedParameter.bus_name(prefix), self.bus.event_bus_name),
            ("BusArnParameter", SharedParameter.bus_arn(prefix), self.bus.event_bus_arn),
            ("PayloadBucketParameter", SharedParameter.payload_bucket_name(prefix), self.payload_bucket.bucket_name),
        ):
            ssm.StringParameter(
                self,
                parameter_id,
                parameter_name=parameter_name,
                string_value=value,
                description="agentwire: shared with the service stacks (read at deploy time, never exported)",
            )

        self.alarm_topic = AlarmTopic(self, "Alarms", prefix=prefix)
        self.system = SystemObservability(
            self, "System", prefix=prefix, manifests=all_manifests().values(), topic=self.alarm_topic.topic
        )
