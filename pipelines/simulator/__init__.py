"""A local simulator of Tencent Cloud SMS API 2021-01-11: the demo's default backend and the
ground truth of the tests. The official SDK cannot tell it from the real service (tests/test_sdk_oracle.py).

Modules: `traffic` (deterministic synthetic traffic as compact columns), `catalog` (countries,
signatures, templates, status codes, application profiles), `state` (clock, per-application
queues, archive and statistics, ground truth), `api` (the actions), `auth` (TC3 verification),
`faults` (faults on demand), `push` (push callbacks to a customer URL), `wire` (the HTTP server),
`service` (request handling), `admin` (the `/_sim/` routes), `config` (`SimulatorConfig`),
`server` (`Simulator`, `serve`), `bench` (pull throughput; memory and time at a large account's
volume). `python -m pipelines.simulator` serves like `smsledger simulator`.
"""
