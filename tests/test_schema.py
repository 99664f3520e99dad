"""The config's JSON Schema: shipped, current, and agreeing with the validator."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from monitor.config import config_schema
from tests.helpers import REPO, cli

SHIPPED = REPO / "monitor" / "config.schema.json"
FULL = """
database: data/monitor.db
defaults: {interval: 15m, timeout: 20, max_age: 7d, jitter: 30s}
timezone: Europe/Berlin
alerts: {max_attempts: 5, retry_after: 1m, burst_limit: 3, templates: {title: "$title"}}
feeds:
  - url: https://example.org/feed/
    name: Example
    interval: 10m
watchlists:
  - name: w
    keywords: S-400
    fields: title
    every: 1h
    quiet_hours: "22:00-07:00"
notify:
  - json://127.0.0.1/x
  - url: mailto://u:p@example.org
    tags: analysts
    format: html
"""


def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SHIPPED.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)  # type: ignore[no-any-return]


def test_the_shipped_schema_is_current_and_printed_by_the_cli() -> None:
    assert json.loads(SHIPPED.read_text()) == config_schema(), (
        "regenerate it: feed-monitor schema > monitor/config.schema.json"
    )
    printed = cli("schema")
    assert printed.returncode == 0 and json.loads(printed.stdout) == config_schema()


def test_shipped_and_full_configs_validate() -> None:
    check = validator()
    check.validate(yaml.safe_load((REPO / "config" / "monitor.yaml").read_text()))
    check.validate(yaml.safe_load(FULL))


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        (("interval: 10m", "intervall: 10m"), "Additional properties"),
        (("interval: 10m", "interval: soon"), "is not valid"),
        (("format: html", "format: rtf"), "is not valid"),
        (('quiet_hours: "22:00-07:00"', "quiet_hours: nights"), "'nights' is not valid"),
    ],
)
def test_editors_see_the_mistakes_check_refuses(edit: tuple[str, str], complaint: str) -> None:
    document = yaml.safe_load(FULL.replace(*edit))
    errors = list(validator().iter_errors(document))
    assert errors and any(complaint in error.message for error in errors)
