"""The actions of Tencent Cloud SMS API 2021-01-11 that smsledger uses, with their documented
per-second rate limits (tencentcloud.com/document/api/382/40463)."""

from __future__ import annotations

PULL_SEND_STATUS = "PullSmsSendStatus"
PULL_REPLY_STATUS = "PullSmsReplyStatus"
PULL_SEND_STATUS_BY_NUMBER = "PullSmsSendStatusByPhoneNumber"
PULL_REPLY_STATUS_BY_NUMBER = "PullSmsReplyStatusByPhoneNumber"
SEND_STATUS_STATISTICS = "SendStatusStatistics"
CALLBACK_STATUS_STATISTICS = "CallbackStatusStatistics"
DESCRIBE_SIGN_LIST = "DescribeSmsSignList"
DESCRIBE_TEMPLATE_LIST = "DescribeSmsTemplateList"
DESCRIBE_PHONE_NUMBER_INFO = "DescribePhoneNumberInfo"
REPORT_CONVERSION = "ReportConversion"
SEND_SMS = "SendSms"

RATE_LIMITS: dict[str, float] = {
    PULL_SEND_STATUS: 100,
    PULL_REPLY_STATUS: 100,
    PULL_SEND_STATUS_BY_NUMBER: 20,
    PULL_REPLY_STATUS_BY_NUMBER: 20,
    SEND_STATUS_STATISTICS: 10,
    CALLBACK_STATUS_STATISTICS: 10,
    DESCRIBE_SIGN_LIST: 20,
    DESCRIBE_TEMPLATE_LIST: 20,
    DESCRIBE_PHONE_NUMBER_INFO: 1000,
    REPORT_CONVERSION: 1000,
    SEND_SMS: 3000,  # the 2019-07-11 figure; the 2021 one is undocumented
}

ALL_ACTIONS = tuple(RATE_LIMITS)

QUEUE_ACTIONS = (PULL_SEND_STATUS, PULL_REPLY_STATUS)
BY_NUMBER_ACTIONS = (PULL_SEND_STATUS_BY_NUMBER, PULL_REPLY_STATUS_BY_NUMBER)

# The set each pull action returns its records in.
RECORD_SET = {
    PULL_SEND_STATUS: "PullSmsSendStatusSet",
    PULL_SEND_STATUS_BY_NUMBER: "PullSmsSendStatusSet",
    PULL_REPLY_STATUS: "PullSmsReplyStatusSet",
    PULL_REPLY_STATUS_BY_NUMBER: "PullSmsReplyStatusSet",
}

MAX_LIMIT = 100  # Limit of every pull
BY_NUMBER_RETENTION_SECONDS = 7 * 24 * 3600  # by-number pulls reach at most 7 days back
CALLBACK_STATISTICS_MAX_DAYS = 32
