# examples/test_unittest_example.py: run with  python -m unittest test_unittest_example
import smtplib
import unittest

import badsmtp
from badsmtp import BadSMTP


class SendMailTest(unittest.TestCase):
    def setUp(self) -> None:
        server = BadSMTP(ports=[0])  # port 0: an ephemeral port, so test runs never collide
        self.addCleanup(self.assertNoServerErrors, server)  # runs after the server stopped
        self.server = self.enterContext(server)  # Python 3.11+: stopped after the test

    def assertNoServerErrors(self, server: BadSMTP) -> None:
        self.assertEqual(server.errors, [], "badsmtp recorded internal errors")

    def test_message_arrives(self) -> None:
        with smtplib.SMTP("127.0.0.1", self.server.port) as client:
            client.sendmail("me@example.com", ["you@example.com"], "Subject: hi\r\n\r\nhello\r\n")
        (message,) = self.server.wait_for_messages(1, timeout=5)
        self.assertEqual(message.recipients, ("you@example.com",))
        self.assertEqual(message.email["Subject"], "hi")

    def test_sender_refused(self) -> None:
        sender = badsmtp.address("mail", 452)  # 'mail452@example.com'
        with smtplib.SMTP("127.0.0.1", self.server.port) as client:
            with self.assertRaises(smtplib.SMTPSenderRefused) as refused:
                client.sendmail(sender, ["you@example.com"], "Subject: hi\r\n\r\nhello\r\n")
        self.assertEqual(refused.exception.smtp_code, 452)
        (session,) = self.server.wait_for_sessions(1)
        self.assertEqual(session.sent_after(452), ["RSET", "QUIT"])  # the client cleaned up


if __name__ == "__main__":
    unittest.main()
