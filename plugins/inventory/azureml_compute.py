"""Inventory plugin: Azure ML compute instances of one or more workspaces (controller side)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ansible.module_utils
from ansible.errors import AnsibleError
from ansible.plugins.inventory import BaseInventoryPlugin, Cacheable, Constructable

_MODULE_UTILS = str(Path(__file__).resolve().parents[2] / "module_utils")  # plugins/README.md
if _MODULE_UTILS not in ansible.module_utils.__path__:
    ansible.module_utils.__path__.append(_MODULE_UTILS)

from ansible.module_utils.forge_fleet import azureml_compute as azureml  # noqa: E402

DOCUMENTATION = r"""
name: azureml_compute
short_description: Azure ML compute instances as inventory hosts
description:
  - Lists the compute instances of one or more Azure ML workspaces with the Azure SDK
    (C(azure-mgmt-machinelearningservices), C(azure-identity)) and adds the reachable ones to
    O(group) with C(ansible_host) (public IP, or private IP with O(use_private_ip)),
    C(ansible_port) from the instance's SSH settings (never assumed) and C(ansible_user)
    from its admin user name.
  - Groups hosts by workspace (C(azureml_ws_<workspace>)), state (C(azureml_state_<state>)),
    VM size (C(azureml_size_<size>)), assigned user (C(azureml_user_<object id>)) and tags
    (C(azureml_tag_<key>_<value>)); more with O(keyed_groups) and O(groups).
  - Host variables C(azureml_vm_size), C(azureml_state), C(azureml_assigned_user),
    C(azureml_workspace), C(azureml_resource_group), C(azureml_location), C(azureml_tags),
    C(azureml_id).
  - Instances not in O(include_states), without SSH access or without an address are left out
    with a warning, or put in O(skipped_group) when it is set.
  - The file name must end with C(azureml.yml) or C(azureml.yaml).
  - A workspace that cannot be listed fails the source with an operator-readable message;
    this repository's C(ansible.cfg) sets C(any_unparsed_is_failed) so that stops the run
    (exit status 1) instead of leaving Ansible's warning and no hosts.
options:
  plugin:
    description: The name of this plugin.
    required: true
    choices: [azureml_compute]
  workspaces:
    description:
      - The workspaces to list; each a dict with C(resource_group), C(workspace) and optional
        C(subscription_id) (default O(subscription_id)).
    type: list
    elements: dict
    required: true
  subscription_id:
    description: Subscription of the workspaces that do not name their own.
    type: str
    env:
      - name: AZURE_SUBSCRIPTION_ID
  group:
    description: Group every reachable instance joins (the playbooks run on C(forge_servers)).
    type: str
    default: forge_servers
  use_private_ip:
    description:
      - Use the private IP (controller inside the virtual network) instead of the public one.
    type: bool
    default: false
  include_states:
    description: Instance states that make a host; others are skipped.
    type: list
    elements: str
    default: [Running]
  skipped_group:
    description:
      - When set, skipped instances join this group (with their azureml_* variables, no address)
        instead of being left out.
    type: str
    default: ""
  auth_source:
    description:
      - V(auto) is C(DefaultAzureCredential) (AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET,
        managed identity, C(az login), ...), or the service principal / token given here.
      - V(cli) the Azure CLI login; V(service_principal) O(client_id), O(tenant_id) and O(secret);
        V(token) a bearer token (O(access_token)).
    type: str
    choices: [auto, cli, service_principal, token]
    default: auto
    env:
      - name: FORGE_AZUREML_AUTH_SOURCE
  client_id:
    description: Service principal application id.
    type: str
    default: ""
  tenant_id:
    description: Service principal tenant id.
    type: str
    default: ""
  secret:
    description:
      - Service principal secret; keep it vault-encrypted (C(ansible-vault encrypt_string)).
    type: str
    default: ""
  access_token:
    description: ARM bearer token for O(auth_source=token).
    type: str
    default: ""
    env:
      - name: FORGE_AZUREML_ACCESS_TOKEN
  base_url:
    description: Azure Resource Manager endpoint.
    type: str
    default: https://management.azure.com
    env:
      - name: FORGE_AZUREML_BASE_URL
  ca_bundle:
    description:
      - CA bundle to verify the endpoint with (default the system's, or REQUESTS_CA_BUNDLE).
    type: path
    env:
      - name: FORGE_AZUREML_CA_BUNDLE
extends_documentation_fragment:
  - constructed
  - inventory_cache
requirements:
  - azure-mgmt-machinelearningservices
  - azure-identity
"""

EXAMPLES = r"""
# inventory/azureml.yml; then: ansible-inventory -i inventory/azureml.yml --graph
plugin: azureml_compute
workspaces:
  - resource_group: rg-forge-class
    workspace: ws-forge-class
compose:
  ansible_ssh_private_key_file: "'~/.ssh/azureml_rsa'"
keyed_groups:
  - key: azureml_tags.course | default('none')
    prefix: course
"""


class InventoryModule(BaseInventoryPlugin, Constructable, Cacheable):
    NAME = "azureml_compute"

    def verify_file(self, path: str) -> bool:
        return super().verify_file(path) and path.endswith(("azureml.yml", "azureml.yaml"))

    def parse(self, inventory: Any, loader: Any, path: str, cache: bool = True) -> None:
        super().parse(inventory, loader, path, cache)
        self._read_config_data(path)
        key = self.get_cache_key(path)
        use_cache = self.get_option("cache")
        listing = None
        if use_cache and cache:
            listing = self._cache.get(key)
        if listing is None:
            listing = self._fetch()
            if use_cache:
                self._cache[key] = listing
        self._populate(listing)

    def _fetch(self) -> list[dict[str, Any]]:
        default_sub = self.get_option("subscription_id") or ""
        try:
            credential = azureml.make_credential(
                self.get_option("auth_source"),
                self.get_option("client_id"),
                self.get_option("tenant_id"),
                self.get_option("secret"),
                self.get_option("access_token"),
            )
        except ImportError as error:
            raise AnsibleError(
                f"azureml_compute needs the Azure SDK on the controller ({error}): "
                "pip install -r requirements.txt"
            ) from None
        except azureml.AzureMLError as error:
            raise AnsibleError(str(error)) from None
        listing = []
        for index, entry in enumerate(self.get_option("workspaces"), 1):
            sub = entry.get("subscription_id") or default_sub
            rg, ws = entry.get("resource_group"), entry.get("workspace")
            if not (sub and rg and ws):
                raise AnsibleError(
                    f"workspaces entry {index} needs resource_group, workspace and a "
                    "subscription_id (its own, the file's, or AZURE_SUBSCRIPTION_ID)."
                )
            client = azureml.make_client(
                credential, sub, self.get_option("base_url"), self.get_option("ca_bundle") or ""
            )
            try:
                instances = azureml.list_instances(client, rg, ws)
            except Exception as error:
                where = f"listing workspace {ws} (resource group {rg}, subscription {sub})"
                raise AnsibleError(azureml.explain_error(error, where)) from None
            listing.append({"resource_group": rg, "workspace": ws, "instances": instances})
        return listing

    def _populate(self, listing: list[dict[str, Any]]) -> None:
        group = self.inventory.add_group(self.get_option("group"))
        skipped_group = self.get_option("skipped_group")
        states = tuple(self.get_option("include_states"))
        strict = self.get_option("strict")
        for workspace in listing:
            ws, rg = workspace["workspace"], workspace["resource_group"]
            for info in workspace["instances"]:
                variables, reason = azureml.inventory_host(
                    info, self.get_option("use_private_ip"), states
                )
                variables.update(azureml_workspace=ws, azureml_resource_group=rg)
                if reason:
                    if not skipped_group:
                        where = f"{info['name']} (workspace {ws})"
                        self.display.warning(f"azureml_compute: {where} left out: it {reason}.")
                        continue
                    host = self.inventory.add_host(
                        info["name"], self.inventory.add_group(skipped_group)
                    )
                else:
                    host = self.inventory.add_host(info["name"], group)
                    for name in self._groups(info, ws):
                        self.inventory.add_child(self.inventory.add_group(name), host)
                for var, value in variables.items():
                    self.inventory.set_variable(host, var, value)
                self._set_composite_vars(self.get_option("compose"), variables, host, strict)
                self._add_host_to_composed_groups(
                    self.get_option("groups"), variables, host, strict
                )
                self._add_host_to_keyed_groups(
                    self.get_option("keyed_groups"), variables, host, strict
                )

    def _groups(self, info: dict[str, Any], workspace: str) -> list[str]:
        names = [
            f"azureml_ws_{workspace}",
            f"azureml_state_{info['state']}",
            f"azureml_size_{info['vm_size']}",
        ]
        if info["assigned_object_id"]:
            names.append(f"azureml_user_{info['assigned_object_id']}")
        names += [f"azureml_tag_{k}_{v}" for k, v in sorted(info["tags"].items())]
        return [self._sanitize_group_name(n.lower()) for n in names]
