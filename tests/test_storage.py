"""Message storage over real sockets: the maildir layout and file format
(README, Storing messages; badsmtp(1), --mailbox), nothing kept for failed
transactions, and typed store errors turned into replies (README, Extending
badsmtp)."""

from __future__ import annotations

import email
import errno
import mailbox
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from helpers import Client, serving, wait_until
from test_server import (
    ACCEPTED,
    GO_AHEAD,
    GREETING,
    MAIL_OK,
    OK,
    RCPT_OK,
    ehlo,
    open_transaction,
    send_one,
)

from badsmtp import BadSMTP, MailboxUnavailable, Message, QuotaExceeded, StorageError
from badsmtp.storage import STALE_AGE, MaildirStore, MessageStore

NAME = re.compile(r"^(\d+)\.(\d+)_(\d+)_(\d+)\.(.+)$")  # {sec}.{usec}_{pid}_{n}.{host}
DATE = r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}"


@pytest.fixture
def mb(tmp_path: Path) -> Path:
    return tmp_path / "mb"


@pytest.fixture
def maildir_server(mb: Path) -> Iterator[BadSMTP]:
    with serving(ports=[0], mailbox_dir=str(mb)) as srv:
        yield srv


def listing(mb: Path, sub: str) -> list[str]:
    return sorted(os.listdir(mb / sub))


def test_directories_are_created_at_construction(tmp_path: Path) -> None:
    path = tmp_path / "parent" / "mb"
    BadSMTP(ports=[0], mailbox_dir=path)  # not even started (badsmtp(1), --mailbox: at start-up)
    for d in (tmp_path / "parent", path, path / "tmp", path / "new", path / "cur"):
        assert d.is_dir(), d
        assert stat.S_IMODE(d.stat().st_mode) & 0o027 == 0, (d, oct(d.stat().st_mode))
    assert stat.S_IMODE(path.stat().st_mode) == 0o750 & ~_umask()
    assert listing(path, "tmp") == listing(path, "new") == listing(path, "cur") == []


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_a_message_lands_in_new_with_the_exact_prefix(maildir_server: BadSMTP, mb: Path) -> None:
    content = b"Subject: stored\r\nX-Bin: \xff\xfe\r\n\r\nline\r\n.dot\r\n"
    with Client(maildir_server.port) as c:
        assert c.reply() == GREETING
        ehlo(c)
        assert c.command(b"MAIL FROM:<alice@Example.COM>") == MAIL_OK
        assert c.command(b"RCPT TO:<bob@example.com>") == RCPT_OK
        assert c.command(b"RCPT TO:<carol@example.org>") == RCPT_OK
        assert c.command(b"DATA") == GO_AHEAD
        before = time.time()
        c.send(content.replace(b"\n.", b"\n..") + b".\r\n")
        assert c.reply() == ACCEPTED  # the commit (the rename) happened before this reply
        after = time.time()
    assert listing(mb, "tmp") == [] and listing(mb, "cur") == []
    [name] = listing(mb, "new")
    data = (mb / "new" / name).read_bytes()
    prefix = re.match(
        rb"From: alice@example\.com\r\n"
        rb"To: bob@example\.com, carol@example\.org\r\n"
        rb"Received: by badsmtp\.test; (" + DATE.encode() + rb")\r\n\r\n",
        data,
    )
    assert prefix is not None, data[:200]
    assert data[prefix.end() :] == content
    received = parsedate_to_datetime(prefix.group(1).decode()).timestamp()
    assert int(before) - 1 <= received <= after + 1
    # The file name.
    m = NAME.match(name)
    assert m is not None, name
    seconds, micros, pid, _, host = m.groups()
    assert int(micros) // 1_000_000 == int(seconds)
    assert int(before) - 1 <= int(seconds) <= after + 1
    assert int(pid) == os.getpid()
    assert host == (socket.gethostname() or "badsmtp.test").replace("/", r"\057").replace(":", r"\072")
    assert stat.S_IMODE((mb / "new" / name).stat().st_mode) == 0o600


def test_counter_increases_and_null_sender_is_written_as_angle_brackets(
    maildir_server: BadSMTP, mb: Path
) -> None:
    with Client(maildir_server.port) as c:
        assert c.reply() == GREETING
        ehlo(c)
        for sender in (b"<>", b"<alice@example.com>"):
            assert c.command(b"MAIL FROM:" + sender) == MAIL_OK
            assert c.command(b"RCPT TO:<bob@example.com>") == RCPT_OK
            c.send(b"BDAT 7 LAST\r\nchunked")
            assert c.reply() == ACCEPTED
    names = listing(mb, "new")
    assert len(names) == 2
    by_counter = sorted(names, key=lambda n: int(NAME.match(n).group(4)))  # type: ignore[union-attr]
    first, second = (int(NAME.match(n).group(4)) for n in by_counter)  # type: ignore[union-attr]
    assert second == first + 1
    null, alice = ((mb / "new" / n).read_bytes() for n in by_counter)
    assert null.startswith(b"From: <>\r\nTo: bob@example.com\r\nReceived: by badsmtp.test; ")
    assert alice.startswith(b"From: alice@example.com\r\nTo: bob@example.com\r\n")
    assert null.endswith(b"\r\n\r\nchunked") and alice.endswith(b"\r\n\r\nchunked")


def test_control_octets_in_quoted_addresses_never_reach_the_headers(
    maildir_server: BadSMTP, mb: Path
) -> None:
    # RFC 5321 §4.1.2 qtextSMTP: a CR inside quotes would split From:/To: into
    # injected headers.  The address is refused; the same quoting without
    # control octets is stored (its negative twin).
    with Client(maildir_server.port) as c:
        assert c.reply() == GREETING
        ehlo(c)
        injected = b'"x\rX-Injected:yes\rSubject:forged"@example.com'
        assert c.command(b"MAIL FROM:<" + injected + b">") == (
            b"501 5.1.7 Syntax error in parameters\r\n"
        )
        assert c.command(b'MAIL FROM:<"x\\"X-Quoted:yes"@example.com>') == MAIL_OK
        assert c.command(b"RCPT TO:<" + injected + b">") == b"501 5.1.3 Syntax error in parameters\r\n"
        assert c.command(b'RCPT TO:<"a\x00b"@example.com>') == b"501 5.1.3 Syntax error in parameters\r\n"
        assert c.command(b"RCPT TO:<bob@example.com>") == RCPT_OK
        c.send(b"BDAT 2 LAST\r\nhi")
        assert c.reply() == ACCEPTED
    [name] = listing(mb, "new")
    data = (mb / "new" / name).read_bytes()
    assert data.startswith(b'From: "x\\"X-Quoted:yes"@example.com\r\nTo: bob@example.com\r\n')
    assert b"X-Injected" not in data and b"\r\r" not in data


def test_readable_with_stdlib_maildir(maildir_server: BadSMTP, mb: Path) -> None:
    send_one(maildir_server.port, b"Subject: one\r\n\r\nfirst\r\n")
    send_one(maildir_server.port, b"Subject: two\r\n\r\nsecond\r\n")
    md = mailbox.Maildir(str(mb), factory=None, create=False)
    try:
        items = sorted(md.items(), key=lambda kv: kv[1].get_payload())
        assert len(items) == 2
        for (key, msg), expected in zip(items, [b"Subject: one\r\n\r\nfirst\r\n", b"Subject: two\r\n\r\nsecond\r\n"]):
            assert msg["From"] == "alice@example.com"
            assert msg["To"] == "bob@example.com"
            assert msg["Received"].startswith("by badsmtp.test; ")
            assert md.get_bytes(key).endswith(b"\r\n\r\n" + expected)
            assert msg.get_subdir() == "new"
    finally:
        md.close()
    # Both also captured in memory (maildir and capture at once).
    assert [m.subject for m in maildir_server.wait_for_messages(2)] == ["one", "two"]


# -- failed transactions keep nothing (README, Storing messages) -------------------------
def _one_tmp_file(mb: Path) -> None:
    wait_until(lambda: len(listing(mb, "tmp")) == 1, what="the delivery's tmp file")


def _size_552(c: Client, srv: BadSMTP, mb: Path) -> None:
    c.command(b"EHLO size1000.example")
    assert c.command(b"MAIL FROM:<alice@example.com>") == MAIL_OK
    assert c.command(b"RCPT TO:<bob@example.com>") == RCPT_OK
    assert c.command(b"DATA") == GO_AHEAD
    _one_tmp_file(mb)
    c.send(b"x" * 2000 + b"\r\n.\r\n")
    assert c.reply() == b"552 5.3.4 Message size exceeds fixed maximum of 1000 bytes\r\n"


def _size_552_bdat(c: Client, srv: BadSMTP, mb: Path) -> None:
    c.command(b"EHLO size1000.example")
    assert c.command(b"MAIL FROM:<alice@example.com>") == MAIL_OK
    assert c.command(b"RCPT TO:<bob@example.com>") == RCPT_OK
    c.send(b"BDAT 600\r\n" + b"a" * 600)
    assert c.reply() == OK
    assert len(listing(mb, "tmp")) == 1
    c.send(b"BDAT 600 LAST\r\n" + b"b" * 600)
    assert c.reply() == b"552 5.3.4 Message size exceeds fixed maximum of 1000 bytes\r\n"


def _data_trigger_on_bdat_last(c: Client, srv: BadSMTP, mb: Path) -> None:
    open_transaction(c, b"data550_5.6.0@example.com")
    c.send(b"BDAT 4\r\nabcd")
    assert c.reply() == OK  # a data trigger spares non-final chunks
    assert len(listing(mb, "tmp")) == 1
    c.send(b"BDAT 4 LAST\r\nefgh")
    assert c.reply() == b"550 5.6.0 Requested action not taken: mailbox unavailable\r\n"


def _data_trigger_on_data(c: Client, srv: BadSMTP, mb: Path) -> None:
    open_transaction(c, b"data451@example.com")
    assert c.command(b"DATA") == b"451 Requested action aborted: local error in processing\r\n"


def _rset_mid_bdat(c: Client, srv: BadSMTP, mb: Path) -> None:
    open_transaction(c)
    c.send(b"BDAT 4\r\nabcd")
    assert c.reply() == OK
    assert len(listing(mb, "tmp")) == 1
    assert c.command(b"RSET") == OK


def _ehlo_mid_bdat(c: Client, srv: BadSMTP, mb: Path) -> None:
    open_transaction(c)
    c.send(b"BDAT 4\r\nabcd")
    assert c.reply() == OK
    assert len(listing(mb, "tmp")) == 1
    ehlo(c)  # a repeated EHLO resets the transaction like RSET (RFC 5321 §4.1.4)


def _disconnect_mid_data(c: Client, srv: BadSMTP, mb: Path) -> None:
    open_transaction(c)
    assert c.command(b"DATA") == GO_AHEAD
    c.send(b"Subject: cut\r\n\r\nhalf\r\n")
    _one_tmp_file(mb)
    c.close()


def _shut_wr_mid_bdat(c: Client, srv: BadSMTP, mb: Path) -> None:
    open_transaction(c)
    c.send(b"BDAT 100 LAST\r\nonly a part")
    _one_tmp_file(mb)
    c.sock.shutdown(socket.SHUT_WR)
    assert c.read_to_eof() == b""


def _trigger_421_mid_bdat(c: Client, srv: BadSMTP, mb: Path) -> None:
    open_transaction(c, b"data421@example.com")
    c.send(b"BDAT 4\r\nabcd")
    assert c.reply() == OK
    assert len(listing(mb, "tmp")) == 1
    c.send(b"BDAT 4 LAST\r\nefgh")
    assert c.read_to_eof() == b"421 Service not available, closing transmission channel\r\n"


def _stop_mid_data(c: Client, srv: BadSMTP, mb: Path) -> None:
    open_transaction(c)
    assert c.command(b"DATA") == GO_AHEAD
    c.send(b"Subject: cut\r\n\r\nhalf\r\n")
    _one_tmp_file(mb)
    srv.stop()
    assert c.read_to_eof() == b"421 4.3.2 Service shutting down\r\n"


FAILURES: dict[str, Callable[[Client, BadSMTP, Path], None]] = {
    "size_552_data": _size_552,
    "size_552_bdat": _size_552_bdat,
    "data_trigger_bdat_last": _data_trigger_on_bdat_last,
    "data_trigger_data": _data_trigger_on_data,
    "rset_mid_bdat": _rset_mid_bdat,
    "ehlo_mid_bdat": _ehlo_mid_bdat,
    "disconnect_mid_data": _disconnect_mid_data,
    "shut_wr_mid_bdat": _shut_wr_mid_bdat,
    "trigger_421_mid_bdat": _trigger_421_mid_bdat,
    "stop_mid_data": _stop_mid_data,
}


@pytest.mark.parametrize("name", list(FAILURES))
def test_failed_transactions_leave_nothing_behind(mb: Path, name: str) -> None:
    with serving(ports=[0], mailbox_dir=str(mb)) as srv:
        with Client(srv.port) as c:
            assert c.reply() == GREETING
            FAILURES[name](c, srv, mb)
        wait_until(lambda: listing(mb, "tmp") == [], what="tmp/ to be emptied")
        assert listing(mb, "new") == []
        assert listing(mb, "cur") == []
        assert srv.messages == []


def test_idle_timeout_mid_data_leaves_nothing_behind(mb: Path) -> None:
    with serving(ports=[0], mailbox_dir=str(mb), idle_timeout=0.3) as srv:
        with Client(srv.port) as c:
            assert c.reply() == GREETING
            open_transaction(c)
            assert c.command(b"DATA") == GO_AHEAD
            c.send(b"Subject: slow\r\n\r\n")
            _one_tmp_file(mb)
            assert c.read_to_eof() == b"421 4.4.2 Idle timeout, closing connection\r\n"
        wait_until(lambda: listing(mb, "tmp") == [], what="tmp/ to be emptied")
        assert listing(mb, "new") == []
        assert srv.messages == []


def test_a_session_goes_on_storing_after_a_failure(maildir_server: BadSMTP, mb: Path) -> None:
    with Client(maildir_server.port) as c:
        assert c.reply() == GREETING
        open_transaction(c)
        c.send(b"BDAT 4\r\nabcd")
        assert c.reply() == OK
        assert c.command(b"RSET") == OK
        assert c.command(b"MAIL FROM:<alice@example.com>") == MAIL_OK
        assert c.command(b"RCPT TO:<bob@example.com>") == RCPT_OK
        c.send(b"BDAT 4\r\nwxyz")
        assert c.reply() == OK
        assert c.command(b"BDAT 0 LAST") == ACCEPTED
    assert listing(mb, "tmp") == []
    [name] = listing(mb, "new")
    assert (mb / "new" / name).read_bytes().endswith(b"\r\n\r\nwxyz")


def test_directories_removed_while_running_are_recreated(maildir_server: BadSMTP, mb: Path) -> None:
    for sub in ("tmp", "new", "cur"):
        (mb / sub).rmdir()
    mb.rmdir()
    send_one(maildir_server.port)
    assert len(listing(mb, "new")) == 1
    assert listing(mb, "tmp") == []


# -- construction errors ---------------------------------------------------------------
def test_mailbox_path_that_is_a_file_fails_at_construction(tmp_path: Path) -> None:
    path = tmp_path / "a-file"
    path.write_bytes(b"not a directory")
    with pytest.raises(StorageError) as info:
        BadSMTP(ports=[0], mailbox_dir=str(path))
    assert str(info.value).startswith("failed to create mailbox: ")
    with pytest.raises(StorageError):
        BadSMTP(ports=[0], mailbox_dir=str(path / "below"))
    assert path.read_bytes() == b"not a directory"


# -- typed store errors (README, Extending badsmtp) ----------------------------------------
class _Delivery:
    def __init__(self, store: _FailingStore) -> None:
        self.store = store

    def write(self, data: bytes) -> None:
        self.store.written.append(data)
        if self.store.stage == "write":
            raise self.store.error

    def commit(self, message: Message) -> None:
        self.store.committed.append(message)
        if self.store.stage == "commit":
            raise self.store.error

    def abort(self) -> None:
        self.store.aborted += 1


class _FailingStore:
    def __init__(self, stage: str, error: BaseException) -> None:
        self.stage = stage
        self.error = error
        self.written: list[bytes] = []
        self.committed: list[Message] = []
        self.aborted = 0

    def begin(self, message: Message) -> _Delivery:
        if self.stage == "begin":
            raise self.error
        return _Delivery(self)


ERRORS = [
    (MailboxUnavailable("gone"), b"550 5.2.1 Requested action not taken: mailbox unavailable\r\n",
     b"550 Requested action not taken: mailbox unavailable\r\n"),
    (QuotaExceeded("full"), b"452 4.2.2 Requested action not taken: insufficient system storage\r\n",
     b"452 Requested action not taken: insufficient system storage\r\n"),
    (StorageError("quota mailbox unavailable"),  # text never matters
     b"451 4.3.0 Requested action aborted: local error in processing\r\n",
     b"451 Requested action aborted: local error in processing\r\n"),
    (ValueError("not active"), b"451 4.3.0 Requested action aborted: local error in processing\r\n",
     b"451 Requested action aborted: local error in processing\r\n"),
]


@pytest.mark.parametrize("stage", ["begin", "write", "commit"])
@pytest.mark.parametrize("error,enhanced,plain", ERRORS, ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else "")
@pytest.mark.parametrize("verb", ["DATA", "BDAT"])
def test_store_errors_become_typed_replies(
    stage: str, error: BaseException, enhanced: bytes, plain: bytes, verb: str
) -> None:
    store = _FailingStore(stage, error)
    with serving(ports=[0], message_store=store) as srv, Client(srv.port) as c:
        assert c.reply() == GREETING
        for hello, expected in ((b"EHLO client.example", enhanced), (b"HELO client.example", plain)):
            assert c.command(hello).startswith(b"250")
            assert c.command(b"MAIL FROM:<alice@example.com>").startswith(b"250 ")
            assert c.command(b"RCPT TO:<bob@example.com>").startswith(b"250 ")
            if verb == "DATA":
                assert c.command(b"DATA") == GO_AHEAD
                c.send(b"Subject: doomed\r\n\r\n" + b"body\r\n" * 100 + b".\r\n")
            else:
                c.send(b"BDAT 5\r\nhello")
                assert c.reply().startswith(b"250 ")
                c.send(b"BDAT 6 LAST\r\n world")
            assert c.reply() == expected
            # The transaction is over: a new one can start.
            reply = c.command(b"RCPT TO:<bob@example.com>")
            assert reply.startswith(b"503 ")
        assert srv.messages == []
        assert srv.errors == []  # a store failure is not a bug in badsmtp
    if stage == "commit":
        assert len(store.committed) == 2 and store.aborted == 0  # commit raising: no abort
        assert store.committed[0].sender == "alice@example.com"
    elif stage == "write":
        assert store.committed == [] and store.aborted == 2
        assert len(store.written) == 2  # nothing more passed after the failure
    else:
        assert store.committed == [] and store.written == []


def test_a_store_that_works_sees_the_whole_stream() -> None:
    store = _FailingStore("never", RuntimeError())
    with serving(ports=[0], message_store=store) as srv:
        send_one(srv.port, b"Subject: ok\r\n\r\n..dot\r\n")
        assert srv.wait_for_messages(1)[0].content == b"Subject: ok\r\n\r\n.dot\r\n"
    assert b"".join(store.written) == b"Subject: ok\r\n\r\n.dot\r\n"
    [committed] = store.committed
    assert committed.sender == "alice@example.com"
    assert committed.recipients == ("bob@example.com",)
    assert committed.size == len(b"Subject: ok\r\n\r\n.dot\r\n")
    assert store.aborted == 0


@pytest.mark.parametrize("gone", ["mailbox", "new"])
def test_a_maildir_that_disappears_is_recreated_at_the_next_delivery(
    maildir_server: BadSMTP, mb: Path, gone: str
) -> None:
    import shutil

    send_one(maildir_server.port)
    assert len(listing(mb, "new")) == 1
    shutil.rmtree(mb if gone == "mailbox" else mb / "new")  # re-created when needed
    send_one(maildir_server.port)
    assert len(listing(mb, "new")) == 1 and listing(mb, "tmp") == []
    assert stat.S_IMODE((mb / "new").stat().st_mode) == 0o750 & ~_umask()


# -- a full disk, a crash: nothing left in tmp/ (README, Storing messages) ----------------
class _FullDiskFile:
    """A maildir file on a disk that fills up after ``room`` octets: writes
    past it fail with ENOSPC, and so does the flush in ``close()`` (as a
    buffered file's does), after which the descriptor is closed anyway."""

    def __init__(self, real: object, room: int) -> None:
        self.real, self.room, self.pending = real, room, False

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            self.pending = True
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.real.write(data)  # type: ignore[attr-defined, no-any-return]

    def close(self) -> None:
        self.real.close()  # type: ignore[attr-defined]
        if self.pending:
            raise OSError(errno.ENOSPC, "No space left on device")


class _FullDiskMaildir(MaildirStore):
    def begin(self, message: Message) -> Any:
        delivery = super().begin(message)
        delivery._file = _FullDiskFile(delivery._file, 64 * 1024)  # type: ignore[assignment]
        return delivery


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[tuple[Path, Callable[[str], MessageStore]]]:
    """A real 2 MiB filesystem (a tmpfs: CI runs as root), or, where mounting
    is not allowed, a maildir whose files fail like a full disk's."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = shutil.which("mount") is not None and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True, check=False,
    ).returncode == 0
    try:
        yield mount / "mb", MaildirStore if mounted else _FullDiskMaildir
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_fails_the_message_and_frees_its_space(
    small_disk: tuple[Path, Callable[[str], MessageStore]], monkeypatch: pytest.MonkeyPatch
) -> None:
    mb, store = small_disk
    # Content that arrives in small pieces sits in the file's buffer when the
    # disk fills, so closing the file fails too (the case).
    monkeypatch.setattr("badsmtp.server.RECV_SIZE", 1000)
    with serving(ports=[0], capture=False, message_store=store(str(mb))) as srv:
        with Client(srv.port) as c:
            assert c.reply() == GREETING
            open_transaction(c)
            assert c.command(b"DATA") == GO_AHEAD
            for _ in range(3 * 1024):  # 3 MiB in small segments: more than the disk holds
                c.send(b"x" * 1022 + b"\r\n")
            c.send(b".\r\n")
            assert c.reply() == b"451 4.3.0 Requested action aborted: local error in processing\r\n"
            assert listing(mb, "tmp") == [] and listing(mb, "new") == []
            # The failed message's space is free again: the next one is stored.
            assert c.command(b"MAIL FROM:<alice@example.com>") == MAIL_OK
            assert c.command(b"RCPT TO:<bob@example.com>") == RCPT_OK
            assert c.command(b"DATA") == GO_AHEAD
            assert c.command(b"Subject: small\r\n\r\nfits\r\n.") == ACCEPTED
        assert listing(mb, "tmp") == [] and len(listing(mb, "new")) == 1


def test_abort_removes_the_file_even_when_closing_it_fails(tmp_path: Path) -> None:
    store = _FullDiskMaildir(str(tmp_path / "mb"))
    delivery = store.begin(Message("a@example.com", ("b@example.com",)))
    with pytest.raises(OSError):
        delivery.write(b"x" * 100_000)
    delivery.abort()  # close() raises ENOSPC inside: abort must not
    assert listing(tmp_path / "mb", "tmp") == []


def _tmp_file(mb: Path, name: str, age: float = 0.0) -> Path:
    path = mb / "tmp" / name
    path.write_bytes(b"From: a@example.com\r\n\r\nhalf a mess")
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def _dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, check=True, text=True)  # fmt: skip
    return int(proc.stdout)


def test_stale_tmp_files_are_removed_at_start(tmp_path: Path) -> None:
    mb = tmp_path / "mb"
    host = MaildirStore(str(mb)).host
    dead = _tmp_file(mb, f"1700000000.1700000000000001_{_dead_pid()}_7.{host}")
    live_pid = _tmp_file(mb, f"1700000000.1700000000000002_{os.getpid()}_8.{host}")
    live_init = _tmp_file(mb, f"1700000000.1700000000000003_1_9.{host}")
    other_host = _tmp_file(mb, f"1700000000.1700000000000004_{_dead_pid()}_7.elsewhere")
    not_ours = _tmp_file(mb, "1700000000.M1P2Q3.mailer")
    ancient = _tmp_file(mb, "1600000000.M1P2Q4.mailer", age=STALE_AGE + 60)
    BadSMTP(ports=[0], mailbox_dir=str(mb))  # construction sets up the mailbox
    assert not dead.exists() and not ancient.exists()
    assert live_pid.exists() and live_init.exists() and other_host.exists() and not_ours.exists()


def test_a_killed_server_leaves_nothing_in_tmp_for_the_next_one(tmp_path: Path) -> None:
    """kill -9 in the middle of a message: the next server on the mailbox
    removes the file the killed one left in tmp/."""
    mb = tmp_path / "mb"
    script = (
        "import sys\nfrom badsmtp import BadSMTP\n"
        "srv = BadSMTP(ports=[0], mailbox_dir=sys.argv[1]).serve_in_thread()\n"
        "print(srv.port, flush=True)\nsys.stdin.read()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(mb)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        with Client(port) as c:
            assert c.reply() == GREETING
            open_transaction(c)
            assert c.command(b"DATA") == GO_AHEAD
            c.send(b"Subject: interrupted\r\n\r\nhalf")
            _one_tmp_file(mb)
            proc.kill()
            proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()
    assert len(listing(mb, "tmp")) == 1
    MaildirStore(str(mb))
    assert listing(mb, "tmp") == [] and listing(mb, "new") == []


def test_a_thousand_recipients_make_a_folded_to_header(maildir_server: BadSMTP, mb: Path) -> None:
    recipients = [f"recipient{i}@example.com".encode() for i in range(1000)]
    with Client(maildir_server.port) as c:
        assert c.reply() == GREETING
        ehlo(c)
        c.send(b"MAIL FROM:<alice@example.com>\r\n" + b"".join(b"RCPT TO:<%s>\r\n" % r for r in recipients))
        assert c.replies(1001) == [MAIL_OK] + [RCPT_OK] * 1000
        c.send(b"BDAT 2 LAST\r\nhi")
        assert c.reply() == ACCEPTED
    [name] = listing(mb, "new")
    data = (mb / "new" / name).read_bytes()
    head = data[: data.index(b"\r\n\r\n")]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78  # RFC 5322 §2.1.1
    message = email.message_from_bytes(data)
    assert [a.strip() for a in message["To"].replace("\r\n", "").split(",")] == [r.decode() for r in recipients]
