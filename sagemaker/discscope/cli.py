"""The `discscope` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

from .errors import DiscScopeError

REPO_ROOT = Path(__file__).resolve().parents[2]
BASELINE_MODEL = REPO_ROOT / "models" / "baseline"


def default_model() -> Path:
    return Path(os.environ.get("DISCSCOPE_MODEL", BASELINE_MODEL))


def cmd_phantom(args) -> int:
    from .phantom import generate_dataset
    from .progress import Progress

    progress = Progress("phantoms", args.n)
    generate_dataset(args.out, args.n, seed=args.seed, herniation_rate=args.herniation_rate,
                     progress=lambda i, n: progress.update(i))
    progress.close()
    print(f"wrote {args.n} phantom cases to {args.out}")
    return 0


def cmd_train(args) -> int:
    from .artifact import pack
    from .evaluate import plot_training_curves
    from .train import TrainConfig, train, train_classifier

    config = TrainConfig(seed=args.seed, seg_iters=args.seg_iters, init_weights=args.init, version=args.version)
    if args.cls_iters:
        config.cls_iters = args.cls_iters
    out = Path(args.out)
    to_tar = out.name.endswith(".tar.gz")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) if to_tar else out
        if args.classifier_only:
            metadata = train_classifier(args.data, args.classifier_only, model_dir, feedback_dirs=args.feedback or [],
                                        init=args.classifier_init, config=config)
        else:
            metadata = train(args.data, model_dir, config)
        curves = out.with_name(out.name.replace(".tar.gz", "_curves.png")) if to_tar else out / "training_curves.png"
        plot_training_curves(metadata["history"], curves)
        if to_tar:
            pack(model_dir, out)
    print(f"model {metadata['version']} -> {out}; training curves -> {curves}")
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate

    result = evaluate(args.model, args.data, args.out)
    summary = {k: v for k, v in result.items() if k != "per_case"}
    print(json.dumps(summary, indent=1))
    if args.out:
        print(f"metrics and plots in {args.out}")
    return 0


def cmd_predict(args) -> int:
    from .errors import NoSpineFound
    from .io import read_study, write_mask
    from .predictor import Predictor

    volume = read_study(args.file, beside=True)
    predictor = Predictor(args.model, args.device)
    pred = predictor.predict(volume)
    if not pred.discs:
        raise NoSpineFound()
    if args.mask_out:
        write_mask(volume, pred.labels, args.mask_out)
    if args.json:
        body = predictor.result(volume, pred)
        for key in [k for k in body if k.endswith(("_png", "_jpg", "_mha"))]:  # base64 images stay out of the terminal
            body.pop(key)
        print(json.dumps(body, indent=1))
    else:
        print(f"{Path(args.file).name}: {len(pred.discs)} discs on slice {pred.key_slice} (model {predictor.version}, "
              f"{pred.timings_ms['total']:.0f} ms)")
        for d in pred.discs:
            print(f"  {d.level:<7} p(LDH)={d.probability:.3f} {'HERNIATED' if d.herniated else '-':<9} box={list(d.box)}")
    return 0


def cmd_serve(args) -> int:
    from .server import EndpointServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = EndpointServer(args.model, args.host, args.port, args.device).start()
    print(f"serving model {server.model_host.predictor.version} on {server.url} (/ping, /invocations)", flush=True)
    try:
        _wait_for_interrupt()
    finally:
        server.stop()  # lets a study in flight finish first
    return 0


def cmd_pack(args) -> int:
    from .artifact import pack

    print(pack(args.model_dir, args.out))
    return 0


def _devstack_importable() -> None:
    """devstack/ and lambdas/ live beside the package in the source checkout."""
    # the Lambdas' loggers read this when imported: locally their INFO lines would drown the output
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))


def _wait_for_interrupt() -> None:
    import signal
    import threading

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass


def cmd_up(args) -> int:
    _devstack_importable()
    from devstack.stack import LocalStack

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    for name in ("devstack", "discscope"):
        logging.getLogger(name).setLevel(logging.INFO)
    settings = {"RETRAIN_APPROVAL": args.approval, "RETRAIN_MIN_FEEDBACK": str(args.retrain_after)}
    stack = LocalStack(args.model, None if args.ephemeral else Path(args.state), api_port=args.port,
                       endpoint_port=args.endpoint_port, settings=settings, user=args.user).start()
    print("DiscScope local stack is up:\n" + stack.describe(), flush=True)
    print(f"\nanalyse a study:  discscope analyze FILE --api {stack.gateway.api_url}   (signed with the local client's keys)",
          flush=True)
    print(f"retraining:       starts after {args.retrain_after} saved reviews, or now with `discscope retrain`"
          f" ({args.approval} approval)", flush=True)
    print("stop with Ctrl-C (data is kept in the state folder)", flush=True)
    try:
        _wait_for_interrupt()
    finally:
        stack.stop()
    return 0


def _client(args):
    """A SigV4-signing client: this environment's AWS credentials for a deployed API, the local
    stack's clinical-system keys for the local one."""
    from .client import ApiError, Client, region_of

    if args.aws or region_of(args.api):
        return Client.for_aws(args.api, timeout=args.timeout)
    path = Path(args.state) / "client_credentials.json"
    if not path.is_file():
        raise ApiError(401, "NO_CREDENTIALS", f"no local client credentials in {path}: start the local stack (make up), "
                                               "or pass --aws for a deployed API")
    from botocore.credentials import Credentials

    keys = json.loads(path.read_text())
    return Client(args.api, credentials=Credentials(keys["access_key_id"], keys["secret_access_key"]))


def print_study(study: dict) -> None:
    print(f"study {study['study_id']}: {study['status']}"
          + (f" ({study.get('error_code')}: {study.get('message')})" if study["status"] == "FAILED" else "")
          + (f", model {study['model_version']}" if study.get("model_version") else ""))
    for d in study.get("discs") or []:
        print(f"  {d['level']:<7} p(LDH)={d['probability']:.3f} {'HERNIATED' if d['herniated'] else '-':<9} box={d['box']}")


def status_printer():
    import time

    start, last = time.time(), [None]

    def show(study: dict) -> None:
        if study["status"] != last[0]:
            last[0] = study["status"]
            print(f"  {time.time() - start:6.1f}s  {study['status'].lower()}", file=sys.stderr, flush=True)

    return show


def cmd_analyze(args) -> int:
    from .client import ApiError, Unreachable

    print(f"analysing {args.file} via {args.api}", file=sys.stderr)
    try:
        study = _client(args).analyze(args.file, timeout=args.timeout, on_status=status_printer())
    except ApiError as exc:
        print(f"error {exc.code}: {exc.message}", file=sys.stderr)
        return 2
    except Unreachable as exc:
        print(f"error: the API did not answer ({exc}); is the stack running (`make up`)?", file=sys.stderr)
        return 2
    except (OSError, TimeoutError) as exc:  # the file itself, or a study that takes too long
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(study, indent=1))
    else:
        print_study(study)
    return 0 if study["status"] != "FAILED" else 3


def cmd_retrain(args) -> int:
    _devstack_importable()
    from devstack.operator import StackNotRunning, retrain

    try:
        return retrain(Path(args.state), timeout=args.timeout)
    except StackNotRunning as exc:
        print(exc, file=sys.stderr)
        return 1


def cmd_approve(args) -> int:
    _devstack_importable()
    from devstack.operator import StackNotRunning, approve

    try:
        return approve(Path(args.state), args.version)
    except StackNotRunning as exc:
        print(exc, file=sys.stderr)
        return 1


def cmd_demo(args) -> int:
    _devstack_importable()
    from devstack.demo import run_demo

    return run_demo(args.model)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="discscope", description="Lumbar disc detection and herniation scoring on MRI.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("phantom", help="generate synthetic lumbar MRI cases")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--herniation-rate", type=float, default=0.3)
    p.set_defaults(func=cmd_phantom)

    p = sub.add_parser("train", help="train the U-Net and the herniation classifier")
    p.add_argument("--data", nargs="+", required=True, help="dataset folders (phantom or real)")
    p.add_argument("--out", required=True, help="a folder, or a path ending in .tar.gz for a SageMaker artifact")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seg-iters", type=int, default=1000)
    p.add_argument("--cls-iters", type=int, help="classifier iterations (default: TrainConfig's, 3000)")
    p.add_argument("--init", help="start from this model (folder or model.tar.gz)")
    p.add_argument("--version", help="model version string (default: data hash + seed)")
    p.add_argument("--classifier-only", metavar="BASE_MODEL",
                   help="keep BASE_MODEL's U-Net and train only the herniation classifier (the retraining step)")
    p.add_argument("--classifier-init", choices=("production", "scratch"), default="production",
                   help="with --classifier-only: fine-tune BASE_MODEL's classifier or start anew")
    p.add_argument("--feedback", nargs="*", help="with --classifier-only: folders written by preprocess_feedback.py")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="score a model on dataset folders")
    p.add_argument("--model", default=str(default_model()))
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--out", help="folder for metrics.json and plots")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="analyse one study in-process")
    p.add_argument("file")
    p.add_argument("--model", default=str(default_model()))
    p.add_argument("--mask-out", help="write the disc mask (level convention) on the input grid")
    p.add_argument("--json", action="store_true")
    p.add_argument("--device")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("serve", help="run the inference endpoint server")
    p.add_argument("--model", default=str(default_model()))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--device")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("up", help="run the whole system locally (web page, API, workflow, endpoint)")
    p.add_argument("--model", default=str(default_model()))
    p.add_argument("--port", type=int, default=int(os.environ.get("PORT", 8000)), help="web page and API port")
    p.add_argument("--endpoint-port", type=int, default=8080)
    p.add_argument("--state", default=str(REPO_ROOT / ".devstack"), help="where studies are kept between restarts")
    p.add_argument("--ephemeral", action="store_true", help="keep nothing after exit")
    p.add_argument("--approval", choices=("auto", "manual"), default="auto",
                   help="auto: deploy a candidate that passed the check; manual: wait for `discscope approve`")
    p.add_argument("--retrain-after", type=int, default=20, help="saved reviews that start a retraining run")
    p.add_argument("--user", help="the reviewer recorded on saved reviews (default: your OS user name)")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("analyze", help="send a study through the REST API and wait for the result")
    p.add_argument("file")
    p.add_argument("--api", default=os.environ.get("DISCSCOPE_API_URL", "http://127.0.0.1:8000/api"))
    p.add_argument("--aws", action="store_true",
                   help="sign with this environment's AWS credentials (implied by an execute-api URL)")
    p.add_argument("--state", default=str(REPO_ROOT / ".devstack"), help="the local stack's state folder (its client keys)")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_analyze)

    p = sub.add_parser("retrain", help="run the retraining pipeline on the running local stack now")
    p.add_argument("--state", default=str(REPO_ROOT / ".devstack"), help="the running stack's state folder")
    p.add_argument("--timeout", type=float, default=3600)
    p.set_defaults(func=cmd_retrain)

    p = sub.add_parser("approve", help="approve a registered model version (manual approval mode)")
    p.add_argument("version")
    p.add_argument("--state", default=str(REPO_ROOT / ".devstack"), help="the running stack's state folder")
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser("demo", help="the end-to-end story on a throwaway local stack")
    p.add_argument("--model", default=str(default_model()))
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("pack", help="pack a model folder as a SageMaker model.tar.gz")
    p.add_argument("model_dir")
    p.add_argument("out")
    p.set_defaults(func=cmd_pack)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DiscScopeError as exc:
        print(f"error {exc.code}: {exc.message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
