"""A local simulator of Tencent Cloud SMS API 2021-01-11: the demo's default backend and the
ground truth of the tests. The official SDK cannot tell it from the real service (tests/test_sdk_oracle.py).

Modules: `traffic` (deterministic synthetic traffic), `catalog` (countries, signatures, templates,
status codes), `state` (clock, queues, statistics, ground truth), `api` (the actions), `auth`
(TC3 verification), `faults` (faults on demand), `wire` (the HTTP server), `service` (request
handling), `admin` (the `/_sim/` routes), `server` (configuration, `Simulator`, `serve`),
`bench` (pull throughput). `python -m pipelines.simulator` serves like `smsledger simulator`.
"""
