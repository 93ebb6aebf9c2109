#!/usr/bin/env python3
"""A fleet specialist in plain Python: the standard library only.

fleet's supervisor starts this program inside the agent's sandbox and speaks JSON-RPC 2.0 with
it, one JSON object per line on stdin and stdout (stderr is its log). The protocol's JSON Schema
is `docs/ipc.schema.json` (or `fleet schema ipc`).

The worker holds no API key and cannot open a network socket. Each model turn is a
`model/stream` request to the supervisor, its model gateway: the supervisor forwards the turn
to the provider, streams the answer back as `model/event` notifications, and meters and charges
what it cost against the agent's budget. Whatever the worker might claim it spent moves no money.

This worker answers each task with one model turn: the agent's system prompt, the task's prompt,
and the model's text as the answer.
"""
import json
import sys

PROTOCOL = 2
TASK_FAILED, TASK_CANCELLED, INVALID_PARAMS = -32000, -32001, -32602


def send(message):
    message["jsonrpc"] = "2.0"
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def log(text):
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class TurnFailed(Exception):
    """The gateway refused or failed the turn (budget, model error, cancellation)."""

    def __init__(self, error):
        super().__init__(error["message"])
        self.code = error["code"]


class Worker:
    def __init__(self):
        self.spec = {}
        self.gateway = {}
        self.next_id = 0
        self.later = []  # messages that arrived while a turn was streaming

    @staticmethod
    def incoming():
        """What the supervisor sends, straight from stdin."""
        for line in sys.stdin:
            if line.strip():
                yield json.loads(line)

    def messages(self):
        """What the main loop takes: first what arrived during a turn, then stdin."""
        while True:
            if self.later:
                yield self.later.pop(0)
                continue
            line = sys.stdin.readline()
            if not line:
                return
            if line.strip():
                yield json.loads(line)

    def model_turn(self, task_id, prompt):
        """One model turn through the gateway: the model's text, as it streams in."""
        self.next_id += 1
        turn = self.next_id
        request = {
            "model": self.gateway["model"],
            "max_tokens": self.spec.get("max_tokens") or 1024,
            "messages": [{"role": "user", "content": [{"type": "text", "text": prompt}]}],
        }
        if self.spec.get("system"):
            request["system"] = self.spec["system"]
        send({"id": turn, "method": "model/stream", "params": {"task_id": task_id, "request": request}})
        text = []
        for message in self.incoming():
            method = message.get("method")
            if method == "model/event" and message["params"]["request_id"] == turn:
                event = message["params"]["event"]
                if event["type"] == "text_delta":
                    text.append(event["text"])
            elif method is None and message.get("id") == turn:
                if "error" in message:
                    raise TurnFailed(message["error"])
                usage = message["result"]["usage"]
                log(f"turn {turn}: {usage.get('input', 0)} in, {usage.get('output', 0)} out, ${message['result']['cost']}")
                return "".join(text)
            elif method == "task/cancel" and message["params"]["task_id"] == task_id:
                send({"method": "$/cancelRequest", "params": {"id": turn}})
                send({"id": message["id"], "result": None})
            else:
                self.later.append(message)
        raise TurnFailed({"code": -32603, "message": "the supervisor went away"})

    def run(self, rid, params):
        try:
            text = self.model_turn(params["task_id"], params["prompt"])
            return {"id": rid, "result": {"text": text}}
        except TurnFailed as failed:
            code = TASK_CANCELLED if failed.code == -32800 else TASK_FAILED
            return {"id": rid, "error": {"code": code, "message": str(failed)}}

    def serve(self):
        for message in self.messages():
            method, params, rid = message.get("method"), message.get("params", {}), message.get("id")
            if method == "initialize":
                if params.get("protocol", 1) < PROTOCOL or not params.get("gateway"):
                    send({"id": rid, "error": {"code": INVALID_PARAMS, "message": "this worker needs a supervisor with a model gateway (protocol 2)"}})
                    continue
                self.spec, self.gateway = params["spec"], params["gateway"]
                log(f"{self.spec['name']}: model turns go to the gateway ({self.gateway['provider']}, {self.gateway['model']})")
                send({"id": rid, "result": {"role": self.spec["name"], "version": "python-example"}})
            elif method == "task/run":
                send(self.run(rid, params))
            elif method == "task/cancel":
                send({"id": rid, "error": {"code": INVALID_PARAMS, "message": "no task of that id is running"}})
            elif method == "shutdown":
                send({"id": rid, "result": None})
                return
            elif rid is not None and method is not None:
                send({"id": rid, "error": {"code": -32601, "message": f"unknown method {method}"}})


if __name__ == "__main__":
    Worker().serve()
