"""The local stack keeps studies, results and its API key across a restart (own module: one stack at a time)."""

from __future__ import annotations

import urllib.request

from devstack.stack import LocalStack
from discscope.client import Client
from discscope.dataset import find_cases


def test_state_survives_a_restart(baseline_model, tmp_path, phantom_dir):
    with LocalStack(baseline_model, state_dir=tmp_path, snapshot_every_s=0) as first:
        c = Client(first.gateway.api_url, first.api_key)
        done = c.analyze(find_cases([phantom_dir])[4].image_path, timeout=180)
        key = first.api_key
    with LocalStack(baseline_model, state_dir=tmp_path, snapshot_every_s=0) as second:
        assert second.api_key == key
        c = Client(second.gateway.api_url, second.api_key)
        back = c.study(done["study_id"])
        assert back["status"] == "SUCCEEDED" and back["discs"] == done["discs"]
        with urllib.request.urlopen(back["artifacts"]["overlay.png"]) as resp:
            assert resp.read()[:8] == b"\x89PNG\r\n\x1a\n"
        assert c.current_model()["model_version"]
