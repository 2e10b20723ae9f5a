"""A stand-in OpenAI-compatible streaming server for fast tests of the trial pipeline (not the real path).

Accepts vLLM's argv (uses --port, --host, --served-model-name, --max-num-seqs; ignores the rest).
Behaviours for failure-as-data tests:
  --max-num-seqs 13   -> dies at start with an 'unsupported' error
  --max-num-seqs 14   -> dies at start with an out-of-memory error
  --max-num-seqs 15   -> never becomes healthy (hangs)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--host", default="127.0.0.1")
ap.add_argument("--served-model-name", default="fake")
ap.add_argument("--max-num-seqs", type=int, default=8)
args, _unknown = ap.parse_known_args()

if args.max_num_seqs == 13:
    print("ValueError: max_num_seqs 13 is not supported by this fake engine", flush=True)
    sys.exit(1)
if args.max_num_seqs == 14:
    print("torch.OutOfMemoryError: out of memory allocating the KV cache", flush=True)
    sys.exit(1)
if args.max_num_seqs == 15:
    time.sleep(3600)

STATE = {"gen": 0, "prompt": 0, "ttft_sum": 0.0, "ttft_count": 0}
ANSWER = '{"name": "Ada Lovelace", "email": "ada@example.org", "address": "1 Analytical Way"}'


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
        elif self.path == "/v1/models":
            self._send(200, json.dumps({"data": [{"id": args.served_model_name}]}).encode())
        elif self.path == "/metrics":
            text = (
                f'vllm:generation_tokens_total{{model_name="{args.served_model_name}"}} {STATE["gen"]}\n'
                f'vllm:prompt_tokens_total{{model_name="{args.served_model_name}"}} {STATE["prompt"]}\n'
                f'vllm:time_to_first_token_seconds_sum{{model_name="x"}} {STATE["ttft_sum"]}\n'
                f'vllm:time_to_first_token_seconds_count{{model_name="x"}} {STATE["ttft_count"]}\n'
                'vllm:num_preemptions_total{model_name="x"} 0\n'
                'vllm:kv_cache_usage_perc{model_name="x"} 0.25\n'
            )
            self._send(200, text.encode(), "text/plain")
        else:
            self._send(404, b"{}")

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        max_tokens = body.get("max_tokens", 16)
        pieces = [ANSWER[i:i + 4] for i in range(0, len(ANSWER), 4)][:max_tokens]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        start = time.time()
        for i, p in enumerate(pieces):
            time.sleep(0.002)
            if i == 0:
                STATE["ttft_sum"] += time.time() - start
                STATE["ttft_count"] += 1
            chunk = {"choices": [{"index": 0, "delta": {"content": p}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        STATE["gen"] += len(pieces)
        STATE["prompt"] += 20
        usage = {"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": len(pieces)}}
        self.wfile.write(f"data: {json.dumps(usage)}\n\ndata: [DONE]\n\n".encode())


ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()
