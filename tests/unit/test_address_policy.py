"""The SSRF guard's rule for one address: every form that reaches the operator's network is
refused, named by the rule (never by the address), and the allowlist opens exactly its networks."""

from __future__ import annotations

import ipaddress

import pytest

from dupdetect.images.fetch import AddressPolicy, FetchError, _BlockedAddress

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("10.0.0.1", "private network"),
    ("192.168.1.20", "private network"),
    ("169.254.169.254", "link-local (cloud metadata)"),
    ("224.0.0.1", "multicast"),
    ("0.0.0.0", "unspecified"),
    ("240.0.0.1", "private network"),  # reserved, and Python counts it private first
    ("100.64.0.1", "not globally routable"),  # carrier-grade NAT
    ("::1", "loopback"),
    ("fe80::1", "link-local (cloud metadata)"),
    ("fc00::1", "private network"),
    # IPv6 forms that carry an IPv4 address: mapped, compatible, NAT64, 6to4, Teredo
    ("::ffff:10.0.0.1", "IPv4-mapped address embedding a private network IPv4 address"),
    ("::127.0.0.1", "IPv4-compatible address embedding a loopback IPv4 address"),
    ("64:ff9b::7f00:1", "NAT64 address embedding a loopback IPv4 address"),
    ("2002:7f00:1::", "6to4 address embedding a loopback IPv4 address"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo address embedding a loopback IPv4 address"),
]


@pytest.mark.parametrize(("address", "rule"), REFUSED, ids=[address for address, _ in REFUSED])
def test_a_non_public_address_is_refused_by_its_rule(address: str, rule: str) -> None:
    assert AddressPolicy(()).refusal(ipaddress.ip_address(address)) == rule


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:4700::6810:84e5", "::ffff:93.184.216.34", "2002:5db8:d822::"])
def test_a_public_address_passes(address: str) -> None:
    assert AddressPolicy(()).refusal(ipaddress.ip_address(address)) is None


def test_the_allowlist_opens_its_networks_and_nothing_next_to_them() -> None:
    policy = AddressPolicy(("10.1.0.0/16", "::1"))
    assert policy.permits(ipaddress.ip_address("10.1.2.3"))
    assert policy.permits(ipaddress.ip_address("::1"))
    assert policy.permits(ipaddress.ip_address("::ffff:10.1.2.3"))  # the IPv4 address it is
    assert policy.refusal(ipaddress.ip_address("10.2.0.1")) == "private network"
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) == "loopback"


def test_the_error_names_the_rule_and_the_host_but_not_the_address() -> None:
    with pytest.raises(_BlockedAddress) as caught:
        AddressPolicy(()).check("intranet.example", "10.20.30.40")
    assert str(caught.value) == "intranet.example resolves to a non-public address (private network)"
    assert not isinstance(caught.value, FetchError)  # aiohttp's connector sees an OSError, the item a fetch error
