"""A small HTTP client for the inspection API's tests (badsmtp(1),
INSPECTION API): urllib over real sockets, every response closed, errors
returned as (status, body) instead of raised; and a raw-socket request for
what urllib will not send (garbage request lines, huge headers)."""

from __future__ import annotations

import json
import smtplib
import socket
import urllib.error
import urllib.request
from typing import Any


def call(base: str, path: str, method: str = "GET", timeout: float = 30.0) -> tuple[int, Any, dict[str, str]]:
    """``(status, parsed JSON body or raw bytes, headers)`` of one request."""
    request = urllib.request.Request(base + path, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _body(response.read(), response.headers), dict(response.headers)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, _body(error.read(), error.headers), dict(error.headers)


def get(base: str, path: str, timeout: float = 30.0) -> Any:
    """The JSON of a GET that must answer 200."""
    status, body, _ = call(base, path, timeout=timeout)
    assert status == 200, (status, body)
    return body


def _body(data: bytes, headers: Any) -> Any:
    if headers.get("Content-Type", "").startswith("application/json"):
        return json.loads(data)
    return data


def raw_request(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` as it is, return everything the server answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def send_mail(port: int, content: bytes, sender: str = "alice@example.com",
              recipients: tuple[str, ...] = ("bob@example.com",)) -> None:  # fmt: skip
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.sendmail(sender, list(recipients), content)
