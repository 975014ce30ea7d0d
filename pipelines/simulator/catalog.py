"""The fixed world the simulated traffic lives in: recipient countries, signatures, templates,
SendSms failure codes and carrier receipt codes.

Numbers are built from prefixes that `phonenumbers` accepts as valid mobile (or mobile-or-fixed)
numbers of their region, so normalization code meets realistic, parseable input
(tests/test_simulator.py checks a sample). Delivery rates differ by country so that per-country
metrics have something to show.

Receipt descriptions are real carrier status codes (CMPP/SMPP reports as relayed by Chinese
gateways). Which `CallbackStatusStatistics` failure counter each one feeds is not documented by
Tencent (reference section 9); the mapping in `FAILURE_CATEGORY` is this simulator's choice, made
so that the five subcategories always add up to `CallbackFailCount`.
"""

from __future__ import annotations

import dataclasses

DELIVERED = "DELIVRD"

# CallbackStatusStatistics failure counters.
SHUTDOWN = "ShutdownErrorCount"
INVALID_NUMBER = "InvalidNumberCount"
BLACKLIST = "BlackListCount"
INTERNAL = "InternalErrorCount"
FREQUENCY = "FrequencyLimitCount"
FAILURE_COUNTERS = (INTERNAL, INVALID_NUMBER, SHUTDOWN, BLACKLIST, FREQUENCY)

FAILURE_CATEGORY = {
    "EXPIRED": SHUTDOWN,  # not delivered within the validity period: phone off or out of service
    "UNDELIV": SHUTDOWN,
    "MK:0001": SHUTDOWN,
    "MI:0059": SHUTDOWN,
    "MK:0012": INVALID_NUMBER,
    "MN:0001": INVALID_NUMBER,
    "DB:0141": BLACKLIST,  # number on the carrier's do-not-disturb list
    "REJECTD": INTERNAL,
    "ID:0076": INTERNAL,
    "IC:0001": INTERNAL,
    "BEYONDD": FREQUENCY,  # carrier's daily per-number limit
    "BEYONDH": FREQUENCY,
}

# What a status push says of each code in its `description` (the pull actions carry only the code).
DESCRIPTION_TEXT = {
    DELIVERED: "用户短信送达成功",
    "EXPIRED": "短信超时未送达（用户关机或不在服务区）",
    "UNDELIV": "短信无法送达",
    "MK:0001": "用户手机关机或停机",
    "MI:0059": "用户不在服务区",
    "MK:0012": "空号",
    "MN:0001": "空号或号码不存在",
    "DB:0141": "号码在运营商黑名单中",
    "REJECTD": "短信被运营商拒绝",
    "ID:0076": "运营商网关内部错误",
    "IC:0001": "运营商网关异常",
    "BEYONDD": "超过运营商单号码日发送上限",
    "BEYONDH": "超过运营商单号码小时发送上限",
}

# Descriptions of the earlier of two receipts for one message (a carrier retry that later succeeds or fails for good).
INTERMEDIATE_DESCRIPTIONS = ("UNDELIV", "MK:0001")

_MAINLAND_FAILURES = {
    "EXPIRED": 20, "UNDELIV": 18, "MK:0001": 10, "MI:0059": 5, "MK:0012": 10, "MN:0001": 6,
    "DB:0141": 12, "REJECTD": 5, "ID:0076": 5, "IC:0001": 3, "BEYONDD": 4, "BEYONDH": 2,
}
INTERNATIONAL_FAILURES = {"EXPIRED": 30, "UNDELIV": 35, "REJECTD": 15, "MN:0001": 10, "BEYONDD": 5, "IC:0001": 5}


@dataclasses.dataclass(frozen=True)
class Country:
    iso: str
    calling_code: str
    name: str  # DescribePhoneNumberInfo's IsoName
    weight: float  # share of the traffic
    delivery_rate: float  # share of final receipts that say SUCCESS
    prefixes: tuple[str, ...]  # leading digits of the national number
    national_length: int
    failures: dict[str, int]  # receipt description -> relative weight

    @property
    def mainland(self) -> bool:
        return self.iso == "CN"


COUNTRIES = (
    Country("CN", "86", "China", 0.75, 0.965,
            tuple(f"13{d}" for d in range(10)) + ("150", "151", "152", "153", "155", "156", "157", "158", "159",
                                                   "166", "176", "177", "178", "198", "199")
            + tuple(f"18{d}" for d in range(10)), 11, _MAINLAND_FAILURES),
    Country("HK", "852", "Hong Kong", 0.04, 0.95,
            ("59", "61", "63", "64", "65", "66", "69", "92", "94", "95", "96", "97"), 8, INTERNATIONAL_FAILURES),
    Country("SG", "65", "Singapore", 0.04, 0.96,
            ("81", "82", "83", "84", "85", "86", "87", "88", "90", "91", "92", "93", "94", "96", "97", "98"), 8,
            INTERNATIONAL_FAILURES),
    Country("US", "1", "United States", 0.05, 0.90, ("212", "310", "415", "646", "702", "305", "617", "206"), 10,
            INTERNATIONAL_FAILURES),
    Country("GB", "44", "United Kingdom", 0.03, 0.93, ("771", "772", "773", "774", "775", "776", "777"), 10,
            INTERNATIONAL_FAILURES),
    Country("IN", "91", "India", 0.04, 0.82,
            ("90", "91", "92", "93", "94", "95", "96", "97", "98", "99", "70", "72", "74"), 10, INTERNATIONAL_FAILURES),
    Country("BR", "55", "Brazil", 0.025, 0.85,
            tuple(f"{area}9{d}" for area in (11, 21, 31, 41, 51, 61, 71, 81, 85) for d in (6, 7, 8, 9)), 11,
            INTERNATIONAL_FAILURES),
    Country("ID", "62", "Indonesia", 0.025, 0.80,
            ("811", "812", "813", "821", "822", "852", "853", "877", "878", "895", "896", "897", "898", "899"), 11,
            INTERNATIONAL_FAILURES),
)

COUNTRY_BY_CODE = {c.calling_code: c for c in COUNTRIES}


@dataclasses.dataclass(frozen=True)
class Sign:
    sign_id: int
    name: str
    international: int
    status_code: int  # 0 usable; 1 under review (listed, never used in traffic)
    create_time: int
    review_reply: str = ""


@dataclasses.dataclass(frozen=True)
class Template:
    template_id: int
    name: str
    content: str
    international: int
    kind: str  # otp | notice | marketing
    fee: int  # billed parts of one message
    create_time: int
    status_code: int = 0
    review_reply: str = ""

    @property
    def param_count(self) -> int:
        return self.content.count("{")


SIGNS = (
    Sign(231001, "小账本", 0, 0, 1751299200),
    Sign(231002, "账本科技", 0, 0, 1751385600),
    Sign(231003, "账本商城", 0, 0, 1751472000),
    Sign(231004, "账本优选", 0, 1, 1764547200, "资质审核中"),
    Sign(231101, "SmsLedger", 1, 0, 1751299201),
)

TEMPLATES = (
    Template(1840001, "登录验证码", "您的验证码是{1}，{2}分钟内有效，请勿泄露给他人。", 0, "otp", 1, 1751299200),
    Template(1840002, "发货通知", "您的订单{1}已发货，快递单号{2}，请注意查收。", 0, "notice", 1, 1751385600),
    Template(1840003, "账单提醒", "尊敬的用户，您本月账单{1}元已出，请于{2}前完成还款。", 0, "notice", 1, 1751472000),
    Template(1840004, "会员日活动",
             "会员日福利来啦！即日起至{1}，全场商品满199减50，叠加会员专享券再享9折，限量发放先到先得，"
             "点击 {2} 立即领取。回复TD退订", 0, "marketing", 2, 1751558400),
    Template(1840005, "促销推广", "新品上市，全场8折，详情见{1}。回复TD退订", 0, "marketing", 1, 1764547200, -1,
             "营销内容需注明退订方式"),
    Template(1841001, "Verification code", "Your verification code is {1}. It expires in {2} minutes.", 1, "otp", 1,
             1751299201),
    Template(1841002, "Order update", "Your order {1} has shipped and will arrive by {2}.", 1, "notice", 1, 1751385601),
)

TEMPLATE_KIND_WEIGHTS = {"otp": 0.5, "notice": 0.35, "marketing": 0.15}
INTERNATIONAL_KIND_WEIGHTS = {"otp": 0.6, "notice": 0.4}


@dataclasses.dataclass(frozen=True)
class AppProfile:
    """How the traffic of one application of the account differs from another's, so that
    per-application metrics differ: its volume, its mix of mainland template kinds, its share of
    international numbers."""

    volume: float  # multiplies messages_per_day
    kind_weights: dict[str, float]  # mainland China messages by template kind
    international: float  # multiplies the traffic weights of the countries other than mainland China

    def country_weights(self) -> dict[str, float]:
        return {c.iso: c.weight * (1.0 if c.mainland else self.international) for c in COUNTRIES}


# The n-th configured application takes the n-th profile (cycling).
APP_PROFILES = (
    AppProfile(1.0, TEMPLATE_KIND_WEIGHTS, 1.0),  # codes and notices, some marketing
    AppProfile(0.4, {"otp": 0.1, "notice": 0.3, "marketing": 0.6}, 0.3),  # marketing, mostly mainland
    AppProfile(0.25, {"otp": 0.85, "notice": 0.15, "marketing": 0.0}, 3.0),  # sign-in codes, international-heavy
)

# SendSms per-number failures: (Code, Message). SerialNo "", Fee 0, IsoCode "" as in the documented example.
SEND_FAILURES = (
    ("LimitExceeded.PhoneNumberDailyLimit", "the number of SMS messages sent to this number today exceeds the limit"),
    ("LimitExceeded.PhoneNumberThirtySecondLimit", "the number of SMS messages sent to this number in 30 seconds exceeds the limit"),
    ("FailedOperation.PhoneNumberInBlacklist", "the phone number is in the blocklist"),
    ("InvalidParameterValue.IncorrectPhoneNumber", "incorrect phone number format"),
    ("FailedOperation.TemplateParamSetNotMatchApprovedTemplate", "request content does not match the template content"),
)

# Chance that an Ok send gets a receipt, that a final receipt follows an earlier intermediate one,
# that a delivered message is replied to / converts (by template kind).
SEND_FAILURE_RATE = 0.025
NO_RECEIPT_RATE = 0.01
TWO_RECEIPTS_RATE = 0.03
REPLY_RATE = {"otp": 0.005, "notice": 0.02, "marketing": 0.06}
OPT_OUT_SHARE = {"otp": 0.2, "notice": 0.3, "marketing": 0.6}
CONVERSION_RATE = {"otp": 0.35, "notice": 0.08, "marketing": 0.04}
UNSOLICITED_REPLY_RATE = 0.002  # per message sent

OPT_OUT_WORDS = ("TD", "T", "退订", "STOP", "unsubscribe")
OPT_OUT_VARIANTS = ("TD", "td", "Td", "T", "t", "退订", "STOP", "Stop", "stop", "unsubscribe", "UNSUBSCRIBE", "Unsubscribe")
MAINLAND_REPLIES = ("好的", "收到", "1", "谢谢", "已收到，谢谢", "请问怎么退款？", "这是什么？", "ok", "Y", "知道了")
INTERNATIONAL_REPLIES = ("OK", "Thanks!", "Yes", "Who is this?", "Received", "1", "call me", "ok thx")


def is_opt_out(content: str) -> bool:
    return content.strip().casefold() in _OPT_OUT_FOLDED


_OPT_OUT_FOLDED = frozenset(w.casefold() for w in OPT_OUT_WORDS)
