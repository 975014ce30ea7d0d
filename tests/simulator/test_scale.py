"""The simulator at a large account's volume: traffic is the same for a seed however it is read,
and memory grows by a bounded number of bytes per message (compact columns, not objects), both
to start and to hand every record out."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from support import Api, start

from pipelines.simulator.state import receipt_fields
from pipelines.simulator.traffic import generate_traffic

END = 1_795_000_000.0


def fingerprint(messages, replies):
    return ([(m.serial_no, m.recipient.phone_e164, m.send_time, m.code, m.session_context,
              [(r.report_status, r.description, r.user_receive_time) for r in m.receipts], m.conversion_time)
             for m in messages],
            [(r.recipient.phone_e164, r.content, r.reply_time, r.caused_by) for r in replies])


def test_traffic_is_deterministic_per_seed():
    first, again = generate_traffic(3, 2, 400, END), generate_traffic(3, 2, 400, END)
    assert fingerprint(first.messages, first.replies) == fingerprint(again.messages, again.replies)
    other = generate_traffic(4, 2, 400, END)
    assert fingerprint(first.messages, first.replies) != fingerprint(other.messages, other.replies)


def test_records_are_the_same_however_they_are_read():
    traffic = generate_traffic(9, 1, 3000, END)
    in_order = fingerprint(traffic.messages, [])[0]
    shuffled = np.random.default_rng(1).permutation(traffic.n_messages)
    by_index = dict(zip(shuffled.tolist(), fingerprint(traffic.messages_at(shuffled), [])[0], strict=True))
    assert [by_index[i] for i in range(traffic.n_messages)] == in_order
    serials = [m.serial_no for m in traffic.messages if m.serial_no]
    assert len(set(serials)) == len(serials)
    book = traffic.recipients
    assert all(book.index_of(book[i].phone_e164) == i for i in range(0, len(book), 7))
    assert book.index_of("+8613800000000") is None or book[book.index_of("+8613800000000")].phone_e164 == "+8613800000000"


def test_two_simulators_with_one_seed_serve_the_same_records():
    def served(seed):
        sim = start(seed=seed, messages_per_day=500, now=END)
        api = Api(sim)
        try:
            return api.drain(), api.drain("PullSmsReplyStatus"), list(sim.state.truth_messages())
        finally:
            api.close()
            sim.close()

    first = served(5)
    assert served(5) == first
    assert served(6)[0] != first[0]
    assert first[0] and first[1]


def test_due_receipts_are_what_the_queue_hands_out():
    sim = start(messages_per_day=700)
    api = Api(sim)
    try:
        due = sim.state.due_receipts()
        assert api.drain() == [receipt_fields(r) for r in due]
        assert [receipt_fields(r) for r in due[-3:]] == [receipt_fields(r) for r in list(due)[-3:]]
        assert [r.user_receive_time for r in reversed(due)] == sorted((r.user_receive_time for r in due), reverse=True)
    finally:
        api.close()
        sim.close()


_MEASURE = """
import json, sys
from pathlib import Path
from pipelines.simulator.config import SimulatorConfig
from pipelines.simulator.service import Service

def rss(field="VmRSS"):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

before = rss()
state = Service(SimulatorConfig(days=1, messages_per_day=int(sys.argv[1]), now=1_795_000_000, clock_runs=False,
                                out_dir=Path(sys.argv[2]))).state
started = rss()
records = 0
for action in ("PullSmsSendStatus", "PullSmsReplyStatus"):
    while True:
        parts, handed = state.pull_queue(state.sdk_app_id, action, 100, "r", 0)
        if not parts:
            break
        state.settle(handed, True)
        records += len(parts)
print(json.dumps({"before": before, "started": started, "drained": rss(), "peak": rss("VmHWM"), "records": records}))
"""


def test_memory_per_message_is_bounded(tmp_path):
    """Twenty thousand and a quarter million messages, each started in a fresh process and drained:
    the difference per additional message, to start and at the peak (the simulator held 8.8 KB a
    message when it kept Python objects)."""
    def measure(messages):
        out = subprocess.run([sys.executable, "-c", _MEASURE, str(messages), str(tmp_path / str(messages))],
                             capture_output=True, text=True, check=True, timeout=300)
        return json.loads(out.stdout)

    small, large = measure(20_000), measure(250_000)
    extra = 230_000
    assert large["records"] > 10 * small["records"]
    started = (large["started"] - large["before"] - (small["started"] - small["before"])) / extra
    peak = (large["peak"] - small["peak"]) / extra
    assert started < 400, f"{started:.0f} bytes a message to start"
    assert peak < 600, f"{peak:.0f} bytes a message at the peak"
    assert (tmp_path / "250000" / "sends.ndjson").stat().st_size > 200 * 250_000


def test_files_match_the_ground_truth_line_for_line(tmp_path):
    sim = start(messages_per_day=900, days=2, now=END, out_dir=tmp_path)
    api = Api(sim)
    try:
        api.call("SendSms", {"PhoneNumberSet": ["+8613812345678"], "SmsSdkAppId": sim.config.sdk_app_id,
                             "TemplateId": "1840001", "SignName": "小账本", "TemplateParamSet": ["1", "2"]})
        sim.advance(12 * 86400)
        sends = [json.loads(line) for line in (tmp_path / "sends.ndjson").read_text().splitlines()]
        assert sends == [{"SerialNo": m.serial_no, "PhoneNumber": m.recipient.phone_e164, "Fee": m.fee,
                          "SessionContext": m.session_context, "Code": m.code, "Message": m.message,
                          "IsoCode": m.iso_code, "SendTime": m.send_time, "SmsSdkAppId": sim.config.sdk_app_id,
                          "TemplateId": m.template_id, "SignName": m.sign_name} for m in sim.state.messages]
        conversions = [json.loads(line) for line in (tmp_path / "conversions.ndjson").read_text().splitlines()]
        expected = sorted((m.conversion_time, m.serial_no) for m in sim.state.messages if m.conversion_time)
        assert sorted((c["ConversionTime"], c["SerialNo"]) for c in conversions) == expected
        assert [c["ConversionTime"] for c in conversions] == sorted(c["ConversionTime"] for c in conversions)
    finally:
        api.close()
        sim.close()


def test_receipts_encoded_from_the_columns_are_their_fields():
    import orjson

    from pipelines.simulator.state import encode_receipts

    traffic = generate_traffic(13, 1, 5000, END)
    ids = traffic.receipt_ids
    assert [orjson.loads(b) for b in encode_receipts(traffic, ids)] == [
        receipt_fields(r) for r in traffic.receipts_at(ids)]
