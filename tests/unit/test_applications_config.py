"""SMSLEDGER_SDK_APP_ID: one application or several, comma-separated; anything else is refused
with one line that names the variable and the bad id."""

import pytest

from pipelines.config import ConfigError, Settings
from pipelines.spool import Spool, SpoolFile

ENV = {"TENCENTCLOUD_SECRET_ID": "id", "TENCENTCLOUD_SECRET_KEY": "key"}


def test_one_or_several_applications():
    assert Settings.from_env(ENV).sdk_app_ids == ("1400000000",)
    several = Settings.from_env({**ENV, "SMSLEDGER_SDK_APP_ID": " 1400000001, 1400000002 "})
    assert several.sdk_app_ids == ("1400000001", "1400000002") and several.sdk_app_id == "1400000001"


@pytest.mark.parametrize(("value", "named"), [
    ("1400000001,,1400000002", "''"), ("1400000001,abc", "'abc'"), ("14000 00001", "'14000 00001'"),
    ("1400000001,1400000001", "1400000001 is listed twice"),
])
def test_bad_lists_are_refused_in_one_line(value, named):
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({**ENV, "SMSLEDGER_SDK_APP_ID": value})
    message = str(refused.value)
    assert message.startswith("SMSLEDGER_SDK_APP_ID=") and named in message and "\n" not in message


def test_spool_files_say_their_application(tmp_path):
    spool = Spool(tmp_path)
    named = spool.write("PullSmsSendStatus", b"{}", sdk_app_id="1400000111")
    unnamed = spool.write("PullSmsReplyStatus", b"{}")  # a push callback, or an older version's file
    assert [(f.action, f.sdk_app_id, f.batch_id) for f in spool.pending()] == [
        ("PullSmsSendStatus", "1400000111", named.batch_id), ("PullSmsReplyStatus", None, unnamed.batch_id)]
    assert SpoolFile.parse(tmp_path / "00000000000000000001.PullSmsSendStatus.x1.abc.json") is None
