"""/proc's hidepid options read from real mountinfo lines, and the fstab line kept for them."""

from __future__ import annotations

import pytest

from forge_fleet.proc_mount import (
    ProcMountError,
    as_declared,
    fstab_with,
    live_matches,
    mount_options,
    proc_options,
)

# Lines as Linux 6.1 writes them: a podman container's /proc before and after the remount,
# with the masked /proc/acpi bind mount podman stacks on top.
PLAIN = """\
170 169 0:75 / / rw,relatime - overlay overlay rw,lowerdir=/a,upperdir=/b,workdir=/c
173 170 0:76 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
181 173 0:80 / /proc/acpi ro,relatime - tmpfs tmpfs ro,size=0k,uid=1000
"""
HIDDEN = PLAIN.replace("- proc proc rw\n", "- proc proc rw,gid=997,hidepid=invisible\n")
# A kernel older than 5.8 prints the number.
OLD_KERNEL = PLAIN.replace("- proc proc rw\n", "- proc proc rw,hidepid=2\n")


def test_plain_proc_hides_nothing():
    assert proc_options(PLAIN) == {"hidepid": "off", "gid": None}


def test_hidepid_and_gid_are_read_by_name_or_number():
    assert proc_options(HIDDEN) == {"hidepid": "invisible", "gid": 997}
    assert proc_options(OLD_KERNEL) == {"hidepid": "invisible", "gid": None}


def test_the_last_proc_mount_on_proc_wins():
    stacked = PLAIN + "190 173 0:90 / /proc rw - proc proc rw,hidepid=noaccess\n"
    assert proc_options(stacked)["hidepid"] == "noaccess"


def test_mountinfo_without_proc_is_an_error():
    with pytest.raises(ProcMountError, match="no proc file system"):
        proc_options(PLAIN.splitlines()[0] + "\n")


def test_mount_options_use_the_numbers_every_kernel_accepts():
    assert mount_options("invisible", 997) == "hidepid=2,gid=997"
    assert mount_options("off", None) == "hidepid=0"


def test_fstab_gains_one_proc_line_and_keeps_the_rest():
    fstab = "# comment\nUUID=abc / ext4 defaults 0 1\n"
    wanted = fstab_with(fstab, "invisible", 997)
    assert wanted == fstab + "proc /proc proc defaults,hidepid=2,gid=997 0 0\n"
    assert fstab_with(wanted, "invisible", 997) == wanted  # idempotent


def test_fstab_proc_lines_are_replaced_by_one_and_removed_when_off():
    fstab = "proc /proc proc defaults 0 0\nUUID=abc / ext4 defaults 0 1\nnone  /proc proc rw 0 0\n"
    assert fstab_with(fstab, "invisible", None) == (
        "proc /proc proc defaults,hidepid=2 0 0\nUUID=abc / ext4 defaults 0 1\n"
    )
    assert fstab_with(fstab, "off", None) == "UUID=abc / ext4 defaults 0 1\n"


FSTAB = "UUID=abc / ext4 defaults 0 1\n"
KEPT = FSTAB + "proc /proc proc defaults,hidepid=2,gid=997 0 0\n"


def test_live_options_match_by_hidepid_and_gid_and_off_ignores_the_gid():
    assert live_matches({"hidepid": "invisible", "gid": 997}, "invisible", 997)
    assert not live_matches({"hidepid": "invisible", "gid": 996}, "invisible", 997)
    assert not live_matches({"hidepid": "invisible", "gid": None}, "invisible", 997)
    assert not live_matches({"hidepid": "noaccess", "gid": 997}, "invisible", 997)
    assert live_matches({"hidepid": "off", "gid": 997}, "off", None)
    assert not live_matches({"hidepid": "invisible", "gid": 997}, "off", None)


def test_as_declared_when_the_live_mount_and_the_fstab_line_both_hold_the_options():
    assert as_declared(HIDDEN, KEPT, "invisible", 997)


def test_not_as_declared_when_the_live_mount_lacks_the_options():
    assert not as_declared(PLAIN, KEPT, "invisible", 997)
    assert not as_declared(HIDDEN, KEPT, "invisible", 998)
    assert not as_declared(HIDDEN, KEPT, "noaccess", 997)


def test_not_as_declared_when_the_fstab_line_is_missing_changed_or_doubled():
    assert not as_declared(HIDDEN, FSTAB, "invisible", 997)
    assert not as_declared(HIDDEN, "", "invisible", 997)
    assert not as_declared(HIDDEN, KEPT.replace("gid=997", "gid=5"), "invisible", 997)
    assert not as_declared(HIDDEN, KEPT + "proc /proc proc defaults 0 0\n", "invisible", 997)
    assert not as_declared(HIDDEN, KEPT.rstrip("\n"), "invisible", 997)  # fstab_with adds it


def test_off_is_as_declared_only_without_hidepid_live_and_without_an_fstab_proc_line():
    assert as_declared(PLAIN, FSTAB, "off", None)
    assert as_declared(PLAIN, FSTAB, "off", 997)  # the gid does not matter when off
    assert as_declared(PLAIN, "", "off", None)  # no fstab at all
    assert not as_declared(HIDDEN, FSTAB, "off", None)
    assert not as_declared(PLAIN, KEPT, "off", None)


def test_what_cannot_be_judged_is_not_as_declared_so_the_module_runs_and_says_why():
    assert not as_declared(PLAIN.splitlines()[0] + "\n", FSTAB, "off", None)  # no /proc
    assert not as_declared(PLAIN, FSTAB, "hidden", None)  # not a hidepid value
