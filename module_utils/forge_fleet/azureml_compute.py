"""Azure ML compute instances: the one implementation behind the inventory plugin and the
``azureml_compute`` module.

Both run on the controller, not on the VMs. This file sits in ``module_utils/`` so the module
gets it the usual way (``ansible.module_utils.forge_fleet.azureml_compute``); the inventory
plugin loads the same file by path (Ansible gives controller plugins no import path to
``module_utils/``). It stays standard-library-only at import time: the Azure SDK
(``azure-mgmt-machinelearningservices``, ``azure-identity``) is imported inside the functions
that talk to Azure, so importing this file on a VM or in a unit test costs nothing.

Pure functions (``summarize``, ``inventory_host``, ``plan``, ``explain_error``,
``check_roster``) hold the decisions; ``Fleet`` does the calls.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections.abc import Callable
from typing import Any

DEFAULT_BASE_URL = "https://management.azure.com"
STATES = ("present", "started", "stopped", "absent")
# Where an instance in a passing state is heading (what a real run would wait for).
TRANSITIONAL = {
    "Creating": "Running",
    "SettingUp": "Running",
    "Starting": "Running",
    "Restarting": "Running",
    "JobRunning": "Running",
    "UserSettingUp": "Running",
    "Stopping": "Stopped",
    "Deleting": None,
}
BROKEN = ("SetupFailed", "Unusable", "Failed", "CreateFailed", "Unknown")
# Azure's rule for compute instance names: 3-24 letters, digits and '-', starting with a letter,
# ending with a letter or digit, and every '-' followed by at least one letter before the next
# '-' or the end ("'-' needs to be followed by at least one letter": sd-class-01 is refused).
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(-[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*)*$")
_KEY_TYPES = ("ssh-rsa", "ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384")

LOGIN_HELP = (
    "Log in with `az login` (then `az account set --subscription <id>`), or set "
    "AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_CLIENT_SECRET for a service principal "
    "(from the vault), then run again."
)


class AzureMLError(Exception):
    """An error already worded for the operator."""


# -- pure decisions ---------------------------------------------------------------------


def summarize(resource: dict[str, Any]) -> dict[str, Any]:
    """The facts we use from a ComputeResource (``as_dict()`` shape, snake_case keys)."""
    outer = resource.get("properties") or {}
    inner = outer.get("properties") or {}
    ssh = inner.get("ssh_settings") or {}
    endpoints = inner.get("connectivity_endpoints") or {}
    personal = inner.get("personal_compute_instance_settings") or {}
    assigned = personal.get("assigned_user") or {}
    return {
        "name": resource.get("name"),
        "id": resource.get("id"),
        "location": resource.get("location") or outer.get("compute_location"),
        "tags": resource.get("tags") or {},
        "compute_type": outer.get("compute_type"),
        "provisioning_state": outer.get("provisioning_state"),
        "state": inner.get("state"),
        "vm_size": inner.get("vm_size"),
        "ssh_public_access": ssh.get("ssh_public_access"),
        "ssh_port": ssh.get("ssh_port"),
        "admin_user": ssh.get("admin_user_name"),
        "public_ip": endpoints.get("public_ip_address"),
        "private_ip": endpoints.get("private_ip_address"),
        "assigned_object_id": assigned.get("object_id"),
        "assigned_tenant_id": assigned.get("tenant_id"),
    }


def inventory_host(
    info: dict[str, Any], use_private_ip: bool = False, states: tuple = ("Running",)
) -> tuple:
    """(host variables, None) for a reachable instance, or (variables, why it is skipped)."""
    variables = {
        "azureml_vm_size": info["vm_size"],
        "azureml_state": info["state"],
        "azureml_assigned_user": info["assigned_object_id"],
        "azureml_location": info["location"],
        "azureml_tags": info["tags"],
        "azureml_id": info["id"],
    }
    if info["compute_type"] != "ComputeInstance":
        return variables, f"is a {info['compute_type']}, not a compute instance"
    if info["state"] not in states:
        return variables, f"is {info['state']} (not {' or '.join(states)})"
    if info["ssh_public_access"] != "Enabled" or not info["ssh_port"]:
        return variables, "has no SSH access (create it with SSH enabled and a public key)"
    address = info["private_ip"] if use_private_ip else info["public_ip"]
    if not address:
        kind = "private" if use_private_ip else "public"
        return variables, f"has no {kind} IP address"
    variables.update(
        ansible_host=address,
        ansible_port=int(info["ssh_port"]),
        ansible_user=info["admin_user"] or "azureuser",
    )
    return variables, None


def settled_state(state: str | None) -> str | None:
    """Where an instance ends up: ``None`` for absent, the stable state otherwise."""
    if state in TRANSITIONAL:
        return TRANSITIONAL[state]
    return state


def plan(desired: str, current: str | None) -> str | None:
    """The write that takes an instance from settled ``current`` (None: absent) to ``desired``.

    Returns one of create, start, stop, delete, or None when nothing is to be done.
    """
    if desired == "absent":
        return None if current is None else "delete"
    if current is None:
        return None if desired == "stopped" else "create"
    if current in BROKEN and desired != "stopped":
        raise AzureMLError(
            f"is {current}: it cannot be started; delete it (state absent with "
            "allow_delete) and run again to re-create it"
        )
    if desired == "started" and current == "Stopped":
        return "start"
    if desired == "stopped" and current == "Running":
        return "stop"
    return None


def summary(
    instances: dict[str, dict[str, Any]],
    failed: dict[str, str],
    desired: str,
    progress: list[str],
    check_mode: bool,
) -> list[str]:
    """What the run did, or in check mode would do, in lines that agree with ``instances``."""
    if check_mode:
        lines = [
            f"Would {result['action']} {name}"
            for name, result in sorted(instances.items())
            if result["action"]
        ]
        lines += [f"Would fail {name}: {failed[name]}" for name in sorted(failed)]
        if lines:
            return [*lines, "Check mode: nothing was changed."]
        return [f"Nothing to do: every instance is already {desired}."]
    if progress:
        return progress
    if failed:
        return [f"{name}: {failed[name]}" for name in sorted(failed)]
    return [f"Nothing to do: every instance is already {desired}."]


QUOTA_HELP = (
    "Ask for more in the Azure portal: Quotas -> Machine learning, choose the region and the "
    "VM family, then 'Request quota increase' (approval can take a day or more); or create "
    "fewer instances, or give them a size from a family with free quota."
)


def _usage_lines(usages: list[dict[str, Any]], workspace: str) -> tuple:
    """(region's family lines, the workspace's family lines, the regional total line)."""
    lines: dict[str, dict[str, Any]] = {}
    own: dict[str, dict[str, Any]] = {}
    total = None
    mine = f"/workspaces/{workspace.lower()}/usages/"
    for usage in usages:
        kind = str(usage.get("type") or "").lower()
        value = str((usage.get("name") or {}).get("value") or "").lower()
        if kind.endswith("/totaldedicatedcores/usages"):
            total = usage
        elif kind.endswith(("/vmfamily/dedicatedcores/usages", "/vmfamily/usages")):
            lines[value] = usage
        elif (
            workspace
            and kind.endswith("dedicatedcores/usages")
            and "/computes/" not in kind
            and mine in str(usage.get("id") or "").lower()
        ):
            own[value] = usage
    return lines, own, total


def quota_problems(
    creates: list[tuple[str, str]],
    sizes: dict[str, dict[str, Any]],
    usages: list[dict[str, Any]],
    location: str,
    workspace: str = "",
) -> list[str]:
    """Why the instances to create (name, VM size) do not fit the region's vCPU quota.

    ``sizes``: VM size name (lower case) -> {family, vcpus}, from the vmSizes operation.
    ``usages``: the usages operation's lines (``as_dict()`` shape): the family lines
    (type ``.../vmFamily/dedicatedCores/usages``) and the regional total
    (``.../totalDedicatedCores/usages``), and the workspace's own family lines
    (``.../workspaces/dedicatedCores/usages``, id ``.../workspaces/<workspace>/usages/...``)
    where a workspace quota is set. Compute instances use dedicated vCPUs of their size's
    family; a limit below 0 means none is set.
    """
    problems: list[str] = []
    unknown: dict[str, list[str]] = {}
    families: dict[str, dict[str, Any]] = {}
    for name, size in creates:
        info = sizes.get(size.lower())
        if info is None:
            unknown.setdefault(size, []).append(name)
            continue
        family = families.setdefault(info["family"].lower(), {"spelled": info["family"]})
        family["vcpus"] = family.get("vcpus", 0) + info["vcpus"]
        counts = family.setdefault("sizes", {})
        counts[size] = (counts.get(size, (0, info["vcpus"]))[0] + 1, info["vcpus"])
    for size, names in sorted(unknown.items()):
        problems.append(
            f"VM size {size} ({', '.join(names)}) is not offered in {location}: choose a size "
            "the region offers (Azure ML studio, Compute -> New lists them)"
        )
    lines, own, total = _usage_lines(usages, workspace)
    for key, family in sorted(families.items()):
        made = ", ".join(
            f"{n} x {s} ({v} vCPUs each)" for s, (n, v) in sorted(family["sizes"].items())
        )
        need = family["vcpus"]
        usage = lines.get(key)
        if usage is None:
            problems.append(
                f"family {family['spelled']} in {location}: {made} need {need} vCPUs and "
                "Azure lists no quota for this family there (0 vCPUs)"
            )
            continue
        used, limit = int(usage.get("current_value") or 0), int(usage.get("limit") or 0)
        if 0 <= limit < used + need:
            problems.append(
                f"family {family['spelled']} in {location}: {made} need {need} vCPUs; "
                f"{used} of its {limit} are in use, {max(limit - used, 0)} free"
            )
        usage = own.get(key)
        used = int((usage or {}).get("current_value") or 0)
        limit = int((usage or {}).get("limit") if usage else -1)
        if 0 <= limit < used + need:
            problems.append(
                f"family {family['spelled']} in workspace {workspace} (its own quota): {made} "
                f"need {need} vCPUs; {used} of the workspace's {limit} are in use, "
                f"{max(limit - used, 0)} free (a subscription owner raises it in Azure ML "
                "studio, Quota, workspace view)"
            )
    need_all = sum(f["vcpus"] for f in families.values())
    if total is not None and need_all:
        used, limit = int(total.get("current_value") or 0), int(total.get("limit") or 0)
        if 0 <= limit < used + need_all:
            problems.append(
                f"all families together in {location} (Total Cluster Dedicated Regional "
                f"vCPUs): the instances to create need {need_all} vCPUs; {used} of {limit} "
                f"are in use, {max(limit - used, 0)} free"
            )
    return problems


def check_ssh_public_key(key: str) -> None:
    """Fail before any call when ``key`` is not one OpenSSH public key line."""
    parts = (key or "").split()
    if len(parts) < 2 or parts[0] not in _KEY_TYPES:
        raise AzureMLError(
            "The SSH public key is not an OpenSSH public key line (expected 'ssh-rsa AAAA... "
            "comment', the content of your .pub file, not the private key or a file path)."
        )
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError) as error:
        raise AzureMLError(f"The SSH public key's base64 part is damaged: {error}.") from None
    if blob[4 : 4 + len(parts[0])] != parts[0].encode():
        raise AzureMLError("The SSH public key's type does not match its content.")


def name_problem(name: str) -> str:
    """Why Azure would refuse ``name`` as a compute instance name ('' when it accepts it)."""
    if not 3 <= len(name) <= 24:
        return f"the name has {len(name)} characters; Azure takes 3-24"
    if not re.match(r"^[A-Za-z0-9-]*$", name):
        return "the name may hold only letters, digits and '-'"
    if not name[0].isalpha():
        return "the name must start with a letter"
    if name.endswith("-"):
        return "the name must end with a letter or digit"
    if not _NAME.match(name):
        return (
            "every '-' must be followed by at least one letter before the next '-' or the end "
            "(Azure: \"'-' needs to be followed by at least one letter\")"
        )
    return ""


def suggest_name(name: str) -> str:
    """A name Azure accepts, as close to ``name`` as possible ('' when none is found).

    Other characters become '-', a leading digit gets a letter before it, and a part after a
    '-' that has no letter is joined to the part before it: ``sd-class-01`` -> ``sd-class01``.
    """
    text = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")
    if text and not text[0].isalpha():
        text = "s" + text
    parts = [p for p in text.split("-") if p]
    joined: list[str] = []
    for part in parts:
        if joined and not re.search(r"[A-Za-z]", part):
            joined[-1] += part
        else:
            joined.append(part)
    candidate = "-".join(joined)[:24].rstrip("-")
    if len(candidate) < 3:
        candidate = (candidate + "01")[:24]
    return candidate if candidate != name and _NAME.match(candidate) else ""


def check_roster(instances: list[dict[str, Any]], state: str, default_vm_size: str) -> None:
    """Bad roster entries are reported together, before any call to Azure."""
    problems = []
    seen = set()
    for index, entry in enumerate(instances, 1):
        name = str(entry.get("name") or "")
        where = f"roster entry {index} ({name or 'no name'})"
        why = name_problem(name)
        if why:
            better = suggest_name(name)
            problems.append(
                f"{where}: Azure refuses this name: {why}"
                + (f"; use for example {better}" if better else "")
            )
        if name in seen:
            problems.append(f"{where}: the name appears twice")
        seen.add(name)
        if bool(entry.get("object_id")) != bool(entry.get("tenant_id")):
            problems.append(f"{where}: give both object_id and tenant_id, or neither")
        if state in ("present", "started") and not (entry.get("vm_size") or default_vm_size):
            problems.append(f"{where}: no vm_size")
    if problems:
        raise AzureMLError(
            "The roster has problems: "
            + "; ".join(problems)
            + ". Correct these entries (fleet_roster_students in group_vars/all/fleet_roster.yml)"
            " and run again; nothing was created or changed."
        )


def explain_error(error: BaseException, where: str = "", vm_size: str = "") -> str:
    """An operator-readable sentence for an Azure SDK or credential error."""
    kind = type(error).__name__
    status = getattr(error, "status_code", None)
    detail = getattr(error, "error", None)
    code = str(getattr(detail, "code", "") or "")
    message = str(getattr(detail, "message", "") or getattr(error, "message", "") or error)
    text = f"{code} {message}".lower()
    place = f" {where}" if where else ""
    if kind in ("CredentialUnavailableError", "ClientAuthenticationError") or status == 401:
        if status == 401:
            return f"Azure refused the sign-in{place} (HTTP 401 {code}): {LOGIN_HELP}"
        return f"Not logged in to Azure: {message.splitlines()[0]} {LOGIN_HELP}"
    if status == 403:
        return (
            f"No access{place} (HTTP 403 {code}): the signed-in account lacks a role there. "
            "Ask the workspace owner for 'AzureML Compute Operator' (or Contributor) on the "
            "workspace, or sign in with the right account (`az account show`)."
        )
    if "quota" in text:
        size = f" for {vm_size}" if vm_size else ""
        return (
            f"Quota exceeded{size}{place}: {message} Request more cores for this VM family "
            "(Azure portal -> Quotas -> Machine learning), choose another size, or fewer "
            "instances."
        )
    if status == 409 and ("already" in text or "in use" in text or "exists" in text):
        return (
            f"The name is already taken{place}: {message} Compute instance names are unique "
            "in an Azure region: give this student another name in the roster."
        )
    if "ssh" in text and status == 400:
        return (
            f"Azure rejected the SSH public key{place}: {message} Give the content of an "
            "OpenSSH .pub file (ssh-rsa AAAA... is accepted everywhere)."
        )
    if status == 404:
        return (
            f"Not found{place} (HTTP 404 {code}): {message} Check the subscription id, "
            "resource group and workspace names."
        )
    if status == 429:
        return (
            f"Azure kept throttling{place} (HTTP 429) after retries: wait a minute and run again."
        )
    if status:
        return f"Azure answered HTTP {status} {code}{place}: {message}"
    return f"{kind}{place}: {message}"


def is_fatal(error: BaseException) -> bool:
    """Errors about the sign-in or the workspace: every instance would fail the same way."""
    kind = type(error).__name__
    status = getattr(error, "status_code", None)
    return kind in ("CredentialUnavailableError", "ClientAuthenticationError") or status in (
        401,
        403,
    )


# -- talking to Azure (the SDK is imported here, on the controller only) ------------------


def make_credential(
    auth_source: str = "auto",
    client_id: str = "",
    tenant_id: str = "",
    client_secret: str = "",
    access_token: str = "",
) -> Any:
    """A token credential: DefaultAzureCredential unless told otherwise."""
    if auth_source == "token" or (auth_source == "auto" and access_token):
        if not access_token:
            raise AzureMLError("auth_source is token but no access_token was given.")
        from azure.core.credentials import AccessToken  # noqa: PLC0415  the SDK loads on the controller only

        class StaticTokenCredential:
            """A token obtained elsewhere (``az account get-access-token``) used as is."""

            def get_token(self, *scopes: str, **kwargs: Any) -> Any:
                return AccessToken(access_token, int(time.time()) + 3600)

        return StaticTokenCredential()
    from azure import identity  # noqa: PLC0415  the SDK loads on the controller only

    if auth_source == "service_principal" or (auth_source == "auto" and client_secret):
        missing = [
            n
            for n, v in (
                ("client_id", client_id),
                ("tenant_id", tenant_id),
                ("secret", client_secret),
            )
            if not v
        ]
        if missing:
            raise AzureMLError(
                "A service principal needs client_id, tenant_id and secret; missing: "
                + ", ".join(missing)
                + "."
            )
        return identity.ClientSecretCredential(tenant_id, client_id, client_secret)
    if auth_source == "cli":
        return identity.AzureCliCredential()
    return identity.DefaultAzureCredential()


def make_client(
    credential: Any,
    subscription_id: str,
    base_url: str = DEFAULT_BASE_URL,
    ca_bundle: str = "",
    polling_interval: float = 15,
) -> Any:
    from azure.mgmt.machinelearningservices import MachineLearningServicesMgmtClient  # noqa: PLC0415  the SDK loads on the controller only

    extra: dict[str, Any] = {}
    if ca_bundle:
        extra["connection_verify"] = ca_bundle
    return MachineLearningServicesMgmtClient(
        credential,
        subscription_id,
        base_url=base_url.rstrip("/"),
        credential_scopes=[DEFAULT_BASE_URL + "/.default"],
        polling_interval=polling_interval,
        **extra,
    )


def list_instances(client: Any, resource_group: str, workspace: str) -> list[dict[str, Any]]:
    """Every compute of a workspace (all pages), summarized."""
    pages = client.machine_learning_compute.list_by_workspace(resource_group, workspace)
    return [summarize(item.as_dict()) for item in pages]


class Fleet:
    """Converge one workspace's instances to a state; writes only where the state differs."""

    def __init__(
        self,
        client: Any,
        resource_group: str,
        workspace: str,
        location: str = "",
        *,
        check_mode: bool = False,
        wait_timeout: float = 1800,
        poll_interval: float = 15,
        say: Callable[[str], None] = lambda line: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.ops = client.machine_learning_compute
        self.rg = resource_group
        self.ws = workspace
        self.location = location
        self.check_mode = check_mode
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval
        self.say = say
        self.clock = clock
        self.start = clock()
        self.vm_size = ""
        self.ssh_key = ""
        self.unwritten: set = set()  # writes Azure refused: nothing changed there

    def _line(self, name: str, text: str) -> None:
        self.say(f"[{int(self.clock() - self.start):>4d}s] {name}: {text}")

    def get(self, name: str) -> dict[str, Any] | None:
        from azure.core.exceptions import ResourceNotFoundError  # noqa: PLC0415  the SDK loads on the controller only

        try:
            return summarize(self.ops.get(self.rg, self.ws, name).as_dict())
        except ResourceNotFoundError:
            return None

    def _create(self, entry: dict[str, Any], vm_size: str, ssh_key: str) -> Any:
        from azure.mgmt.machinelearningservices import models  # noqa: PLC0415  the SDK loads on the controller only

        personal = None
        if entry.get("object_id"):
            personal = models.PersonalComputeInstanceSettings(
                assigned_user=models.AssignedUser(
                    object_id=entry["object_id"], tenant_id=entry["tenant_id"]
                )
            )
        resource = models.ComputeResource(
            location=self.location,
            tags=entry.get("tags") or None,
            properties=models.ComputeInstance(
                properties=models.ComputeInstanceProperties(
                    vm_size=entry.get("vm_size") or vm_size,
                    ssh_settings=models.ComputeInstanceSshSettings(
                        ssh_public_access="Enabled", admin_public_key=ssh_key
                    ),
                    personal_compute_instance_settings=personal,
                )
            ),
        )
        return self.ops.begin_create_or_update(self.rg, self.ws, entry["name"], resource)

    def _read(
        self, entries: list[dict[str, Any]], failed: dict[str, str]
    ) -> dict[str, dict[str, Any] | None]:
        """Read every instance first: sign-in and access problems stop here, before any write."""
        current: dict[str, dict[str, Any] | None] = {}
        for entry in entries:
            name = entry["name"]
            try:
                current[name] = self.get(name)
            except Exception as error:
                if is_fatal(error):
                    raise AzureMLError(
                        explain_error(error, f"on workspace {self.ws} ({self.rg})")
                    ) from None
                failed[name] = explain_error(error, f"reading {name}")
        return current

    def _decide(
        self,
        entries: list[dict[str, Any]],
        desired: str,
        current: dict[str, dict[str, Any] | None],
        results: dict[str, dict[str, Any]],
        failed: dict[str, str],
    ) -> dict[str, str | None]:
        """The write each instance needs, judged on where it is heading."""
        actions: dict[str, str | None] = {}
        for entry in entries:
            name = entry["name"]
            if name in failed:
                continue
            info = current[name]
            state = None if info is None else settled_state(info["state"])
            try:
                actions[name] = plan(desired, state)
            except AzureMLError as error:
                failed[name] = f"{name} {error}"
                continue
            results[name] = {
                "action": actions[name],
                "state_before": None if info is None else info["state"],
                "changed": actions[name] is not None,
            }
        return actions

    def converge(
        self,
        entries: list[dict[str, Any]],
        desired: str,
        vm_size: str = "",
        ssh_public_key: str = "",
        allow_delete: bool = False,
    ) -> dict[str, Any]:
        """Returns {changed, instances: {name: result}, failed: {name: message}}."""
        self.vm_size, self.ssh_key = vm_size, ssh_public_key
        results: dict[str, dict[str, Any]] = {}
        failed: dict[str, str] = {}
        current = self._read(entries, failed)
        actions = self._decide(entries, desired, current, results, failed)
        doomed = sorted(n for n, a in actions.items() if a == "delete")
        if doomed and not allow_delete:
            raise AzureMLError(
                f"Refusing to delete {len(doomed)} compute instance(s) in {self.ws}: "
                + ", ".join(doomed)
                + ". Deleting loses everything on their disks. If that is what you want, "
                "run again with allow_delete: true (fleet_roster_allow_delete=true)."
            )
        if desired in ("present", "started") and any(a == "create" for a in actions.values()):
            check_ssh_public_key(ssh_public_key)
            if not self.location:
                raise AzureMLError("Creating instances needs the workspace's location (region).")
            creates = [
                (e["name"], e.get("vm_size") or vm_size)
                for e in entries
                if actions.get(e["name"]) == "create"
            ]
            self._check_quota(creates)
        if self.check_mode:
            return self._result(results, failed)
        # Write, then wait for everything together.
        waiting: dict[str, dict[str, Any]] = {}
        for entry in entries:
            name = entry["name"]
            if name in failed:
                continue
            info = current[name]
            if actions[name] is None:
                if info is not None and info["state"] in TRANSITIONAL and desired != "present":
                    waiting[name] = {"target": settled_state(info["state"]), "seen": info["state"]}
                    self._line(name, f"{info['state']}, waiting")
                else:
                    results[name]["state"] = None if info is None else info["state"]
                continue
            if info is not None and info["state"] in TRANSITIONAL:
                # Let it settle first (a Stopping instance cannot be started yet).
                waiting[name] = {"then": actions[name], "target": settled_state(info["state"])}
                waiting[name]["seen"] = info["state"]
                self._line(name, f"{info['state']}, waiting before {actions[name]}")
                continue
            self._write(entry, actions[name], waiting, failed)
        self._wait(entries, waiting, results, failed)
        return self._result(results, failed)

    def _check_quota(self, creates: list[tuple[str, str]]) -> None:
        """Refuse, before any write (and in check mode too), what the region's quota cannot hold."""
        where = f"reading the VM sizes and vCPU quota of {self.location}"
        try:
            # The raw answer: sizes sit under amlCompute (what SDK 1.0.1 reads) or value (the
            # REST examples); either is taken.
            body = self.client.virtual_machine_sizes.list(
                self.location, cls=lambda response, _model, _headers: response.http_response.json()
            )
            usages = [u.as_dict() for u in self.client.usages.list(self.location)]
        except Exception as error:
            raise AzureMLError(explain_error(error, where)) from None
        sizes = {
            str(s.get("name") or "").lower(): {
                "family": s.get("family") or "",
                "vcpus": s.get("vCPUs") or 0,
            }
            for s in (body or {}).get("amlCompute") or (body or {}).get("value") or []
        }
        problems = quota_problems(creates, sizes, usages, self.location, self.ws)
        if problems:
            raise AzureMLError(
                f"Not enough vCPU quota for the {len(creates)} instance(s) to create in "
                f"{self.ws}; nothing was created or changed: "
                + "; ".join(problems)
                + ". "
                + QUOTA_HELP
            )

    def _write(
        self,
        entry: dict[str, Any],
        action: str,
        waiting: dict[str, dict[str, Any]],
        failed: dict[str, str],
    ) -> None:
        name = entry["name"]
        size = entry.get("vm_size") or self.vm_size
        try:
            if action == "create":
                waiting[name] = {
                    "poller": self._create(entry, size, self.ssh_key),
                    "target": "Running",
                }
            elif action == "delete":
                poller = self.ops.begin_delete(
                    self.rg, self.ws, name, underlying_resource_action="Delete"
                )
                waiting[name] = {"poller": poller, "target": None}
            elif action == "start":
                self.ops.start(self.rg, self.ws, name)
                waiting[name] = {"target": "Running"}
            elif action == "stop":
                self.ops.stop(self.rg, self.ws, name)
                waiting[name] = {"target": "Stopped"}
            self._line(name, f"{action} requested")
        except Exception as error:
            failed[name] = explain_error(error, f"({action} {name})", size)
            self.unwritten.add(name)
            self._line(name, "failed: " + failed[name])

    def _wait(
        self,
        entries: list[dict[str, Any]],
        waiting: dict[str, dict[str, Any]],
        results: dict[str, dict[str, Any]],
        failed: dict[str, str],
    ) -> None:
        by_name = {e["name"]: e for e in entries}
        deadline = self.start + self.wait_timeout
        while waiting:
            for name in sorted(waiting):
                job = waiting[name]
                try:
                    done, state = self._poll(name, job)
                except Exception as error:
                    failed[name] = explain_error(error, f"(waiting for {name})", self.vm_size)
                    self._line(name, "failed: " + failed[name])
                    del waiting[name]
                    continue
                if not done:
                    continue
                del waiting[name]
                if job.get("then"):
                    self._write(by_name[name], job["then"], waiting, failed)
                    continue
                if state in BROKEN:
                    failed[name] = f"{name} ended {state}: see its errors in Azure ML studio."
                    continue
                results[name]["state"] = state
                if "poller" in job:
                    self._line(name, state or "deleted")
            if not waiting:
                break
            if self.clock() >= deadline:
                for name, job in sorted(waiting.items()):
                    failed[name] = (
                        f"{name} still {job.get('seen') or 'in progress'} after "
                        f"{int(self.wait_timeout)} s (wait_timeout); it carries on in Azure: "
                        "run again later to see it finish."
                    )
                break
            time.sleep(self.poll_interval)

    def _poll(self, name: str, job: dict[str, Any]) -> tuple:
        """(done, state) for one waiting instance; progress lines on state changes."""
        poller = job.get("poller")
        if poller is not None:
            if not poller.done():
                return False, None
            resource = poller.result()
            if resource is None:
                return True, None
            return True, summarize(resource.as_dict())["state"]
        info = self.get(name)
        state = None if info is None else info["state"]
        if state != job.get("seen"):
            job["seen"] = state
            self._line(name, state or "gone")
        if state == job["target"] or state in BROKEN:
            return True, state
        return False, state

    def _result(self, results: dict[str, dict[str, Any]], failed: dict[str, str]) -> dict[str, Any]:
        for name in self.unwritten:
            results[name]["changed"] = False
        changed = any(r["changed"] for r in results.values())
        return {"changed": changed, "instances": results, "failed": failed}
