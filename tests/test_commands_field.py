"""Disk-destroying commands beyond rm and dd (what tldr-pages documents as wiping, formatting
or zapping a device) are critical in code; the same tools' harmless uses (listing, dry runs,
reading a disk into a file) are not. Every command line here is written for this file."""

from __future__ import annotations

import pytest

from sentinel.checks.patterns import PatternCheck
from sentinel.checks.safety import UnsafeCommandCheck

from .checks_util import split_invariant


def flagged(make, line: str) -> list[str]:
    text = f"```sh\n{line}\n```\n"
    return [f"{v.severity} {text[v.span[0] : v.span[1]]}" for v in split_invariant(make, text)]


@pytest.mark.parametrize(
    "line",
    [
        "sudo mke2fs -t ext4 -L data /dev/sdc2",
        "mkswap -L swap0 /dev/nvme0n1p3",
        "mkfs.cramfs -n rom ./rootfs /dev/sdd1",
        "blkdiscard --secure /dev/sde",
        "sgdisk --zap-all /dev/sdf",
        "sudo parted -s /dev/sdg mklabel gpt",
        "wipefs --all --force /dev/sdh",
        "badblocks -wsv /dev/sdi",
        "ddrescue -f /dev/sdj /dev/sdk rescue.log",
    ],
)
def test_disk_destroying_commands_are_critical(line: str) -> None:
    found = flagged(UnsafeCommandCheck, line)
    assert len(found) == 1 and found[0].startswith("critical "), found


@pytest.mark.parametrize(
    "line",
    [
        "sudo wipefs /dev/sdh",  # lists the signatures
        "wipefs --all --no-act /dev/sdh",  # a dry run
        "badblocks -nsv /dev/sdi",  # the non-destructive test
        "sudo dd if=/dev/sdc of=backup/disk.img status=progress",  # reads the disk
        "sgdisk --print /dev/sdf",
        "sudo parted /dev/sdg print",
        "mkfs.ext4 disk.img",
    ],
)
def test_the_same_tools_harmless_uses_are_not_flagged(line: str) -> None:
    assert flagged(UnsafeCommandCheck, line) == []


def test_cidr_ranges_lists_and_opaque_authorities_are_not_malformed() -> None:
    line = (
        "nmap 192.0.2.1-254 && ip route add 10.8.0.0/16 via 10.8.0.1 && dig -r 9.9.9.9,1.0.0.1 "
        "&& aws s3 cp s3://my_bucket/key . && pull docker://alpine:3.20 && rsync rsync://mirror:pub/ ."
    )
    assert flagged(PatternCheck, line) == []
    assert flagged(PatternCheck, "ping 10.8.0.0/40 and 192.0.2.300") != []


def test_a_command_in_a_json_string_is_decided_at_the_string_end() -> None:
    """A JSON value is its own statement: a warning in another field is not about it, and the
    verdict does not wait 160 characters (a loop in the next field would halt first)."""
    told = '{"step": "run rm -rf / now", "note": "never mind", "then": "' + "go on " * 30 + '"}'
    found = split_invariant(UnsafeCommandCheck, told + "\n")
    assert [v.severity for v in found] == ["critical"]
    check = UnsafeCommandCheck()
    early = check.feed('{"step": "run rm -rf / now", "then": "x')
    assert [v.severity for v in early] == ["critical"]  # at the closing quote, not later
    warned = '{"note": "never run rm -rf / on a server", "x": 1}\n'
    assert [v.severity for v in split_invariant(UnsafeCommandCheck, warned)] == ["minor"]


def test_ipv4_at_a_sentence_end_ranges_of_addresses_and_quoted_local_parts() -> None:
    assert flagged(PatternCheck, "echo 'the router is 10.20.30.40.'") == []
    assert flagged(PatternCheck, "echo 'the router is 256.20.30.40.'") == ["minor 256.20.30.40"]
    assert flagged(PatternCheck, "nmap 172.16.0.10-172.16.0.90") == []
    assert flagged(PatternCheck, "nmap 172.16.0.10-172.16.0.290") != []
    prose = 'Write to "ops team"@example.org or ops+alerts@example.org today.\n'
    assert split_invariant(PatternCheck, prose) == []
