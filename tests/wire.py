"""The replies the tests expect, byte for byte, in one place.
Written out literally, not taken from badsmtp.replies: a test must not agree
with the server just because both read the same table."""

GREETING = b"220 badsmtp.test ESMTP BadSMTP - The Reliably Unreliable Mail Server\r\n"
EHLO_REPLY = (
    b"250-badsmtp.test\r\n"
    b"250-AUTH PLAIN LOGIN CRAM-MD5 CRAM-SHA256 XOAUTH2\r\n"
    b"250-8BITMIME\r\n"
    b"250-SIZE 10485760\r\n"
    b"250-PIPELINING\r\n"
    b"250-STARTTLS\r\n"
    b"250-CHUNKING\r\n"
    b"250-SMTPUTF8\r\n"
    b"250-ENHANCEDSTATUSCODES\r\n"
    b"250 OK\r\n"
)
MAIL_OK = b"250 2.1.0 OK\r\n"
RCPT_OK = b"250 2.1.5 OK\r\n"
OK = b"250 2.0.0 OK\r\n"
GO_AHEAD = b"354 End data with <CR><LF>.<CR><LF>\r\n"
ACCEPTED = b"250 2.0.0 OK Message accepted for delivery\r\n"
BYE = b"221 2.0.0 Bye\r\n"
SHUTTING_DOWN = b"421 Service shutting down\r\n"
SHUTTING_DOWN_ENH = b"421 4.3.2 Service shutting down\r\n"
LOCAL_ERROR = b"451 4.3.0 Requested action aborted: local error in processing\r\n"
UNAVAILABLE = b"421 Service not available, closing transmission channel\r\n"
