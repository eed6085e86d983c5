"""URLs and e-mail addresses judged as the field's parsers judge them: the URL Standard's host
rules (IPv4 numbers, percent-encoded and internationalised names, IPv6 literals) and
``email-validator`` on the whole address. Every value here is made up for this file."""

from __future__ import annotations

import pytest

from sentinel.checks.patterns import PatternCheck

from .checks_util import split_invariant


def flagged(text: str) -> list[str]:
    return [text[v.span[0] : v.span[1]] for v in split_invariant(PatternCheck, text)]


@pytest.mark.parametrize(
    "url",
    [
        "http://[2001:db8:4::17]/status",
        "http://[fe80::1]:8443/",
        "https://bücher.example/katalog",
        "https://%e2%9c%93.example.org/",  # percent-encoded U+2713, an IDNA 2003 name
        "http://0x7f.0.0.1/",  # hex and short IPv4 forms the URL Standard accepts
        "http://10.1/",
        "http://198.51.100.7:8080/health",
        "https://api.example.com./v1",
        "http://@mirror.example.net/pub",
    ],
)
def test_urls_the_standard_accepts_are_not_malformed(url: str) -> None:
    assert flagged(f"Try {url} again.\n") == []


@pytest.mark.parametrize(
    "url",
    [
        "http://203.0.113.300/",  # an octet over 255
        "http://198.51.100.7.9/",  # five parts
        "http://10.0.0.08/",  # 08 is not an octal number
        "http://files.10.0.0.1/",  # a name ending in a number is an address
        "http://shop.xn--0000/",  # punycode that does not decode
        "http://ex%zzample.com/",  # a broken percent escape
        "http://[2001:db8::zz]/",
        "http://[fe80::1%25eth0]/",  # a zone id is not allowed in a URL
        "http://api.example.com:70000/",
    ],
)
def test_urls_the_standard_rejects_are_malformed(url: str) -> None:
    assert flagged(f"Try {url} again.\n") == [url]


def test_addresses_email_validator_accepts_are_not_malformed() -> None:
    text = (
        "Mail (ops@example.org), <root@example.net> or **dev@example.com**; ann@example.org's "
        'notes, "two..dots"@example.com, joe@[192.0.2.1], δοκιμή@example.com, 用户@例子.广告, '
        "user@localhost. Not addresses: lodash@4.17.21, icon@2x.png, @property.\n"
    )
    assert flagged(text) == []


@pytest.mark.parametrize(
    "address",
    [
        ".lead@example.org",
        "trail.@example.org",
        "two..dots@example.org",
        "ann@-example.org",
        "(note)ann@example.org",
        'ann"x"@example.org',
        "ann@[192.0.2.300]",
        "ann@exa_mple.org",
    ],
)
def test_addresses_email_validator_rejects_are_malformed(address: str) -> None:
    assert flagged(f"Write to {address} today.\n") == [address]


def test_urls_end_where_prose_and_markup_end_them() -> None:
    text = (
        'endpoint: "https://<API_HOST>/v1" and [the guide](www.example.org)\'s intro; '
        '<a href="https://example.org/p?q=1">link</a> (see https://en.wikipedia.org/wiki/Foo_(bar))\n'
        "```sh\ndocker run -v \"$PWD:/src\" -v conf/app.conf:/etc/app.conf img\nawk '/rules:/,0' f\n```\n"
    )
    assert flagged(text) == []
    assert flagged("Then open htp:/broken in a browser.\n") == ["htp:/broken"]


def test_a_scheme_named_on_its_own_is_not_a_malformed_url() -> None:
    """What the ci agent met in a coder's answer: a scheme or "www." on its own names a kind of
    address ("prefix it with https://"), in prose and in code; a host after it is judged."""
    text = (
        "Links start with https:// and most sites with www. before the name; prefix it with "
        "`http://` when it has none.\n"
        '```python\nif url.startswith("http://"):\n    url = "https://" + url[7:]\n```\n'
    )
    assert flagged(text) == []
    assert flagged("Open http://-x.com/ or www..example.org now.\n") == [
        "http://-x.com/",
        "www..example.org",
    ]


def test_placeholders_flags_lists_and_jsonpath_are_not_malformed() -> None:
    text = (
        "Run `gyb --email {{you@example.org}}` or msmtp --from={{me@example.org}} -t; the filter "
        "$..items[?(@.price)] picks them; serve on http://local_ip:1313 and crawl "
        "https://example.com,https://example.org today.\n"
    )
    assert flagged(text) == []
    assert flagged("Then mail --to=two..dots@example.org now.\n") == ["two..dots@example.org"]


def test_an_ipv4_address_takes_ascii_digits_only() -> None:
    assert flagged("It listens on 19\u09e8.0.2.1 and on 192.0.2.1 now\n") == ["19\u09e8.0.2.1"]
