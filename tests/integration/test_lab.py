"""The lab itself: VMs shaped like Azure ML compute instances, idempotent tooling."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from lab import image, podman, stand_ins, vms
from lab.paths import SSH_KEY
from lab.tls import issue_server_cert
from lab.vms import Lab, LabError, port_in_use
from tests.harness.lab import free_port_block, lab_vms

pytestmark = pytest.mark.lab


def _ssh(lab, host: str, *options: str, user: str = "azureuser") -> subprocess.CompletedProcess:
    inventory = yaml.safe_load(lab.inventory.read_text())
    port = inventory["all"]["children"]["forge_servers"]["hosts"][host]["ansible_port"]
    return subprocess.run(
        [
            "ssh",
            "-p",
            str(port),
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            f"UserKnownHostsFile={lab.lab.known_hosts_path}",
            "-o",
            "StrictHostKeyChecking=yes",
            *options,
            f"{user}@127.0.0.1",
            "id -un; sudo -n true && echo sudo-ok",
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_vm_accepts_the_lab_key_as_azureuser_with_passwordless_sudo(lab):
    result = _ssh(lab, lab.hosts[0], "-i", str(SSH_KEY))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["azureuser", "sudo-ok"]


def test_vm_refuses_password_authentication(lab):
    result = _ssh(
        lab,
        lab.hosts[0],
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "PreferredAuthentications=password,keyboard-interactive",
    )
    assert result.returncode == 255
    assert "Permission denied (publickey)" in result.stderr


def test_vm_refuses_root_login(lab):
    result = _ssh(lab, lab.hosts[0], "-i", str(SSH_KEY), user="root")
    assert result.returncode == 255
    assert "Permission denied" in result.stderr


def test_sshd_listens_on_port_50000_inside_the_vm(lab):
    listening = lab.exec(lab.hosts[0], "ss", "-ltnH")
    assert ":50000 " in listening


def test_each_vm_has_its_own_host_key_and_known_hosts_pins_it(lab):
    keys = [lab.exec(h, "cat", "/etc/ssh/ssh_host_ed25519_key.pub").split()[1] for h in lab.hosts]
    assert len(set(keys)) == len(lab.hosts)
    known = lab.lab.known_hosts_path.read_text()
    for key in keys:
        assert key in known


def test_a_changed_host_key_is_refused(lab):
    host = lab.hosts[1]
    lab.exec(host, "sh", "-c", "rm /etc/ssh/ssh_host_* && ssh-keygen -A && systemctl restart ssh")
    try:
        result = _ssh(lab, host, "-i", str(SSH_KEY))
        assert result.returncode == 255
        assert "Host key verification failed" in result.stderr
    finally:
        lab.lab.up(len(lab.hosts))  # re-pins the new key


def test_vm_runs_systemd_cron_and_journald(lab):
    for unit in ("cron", "systemd-journald", "ssh"):
        assert lab.exec(lab.hosts[0], "systemctl", "is-active", unit).strip() == "active"


def test_up_again_keeps_the_running_vms(lab):
    before = {c.name: c.image_id for c in lab.lab.containers()}
    ids = podman.podman(
        "ps", "--filter", f"label=forge-fleet.lab={lab.lab.name}", "--format", "{{.ID}}"
    )
    lab.lab.up(len(lab.hosts))
    after_ids = podman.podman(
        "ps", "--filter", f"label=forge-fleet.lab={lab.lab.name}", "--format", "{{.ID}}"
    )
    assert sorted(ids.split()) == sorted(after_ids.split())
    assert {c.name: c.image_id for c in lab.lab.containers()} == before


def test_a_vm_whose_conmon_died_still_holds_its_port(make_lab):
    # podman's conmon binds a published port to reserve it, but the traffic goes through a
    # DNAT rule. When conmon dies (its session was killed) the VM still answers on the port
    # while nothing binds it: a bind test alone calls it free, and a new VM published there
    # never gets its SSH. That is how a killed test run broke the next run's lab.
    orphan = make_lab(count=1)
    host = orphan.hosts[0]
    port = orphan.lab.base_port  # its one VM's port
    conmon = podman.podman("inspect", "--format", "{{.State.ConmonPid}}", host).strip()
    os.kill(int(conmon), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not _binds(port):  # its socket closes once the killed conmon is gone
        assert time.monotonic() < deadline, f"port {port} stayed bound after conmon was killed"
        time.sleep(0.1)
    assert port_in_use(port)
    with pytest.raises(LabError, match=f"127.0.0.1:{port} is already in use"):
        Lab(name="t-lab-port-orphaned", base_port=port).up(1)


def _binds(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_up_refuses_a_taken_port_and_creates_nothing():
    port = free_port_block(1)
    lab = Lab(name="t-lab-port-taken", base_port=port)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with pytest.raises(LabError, match=f"127.0.0.1:{port} is already in use.*--base-port"):
            lab.up(1)
    assert lab.containers() == []
    assert not lab.inventory_path.exists()


def test_a_test_lab_that_fails_to_come_up_is_removed(monkeypatch):
    def no_ssh(name, port, known_hosts):
        raise LabError(f"lab VM {name}: nothing answered")

    monkeypatch.setattr(vms, "wait_for_ssh", no_ssh)
    name = "t-lab-fails-to-come-up"
    with pytest.raises(LabError, match="nothing answered"), lab_vms(name, 1, free_port_block(1)):
        pass
    assert Lab(name=name).containers() == []


def test_inventory_points_at_loopback_with_azure_ml_connection_settings(lab):
    inventory = yaml.safe_load(lab.inventory.read_text())
    hosts = inventory["all"]["children"]["forge_servers"]["hosts"]
    assert sorted(hosts) == lab.hosts
    for host in hosts.values():
        assert host["ansible_host"] == "127.0.0.1"
        assert host["ansible_user"] == "azureuser"
    assert "StrictHostKeyChecking=yes" in inventory["all"]["vars"]["ansible_ssh_common_args"]


def test_gpu_scenario_none_removes_nvidia_smi(make_lab):
    small = make_lab(count=1, gpu=["none"])
    host = small.hosts[0]
    assert (
        small.exec(host, "sh", "-c", "command -v nvidia-smi || echo missing").strip() == "missing"
    )
    small.set_gpu(host, "t4")
    assert "Tesla T4" in small.exec(host, "nvidia-smi", "-L")


def test_down_removes_vms_and_inventory(make_lab):
    small = make_lab(count=1)
    removed = small.lab.down()
    assert removed == small.hosts
    assert not small.inventory.exists()
    assert small.lab.containers() == []


def test_image_hash_follows_the_recipe(monkeypatch, tmp_path):
    recipe = tmp_path / "image"
    recipe.mkdir()
    (recipe / "build.sh").write_text("echo one\n")
    monkeypatch.setattr(image, "RECIPE_DIRS", (recipe,))
    monkeypatch.setattr(image, "REPO_ROOT", tmp_path)
    first = image.recipe_hash()
    assert image.recipe_hash() == first
    (recipe / "build.sh").write_text("echo two\n")
    assert image.recipe_hash() != first


def test_current_image_is_reused_without_a_rebuild(capsys):
    ref = image.ensure_image()
    capsys.readouterr()
    assert image.ensure_image() == ref
    assert "building image" not in capsys.readouterr().out


def test_vm_trusts_the_lab_ca_for_https_stand_ins(lab, tmp_path):
    gateway = lab.lab.gateway
    cert, key = issue_server_cert([gateway], tmp_path)

    class Hello(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello over tls")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((gateway, 0), Hello)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"https://{gateway}:{server.server_address[1]}/"
        # Three tries: on a loaded 2-core machine a first SYN to a just-created bridge can be lost.
        script = (
            "import time, urllib.request\n"
            "for attempt in range(3):\n"
            "    try:\n"
            f"        print(urllib.request.urlopen('{url}', timeout=10).read().decode()); break\n"
            "    except OSError:\n"
            "        if attempt == 2: raise\n"
            "        time.sleep(2)\n"
        )
        assert lab.exec(lab.hosts[0], "python3", "-c", script).strip() == "hello over tls"
    finally:
        server.shutdown()


def test_stand_ins_serve_in_the_background_until_stopped(lab):
    settings_file = stand_ins.start(lab.lab)
    try:
        assert settings_file.stat().st_mode & 0o777 == 0o600
        pid = (lab.lab.state_dir / "stand-ins.pid").read_text()
        assert stand_ins.start(lab.lab) == settings_file  # already serving: nothing new
        assert (lab.lab.state_dir / "stand-ins.pid").read_text() == pid
        settings = yaml.safe_load(settings_file.read_text())
        gateway = lab.lab.gateway
        api = settings["models_huggingface_endpoint"]
        assert api.startswith(f"https://{gateway}:")
        entry = settings["models_catalog"][0]
        url = f"{api}/{entry['repo']}/resolve/main/{entry['file']}"
        # From the VM, over HTTPS with the lab CA: the resolve endpoint answers with its
        # metadata and a redirect to the storage host, as Hugging Face does.
        script = (
            "import urllib.request, urllib.error\n"
            "class Stay(urllib.request.HTTPRedirectHandler):\n"
            "    def redirect_request(self, *a): return None\n"
            "try:\n"
            f"    urllib.request.build_opener(Stay).open('{url}', timeout=10)\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code, e.headers['X-Linked-Size'])\n"
        )
        code, size = lab.exec(lab.hosts[0], "python3", "-c", script).split()
        assert code == "302" and int(size) > 0
    finally:
        assert stand_ins.stop(lab.lab) is True
    assert not settings_file.exists()
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid), 0)
    assert stand_ins.stop(lab.lab) is False


def test_stand_ins_refuse_a_lab_that_is_not_up_and_leave_nothing_behind():
    absent = Lab(name="t-never-up", base_port=51990)
    # (absent.name carries FORGE_LAB_PREFIX when one is set)
    with pytest.raises(LabError, match=f"lab '{absent.name}' is not up; run: lab/forge-lab"):
        stand_ins.start(absent)
    assert not stand_ins.vars_path(absent).exists()
    assert not (absent.state_dir / "stand-ins.pid").exists()
