"""The conda and forge stages on lab VMs: the conda double at /anaconda, the Forge stand-in
repository served by a real git daemon, its preparation installing from the lab's package
index.

Two VMs shared by the module: the first converges and then drifts; the second shows the
dry run on a fresh VM, conda missing, and a pip failure followed by a retry.
"""

from __future__ import annotations

import json

import pytest

from lab import forge_repo
from tests.harness.playbook import run_playbook

pytestmark = [pytest.mark.lab, pytest.mark.slow]

FORGE = "/home/azureuser/stable-diffusion-webui-forge"
ENV = "/anaconda/envs/forge"
RECORD = "/var/lib/forge-fleet/forge.json"
ENV_FILE = "/var/lib/forge-fleet/forge.env"
MODEL = f"{FORGE}/models/Stable-diffusion/operator-model.safetensors"
EXT = f"{FORGE}/extensions/sd-forge-standin-extension"
STAGES = "preflight,base,conda,forge"
# one git_checkout run for Forge and its extensions; the preparation is one include
CHECKOUT = "Check out Forge and the extensions at the pinned commits"
PREPARE = "Prepare Forge, or report the preparation that would run (check mode)"


@pytest.fixture(scope="module")
def served(lab, tmp_path_factory):
    with forge_repo.serving(lab.lab.gateway, tmp_path_factory.mktemp("forge") / "srv") as srv:
        yield srv


def converge(lab, served, host, *, tags=STAGES, playbook="site.yml", **extra):
    return run_playbook(
        playbook,
        lab.inventory,
        extravars={**served.settings(), "forge_prepare_poll_interval": 1, **extra.pop("vars", {})},
        tags=tags,
        limit=host,
        **extra,
    )


def as_user(lab, host, command: str, check: bool = True) -> str:
    return lab.exec(host, "runuser", "-u", "azureuser", "--", "sh", "-c", command, check=check)


def exists(lab, host, path: str) -> bool:
    return lab.exec(host, "sh", "-c", f"test -e '{path}' && echo yes || echo no").strip() == "yes"


def head(lab, host, path=FORGE) -> str:
    return as_user(lab, host, f"git -C '{path}' rev-parse HEAD").strip()


def record(lab, host) -> dict:
    return json.loads(lab.exec(host, "cat", RECORD))


# -- a fresh VM: the dry run, then conda missing ------------------------------------------


@pytest.fixture(scope="module")
def dry_run(lab, served):
    host = lab.hosts[1]
    result = converge(lab, served, host, check=True)
    assert result.ok, result.explain()
    return result


def test_check_on_a_fresh_vm_says_what_would_be_created_cloned_and_installed(lab, dry_run):
    host = lab.hosts[1]
    env = dry_run.task("Create the conda environment for Forge", host)
    assert env.changed and env.res["action"] == "created"
    clone = dry_run.task(CHECKOUT, host)
    assert clone.changed
    assert [(c["dest"], c["action"]) for c in clone.res["checkouts"]] == [
        (FORGE, "clone"),
        (EXT, "clone"),
    ]
    assert dry_run.task("Write Forge's environment file", host).changed
    prepare = dry_run.task("Report the preparation that would run (check mode)", host)
    assert prepare.changed and "torch==2.3.1" in prepare.res["msg"]


def test_check_on_a_fresh_vm_changes_nothing(lab, dry_run):
    host = lab.hosts[1]
    for path in (ENV, FORGE, RECORD):
        assert not exists(lab, host, path), path


def test_conda_missing_fails_naming_the_places_and_changes_nothing(lab, served, dry_run):
    host = lab.hosts[1]
    lab.exec(host, "mv", "/anaconda", "/anaconda.away")
    try:
        result = converge(lab, served, host, tags="conda", playbook="playbooks/conda.yml")
    finally:
        lab.exec(host, "mv", "/anaconda.away", "/anaconda")
    assert not result.ok
    failure = result.task("Create the conda environment for Forge", host)
    assert "conda not found; looked at: /anaconda/bin/conda" in failure.msg
    assert "/home/azureuser/miniforge3/bin/conda" in failure.msg
    assert "conda_executable" in failure.msg
    assert result.stats[host]["changed"] == 0
    assert not exists(lab, host, ENV)


# -- pip fails, the next run tries again ---------------------------------------------------


@pytest.fixture(scope="module")
def pip_failure(lab, served, dry_run):
    host = lab.hosts[1]
    bad = f"pip install torch==9.9.9 --extra-index-url {served.index_url}/whl/cu121"
    return converge(lab, served, host, vars={"forge_torch_command": bad})


def test_pip_failure_names_the_package_and_shows_pips_last_lines(lab, pip_failure):
    host = lab.hosts[1]
    assert not pip_failure.ok
    failure = pip_failure.task("Collect the preparation result", host)
    assert failure.failed
    assert "pip could not install torch==9.9.9 (Couldn't install torch)" in failure.msg
    assert "No matching distribution found for torch==9.9.9" in failure.msg
    assert "the next run tries again" in failure.msg


def test_pip_failure_records_nothing(lab, pip_failure):
    assert not exists(lab, lab.hosts[1], RECORD)


def test_next_run_after_a_pip_failure_prepares_again(lab, served, pip_failure):
    host = lab.hosts[1]
    result = converge(lab, served, host)
    assert result.ok, result.explain()
    assert result.task("Collect the preparation result", host).changed
    assert record(lab, host)["prepared_at"]
    assert "torch==2.3.1+cu121" in as_user(
        lab, host, f"{ENV}/bin/python -m pip list --format=freeze"
    )


# -- the first VM: converge, re-run, drift -------------------------------------------------


@pytest.fixture(scope="module")
def converged(lab, served):
    host = lab.hosts[0]
    # An operator (or the models stage) put a model where Forge will be cloned.
    as_user(
        lab,
        host,
        f"mkdir -p {FORGE}/models/Stable-diffusion && head -c 4096 /dev/urandom > {MODEL}",
    )
    model_sha = lab.exec(host, "sha256sum", MODEL).split()[0]
    result = converge(lab, served, host)
    assert result.ok, result.explain()
    return result, model_sha


def test_fresh_converge_checks_out_the_pinned_commit_as_a_real_checkout(lab, served, converged):
    host = lab.hosts[0]
    assert head(lab, host) == served.built.forge_commits[1]
    assert lab.exec(host, "stat", "-c", "%U", f"{FORGE}/.git").strip() == "azureuser"
    assert head(lab, host, EXT) == served.built.extension_commits[1]


def test_models_present_before_the_clone_are_kept(lab, converged):
    host = lab.hosts[0]
    assert lab.exec(host, "sha256sum", MODEL).split()[0] == converged[1]
    placeholder = f"{FORGE}/models/Stable-diffusion/Put Stable Diffusion checkpoints here.txt"
    assert exists(lab, host, placeholder)


def test_forges_settings_are_an_environment_file_and_its_tracked_files_stay_as_shipped(
    lab, converged
):
    host = lab.hosts[0]
    text = lab.exec(host, "cat", ENV_FILE)
    assert f'python_cmd="{ENV}/bin/python"' in text.splitlines()
    assert 'venv_dir="-"' in text.splitlines()
    assert "/whl/cu121" in text  # the t4 scenario's driver 535 runs the cu121 build
    assert "COMMANDLINE_ARGS" not in text
    assert lab.exec(host, "stat", "-c", "%U:%G %a", ENV_FILE).strip() == "root:root 644"
    assert as_user(lab, host, f"git -C {FORGE} status --porcelain --untracked-files=no") == ""
    # Forge reads an extension's active branch at every start
    assert as_user(lab, host, f"git -C {EXT} branch --show-current").strip() == "pinned"


def test_preparation_installed_torch_and_the_requirements_into_the_env(lab, converged):
    frozen = as_user(lab, lab.hosts[0], f"{ENV}/bin/python -m pip list --format=freeze")
    assert "torch==2.3.1+cu121" in frozen
    assert "forge-standin-deps==1.0.0" in frozen


def test_record_is_root_owned_world_readable_and_matches_the_facts(lab, served, converged):
    host = lab.hosts[0]
    assert lab.exec(host, "stat", "-c", "%U:%G %a", RECORD).strip() == "root:root 644"
    data = record(lab, host)
    facts = converged[0].task("Export the Forge facts for later roles", host).res["ansible_facts"]
    forge = facts["forge_fleet_forge"]
    assert data["commit"] == forge["commit"] == served.built.forge_commits[1]
    assert data["fingerprint"] == forge["fingerprint"] and len(forge["fingerprint"]) == 64
    assert forge["extensions"] == [
        {
            "name": "sd-forge-standin-extension",
            "url": served.extension_url,
            "commit": served.built.extension_commits[1],
        }
    ]
    assert data["torch_command"].startswith("pip install torch==2.3.1 torchvision==0.18.1")
    assert len(data["requirements_sha256"]) == 64 and data["prepared_at"]


PREPARE_LOG = "/home/azureuser/.cache/forge-fleet/prepare.log"
# roles/forge/tasks/prepare.yml: included only when a preparation is needed
PREPARATION = [
    "Report the preparation that would run (check mode)",
    "Start preparing Forge in the background (torch, then the requirements)",
    "Wait for the preparation, showing progress",
    "Collect the preparation result",
    "List the packages in the prepared environment",
    "Note when Forge was prepared",
]


@pytest.fixture(scope="module")
def rerun(lab, served, converged):
    host = lab.hosts[0]
    before = lab.exec(host, "stat", "-c", "%Y", PREPARE_LOG)
    again = converge(lab, served, host)
    assert again.ok, again.explain()
    return again, before


def test_rerun_changes_nothing_and_runs_no_pip(lab, rerun):
    host = lab.hosts[0]
    again, log_time = rerun
    assert again.stats[host]["changed"] == 0, again.changed_tasks(host)
    assert "Start preparing Forge in the background (torch, then the requirements)" not in [
        t.task.split(" : ")[-1] for t in again.for_host(host) if t.status == "ok"
    ]
    assert lab.exec(host, "stat", "-c", "%Y", PREPARE_LOG) == log_time


def test_rerun_checks_out_forge_and_the_extension_in_one_module_run(lab, rerun):
    host = lab.hosts[0]
    again = rerun[0]
    runs = [t for t in again.for_host(host) if t.action == "git_checkout"]
    assert [(t.task.split(" : ")[-1], t.status) for t in runs] == [(CHECKOUT, "ok")]
    assert [(c["dest"], c["action"]) for c in runs[0].res["checkouts"]] == [
        (FORGE, "present"),
        (EXT, "present"),
    ]


def test_rerun_skips_the_preparation_as_one_include(lab, rerun):
    host = lab.hosts[0]
    again = rerun[0]
    ran = [t.task.split(" : ")[-1] for t in again.for_host(host)]
    assert not set(PREPARATION) & set(ran), ran
    include = again.task(PREPARE, host)
    assert include.status == "skipped"


def test_a_bad_forge_environment_is_refused_before_any_change(lab, served, rerun):
    host = lab.hosts[0]
    bad = {"CLIP_PACKAGE": "https://u:pw-secret@mirror/CLIP.zip", "TORCH_COMMAND": "pip --version"}
    result = converge(lab, served, host, vars={"forge_environment": bad})
    assert not result.ok
    failure = result.task("Check the Forge settings", host)
    assert "CLIP_PACKAGE holds a user:password@ URL" in failure.msg
    assert "TORCH_COMMAND is set by Forge Fleet; use forge_torch_command" in failure.msg
    assert "pw-secret" not in failure.msg
    assert result.stats[host]["changed"] == 0


def test_env_with_the_wrong_python_is_recreated(lab, served, converged):
    host = lab.hosts[0]
    as_user(lab, host, "/anaconda/bin/conda create -y -q -n forge python=3.9")
    result = converge(lab, served, host, tags="conda", playbook="playbooks/conda.yml")
    assert result.ok, result.explain()
    env = result.task("Create the conda environment for Forge", host)
    assert env.changed and env.res["action"] == "recreated" and env.res["found_version"] == "3.9.18"
    version = as_user(lab, host, f"{ENV}/bin/python -c 'import sys; print(sys.version)'")
    assert version.startswith("3.10.")
    assert exists(lab, host, "/anaconda/envs/azureml_py39/bin/python")  # never touched


@pytest.fixture(scope="module")
def record_before_drift(lab, converged):
    return record(lab, lab.hosts[0])


@pytest.fixture(scope="module")
def drift_checked(lab, served, converged, record_before_drift, rerun):
    """Every kind of drift at once, then --check."""
    host = lab.hosts[0]
    as_user(lab, host, f"git -C {FORGE} checkout -q {served.built.forge_commits[0]}")
    # webui-user.sh as an earlier Forge Fleet wrote it (Forge tracks the file, and it differs
    # between the two commits: it blocked every move to another commit)
    as_user(
        lab,
        host,
        f"printf '# Written by Forge Fleet (roles/forge)\\npython_cmd=/x\\n'"
        f" > {FORGE}/webui-user.sh",
    )
    as_user(lab, host, f"rm {FORGE}/launch.py")
    as_user(lab, host, f"echo '# tuned by hand' >> {FORGE}/webui.sh")
    as_user(lab, host, f"git -C {EXT} checkout -q {served.built.extension_commits[0]}")
    as_user(lab, host, "/anaconda/bin/conda remove -y -q -n forge --all")
    result = converge(lab, served, host, check=True)
    assert result.ok, result.explain()
    return result


@pytest.fixture(scope="module")
def drifted(lab, served, drift_checked):
    """The drift of drift_checked, then one run."""
    result = converge(lab, served, lab.hosts[0])
    assert result.ok, result.explain()
    return result


def test_check_reports_the_moved_extension_and_changes_nothing(lab, served, drift_checked):
    host = lab.hosts[0]
    checkout = drift_checked.task(CHECKOUT, host)
    ext = checkout.res["checkouts"][1]
    old, new = served.built.extension_commits
    moved = f"checked out {new} on branch pinned (was {old})"
    assert ext["dest"] == EXT and ext["repaired"] == [moved]
    assert f"{EXT}: {moved}" in checkout.res["repaired"]
    assert head(lab, host, EXT) == served.built.extension_commits[0]
    assert head(lab, host) == served.built.forge_commits[0]
    assert drift_checked.task("Report the preparation that would run (check mode)", host).changed


def test_commit_drift_is_repaired_and_said(lab, served, drifted):
    host = lab.hosts[0]
    assert head(lab, host) == served.built.forge_commits[1]
    repaired = drifted.task(CHECKOUT, host).res["checkouts"][0]["repaired"]
    assert (
        f"checked out {served.built.forge_commits[1]} (was {served.built.forge_commits[0]})"
        in repaired
    )


def test_an_earlier_forge_fleets_webui_user_sh_is_given_back_and_does_not_block_the_move(
    lab, served, drifted
):
    host = lab.hosts[0]
    repaired = drifted.task(CHECKOUT, host).res["checkouts"][0]["repaired"]
    assert (
        "gave back the repository's webui-user.sh (written by an earlier Forge Fleet)" in repaired
    )
    assert head(lab, host) == served.built.forge_commits[1]
    shipped = as_user(lab, host, f"git -C {FORGE} show HEAD:webui-user.sh")
    assert lab.exec(host, "cat", f"{FORGE}/webui-user.sh") == shipped


def test_deleted_tracked_file_is_restored(lab, drifted):
    host = lab.hosts[0]
    assert exists(lab, host, f"{FORGE}/launch.py")
    repaired = drifted.task(CHECKOUT, host).res["checkouts"][0]["repaired"]
    assert "restored deleted files: launch.py" in repaired


def test_local_modification_is_listed_and_kept(lab, drifted):
    host = lab.hosts[0]
    checkout = drifted.task(CHECKOUT, host)
    assert checkout.res["checkouts"][0]["local_changes"] == ["webui.sh"]
    assert any("webui.sh" in w for w in checkout.res.get("warnings", []))
    assert lab.exec(host, "tail", "-n", "1", f"{FORGE}/webui.sh").strip() == "# tuned by hand"


def test_extension_is_back_at_its_pinned_commit(lab, served, drifted):
    assert head(lab, lab.hosts[0], EXT) == served.built.extension_commits[1]
    old, new = served.built.extension_commits
    moved = f"checked out {new} on branch pinned (was {old})"
    checkout = drifted.task(CHECKOUT, lab.hosts[0])
    assert checkout.res["checkouts"][1]["repaired"] == [moved]


def test_deleted_env_is_recreated_and_prepared_again(lab, drifted):
    host = lab.hosts[0]
    env = drifted.task("Create the conda environment for Forge", host)
    assert env.changed and env.res["action"] == "created"
    assert drifted.task("Collect the preparation result", host).changed
    frozen = as_user(lab, host, f"{ENV}/bin/python -m pip list --format=freeze")
    assert "torch==2.3.1+cu121" in frozen


def test_a_new_preparation_is_a_new_fingerprint_for_the_webui(lab, drifted, record_before_drift):
    # the env comes back with the same packages, yet Forge must restart on it (roles/webui)
    now, before = record(lab, lab.hosts[0]), record_before_drift
    assert now["environment_sha256"] == before["environment_sha256"]
    assert now["prepared_at"] > before["prepared_at"]
    assert now["fingerprint"] != before["fingerprint"]


@pytest.fixture(scope="module")
def extension_removed(lab, served, drifted):
    """The extension's folder deleted after the drift run: --check, then one run."""
    host = lab.hosts[0]
    before = record(lab, host)
    lab.exec(host, "rm", "-rf", EXT)
    checked = converge(lab, served, host, check=True)
    assert checked.ok, checked.explain()
    assert not exists(lab, host, EXT)
    repaired = converge(lab, served, host)
    assert repaired.ok, repaired.explain()
    return checked, repaired, before


def test_check_reports_the_removed_extension_as_a_clone(lab, served, extension_removed):
    host = lab.hosts[0]
    checked = extension_removed[0]
    checkout = checked.task(CHECKOUT, host)
    assert checkout.changed
    assert [(c["action"], c["commit"]) for c in checkout.res["checkouts"]] == [
        ("present", served.built.forge_commits[1]),
        ("clone", served.built.extension_commits[1]),
    ]
    assert [t.split(" : ")[-1] for t in checked.changed_tasks(host)] == [CHECKOUT]


def test_removed_extension_is_cloned_again_without_preparing(lab, served, extension_removed):
    host = lab.hosts[0]
    repaired, before = extension_removed[1], extension_removed[2]
    assert head(lab, host, EXT) == served.built.extension_commits[1]
    assert [t.split(" : ")[-1] for t in repaired.changed_tasks(host)] == [CHECKOUT]
    assert repaired.task(PREPARE, host).status == "skipped"
    assert record(lab, host) == before  # the same commits: the same fingerprint, no restart


# -- conda_install: no conda on the host, Miniforge from the lab ---------------------------
# Last in the module: it takes conda away from the second VM. /anaconda keeps only its
# package cache (the image's real Pythons, which the installer stand-in links in).

MINIFORGE = "/home/azureuser/miniforge3"
LEFTOVERS = "ls -A /home/azureuser | grep -c '^.miniforge-installer-' || true"


def install_run(lab, served, host, **extra):
    return converge(
        lab,
        served,
        host,
        tags="conda",
        playbook="playbooks/conda.yml",
        vars={"conda_install": True, **extra.pop("vars", {})},
        **extra,
    )


@pytest.fixture(scope="module")
def no_conda(lab, served, pip_failure):
    host = lab.hosts[1]
    lab.exec(host, "find", "/anaconda", "-mindepth", "1", "-maxdepth", "1", "!", "-name", "pkgs",
             "-exec", "rm", "-rf", "{}", "+")  # fmt: skip
    assert not exists(lab, host, "/anaconda/bin/conda")
    return host


@pytest.fixture(scope="module")
def install_dry_run(lab, served, no_conda):
    return install_run(lab, served, no_conda, check=True)


@pytest.fixture(scope="module")
def wrong_hash(lab, served, install_dry_run):
    return install_run(lab, served, lab.hosts[1], vars={"conda_installer_sha256": "0" * 64})


@pytest.fixture(scope="module")
def installed(lab, served, wrong_hash):
    result = install_run(lab, served, lab.hosts[1])
    assert result.ok, result.explain()
    return result


def test_install_check_says_it_would_install_and_changes_nothing(lab, served, install_dry_run):
    host = lab.hosts[1]
    assert install_dry_run.ok, install_dry_run.explain()
    task = install_dry_run.task("Create the conda environment for Forge", host)
    assert task.changed and task.res["installed"] is True
    assert f"would install Miniforge from {served.miniforge_url} into {MINIFORGE}" in task.msg
    assert not exists(lab, host, MINIFORGE)
    assert lab.exec(host, "sh", "-c", LEFTOVERS).strip() == "0"


def test_install_without_a_hash_is_refused_before_anything_changes(lab, served, install_dry_run):
    host = lab.hosts[1]
    result = install_run(lab, served, host, vars={"conda_installer_sha256": ""})
    assert not result.ok
    failure = result.task("Check the Miniforge installer settings", host)
    assert "conda_installer_url and conda_installer_sha256 are required" in failure.msg
    assert result.stats[host]["changed"] == 0
    assert not exists(lab, host, MINIFORGE)


def test_wrong_hash_fails_naming_both_hashes_and_leaves_nothing(lab, served, wrong_hash):
    host = lab.hosts[1]
    assert not wrong_hash.ok
    failure = wrong_hash.task("Create the conda environment for Forge", host)
    assert f"has sha256 {served.miniforge_sha256}, expected {'0' * 64}" in failure.msg
    assert "It was not run and was deleted; nothing was installed" in failure.msg
    assert wrong_hash.stats[host]["changed"] == 0
    assert not exists(lab, host, MINIFORGE)
    assert lab.exec(host, "sh", "-c", LEFTOVERS).strip() == "0"


def test_install_puts_miniforge_in_the_users_home_and_creates_the_env(lab, installed):
    host = lab.hosts[1]
    task = installed.task("Create the conda environment for Forge", host)
    assert task.changed and task.res["installed"] is True and task.res["action"] == "created"
    assert task.res["executable"] == f"{MINIFORGE}/bin/conda"
    assert task.res["prefix"] == f"{MINIFORGE}/envs/forge"
    assert lab.exec(host, "stat", "-c", "%U", MINIFORGE, f"{MINIFORGE}/bin/conda").split() == [
        "azureuser",
        "azureuser",
    ]
    envs = json.loads(as_user(lab, host, f"{MINIFORGE}/bin/conda env list --json"))["envs"]
    assert envs == [MINIFORGE, f"{MINIFORGE}/envs/forge"]
    version = as_user(lab, host, f"{MINIFORGE}/envs/forge/bin/python -V")
    assert version.strip().startswith("Python 3.10.")
    assert lab.exec(host, "sh", "-c", LEFTOVERS).strip() == "0"


def test_rerun_after_install_finds_it_and_changes_nothing(lab, served, installed):
    host = lab.hosts[1]
    # The installer's URL now answers 404: a re-run that downloaded anything would fail.
    again = install_run(
        lab, served, host, vars={"conda_installer_url": f"{served.index_url}/gone.sh"}
    )
    assert again.ok, again.explain()
    assert again.stats[host]["changed"] == 0, again.changed_tasks(host)
    task = again.task("Create the conda environment for Forge", host)
    assert task.res["installed"] is False and task.res["action"] == "present"
    assert task.res["executable"] == f"{MINIFORGE}/bin/conda"
