"""Signatures and templates (DescribeSmsSignList / DescribeSmsTemplateList) as small dimension
tables, so marts can show names. Mainland (International=0) and international (1) lists are
separate on the provider's side; both are pulled."""

from __future__ import annotations

import dataclasses
import datetime as dt

import duckdb
import polars as pl

from pipelines.tencent.client import SmsApiClient
from pipelines.warehouse import lake
from pipelines.warehouse.db import transaction, upsert_frame

SIGN_COLUMNS = {"SignId": "sign_id", "SignName": "sign_name", "International": "international",
                "StatusCode": "status_code", "ReviewReply": "review_reply", "CreateTime": "create_time"}
TEMPLATE_COLUMNS = {"TemplateId": "template_id", "TemplateName": "template_name", "TemplateContent": "template_content",
                    "International": "international", "StatusCode": "status_code", "ReviewReply": "review_reply",
                    "CreateTime": "create_time"}


@dataclasses.dataclass
class DimensionsReport:
    signs: int = 0
    templates: int = 0


def _frame(rows: list[dict], columns: dict[str, str], pulled_at: dt.datetime) -> pl.DataFrame:
    data = {col: [row.get(api) for row in rows] for api, col in columns.items()}
    frame = pl.DataFrame(data, strict=False)
    return frame.with_columns(pulled_at=pl.lit(pulled_at).cast(pl.Datetime("us", "UTC"))).unique(
        subset=next(iter(columns.values())), keep="last", maintain_order=True
    )


def fetch_dimensions(client: SmsApiClient) -> tuple[list[dict], list[dict]]:
    """(signatures, templates), mainland and international."""
    signs = [s for international in (0, 1) for s in client.describe_sign_list(international)]
    templates = [t for international in (0, 1) for t in client.describe_template_list(international)]
    return signs, templates


@lake.retry_conflicts
def store_dimensions(con: duckdb.DuckDBPyConnection, signs: list[dict], templates: list[dict]) -> DimensionsReport:
    pulled_at = dt.datetime.now(dt.UTC)
    report = DimensionsReport(len(signs), len(templates))
    with transaction(con):
        for table, rows, columns in (("raw.signs", signs, SIGN_COLUMNS), ("raw.templates", templates, TEMPLATE_COLUMNS)):
            if not rows:
                continue
            key = next(iter(columns.values()))  # sign_id, template_id
            upsert_frame(con, table, _frame(rows, columns, pulled_at), key=[key])
    return report
