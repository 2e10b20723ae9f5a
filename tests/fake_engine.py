"""A stand-in OpenAI-compatible streaming server for fast tests of the trial pipeline (not the real path).

Accepts vLLM's argv (uses --port, --host, --served-model-name, --max-num-seqs, --model; ignores the rest).
Answers in whatever output format the prompt's instruction asks for (autotune/fmware/formats.py wording),
with the values in VALUES; requests with a `structured_outputs` regex get HTTP 400 (to test `unsupported`), ones
with a `choice` list get the VALUES answer when it is a choice, else the first choice.

Faults are chosen explicitly, never by a knob's value alone: FAKE_FAULTS (in the space's `engine.env`) maps a
`--max-num-seqs` value, or `*` for every launch, to a fault: `FAKE_FAULTS: "13:unsupported,*:slow"`.
  unsupported  dies at start with an 'unsupported' error (quoting HF_TOKEN, as careless tools do)
  oom          dies at start with an out-of-memory error
  hang         never becomes healthy
  slow         streams 10x slower (a regression for nightly tests)
  stuck        every 4th request waits 30 s before answering (work left in flight at the drain)
  silent       accepts every chat request and never answers it, while /metrics keeps answering
  dies         healthy, then its engine core dies on the first chat request as vLLM's does when a kernel refuses the
               dtype (a fatal RuntimeError in its log), and every request after gets HTTP 500
As a hosted API misbehaves:
  ratelimited  every 3rd chat request gets HTTP 429 with Retry-After, as a rate-limited API answers
  spiky        every 5th chat request waits 1.5 s before its first token (a latency spike)
  stalls       every 4th chat request streams one chunk, then nothing (a stalled stream, connection open)
A --model directory holding a file CORRUPT dies at start as vLLM does on damaged weights (SafetensorError);
removing the file is the repair.
Like a careless wrapper script, it prints every *TOKEN*/*KEY* variable of its environment, and those named in
FAKE_ECHO_ENV (comma-separated), at start (the tuner's log pump must mask them), and with VLLM_API_KEY set it
demands `Authorization: Bearer <key>` as vLLM does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--served-model-name", default="fake")
ap.add_argument("--max-num-seqs", type=int, default=8)
ap.add_argument("--model", default="")
args, _unknown = ap.parse_known_args()

ECHO = set(os.environ.get("FAKE_ECHO_ENV", "").split(","))
FAULTS = dict(item.split(":", 1) for item in os.environ.get("FAKE_FAULTS", "").split(",") if ":" in item)
FAULT = FAULTS.get(str(args.max_num_seqs)) or FAULTS.get("*")
assert FAULT in (None, "unsupported", "oom", "hang", "slow", "stuck", "silent", "dies", "ratelimited", "spiky",
                 "stalls"), f"unknown fault {FAULT!r}"
for name, value in sorted(os.environ.items()):
    if "TOKEN" in name or "KEY" in name or name in ECHO:
        print(f"environment: {name}={value}", flush=True)
API_KEY = os.environ.get("VLLM_API_KEY")

if args.model and os.path.exists(os.path.join(args.model, "CORRUPT")):
    print("safetensors_rust.SafetensorError: Error while deserializing header: MetadataIncompleteBuffer", flush=True)
    sys.exit(1)
if FAULT == "unsupported":  # an error message that quotes a secret, as careless tools do
    print(f"ValueError: max_num_seqs {args.max_num_seqs} is not supported by this fake engine "
          f"(hf {os.environ.get('HF_TOKEN')})", flush=True)
    sys.exit(1)
if FAULT == "oom":
    print("torch.OutOfMemoryError: out of memory allocating the KV cache", flush=True)
    sys.exit(1)
if FAULT == "hang":
    time.sleep(3600)

COUNT = {"post": 0, "running": 0}
# FAKE_SERVICE_S: every request holds one of max-num-seqs slots this long, so capacity is seqs / service_s req/s
SERVICE_S = float(os.environ.get("FAKE_SERVICE_S", "0"))
SLOTS = __import__("threading").BoundedSemaphore(args.max_num_seqs)
STATE = {"gen": 0, "prompt": 0, "ttft_sum": 0.0, "ttft_count": 0}
ANSWER = '{"name": "Ada Lovelace", "email": "ada@example.org", "address": "1 Analytical Way"}'
VALUES = {"name": "Ada Lovelace", "email": "ada@example.org", "address": "1 Analytical Way", "step1": "6",
          "answer": "42"}


def answer_for(text: str) -> str:
    """Reply in the format the instruction names, with the fields it lists."""
    if "JSON object with the keys" in text:
        keys = re.findall(r'"(\w+)"', text.split("with the keys", 1)[1].split("and string values")[0])
        return json.dumps({k: VALUES.get(k, "x") for k in keys})
    if "Reply with only YAML" in text:
        return "\n".join(f"{k}: {VALUES.get(k, 'x')}" for k in re.findall(r"^(\w+): \.\.\.$", text, re.M))
    if "Reply with only XML" in text:
        keys = [k for k in re.findall(r"<(\w+)>\.\.\.</", text)]
        return "<answer>" + "".join(f"<{k}>{VALUES.get(k, 'x')}</{k}>" for k in keys) + "</answer>"
    if "Reply in plain sentences" in text:
        labels = re.findall(r"^The (.+?) is \.\.\.$", text, re.M)
        return "\n".join(f"The {lb} is {VALUES.get(lb.replace(' ', '_'), 'x')}." for lb in labels)
    if "in this order:" in text:
        labels = text.split("in this order:", 1)[1].split(". No labels")[0].strip().split(", ")
        return "\n".join(VALUES.get(lb.replace(" ", "_"), "x") for lb in labels)
    return ANSWER


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):  # quiet
        pass

    def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/health":
            self._send(200, b"")
        elif self.path == "/version":
            self._send(200, b'{"version": "fake-0"}')
        elif self.path == "/v1/models":  # behind the key, as vLLM's /v1 routes are
            if API_KEY and self.headers.get("Authorization") != f"Bearer {API_KEY}":
                self._send(401, b'{"error": "Unauthorized"}')
                return
            self._send(200, json.dumps({"data": [{"id": args.served_model_name}]}).encode())
        elif self.path == "/metrics":
            text = (
                f'vllm:generation_tokens_total{{model_name="{args.served_model_name}"}} {STATE["gen"]}\n'
                f'vllm:prompt_tokens_total{{model_name="{args.served_model_name}"}} {STATE["prompt"]}\n'
                f'vllm:time_to_first_token_seconds_sum{{model_name="x"}} {STATE["ttft_sum"]}\n'
                f'vllm:time_to_first_token_seconds_count{{model_name="x"}} {STATE["ttft_count"]}\n'
                'vllm:num_preemptions_total{model_name="x"} 0\n'
                'vllm:kv_cache_usage_perc{model_name="x"} 0.25\n'
                f'vllm:num_requests_running{{model_name="x"}} {COUNT["running"]}\n'
            )
            self._send(200, text.encode(), "text/plain")
        else:
            self._send(404, b"{}")

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if API_KEY and self.headers.get("Authorization") != f"Bearer {API_KEY}":
            self._send(401, b'{"error": "Unauthorized"}')
            return
        if "regex" in (body.get("structured_outputs") or {}):
            self._send(400, b'{"error": {"message": "regex structured outputs are not supported by the fake"}}')
            return
        if FAULT == "silent":
            time.sleep(3600)
        if FAULT == "dies":
            if not COUNT.get("dead"):
                COUNT["dead"] = 1
                print("(Worker pid=1) ERROR 12-03 11:41:59 [multiproc_executor.py:1063] RuntimeError: "
                      "int8_scaled_mm_with_quant: expect A to be bfloat16 or half.", flush=True)
                print("(EngineCore pid=1) ERROR 12-03 11:41:59 [core.py:1512] EngineCore encountered a fatal error.",
                      flush=True)
            self._send(500, b'{"error": {"message": "EngineCore encountered an issue. See stack trace (above) '
                            b'for the root cause.", "type": "InternalServerError", "code": 500}}')
            return
        COUNT["post"] += 1
        if FAULT == "ratelimited" and COUNT["post"] % 3 == 0:
            self.send_response(429)
            body = b'{"error": {"message": "Rate limit reached for requests", "type": "requests", "code": 429}}'
            self.send_header("Retry-After", "1")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        COUNT["running"] += 1
        try:
            self._answer(body)
        finally:
            COUNT["running"] -= 1

    def _answer(self, body):
        if SERVICE_S:
            with SLOTS:
                time.sleep(SERVICE_S)
        if FAULT == "stuck" and COUNT["post"] % 4 == 0:
            time.sleep(30)
        if FAULT == "spiky" and COUNT["post"] % 5 == 0:
            time.sleep(1.5)
        max_tokens = body.get("max_tokens", 16)
        reply = answer_for(body["messages"][-1]["content"])
        choices = (body.get("structured_outputs") or {}).get("choice")
        if choices:  # as vLLM: the reply is exactly one of the choices
            reply = reply if reply in choices else choices[0]
        pieces = [reply[i:i + 4] for i in range(0, len(reply), 4)][:max_tokens]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        start = time.time()
        for i, p in enumerate(pieces):
            time.sleep(0.02 if FAULT == "slow" else 0.002)  # a deliberately slow engine
            if i == 0:
                STATE["ttft_sum"] += time.time() - start
                STATE["ttft_count"] += 1
            chunk = {"choices": [{"index": 0, "delta": {"content": p}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if FAULT == "stalls" and COUNT["post"] % 4 == 0:
                self.wfile.flush()
                time.sleep(3600)  # the stream stalls with its connection open
        STATE["gen"] += len(pieces)
        STATE["prompt"] += 20
        usage = {"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": len(pieces)}}
        self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())


ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()
