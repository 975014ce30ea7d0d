"""Several applications (SmsSdkAppIds) of one account: each has its own traffic (volumes and
mixes differ), queues, by-number archive and statistics; an id that is not configured is refused."""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import zoneinfo

import pytest
from support import Api, start

from pipelines.config import ConfigError
from pipelines.simulator.config import SimulatorConfig, add_arguments, config_from_args
from pipelines.simulator.state import receipt_fields

APPS = ("1400000000", "1400000111", "1400000222")
END = 1_795_000_000.0


@pytest.fixture(scope="module")
def account(tmp_path_factory):
    """One simulator of three applications, and a client of it."""
    sim = start(sdk_app_ids=APPS, messages_per_day=600, days=3, now=END, out_dir=tmp_path_factory.mktemp("apps"))
    api = Api(sim)
    yield sim, api
    api.close()
    sim.close()


def pull_all(api, app, action="PullSmsSendStatus"):
    records, field = [], "PullSmsSendStatusSet" if action == "PullSmsSendStatus" else "PullSmsReplyStatusSet"
    while page := api.call(action, {"Limit": 100, "SmsSdkAppId": app})[field]:
        records += page
    return records


def test_each_application_has_its_own_queues(account):
    sim, api = account
    drained = {app: pull_all(api, app) for app in APPS}
    for app in APPS:
        assert drained[app] == [receipt_fields(r) for r in sim.state.due_receipts(sdk_app_id=app)]
        assert drained[app]
    serials = [{r["SerialNo"] for r in drained[app]} for app in APPS]
    assert not (serials[0] & serials[1] or serials[0] & serials[2] or serials[1] & serials[2])
    replies = {app: pull_all(api, app, "PullSmsReplyStatus") for app in APPS}
    assert sum(map(len, replies.values())) == len(sim.state.due_replies())
    positions = api.admin("GET", "/_sim/stats").json()["queues"]
    assert positions["PullSmsSendStatus"]["handed_out"] == sum(map(len, drained.values()))
    assert {app: positions["by_app"][app]["PullSmsSendStatus"]["handed_out"] for app in APPS} == {
        app: len(drained[app]) for app in APPS}


def test_an_application_that_is_not_configured_is_refused(account):
    _, api = account
    for action, params in (("PullSmsSendStatus", {"Limit": 10}), ("PullSmsReplyStatus", {"Limit": 10}),
                           ("SendStatusStatistics", {"BeginTime": "2026110100", "EndTime": "2026110100",
                                                     "Limit": 0, "Offset": 0})):
        assert api.error(action, {**params, "SmsSdkAppId": "1400000999"}) == (
            "UnauthorizedOperation.SmsSdkAppIdVerifyFail")


def test_volumes_mixes_and_statistics_differ_per_application(account):
    sim, api = account
    truth = {app: list(sim.state.truth_messages(app)) for app in APPS}
    assert all(m["sdk_app_id"] == app for app in APPS for m in truth[app])
    assert [len(truth[app]) for app in APPS] == [1800, 720, 450]  # volume profiles 1, 0.4, 0.25
    marketing = {app: sum(m["template_id"] in ("1840004",) for m in truth[app]) / len(truth[app]) for app in APPS}
    international = {app: sum(m["iso_code"] != "CN" for m in truth[app]) / len(truth[app]) for app in APPS}
    assert marketing[APPS[1]] > 2 * marketing[APPS[0]] and marketing[APPS[2]] == 0
    assert international[APPS[2]] > 2 * international[APPS[0]] > international[APPS[1]]

    tz = zoneinfo.ZoneInfo("Asia/Shanghai")
    hours = [dt.datetime.fromtimestamp(t, tz).strftime("%Y%m%d%H") for t in (END - 3 * 86400, END - 1)]
    params = {"BeginTime": hours[0], "EndTime": hours[1], "Limit": 0, "Offset": 0}
    counts = {}
    for app in APPS:
        send = api.call("SendStatusStatistics", {**params, "SmsSdkAppId": app})["SendStatusStatistics"]
        callback = api.call("CallbackStatusStatistics", {**params, "SmsSdkAppId": app})["CallbackStatusStatistics"]
        expected = api.admin("GET", f"/_sim/truth/statistics?begin={hours[0]}&end={hours[1]}&app={app}").json()
        assert (send, callback) == (expected["SendStatusStatistics"], expected["CallbackStatusStatistics"])
        assert send["RequestCount"] == len(truth[app])
        counts[app] = send["RequestCount"]
    assert len(set(counts.values())) == 3
    assert api.admin("GET", f"/_sim/truth/statistics?begin={hours[0]}&app=1400000999").status_code == 400


def test_files_and_ground_truth_say_their_application(account):
    sim, api = account
    sends = [json.loads(line) for line in (sim.config.out_dir / "sends.ndjson").read_text().splitlines()]
    assert collections.Counter(s["SmsSdkAppId"] for s in sends) == {APPS[0]: 1800, APPS[1]: 720, APPS[2]: 450}
    rows = api.admin("GET", f"/_sim/truth/messages?app={APPS[1]}").json()
    assert len(rows) == 720 and {r["sdk_app_id"] for r in rows} == {APPS[1]}
    replies = api.admin("GET", "/_sim/truth/replies").json()
    assert {r["sdk_app_id"] for r in replies} == set(APPS)
    api.call("PullSmsSendStatus", {"Limit": 1, "SmsSdkAppId": APPS[2]})
    handed = api.admin("GET", "/_sim/truth/handed_out").json()
    assert handed[-1]["sdk_app_id"] == APPS[2]


def test_send_sms_goes_to_the_application_that_sent_it(account):
    sim, api = account
    statuses = api.call("SendSms", {"PhoneNumberSet": ["+6591234567"], "SmsSdkAppId": APPS[2],
                                    "TemplateId": "1841001", "TemplateParamSet": ["1", "2"]})["SendStatusSet"]
    serial = statuses[0]["SerialNo"]
    message = next(m for m in sim.state.truth_messages(APPS[2]) if m["serial_no"] == serial)
    assert serial not in {m["serial_no"] for m in sim.state.truth_messages(APPS[0])}
    sim.advance(5 * 86400)
    pulled = [r for r in pull_all(api, APPS[2]) if r["SerialNo"] == serial]
    assert [r["ReportStatus"] for r in pulled] == [r["report_status"] for r in message["receipts"]]
    assert serial not in {r["SerialNo"] for r in pull_all(api, APPS[0])}
    sends = (sim.config.out_dir / "sends.ndjson").read_text().splitlines()
    assert json.loads(sends[-1])["SerialNo"] == serial and json.loads(sends[-1])["SmsSdkAppId"] == APPS[2]


def test_several_applications_from_the_environment_and_the_command_line():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    from_env = config_from_args(parser.parse_args([]), {"SMSLEDGER_SDK_APP_ID": "1400000001, 1400000002"})
    assert from_env.app_ids == ("1400000001", "1400000002") and from_env.sdk_app_id == "1400000001"
    from_cli = config_from_args(parser.parse_args(["--sdk-app-id", "1400000003,1400000004,1400000005"]),
                                {"SMSLEDGER_SDK_APP_ID": "1400000001"})
    assert from_cli.app_ids == ("1400000003", "1400000004", "1400000005")
    assert config_from_args(parser.parse_args([]), {"SMSLEDGER_SDK_APP_ID": "1400000009"}).app_ids == ("1400000009",)
    assert SimulatorConfig(sdk_app_id="1400000007").app_ids == ("1400000007",)
    with pytest.raises(ConfigError, match="distinct"):
        SimulatorConfig(sdk_app_ids=("1400000001", "1400000001"))
