"""A real `discscope up`, killed: SIGKILL mid-run loses nothing it acknowledged (studies, uploads,
results, feedback), and SIGTERM while a study is in the endpoint exits cleanly; after a restart the
interrupted studies finish."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import numpy as np
import pytest
import SimpleITK as sitk

from discscope.client import ApiError, Client
from discscope.dataset import find_cases
from lambdas.shared import keys, yolo


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_stray_stacks():
    yield
    for proc in STARTED:  # a failed assertion must not leave a stack running
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    STARTED.clear()


class Up:
    """`discscope up` in its own process, on a state folder."""

    def __init__(self, state: Path, model: Path, log: Path):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "MOTO"))}
        self.state = state
        previous = state / "stack.json"
        previous.unlink(missing_ok=True)  # a killed stack leaves its file behind
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "discscope.cli", "up", "--state", str(state), "--port", "0", "--endpoint-port", "0",
             "--model", str(model)], stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)
        STARTED.append(self.proc)
        deadline = time.time() + 180
        while not previous.is_file():
            if self.proc.poll() is not None or time.time() > deadline:
                raise AssertionError(f"discscope up did not start: {log.read_text()[-3000:]}")
            time.sleep(0.2)
        self.info = json.loads(previous.read_text())
        self.client = Client(self.info["api_url"], (state / "api_key").read_text().strip(), retries=0)
        creds = json.loads((state / "aws_credentials.json").read_text())
        self.s3 = boto3.client("s3", endpoint_url=self.info["aws_url"], region_name="us-east-1",
                               aws_access_key_id=creds["access_key"], aws_secret_access_key=creds["secret_key"])

    def object(self, key: str) -> bytes:
        return self.s3.get_object(Bucket="discscope-studies", Key=key)["Body"].read()


def _wait_status(client: Client, study_id: str, wanted: tuple[str, ...], timeout: float = 180) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        study = client.study(study_id)
        if study["status"] in wanted:
            return study
        time.sleep(0.1)
    raise AssertionError(f"{study_id} never became {wanted}: {client.study(study_id)['status']}")


def _upload(client: Client, name: str, data: bytes) -> str:
    created = client.create_study(name, len(data), "application/octet-stream")
    client.upload(created["upload"], name, data, "application/octet-stream")
    return created["study_id"]


def _long_study(path: Path, tmp: Path) -> bytes:
    """A phantom three times as wide: several seconds in the endpoint."""
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    wide = sitk.GetImageFromArray(np.concatenate([array] * 3))
    wide.SetSpacing(image.GetSpacing())
    sitk.WriteImage(wide, str(tmp / "long.mha"))
    return (tmp / "long.mha").read_bytes()


def test_sigkill_loses_nothing_acknowledged_and_sigterm_exits_cleanly(tmp_path, baseline_model, phantom_dir):
    state, log = tmp_path / "state", tmp_path / "up.log"
    cases = find_cases([phantom_dir])
    first = Up(state, baseline_model, log)
    c = first.client
    a = _upload(c, "a.mha", cases[0].image_path.read_bytes())
    b = _upload(c, "b.mha", cases[1].image_path.read_bytes())
    _wait_status(c, a, ("SUCCEEDED",))
    _wait_status(c, b, ("SUCCEEDED",))
    c.accept(b)

    # while the stack works on study C, a client keeps creating studies and saving corrections
    acked = {"created": [], "corrections": 0}
    stop = threading.Event()

    def hammer():
        i, version = 0, 0
        while not stop.is_set():
            i += 1
            try:
                acked["created"].append(c.create_study(f"h{i}.mha", 10, "application/octet-stream")["study_id"])
                saved = c.correct(a, [{"box": [10, 20, 60 + i % 50, 32], "level": "L4-L5", "herniated": i % 2 == 0}],
                                  base_version=version)
                version = saved["version"]
                acked["corrections"] += 1
            except (ApiError, OSError):
                return  # the stack is gone: what was not answered was not acknowledged

    worker = threading.Thread(target=hammer)
    worker.start()
    c_id = _upload(c, "c.mha", cases[2].image_path.read_bytes())
    _wait_status(c, c_id, ("PROCESSING",), timeout=60)
    time.sleep(0.3)  # in the endpoint now
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(timeout=30)
    stop.set()
    worker.join(timeout=30)
    assert acked["corrections"] > 0 and len(acked["created"]) > 0

    second = Up(state, baseline_model, log)
    c2 = second.client
    for study_id in acked["created"]:
        assert c2.study(study_id)["status"] == "UPLOADED"
    reviewed = c2.study(a)
    assert reviewed["status"] == "REVIEWED" and len(reviewed["feedback"]) >= acked["corrections"]
    h, w = reviewed["image_size"]
    assert [box.level for box in yolo.parse(second.object(keys.corrected_key(a)).decode(), w, h)] == ["L4-L5"]
    accepted = c2.study(b)
    assert accepted["status"] == "REVIEWED" and [f["kind"] for f in accepted["feedback"]] == ["accept"]
    assert second.object(keys.initial_key(b))
    for study_id, case in ((a, cases[0]), (b, cases[1]), (c_id, cases[2])):
        assert second.object(c2.study(study_id)["upload_key"]) == case.image_path.read_bytes()
    for study_id in (a, b):
        assert json.loads(second.object(keys.result_key(study_id, "result.json")))["discs"]
    assert _wait_status(c2, c_id, ("SUCCEEDED",))["discs"]  # the interrupted study is run again

    # SIGTERM while a study is in the endpoint: a clean exit (it was 134, an abort inside torch)
    e = _upload(c2, "e.mha", _long_study(cases[3].image_path, tmp_path))
    _wait_status(c2, e, ("PROCESSING",), timeout=60)
    time.sleep(0.5)
    second.proc.send_signal(signal.SIGTERM)
    assert second.proc.wait(timeout=300) == 0, log.read_text()[-3000:]

    third = Up(state, baseline_model, log)
    assert _wait_status(third.client, e, ("SUCCEEDED",), timeout=300)["discs"]
    third.proc.send_signal(signal.SIGTERM)
    assert third.proc.wait(timeout=120) == 0

