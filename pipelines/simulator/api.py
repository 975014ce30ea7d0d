"""The eleven actions: parameter checks with the service's error codes, and the `Response` bodies,
whose fields are exactly those of the official SDK's models.

Choices where the documentation is silent (reference sections 2 and 9), per check:
- parameters are checked in this order: missing (`MissingParameter`), undefined
  (`UnknownParameter`), wrong JSON type (`InvalidParameter`), `SmsSdkAppId` not one of the
  account's configured applications (`UnauthorizedOperation.SmsSdkAppIdVerifyFail`), then the
  action's own value checks; every application has its own queues, archive and statistics;
- pulls: `Limit` outside 1..100 -> `InvalidParameterValue.LimitVerifyFail`; by-number `Offset` not
  0 -> `OffsetVerifyFail`; `PhoneNumber` not E.164 (`+` and 5 to 15 digits) -> `IncorrectPhoneNumber`;
  `BeginTime` older than 7 days before the simulator clock (whole seconds) -> `BeginTimeVerifyFail`;
  `EndTime` before `BeginTime` -> `InvalidStartTime` (listed for these actions; described as
  "start after end"). A missing `EndTime` means "now".
- statistics: `Limit`/`Offset` not 0 -> `LimitVerifyFail`/`OffsetVerifyFail`; a time that is not a
  real `yyyymmddhh` hour -> `BeginTimeVerifyFail`/`EndTimeVerifyFail`; `EndTime` before `BeginTime`,
  or (CallbackStatusStatistics) more than 32 days after it -> `EndTimeVerifyFail` (the only
  end-time code listed for the statistics actions). Both hours are inclusive.
- signature/template lists: `International` not 0/1 -> `InvalidParameterValue.InvalidInternational`;
  without an id set, `Limit` (signatures: default 10) must be 1..100 -> else `LimitVerifyFail`
  (templates document a default of 0, which would list nothing; it is refused instead);
  `Offset` < 0 -> `OffsetVerifyFail`; more than 100 ids -> `LimitVerifyFail`; unknown ids are skipped.
- ReportConversion answers `{"Code": "OK", "Message": "success"}` (the documented example) for any
  SerialNo and records the report for the ground truth.
- SendSms sends for real in the simulation: receipts, replies and statistics follow.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import zoneinfo
from typing import Any

import orjson
import phonenumbers

from pipelines.simulator import catalog as C
from pipelines.simulator import traffic as T
from pipelines.simulator.state import HandedOut, SimState
from pipelines.tencent import actions as A

_E164 = re.compile(r"\+[1-9]\d{4,14}")
_HOUR = re.compile(r"\d{10}")
_MAX_NUMBERS = 200

_PARAMS: dict[str, dict[str, tuple[type, bool]]] = {
    A.PULL_SEND_STATUS: {"Limit": (int, True), "SmsSdkAppId": (str, True)},
    A.PULL_REPLY_STATUS: {"Limit": (int, True), "SmsSdkAppId": (str, True)},
    **{a: {"BeginTime": (int, True), "Offset": (int, True), "Limit": (int, True), "PhoneNumber": (str, True),
           "SmsSdkAppId": (str, True), "EndTime": (int, False)} for a in A.BY_NUMBER_ACTIONS},
    **{a: {"BeginTime": (str, True), "EndTime": (str, True), "SmsSdkAppId": (str, True), "Limit": (int, True),
           "Offset": (int, True)} for a in (A.SEND_STATUS_STATISTICS, A.CALLBACK_STATUS_STATISTICS)},
    A.DESCRIBE_SIGN_LIST: {"International": (int, True), "SignIdSet": (list, False), "Limit": (int, False),
                           "Offset": (int, False)},
    A.DESCRIBE_TEMPLATE_LIST: {"International": (int, True), "TemplateIdSet": (list, False), "Limit": (int, False),
                               "Offset": (int, False)},
    A.DESCRIBE_PHONE_NUMBER_INFO: {"PhoneNumberSet": (list, True)},
    A.REPORT_CONVERSION: {"SmsSdkAppId": (str, True), "SerialNo": (str, True), "ConversionTime": (int, False)},
    A.SEND_SMS: {"PhoneNumberSet": (list, True), "SmsSdkAppId": (str, True), "TemplateId": (str, True),
                 "SignName": (str, False), "TemplateParamSet": (list, False), "ExtendCode": (str, False),
                 "SessionContext": (str, False), "SenderId": (str, False)},
}
_LIST_ITEM = {"SignIdSet": int, "TemplateIdSet": int, "PhoneNumberSet": str, "TemplateParamSet": str}


class ApiError(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(code, message)
        self.code = code
        self.message = message


@dataclasses.dataclass
class Context:
    state: SimState
    provider_tz: zoneinfo.ZoneInfo
    request_id: str
    dirty: float  # per-record probability of a dirty variant in pull responses


@dataclasses.dataclass
class Result:
    body: bytes
    handed: HandedOut | None = None  # the records a pull took, to settle once the response is out


def envelope(fields: dict[str, Any], request_id: str) -> bytes:
    return orjson.dumps({"Response": {**fields, "RequestId": request_id}})


def error_envelope(code: str, message: str, request_id: str) -> bytes:
    return envelope({"Error": {"Code": code, "Message": message}}, request_id)


def handle(action: str, params: dict[str, Any], ctx: Context) -> Result:
    _check_params(action, params)
    if "SmsSdkAppId" in _PARAMS[action] and params["SmsSdkAppId"] not in ctx.state.apps:
        raise ApiError("UnauthorizedOperation.SmsSdkAppIdVerifyFail",
                       f"SmsSdkAppId {params['SmsSdkAppId']} does not belong to this account.")
    return _HANDLERS[action](params, ctx)


def _check_params(action: str, params: dict[str, Any]) -> None:
    spec = _PARAMS[action]
    for name, (_, required) in spec.items():
        if required and params.get(name) is None:
            raise ApiError("MissingParameter", f"The request is missing a required parameter `{name}`.")
    for name in params:
        if name not in spec:
            raise ApiError("UnknownParameter", f"The parameter `{name}` is not recognized.")
    for name, value in params.items():
        kind = spec[name][0]
        if value is None:
            continue
        ok = isinstance(value, kind) and not isinstance(value, bool)
        if ok and kind is list:
            item = _LIST_ITEM[name]
            ok = all(isinstance(v, item) and not isinstance(v, bool) for v in value)
        if not ok:
            raise ApiError("InvalidParameter", f"The value type of parameter `{name}` is not valid.")


def _limit(params: dict[str, Any], lo: int = 1, hi: int = A.MAX_LIMIT, default: int | None = None) -> int:
    limit = params.get("Limit", default)
    if limit is None or not lo <= limit <= hi:
        raise ApiError("InvalidParameterValue.LimitVerifyFail", f"Limit must be between {lo} and {hi}, got {limit}.")
    return limit


def _pull_body(action: str, parts: list[bytes], request_id: str) -> bytes:
    return b"".join((b'{"Response":{"', A.RECORD_SET[action].encode(), b'":[', b",".join(parts),
                     b'],"RequestId":"', request_id.encode(), b'"}}'))


def _pull_queue(action: str):
    def run(params: dict[str, Any], ctx: Context) -> Result:
        parts, handed = ctx.state.pull_queue(params["SmsSdkAppId"], action, _limit(params), ctx.request_id,
                                             ctx.dirty)
        return Result(_pull_body(action, parts, ctx.request_id), handed)

    return run


def _pull_by_number(action: str):
    def run(params: dict[str, Any], ctx: Context) -> Result:
        limit = _limit(params)
        if params["Offset"] != 0:
            raise ApiError("InvalidParameterValue.OffsetVerifyFail", "Offset is currently fixed at 0.")
        phone = params["PhoneNumber"]
        if not _E164.fullmatch(phone):
            raise ApiError("InvalidParameterValue.IncorrectPhoneNumber",
                           f"PhoneNumber {phone!r} is not in E.164 format, e.g. +8618501234444.")
        begin, end = params["BeginTime"], params.get("EndTime")
        oldest = int(ctx.state.now()) - A.BY_NUMBER_RETENTION_SECONDS
        if begin < oldest:
            raise ApiError("InvalidParameterValue.BeginTimeVerifyFail",
                           f"BeginTime {begin} is more than 7 days ago; data of the last 7 days can be pulled.")
        if end is not None and end < begin:
            raise ApiError("InvalidParameterValue.InvalidStartTime", f"BeginTime {begin} is after EndTime {end}.")
        parts, handed = ctx.state.pull_by_number(params["SmsSdkAppId"], action, phone, begin, end, limit,
                                                 ctx.request_id, ctx.dirty)
        return Result(_pull_body(action, parts, ctx.request_id), handed)

    return run


def hour_start(text: str, tz: zoneinfo.ZoneInfo, name: str) -> int:
    """Unix time of the start of a `yyyymmddhh` hour (`name` BeginTime or EndTime) in the provider time zone."""
    try:
        if not _HOUR.fullmatch(text):
            raise ValueError
        local = dt.datetime(int(text[:4]), int(text[4:6]), int(text[6:8]), int(text[8:]), tzinfo=tz)
    except ValueError:
        raise ApiError(f"InvalidParameterValue.{name}VerifyFail", f"{name} {text!r} is not a time in yyyymmddhh format.") from None
    return int(local.timestamp())


def _statistics_range(params: dict[str, Any], ctx: Context, max_days: int | None) -> tuple[int, int]:
    if params["Limit"] != 0:
        raise ApiError("InvalidParameterValue.LimitVerifyFail", "Limit is currently fixed at 0.")
    if params["Offset"] != 0:
        raise ApiError("InvalidParameterValue.OffsetVerifyFail", "Offset is currently fixed at 0.")
    begin = hour_start(params["BeginTime"], ctx.provider_tz, "BeginTime")
    end = hour_start(params["EndTime"], ctx.provider_tz, "EndTime")
    if end < begin:
        raise ApiError("InvalidParameterValue.EndTimeVerifyFail", "EndTime must not be earlier than BeginTime.")
    if max_days is not None and end - begin > max_days * 86400:
        raise ApiError("InvalidParameterValue.EndTimeVerifyFail",
                       f"EndTime must be no more than {max_days} days after BeginTime.")
    return begin, end + 3600


def _send_status_statistics(params: dict[str, Any], ctx: Context) -> Result:
    send, _ = ctx.state.statistics(params["SmsSdkAppId"], *_statistics_range(params, ctx, None))
    return Result(envelope({"SendStatusStatistics": send}, ctx.request_id))


def _callback_status_statistics(params: dict[str, Any], ctx: Context) -> Result:
    _, callback = ctx.state.statistics(params["SmsSdkAppId"],
                                       *_statistics_range(params, ctx, A.CALLBACK_STATISTICS_MAX_DAYS))
    order = ("CallbackCount", "RequestSuccessCount", "CallbackFailCount", "CallbackSuccessCount") + C.FAILURE_COUNTERS
    return Result(envelope({"CallbackStatusStatistics": {k: callback[k] for k in order}}, ctx.request_id))


def _international(params: dict[str, Any]) -> int:
    international = params["International"]
    if international not in (0, 1):
        raise ApiError("InvalidParameterValue.InvalidInternational", "International must be 0 or 1.")
    return international


def _listing(params: dict[str, Any], id_field: str, entries: list, id_of, default_limit: int | None) -> list:
    ids = params.get(id_field)
    if ids:
        if len(ids) > A.MAX_LIMIT:
            raise ApiError("InvalidParameterValue.LimitVerifyFail", f"{id_field} holds at most 100 ids.")
        wanted = set(ids)
        return [e for e in entries if id_of(e) in wanted]
    limit = _limit(params, default=default_limit)
    offset = params.get("Offset") or 0
    if offset < 0:
        raise ApiError("InvalidParameterValue.OffsetVerifyFail", "Offset must not be negative.")
    return entries[offset : offset + limit]


def _describe_sign_list(params: dict[str, Any], ctx: Context) -> Result:
    international = _international(params)
    signs = [s for s in ctx.state.traffic.signs if s.international == international]
    listed = _listing(params, "SignIdSet", signs, lambda s: s.sign_id, 10)
    return Result(envelope({"DescribeSignListStatusSet": [{
        "SignId": s.sign_id,
        "International": s.international,
        "StatusCode": s.status_code,
        "ReviewReply": s.review_reply,
        "SignName": s.name,
        "CreateTime": s.create_time,
        "QualificationId": 0 if s.international else 20817,
        "QualificationName": "" if s.international else "深圳小账本科技有限公司",
        "QualificationStatusCode": 0 if s.international else 1,
    } for s in listed]}, ctx.request_id))


def _describe_template_list(params: dict[str, Any], ctx: Context) -> Result:
    international = _international(params)
    templates = [t for t in ctx.state.traffic.templates if t.international == international]
    listed = _listing(params, "TemplateIdSet", templates, lambda t: t.template_id, None)
    return Result(envelope({"DescribeTemplateStatusSet": [{
        "TemplateId": t.template_id,
        "International": t.international,
        "StatusCode": t.status_code,
        "ReviewReply": t.review_reply,
        "TemplateName": t.name,
        "CreateTime": t.create_time,
        "TemplateContent": t.content,
    } for t in listed]}, ctx.request_id))


def parse_number(text: str) -> phonenumbers.PhoneNumber | None:
    """A number as SendSms reads it: E.164, or mainland forms such as 0086..., 86... and bare 11 digits."""
    try:
        number = phonenumbers.parse(text, "CN")
    except phonenumbers.NumberParseException:
        return None
    return number if phonenumbers.is_possible_number(number) else None


def _phone_number_set(params: dict[str, Any]) -> list[str]:
    numbers = params["PhoneNumberSet"]
    if not numbers:
        raise ApiError("MissingParameter.EmptyPhoneNumberSet", "PhoneNumberSet is empty.")
    if len(numbers) > _MAX_NUMBERS:
        raise ApiError("LimitExceeded.PhoneNumberCountLimit", "PhoneNumberSet holds at most 200 numbers.")
    return numbers


def _describe_phone_number_info(params: dict[str, Any], ctx: Context) -> Result:
    from phonenumbers import geocoder  # 0.3 s to import: only when this action is used

    numbers = _phone_number_set(params)
    infos = []
    for text in numbers:
        number = parse_number(text)
        if number is None:
            infos.append({"Code": "InvalidParameterValue.IncorrectPhoneNumber", "Message": "incorrect phone number",
                          "NationCode": "", "SubscriberNumber": "", "PhoneNumber": text, "IsoCode": "DEF",
                          "IsoName": ""})
            continue
        iso = phonenumbers.region_code_for_number(number) or "DEF"
        infos.append({
            "Code": "Ok",
            "Message": "Describe success",
            "NationCode": str(number.country_code),
            "SubscriberNumber": str(number.national_number),
            "PhoneNumber": phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
            "IsoCode": iso,
            "IsoName": geocoder.country_name_for_number(number, "en"),
        })
    return Result(envelope({"PhoneNumberInfoSet": infos}, ctx.request_id))


def _report_conversion(params: dict[str, Any], ctx: Context) -> Result:
    ctx.state.report_conversion(params["SmsSdkAppId"], params["SerialNo"], params.get("ConversionTime"))
    return Result(envelope({"ReportConversionStatus": {"Code": "OK", "Message": "success"}}, ctx.request_id))


def _send_sms(params: dict[str, Any], ctx: Context) -> Result:
    numbers = _phone_number_set(params)
    state = ctx.state
    template = next((t for t in state.traffic.templates if str(t.template_id) == params["TemplateId"]), None)
    if template is None or template.status_code != 0:
        raise ApiError("FailedOperation.TemplateIncorrectOrUnapproved",
                       f"template {params['TemplateId']} is not approved or does not exist.")
    parsed = [parse_number(n) for n in numbers]
    regions = {phonenumbers.region_code_for_number(p) == "CN" for p in parsed if p is not None}
    if len(regions) > 1:
        raise ApiError("UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber",
                       "PhoneNumberSet mixes mainland China and international numbers.")
    mainland = regions == {True}
    if mainland and template.international:
        raise ApiError("UnsupportedOperation.GlobalTemplateToChineseMainlandPhone",
                       "an international template cannot be sent to mainland China numbers.")
    if regions == {False} and not template.international:
        raise ApiError("UnsupportedOperation.ChineseMainlandTemplateToGlobalPhone",
                       "a mainland China template cannot be sent to international numbers.")
    sign = params.get("SignName") or ""
    usable = {s.name for s in state.traffic.signs if s.status_code == 0 and s.international == template.international}
    if (mainland or sign) and sign not in usable:
        raise ApiError("FailedOperation.SignatureIncorrectOrUnapproved",
                       f"signature {sign!r} is not approved (SignName is required for mainland China SMS).")
    params_match = len(params.get("TemplateParamSet") or []) == template.param_count
    context = params.get("SessionContext") or ""
    statuses: list[dict[str, Any]] = []
    sent: list[tuple[int, T.Recipient, C.Country]] = []  # (position in statuses, recipient, country)
    for text, number in zip(numbers, parsed, strict=True):
        if number is None or not phonenumbers.is_valid_number(number):
            code, message = "InvalidParameterValue.IncorrectPhoneNumber", "incorrect phone number format"
        elif not params_match:
            code, message = ("FailedOperation.TemplateParamSetNotMatchApprovedTemplate",
                             "request content does not match the template content")
        else:
            sent.append((len(statuses), *_recipient(number)))
            statuses.append({})
            continue
        statuses.append({"SerialNo": "", "PhoneNumber": text, "Fee": 0, "SessionContext": context,
                         "Code": code, "Message": message, "IsoCode": ""})
    messages = state.send(params["SmsSdkAppId"], [r for _, r, _ in sent], [c for _, _, c in sent], template, sign,
                          context) if sent else []
    for (position, _, _), m in zip(sent, messages, strict=True):
        statuses[position] = {"SerialNo": m.serial_no, "PhoneNumber": m.recipient.phone_e164, "Fee": m.fee,
                              "SessionContext": context, "Code": "Ok", "Message": "send success",
                              "IsoCode": m.recipient.iso_code}
    return Result(envelope({"SendStatusSet": statuses}, ctx.request_id))


def _recipient(number: phonenumbers.PhoneNumber) -> tuple[T.Recipient, C.Country]:
    """The recipient of a valid number, and its country (a catalog one, or a generic international one)."""
    iso = phonenumbers.region_code_for_number(number)
    cc = str(number.country_code)
    country = next((c for c in C.COUNTRIES if c.iso == iso),
                   C.Country(iso, cc, "", 0.0, 0.9, (), 0, C.INTERNATIONAL_FAILURES))
    recipient = T.Recipient(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164), cc,
                            str(number.national_number), iso)
    return recipient, country


_HANDLERS = {
    A.PULL_SEND_STATUS: _pull_queue(A.PULL_SEND_STATUS),
    A.PULL_REPLY_STATUS: _pull_queue(A.PULL_REPLY_STATUS),
    A.PULL_SEND_STATUS_BY_NUMBER: _pull_by_number(A.PULL_SEND_STATUS_BY_NUMBER),
    A.PULL_REPLY_STATUS_BY_NUMBER: _pull_by_number(A.PULL_REPLY_STATUS_BY_NUMBER),
    A.SEND_STATUS_STATISTICS: _send_status_statistics,
    A.CALLBACK_STATUS_STATISTICS: _callback_status_statistics,
    A.DESCRIBE_SIGN_LIST: _describe_sign_list,
    A.DESCRIBE_TEMPLATE_LIST: _describe_template_list,
    A.DESCRIBE_PHONE_NUMBER_INFO: _describe_phone_number_info,
    A.REPORT_CONVERSION: _report_conversion,
    A.SEND_SMS: _send_sms,
}
