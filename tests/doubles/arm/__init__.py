"""Stand-in for Azure Resource Manager's Azure ML compute endpoints, over HTTPS.

Honours Azure ML's compute instance contract written down in tests/DOUBLES.md ("arm") for the
REST API version the pinned SDK speaks (azure-mgmt-machinelearningservices 1.0.1:
``api-version=2020-08-01``), so the real SDK drives it:

- ``GET .../workspaces/{ws}/computes``: ``{value: [...], nextLink}`` paged by ``$skiptoken``;
- ``GET .../computes/{name}``: the resource, or 404 ``ResourceNotFound``;
- ``PUT .../computes/{name}``: 201 with ``provisioningState: Creating`` and an
  ``Azure-AsyncOperation`` header; the operation answers ``InProgress`` for
  ``create_polls`` polls, then ``Succeeded`` (the instance is then ``Running``), or
  ``Failed`` with an error for names in ``failing_creates`` (the instance ``CreateFailed``);
- ``POST .../computes/{name}/start|stop``: 200; the instance is ``Starting``/``Stopping`` for
  ``transition_gets`` GETs of it, then ``Running``/``Stopped``;
- ``DELETE .../computes/{name}?underlyingResourceAction=Delete``: 202 with
  ``Azure-AsyncOperation`` and ``Location``; gone once the operation has succeeded;
- ``GET .../locations/{loc}/usages`` and ``.../vmSizes``: the region's dedicated vCPU usage
  and limits (regional total and per VM family) and the VM sizes with family and vCPUs;
  a create over its family's limit answers 400 ``QuotaExceeded``;
- errors in ARM's shape ``{"error": {"code", "message"}}``: 401 (token not the one issued,
  with ``WWW-Authenticate``), 403 (``forbidden`` workspaces), 404, 409 (``taken_names``: the
  name is used elsewhere in the region), quota (``quota_instances`` per workspace), 400 for an
  SSH public key that is not OpenSSH ``ssh-rsa``/``ssh-ed25519``, and injected one-shot
  failures (``inject``) such as 429 with ``Retry-After``.

Every request is logged (method, path, time) and write calls (PUT, POST, PATCH, DELETE) are
counted in ``writes`` for tests to assert on. Instances can point at lab VMs (public IP
127.0.0.1 and the VM's SSH port) so a playbook reaches them through the inventory plugin.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import re
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

API_VERSION = "2020-08-01"
PROVIDER = "Microsoft.MachineLearningServices"
_WS = (
    r"/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/"
    + PROVIDER
    + r"/workspaces/(?P<ws>[^/]+)"
)
_LIST = re.compile(_WS + r"/computes/?$")
_ONE = re.compile(_WS + r"/computes/(?P<name>[^/]+)$")
_ACTION = re.compile(_WS + r"/computes/(?P<name>[^/]+)/(?P<action>start|stop|restart)$")
_OPERATION = re.compile(
    r"/subscriptions/[^/]+/providers/"
    + PROVIDER
    + r"/locations/[^/]+/(?P<kind>computeOperationsStatus|computeOperationsResults)/(?P<id>[^/]+)$"
)
_LOCATION = re.compile(
    r"/subscriptions/(?P<sub>[^/]+)/providers/"
    + PROVIDER
    + r"/locations/(?P<location>[^/]+)/(?P<what>usages|vmSizes)$"
)
_KEY_TYPES = ("ssh-rsa", "ssh-ed25519")
# VM sizes the region offers: name -> (family as the vmSizes answer spells it, vCPUs, GPUs).
VM_SIZES = {
    "Standard_NC4as_T4_v3": ("standardNCASv3_T4Family", 4, 1),
    "Standard_NC8as_T4_v3": ("standardNCASv3_T4Family", 8, 1),
    "Standard_NC6s_v3": ("standardNCSv3Family", 6, 1),
    "Standard_NC24ads_A100_v4": ("standardNCADSA100v4Family", 24, 1),
    "STANDARD_DS3_V2": ("standardDSv2Family", 4, 0),
}


@dataclass
class Injected:
    """A one-shot failure: the next request matching ``method`` and ``name`` gets it."""

    status: int
    code: str
    message: str
    method: str = "*"
    name: str = "*"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ArmState:
    token: str = "lab-arm-token"
    page_size: int = 2
    create_polls: int = 1  # InProgress answers before an operation succeeds
    transition_gets: int = 1  # GETs of an instance seen Starting/Stopping before it settles
    location: str = "westeurope"
    workspaces: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = field(default_factory=dict)
    forbidden: set[str] = field(default_factory=set)  # workspace names answering 403
    taken_names: set[str] = field(default_factory=set)  # used by someone else in the region
    quota_instances: int | None = None  # most compute instances per workspace
    vm_sizes: dict[str, tuple[str, int, int]] = field(default_factory=lambda: dict(VM_SIZES))
    family_limit: int = 48  # dedicated vCPUs per VM family in the region, unless in family_limits
    family_limits: dict[str, int] = field(default_factory=dict)  # family -> vCPU limit
    used_elsewhere: dict[str, int] = field(default_factory=dict)  # family -> vCPUs used outside
    total_dedicated_limit: int = 100  # all families together in the region
    workspace_limits: dict[tuple[str, str], int] = field(default_factory=dict)  # (ws, family)
    inject: list[Injected] = field(default_factory=list)
    # creations that fail after the 201, in the async operation: name -> (code, message)
    failing_creates: dict[str, tuple[str, str]] = field(default_factory=dict)
    ssh_endpoints: dict[str, tuple[str, int]] = field(default_factory=dict)  # name -> ip, port
    log: list[dict[str, Any]] = field(default_factory=list)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    transitions: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def writes(self) -> list[dict[str, Any]]:
        return [e for e in self.log if e["method"] in ("PUT", "POST", "PATCH", "DELETE")]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class ArmStandIn:
    """ARM for Azure ML computes on ``address`` (HTTPS when ``tls`` = (cert, key))."""

    def __init__(self, tls: tuple[str, str], address: str = "127.0.0.1", port: int = 0) -> None:
        self.state = ArmState()
        handler = type("Handler", (_Handler,), {"arm": self})
        self.server = _Server((address, port), handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"https://{host}:{port}"

    def start(self) -> ArmStandIn:
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> ArmStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- arranging ------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget instances, knobs and the request log (between tests)."""
        token = self.state.token
        self.state = ArmState(token=token)

    def add_instance(
        self,
        sub: str,
        rg: str,
        ws: str,
        name: str,
        *,
        state: str = "Running",
        vm_size: str = "Standard_NC4as_T4_v3",
        ssh: bool = True,
        ip: str = "20.61.10.11",
        private_ip: str = "10.0.0.4",
        port: int = 50000,
        user: str = "azureuser",
        assigned: tuple[str, str] | None = None,
        tags: dict[str, str] | None = None,
        compute_type: str = "ComputeInstance",
    ) -> dict[str, Any]:
        resource = self._resource(
            sub,
            rg,
            ws,
            name,
            vm_size=vm_size,
            ssh=ssh,
            assigned=assigned,
            tags=tags,
            compute_type=compute_type,
        )
        props = resource["properties"]["properties"]
        props["state"] = state
        props["connectivityEndpoints"] = {"publicIpAddress": ip, "privateIpAddress": private_ip}
        if ssh:
            props["sshSettings"]["sshPort"] = port
            props["sshSettings"]["adminUserName"] = user
        resource["properties"]["provisioningState"] = "Succeeded"
        self.state.workspaces.setdefault((sub, rg, ws), {})[name] = resource
        return resource

    def instance(self, sub: str, rg: str, ws: str, name: str) -> dict[str, Any] | None:
        return self.state.workspaces.get((sub, rg, ws), {}).get(name)

    # -- quota ----------------------------------------------------------------------------

    def family_of(self, vm_size: str) -> tuple[str, int] | None:
        """(family, vCPUs) of a size the region offers (names compare case-insensitively)."""
        for name, (family, vcpus, _gpus) in self.state.vm_sizes.items():
            if name.lower() == vm_size.lower():
                return family, vcpus
        return None

    def used_vcpus(self, workspace: str = "") -> dict[str, int]:
        """Dedicated vCPUs in use per family: every instance not Stopped, plus used_elsewhere
        (the region), or one workspace's instances."""
        used = {} if workspace else dict(self.state.used_elsewhere)
        for (_sub, _rg, ws), computes in self.state.workspaces.items():
            if workspace and ws != workspace:
                continue
            for resource in computes.values():
                props = resource["properties"]["properties"]
                known = self.family_of(props.get("vmSize") or "")
                if known and props.get("state") != "Stopped":
                    used[known[0]] = used.get(known[0], 0) + known[1]
        return used

    def limit_of(self, family: str) -> int:
        return self.state.family_limits.get(family, self.state.family_limit)

    # -- behaviour ------------------------------------------------------------------------

    def _resource(
        self,
        sub: str,
        rg: str,
        ws: str,
        name: str,
        *,
        vm_size: str,
        ssh: bool,
        assigned: tuple[str, str] | None,
        tags: dict[str, str] | None,
        compute_type: str,
    ) -> dict[str, Any]:
        props: dict[str, Any] = {
            "vmSize": vm_size,
            "applicationSharingPolicy": "Personal",
            "sshSettings": {"sshPublicAccess": "Enabled" if ssh else "Disabled"},
            "computeInstanceAuthorizationType": "personal",
        }
        if assigned:
            props["personalComputeInstanceSettings"] = {
                "assignedUser": {"objectId": assigned[0], "tenantId": assigned[1]}
            }
        return {
            "id": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{PROVIDER}"
            f"/workspaces/{ws}/computes/{name}",
            "name": name,
            "type": f"{PROVIDER}/workspaces/computes",
            "location": self.state.location,
            "tags": tags or {},
            "properties": {
                "computeType": compute_type,
                "computeLocation": self.state.location,
                "provisioningState": "Creating",
                "isAttachedCompute": False,
                "properties": props,
            },
        }

    def new_operation(self, sub: str, then: dict[str, Any]) -> tuple[str, str]:
        op_id = f"op-{next(self._ids)}"
        self.state.operations[op_id] = {"polls": self.state.create_polls, **then}
        base = (
            f"{self.url}/subscriptions/{sub}/providers/{PROVIDER}/locations/{self.state.location}"
        )
        query = f"?api-version={API_VERSION}"
        return (
            f"{base}/computeOperationsStatus/{op_id}{query}",
            f"{base}/computeOperationsResults/{op_id}{query}",
        )


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _valid_ssh_key(key: str) -> bool:
    parts = key.split()
    if len(parts) < 2 or parts[0] not in _KEY_TYPES:
        return False
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return False
    return blob[4 : 4 + len(parts[0])] == parts[0].encode()


class _Handler(BaseHTTPRequestHandler):
    arm: ArmStandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", "standin")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null") if length else None
        arm = self.arm
        state = arm.state
        name_match = _ONE.match(url.path) or _ACTION.match(url.path)
        name = name_match.group("name") if name_match else ""
        with state.lock:
            state.log.append(
                {"method": method, "path": url.path, "name": name, "time": time.monotonic()}
            )
            if self.headers.get("Authorization") != f"Bearer {state.token}":
                self._send(
                    401,
                    _error("InvalidAuthenticationToken", "The access token is invalid or expired."),
                    {
                        "WWW-Authenticate": 'Bearer authorization_uri="https://login.'
                        'microsoftonline.com/common", error="invalid_token"'
                    },
                )
                return
            if query.get("api-version") != API_VERSION:
                self._send(
                    400,
                    _error(
                        "InvalidApiVersionParameter",
                        f"The api-version '{query.get('api-version')}' is invalid.",
                    ),
                )
                return
            for injected in state.inject:
                if injected.method in ("*", method) and injected.name in ("*", name):
                    state.inject.remove(injected)
                    self._send(
                        injected.status,
                        _error(injected.code, injected.message),
                        injected.headers,
                    )
                    return
            op = _OPERATION.match(url.path)
            if op and method == "GET":
                self._operation(op.group("kind"), op.group("id"))
                return
            regional = _LOCATION.match(url.path)
            if regional and method == "GET":
                if regional.group("what") == "usages":
                    self._usages(regional.group("sub"), regional.group("location"))
                else:
                    self._vm_sizes(regional.group("location"))
                return
            match = _LIST.match(url.path) or _ONE.match(url.path) or _ACTION.match(url.path)
            if not match:
                self._send(404, _error("NotFound", f"No route for {method} {url.path}"))
                return
            sub, rg, ws = match.group("sub", "rg", "ws")
            if ws in state.forbidden:
                self._send(
                    403,
                    _error(
                        "AuthorizationFailed",
                        "The client does not have authorization to perform action "
                        f"'{PROVIDER}/workspaces/computes/read' over scope '/subscriptions/"
                        f"{sub}/resourceGroups/{rg}/providers/{PROVIDER}/workspaces/{ws}'.",
                    ),
                )
                return
            if (sub, rg, ws) not in state.workspaces:
                self._send(
                    404,
                    _error(
                        "ResourceNotFound",
                        f"The Resource '{PROVIDER}/workspaces/{ws}' under resource group "
                        f"'{rg}' was not found.",
                    ),
                )
                return
            computes = state.workspaces[(sub, rg, ws)]
            if match.re is _LIST and method == "GET":
                self._list(computes, query, url.path)
            elif match.re is _ONE and method == "GET":
                self._get(computes, match.group("name"))
            elif match.re is _ONE and method == "PUT":
                self._put(computes, (sub, rg, ws), match.group("name"), body or {})
            elif match.re is _ONE and method == "DELETE":
                self._delete(computes, sub, match.group("name"))
            elif match.re is _ACTION and method == "POST":
                self._action(computes, match.group("name"), match.group("action"))
            else:
                self._send(405, _error("MethodNotAllowed", f"{method} not allowed here"))

    # -- routes ---------------------------------------------------------------------------

    def _list(self, computes: dict[str, Any], query: dict[str, str], path: str) -> None:
        skip = int(query.get("$skiptoken", "0"))
        names = sorted(computes)
        page = names[skip : skip + self.arm.state.page_size]
        body: dict[str, Any] = {"value": [self._settled(computes, n) for n in page]}
        if skip + self.arm.state.page_size < len(names):
            next_query = urlencode(
                {"api-version": API_VERSION, "$skiptoken": skip + self.arm.state.page_size}
            )
            body["nextLink"] = f"{self.arm.url}{path}?{next_query}"
        self._send(200, body)

    def _usages(self, sub: str, location: str) -> None:
        """Usages as api-version 2020-08-01 answers them: the regional total of dedicated
        vCPUs, then one line per VM family (Azure spells the family with a capital first
        letter here and a small one in vmSizes)."""
        arm = self.arm
        if location.lower() != arm.state.location.lower():
            self._send(200, {"value": []})
            return
        used = arm.used_vcpus()
        families = sorted({f for f, _v, _g in arm.state.vm_sizes.values()})
        lines = [
            {
                "id": f"/subscriptions/{sub}",
                "type": f"{PROVIDER}/totalDedicatedCores/usages",
                "currentValue": sum(used.values()),
                "limit": arm.state.total_dedicated_limit,
                "name": {
                    "localizedValue": "Total Cluster Dedicated Regional vCPUs",
                    "value": "TotalDedicatedCores",
                },
                "unit": "Count",
            }
        ]
        for family in families:
            spelled = family[0].upper() + family[1:]
            lines.append(
                {
                    "id": f"/subscriptions/{sub}/usages/{spelled}",
                    "type": f"{PROVIDER}/vmFamily/dedicatedCores/usages",
                    "currentValue": used.get(family, 0),
                    "limit": arm.limit_of(family),
                    "name": {
                        "localizedValue": f"{spelled} Cluster Dedicated vCPUs",
                        "value": spelled,
                    },
                    "unit": "Count",
                }
            )
        for (ws_sub, rg, ws), _computes in sorted(arm.state.workspaces.items()):
            in_ws = arm.used_vcpus(ws)
            for family in families:
                if ws_sub != sub or (ws, family) not in arm.state.workspace_limits:
                    continue
                spelled = family[0].upper() + family[1:]
                lines.append(
                    {
                        "id": f"/subscriptions/{sub}/resourceGroups/{rg}/providers/{PROVIDER}"
                        f"/workspaces/{ws}/usages/{spelled}",
                        "type": f"{PROVIDER}/workspaces/dedicatedCores/usages",
                        "currentValue": in_ws.get(family, 0),
                        "limit": arm.state.workspace_limits[(ws, family)],
                        "name": {
                            "localizedValue": f"{spelled} Cluster Dedicated vCPUs",
                            "value": spelled,
                        },
                        "unit": "Count",
                    }
                )
        self._send(200, {"value": lines})

    def _vm_sizes(self, location: str) -> None:
        """VM sizes under ``amlCompute``, the key azure-mgmt-machinelearningservices 1.0.1
        reads (VirtualMachineSizeListResult)."""
        sizes = []
        if location.lower() == self.arm.state.location.lower():
            for name, (family, vcpus, gpus) in self.arm.state.vm_sizes.items():
                sizes.append(
                    {
                        "name": name,
                        "family": family,
                        "vCPUs": vcpus,
                        "gpus": gpus,
                        "osVhdSizeMB": 1047552,
                        "maxResourceVolumeMB": 180224,
                        "memoryGB": vcpus * 7.0,
                        "lowPriorityCapable": True,
                        "premiumIO": True,
                        "supportedComputeTypes": ["ComputeInstance", "AmlCompute"],
                    }
                )
        self._send(200, {"amlCompute": sizes})

    def _settled(self, computes: dict[str, Any], name: str) -> dict[str, Any]:
        """The instance as a GET sees it, moving Starting/Stopping along."""
        resource = computes[name]
        props = resource["properties"]["properties"]
        pending = self.arm.state.transitions.get(resource["id"])
        if pending:
            if pending["gets"] <= 0:
                props["state"] = pending["to"]
                del self.arm.state.transitions[resource["id"]]
            else:
                pending["gets"] -= 1
        return resource

    def _get(self, computes: dict[str, Any], name: str) -> None:
        if name not in computes:
            self._send(
                404,
                _error("ResourceNotFound", f"Compute with name {name} is not found."),
            )
            return
        self._send(200, self._settled(computes, name))

    def _put(
        self, computes: dict[str, Any], where: tuple[str, str, str], name: str, body: dict
    ) -> None:
        sub, rg, ws = where
        state = self.arm.state
        if name in computes:
            self._send(200, computes[name])
            return
        if name in state.taken_names:
            self._send(
                409,
                _error(
                    "Conflict",
                    f"Compute name {name} is already in use in region {state.location}. "
                    "Compute instance names must be unique within an Azure region.",
                ),
            )
            return
        props = ((body.get("properties") or {}).get("properties")) or {}
        ssh = props.get("sshSettings") or {}
        key = ssh.get("adminPublicKey") or ""
        if ssh.get("sshPublicAccess") == "Enabled" and not _valid_ssh_key(key):
            self._send(
                400,
                _error(
                    "BadArgument",
                    "Invalid SSH public key: adminPublicKey must be an OpenSSH public key.",
                ),
            )
            return
        if state.quota_instances is not None and len(computes) >= state.quota_instances:
            self._send(
                400,
                _error(
                    "QuotaExceeded",
                    f"Operation results in exceeding quota limits of Core. Maximum allowed: "
                    f"{state.quota_instances * 4}, Current in use: {len(computes) * 4}, "
                    "Additional requested: 4.",
                ),
            )
            return
        known = self.arm.family_of(props.get("vmSize") or "")
        if known is None:
            self._send(
                400,
                _error(
                    "BadArgument",
                    f"VM size {props.get('vmSize')} is not supported in region {state.location}.",
                ),
            )
            return
        family, vcpus = known
        # the workspace's own quota when set and exceeded, else the region's family quota
        in_use, limit = (
            self.arm.used_vcpus(ws).get(family, 0),
            state.workspace_limits.get((ws, family)),
        )
        if limit is None or in_use + vcpus <= limit:
            in_use, limit = self.arm.used_vcpus().get(family, 0), self.arm.limit_of(family)
        if in_use + vcpus > limit:
            self._send(
                400,
                _error(
                    "QuotaExceeded",
                    f"Operation results in exceeding quota limits of {family}. Maximum allowed: "
                    f"{limit}, Current in use: {in_use}, "
                    f"Additional requested: {vcpus}.",
                ),
            )
            return
        assigned = (props.get("personalComputeInstanceSettings") or {}).get("assignedUser")
        resource = self.arm._resource(
            sub,
            rg,
            ws,
            name,
            vm_size=props.get("vmSize") or "STANDARD_DS3_V2",
            ssh=ssh.get("sshPublicAccess") == "Enabled",
            assigned=(assigned["objectId"], assigned["tenantId"]) if assigned else None,
            tags=body.get("tags"),
            compute_type=(body.get("properties") or {}).get("computeType") or "ComputeInstance",
        )
        resource["location"] = body.get("location") or state.location
        out = resource["properties"]["properties"]
        out["state"] = "Creating"
        out["sshSettings"]["adminUserName"] = "azureuser"
        ip, port = state.ssh_endpoints.get(name, (f"20.61.10.{len(computes) + 11}", 50000))
        out["sshSettings"]["sshPort"] = port
        out["connectivityEndpoints"] = {"publicIpAddress": ip, "privateIpAddress": "10.0.0.4"}
        computes[name] = resource
        status_url, _ = self.arm.new_operation(
            sub, {"kind": "create", "computes": computes, "name": name}
        )
        self._send(201, resource, {"Azure-AsyncOperation": status_url})

    def _delete(self, computes: dict[str, Any], sub: str, name: str) -> None:
        if name not in computes:
            self._send(204)
            return
        computes[name]["properties"]["provisioningState"] = "Deleting"
        computes[name]["properties"]["properties"]["state"] = "Deleting"
        status_url, result_url = self.arm.new_operation(
            sub, {"kind": "delete", "computes": computes, "name": name}
        )
        self._send(202, None, {"Azure-AsyncOperation": status_url, "Location": result_url})

    def _action(self, computes: dict[str, Any], name: str, action: str) -> None:
        if name not in computes:
            self._send(404, _error("ResourceNotFound", f"Compute with name {name} is not found."))
            return
        resource = computes[name]
        props = resource["properties"]["properties"]
        moves = {
            "start": ("Stopped", "Starting", "Running"),
            "stop": ("Running", "Stopping", "Stopped"),
            "restart": ("Running", "Restarting", "Running"),
        }
        allowed, during, after = moves[action]
        if props["state"] != allowed:
            self._send(
                409,
                _error(
                    "UserError",
                    f"Cannot {action} compute instance {name} in state {props['state']}.",
                ),
            )
            return
        props["state"] = during
        self.arm.state.transitions[resource["id"]] = {
            "to": after,
            "gets": self.arm.state.transition_gets,
        }
        self._send(200)

    def _operation(self, kind: str, op_id: str) -> None:
        op = self.arm.state.operations.get(op_id)
        if op is None:
            self._send(404, _error("NotFound", f"No operation {op_id}"))
            return
        if kind == "computeOperationsResults":
            self._send(200 if op["polls"] < 0 else 202, None)
            return
        if op["polls"] > 0:
            op["polls"] -= 1
            self._send(200, {"status": "InProgress"})
            return
        if op["polls"] == 0:
            op["polls"] = -1
            computes, name = op["computes"], op["name"]
            failure = self.arm.state.failing_creates.get(name)
            if op["kind"] == "create" and failure and name in computes:
                computes[name]["properties"]["provisioningState"] = "Failed"
                computes[name]["properties"]["properties"]["state"] = "CreateFailed"
                op["error"] = {"code": failure[0], "message": failure[1]}
            elif op["kind"] == "create" and name in computes:
                computes[name]["properties"]["provisioningState"] = "Succeeded"
                computes[name]["properties"]["properties"]["state"] = "Running"
            elif op["kind"] == "delete":
                computes.pop(name, None)
        if "error" in op:
            self._send(200, {"status": "Failed", "error": op["error"]})
            return
        self._send(200, {"status": "Succeeded"})
