"""Tests for lm.data.pii: each kind is redacted with its placeholder and counted; look-alikes are kept."""

import pickle

import pytest

from lm.data.pii import RedactPII

redact = RedactPII()


@pytest.mark.parametrize("text, expected, counts", [
    ("Write to jane.doe+news@mail.example.co.uk today.", "Write to <EMAIL> today.", {"email": 1}),
    ("a@b.io, x_y@corp-mail.com", "<EMAIL>, <EMAIL>", {"email": 2}),
    ("我的邮箱是zhang.san@163.com，欢迎联系。", "我的邮箱是<EMAIL>，欢迎联系。", {"email": 1}),
    ("Server at 192.168.1.20, gateway 10.0.0.1.", "Server at <IP>, gateway <IP>.", {"ipv4": 2}),
    ("version 1.2.3.4 is out", "version <IP> is out", {"ipv4": 1}),
    ("ping 2001:db8:85a3::8a2e:370:7334 now", "ping <IP> now", {"ipv6": 1}),
    ("loopback ::1 and fe80::1ff:fe23:4567:890a", "loopback <IP> and <IP>", {"ipv6": 2}),
    ("mapped ::ffff:192.0.2.128 here", "mapped <IP> here", {"ipv6": 1}),
    ("Call +44 20 7946 0958 or +1-202-555-0143.", "Call <PHONE> or <PHONE>.", {"phone": 2}),
    ("Office: (555) 123-4567, cell 555.123.4567", "Office: <PHONE>, cell <PHONE>", {"phone": 2}),
    ("联系我13812345678或139-1234-5678", "联系我<PHONE>或<PHONE>", {"phone": 2}),
    ("电话：+86 138 0013 8000", "电话：<PHONE>", {"phone": 1}),
    ("key AKIAIOSFODNN7EXAMPLE used", "key <KEY> used", {"key": 1}),
    ("token ghp_" + "a1B2c3D4e5" * 4 + " leaked", "token <KEY> leaked", {"key": 1}),
    ("api_key = 'f3Kz9QpL2mX7vR4tB8nW'", "api_key = '<KEY>'", {"key": 1}),
    ('{"client_secret": "9aZ2kQ7xP4mL8vN3rT6w"}', '{"client_secret": "<KEY>"}', {"key": 1}),
    ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc\n-----END RSA PRIVATE KEY-----\nok",
     "<KEY>\nok", {"key": 1}),
])
def test_redacts_each_kind_with_its_placeholder_and_count(text, expected, counts):
    assert redact(text, "en") == (expected, counts)


@pytest.mark.parametrize("text", [
    "Released on 2024-01-15 at 12:30:45, build 20240115.",  # dates, times, plain numbers
    "The population grew from 1234567 to 98765432 people.",
    "Prices: 3.50, 12.99 and 1,299.00 dollars; ratio 3:2.",
    "Section 1.2.3 and version 1.2.3.4.5 of the spec.",      # not four parts
    "999.1.1.1 and 256.0.0.1 are not addresses.",             # octets over 255
    "std::vector and beef::cafe are C++ names.",              # no digit: not IPv6
    "Order number 12345678901 and ISBN 9787111213826.",       # 11 digits starting 12, 13 digits
    "password = hunter2 and token: aaaaaaaaaaaaaaaaaaaaaaaa",  # short or low-entropy values
    "secret_key = settings.DjangoSecretKeyName",              # no digit: a name, not a secret
    "Mail me at name at example dot com; @handle on social.",
    "He scored +3 points and 2+2=4.",
])
def test_keeps_look_alikes(text):
    assert redact(text, "en") == (text, {})


def test_counts_several_kinds_together():
    text = ("Contact ops@example.org or +49 30 1234567 from 172.16.0.5; "
            "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE and a@b.org")
    out, counts = redact(text, "en")
    assert out == "Contact <EMAIL> or <PHONE> from <IP>; AWS_ACCESS_KEY_ID=<KEY> and <EMAIL>"
    assert counts == {"email": 2, "phone": 1, "ipv4": 1, "key": 1}


def test_kinds_choose_what_is_redacted():
    text = "a@b.org 10.0.0.1"
    assert RedactPII(kinds=["ipv4"])(text) == ("a@b.org <IP>", {"ipv4": 1})
    with pytest.raises(ValueError, match=r"unknown kind\(s\) \['mac'\]"):
        RedactPII(kinds=["mac"])


def test_is_idempotent_and_picklable():
    text = "x 10.1.2.3 y@z.com +1 415 555 2671"
    once, _ = redact(text)
    assert redact(once) == (once, {})
    assert pickle.loads(pickle.dumps(RedactPII(kinds=["email"])))(text) == (
        "x 10.1.2.3 <EMAIL> +1 415 555 2671", {"email": 1})
