"""``nndsl lsp`` over stdio, as an editor speaks to it: JSON-RPC messages with Content-Length framing."""
from __future__ import annotations

import json
import os
import queue
import random
import subprocess
import sys
import threading

import pytest

TIMEOUT = 60  # seconds for any one answer (the first check imports torch)


class Client:
    """A minimal LSP client: a reader thread parses the server's messages into a queue."""

    def __init__(self) -> None:
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "nndsl.cli", "lsp"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.messages: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.next_id = 0

    def _read(self) -> None:
        out = self.proc.stdout
        while True:
            headers = {}
            while True:
                line = out.readline()
                if not line:
                    return
                if line in (b"\r\n", b"\n"):
                    break
                k, _, v = line.decode("ascii").partition(":")
                headers[k.strip().lower()] = v.strip()
            self.messages.put(json.loads(out.read(int(headers["content-length"]))))

    def send(self, method: str, params: dict, request: bool = False):
        msg = {"jsonrpc": "2.0", "method": method, "params": params}
        if request:
            self.next_id += 1
            msg["id"] = self.next_id
        body = json.dumps(msg).encode()
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()
        return msg.get("id")

    def wait_for(self, accept) -> dict:
        """The first message ``accept`` takes (others, such as log messages, are skipped)."""
        while True:
            try:
                msg = self.messages.get(timeout=TIMEOUT)
            except queue.Empty:
                self.proc.kill()
                pytest.fail(f"no expected message from the server within {TIMEOUT} s; stderr: "
                            f"{self.proc.stderr.read().decode(errors='replace')[-2000:]}")
            if accept(msg):
                return msg

    def request(self, method: str, params: dict) -> dict:
        i = self.send(method, params, request=True)
        msg = self.wait_for(lambda m: m.get("id") == i and "method" not in m)
        assert "error" not in msg, msg
        return msg["result"]

    def diagnostics(self, uri: str, version: int) -> list:
        return self.wait_for(lambda m: m.get("method") == "textDocument/publishDiagnostics"
                             and m["params"]["uri"] == uri and m["params"].get("version") == version
                             )["params"]["diagnostics"]


@pytest.fixture
def client():
    c = Client()
    yield c
    if c.proc.poll() is None:
        c.proc.kill()
        c.proc.wait(10)


def utf16(line: str, col0: int) -> int:
    return len(line[:col0].encode("utf-16-le")) // 2


def test_initialize_diagnostics_hover_shutdown(client, tmp_path):
    caps = client.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}})["capabilities"]
    assert caps["hoverProvider"] is True
    assert caps["textDocumentSync"]["openClose"] is True and caps["textDocumentSync"]["change"] in (1, 2)
    client.send("initialized", {})

    # a shape error after a non-BMP character on its line: the range counts UTF-16 code units
    n, m = random.randint(2, 50), random.randint(51, 99)
    bad_line = f'model M(x: f32[B, 8], tag: str = "é😀") -> f32[B, {m}] {{ return linear(x, {n}) }}'
    text = f"# a model\n{bad_line}\n"
    uri = (tmp_path / "bad.nn").as_uri()
    client.send("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "nndsl", "version": 1,
                                                          "text": text}})
    (d,) = client.diagnostics(uri, 1)
    start = bad_line.index("linear")
    end = bad_line.index(")", start) + 1
    assert d["range"] == {"start": {"line": 1, "character": utf16(bad_line, start)},
                          "end": {"line": 1, "character": utf16(bad_line, end)}}
    assert utf16(bad_line, start) == start + 1  # the emoji is two UTF-16 code units
    assert d["severity"] == 1 and f"[B, {n}]" in d["message"] and f"[B, {m}]" in d["message"]

    # fixed by an edit: the diagnostics clear, and hover shows the shape of h
    good = f"model M(x: f32[B, 8]) {{\n    h = gelu(linear(x, {n}))\n    return linear(h, {m})\n}}\n"
    client.send("textDocument/didChange", {"textDocument": {"uri": uri, "version": 2},
                                           "contentChanges": [{"text": good}]})
    assert client.diagnostics(uri, 2) == []
    result = client.request("textDocument/hover", {"textDocument": {"uri": uri},
                                                   "position": {"line": 2, "character": 18}})  # the h in linear(h
    assert f"h: f32[B, {n}]" in result["contents"]["value"]
    assert result["range"]["start"] == {"line": 2, "character": 18}
    assert client.request("textDocument/hover", {"textDocument": {"uri": uri},
                                                 "position": {"line": 0, "character": 0}}) is not None

    assert client.request("shutdown", None) is None
    client.send("exit", None)
    assert client.proc.wait(TIMEOUT) == 0
