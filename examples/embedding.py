# examples/embedding.py: any harness, no test framework needed
import smtplib

import badsmtp
from badsmtp import BadSMTP

with BadSMTP(ports=[0]) as server:  # port 0: an ephemeral port
    busy = badsmtp.address("rcpt", 450)  # 'rcpt450@example.com': that recipient gets 450
    with smtplib.SMTP("127.0.0.1", server.port) as client:
        client.ehlo(badsmtp.ehlo_name(no=["chunking"]))
        refused = client.sendmail(
            "me@example.com", ["you@example.com", busy], "Subject: hi\r\n\r\nhello\r\n"
        )
    assert refused[busy][0] == 450
    (message,) = server.wait_for_messages(1, timeout=5)
    assert message.recipients == ("you@example.com",)

    (session,) = server.wait_for_sessions(1)  # what the server saw, command by command
    assert session.commands == ["EHLO", "MAIL", "RCPT", "RCPT", "DATA", "QUIT"]
    assert session.reply_to("RCPT", 1).code == 450
    assert session.waited_for(354)  # the content came only after the 354
    assert session.pipelined == []  # smtplib sends one command at a time
    print(session)  # the whole transcript, with timings and receive batches
assert server.errors == []
