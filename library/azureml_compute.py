#!/usr/bin/python
"""Ansible module: converge a class's Azure ML compute instances (runs on the controller)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: azureml_compute
short_description: Create, start, stop or delete a roster of Azure ML compute instances
description:
  - Ensures one Azure ML compute instance per O(instances) entry in one workspace, with SSH
    public access on O(ssh_public_key), assigned to its student when an object id is given.
  - Runs on the controller (a play on C(localhost), or C(delegate_to) localhost) with the Azure
    SDK (C(azure-mgmt-machinelearningservices), C(azure-identity)) from C(requirements.txt).
  - Reads every instance first; sign-in and access problems stop the run before any write.
    Then writes only where the state differs (a re-run calls no write API and reports
    C(changed=false)) and waits for all instances together, up to O(wait_timeout) seconds,
    writing one progress line per state change to O(progress_file).
  - Before creating, reads the region's VM sizes and dedicated vCPU usage (the vmSizes and
    usages operations) and refuses, before any write and in check mode too, when the instances
    to create do not fit their VM family's quota (the region's, and the workspace's own where
    one is set) or the regional total, naming the family, the vCPUs needed, in use and the
    limit, and where to ask for more (Azure portal, Quotas).
  - One failing instance does not stop the others; the module fails at the end naming each
    failed instance with what to do. Throttling (HTTP 429) is retried after the server's
    C(Retry-After) by the SDK's retry policy.
  - Check mode reads only and reports what a real run would change.
options:
  subscription_id:
    description: Azure subscription id (default from E(AZURE_SUBSCRIPTION_ID)).
    type: str
    required: true
  resource_group:
    description: Resource group of the workspace.
    type: str
    required: true
  workspace:
    description: Azure ML workspace name.
    type: str
    required: true
  location:
    description: Region to create instances in (the workspace's region). Needed to create.
    type: str
    default: ""
  instances:
    description:
      - The roster, one entry per compute instance.
      - C(name) (unique in the region; by Azure's rule 3-24 letters, digits and C(-), starting
        with a letter, ending with a letter or digit, and every C(-) followed by at least one
        letter, so C(sd-class-alice) and C(sdclass01) are accepted, C(sd-class-01) is not),
        optional C(vm_size),
        C(object_id) and C(tenant_id) (Microsoft Entra ID user the instance is assigned to),
        C(tags).
    type: list
    elements: dict
    required: true
  vm_size:
    description: VM size for entries without their own C(vm_size).
    type: str
    default: Standard_NC4as_T4_v3
  ssh_public_key:
    description: The instructor's OpenSSH public key (content of the .pub file). Needed to create.
    type: str
    default: ""
  state:
    description:
      - V(present) creates missing instances (new instances start running); V(started) also
        starts stopped ones; V(stopped) stops running ones (creates nothing); V(absent)
        deletes the listed instances (only with O(allow_delete)).
    type: str
    choices: [present, started, stopped, absent]
    default: started
  allow_delete:
    description:
      - Safety switch for O(state=absent); without it nothing is deleted and the run fails naming
        what would be.
    type: bool
    default: false
  wait_timeout:
    description:
      - Seconds to wait for all instances to reach their state; the rest are named as failed (they
        carry on in Azure).
    type: int
    default: 1800
  poll_interval:
    description: Seconds between status polls while waiting.
    type: float
    default: 15
  progress_file:
    description: Append timestamped progress lines here while waiting (C(tail -f) it).
    type: path
  auth_source:
    description:
      - V(auto) uses C(DefaultAzureCredential) (environment service principal, managed
        identity, Azure CLI login, ...), or the service principal / token given here.
      - V(cli) the Azure CLI login; V(service_principal) O(client_id), O(tenant_id),
        O(secret); V(token) a bearer token obtained elsewhere (O(access_token)).
    type: str
    choices: [auto, cli, service_principal, token]
    default: auto
  client_id:
    description: Service principal application id.
    type: str
    default: ""
  tenant_id:
    description: Service principal tenant id.
    type: str
    default: ""
  secret:
    description: Service principal secret (keep it in the vault).
    type: str
    default: ""
  access_token:
    description: ARM bearer token for O(auth_source=token).
    type: str
    default: ""
  base_url:
    description: Azure Resource Manager endpoint.
    type: str
    default: https://management.azure.com
  ca_bundle:
    description:
      - CA bundle to verify the ARM endpoint with (default the system's, or E(REQUESTS_CA_BUNDLE)).
    type: path
notes:
  - "Cost: a running instance is billed by the hour, whether or not anyone uses it. Bound a
    class's cost by stopping the roster at the end of each class
    (C(ansible-playbook playbooks/fleet.yml -e fleet_roster_state=stopped), O(state=stopped));
    a stopped instance is billed only for its disk, and O(state=absent) with O(allow_delete)
    ends that too."
  - "Idle shutdown: the REST API version this module speaks (2020-08-01, from
    azure-mgmt-machinelearningservices 1.0.1) has no idle shutdown (time before shutdown)
    and no start/stop schedule on a compute instance (its ComputeInstanceProperties hold the
    VM size, subnet, application sharing policy, SSH settings, endpoints, applications,
    creator, errors, state, authorization type, assigned user and last operation), so this
    module can neither set nor read them, and nothing stops an instance that the roster
    leaves running. Newer API versions have both (idle time before shutdown, and schedules);
    set them per instance in Azure ML studio if wanted: this module only creates, starts,
    stops and deletes, and never rewrites an existing instance, so it leaves them as they
    are."
requirements:
  - azure-mgmt-machinelearningservices
  - azure-identity
author: Forge Fleet
"""

EXAMPLES = r"""
- name: Ensure one running compute instance per student
  azureml_compute:
    subscription_id: "{{ fleet_azureml_subscription_id }}"
    resource_group: "{{ fleet_azureml_resource_group }}"
    workspace: "{{ fleet_azureml_workspace }}"
    location: westeurope
    instances:
      - name: sd-class-alice
        object_id: 11111111-2222-3333-4444-555555555555
        tenant_id: 66666666-7777-8888-9999-000000000000
      - name: sd-class-bob
    ssh_public_key: "{{ lookup('ansible.builtin.file', '~/.ssh/azureml_rsa.pub') }}"
    state: started
  delegate_to: localhost
"""

RETURN = r"""
instances:
  description:
    - Per instance, C(action) (create, start, stop, delete or null), C(state_before), C(state)
      after, C(changed).
  type: dict
  returned: always
failed_instances:
  description: Per failed instance, what went wrong and what to do.
  type: dict
  returned: always
summary:
  description:
    - What the run did (its progress lines), or in check mode what it would do (C(Would create
      sd-class-alice), ...); C(Nothing to do) only when no instance needs a change.
  type: list
  elements: str
  returned: always
progress:
  description: The timestamped progress lines of this run.
  type: list
  elements: str
  returned: always
"""

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible.module_utils.forge_fleet import azureml_compute as azureml

ARGUMENTS = {
    "subscription_id": {
        "type": "str",
        "required": True,
        "fallback": (env_fallback, ["AZURE_SUBSCRIPTION_ID"]),
    },
    "resource_group": {"type": "str", "required": True},
    "workspace": {"type": "str", "required": True},
    "location": {"type": "str", "default": ""},
    "instances": {"type": "list", "elements": "dict", "required": True},
    "vm_size": {"type": "str", "default": "Standard_NC4as_T4_v3"},
    "ssh_public_key": {"type": "str", "default": ""},
    "state": {"type": "str", "choices": list(azureml.STATES), "default": "started"},
    "allow_delete": {"type": "bool", "default": False},
    "wait_timeout": {"type": "int", "default": 1800},
    "poll_interval": {"type": "float", "default": 15},
    "progress_file": {"type": "path"},
    "auth_source": {
        "type": "str",
        "choices": ["auto", "cli", "service_principal", "token"],
        "default": "auto",
    },
    "client_id": {"type": "str", "default": ""},
    "tenant_id": {"type": "str", "default": ""},
    "secret": {"type": "str", "default": "", "no_log": True},
    "access_token": {"type": "str", "default": "", "no_log": True},
    "base_url": {"type": "str", "default": azureml.DEFAULT_BASE_URL},
    "ca_bundle": {"type": "path"},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENTS, supports_check_mode=True)
    p = module.params
    progress: list = []

    def say(line: str) -> None:
        progress.append(line)
        if p["progress_file"]:
            with open(p["progress_file"], "a", encoding="utf-8") as stream:
                stream.write(line + "\n")

    try:
        azureml.check_roster(p["instances"], p["state"], p["vm_size"])
        credential = azureml.make_credential(
            p["auth_source"], p["client_id"], p["tenant_id"], p["secret"], p["access_token"]
        )
        client = azureml.make_client(
            credential,
            p["subscription_id"],
            p["base_url"],
            p["ca_bundle"] or "",
            p["poll_interval"],
        )
        fleet = azureml.Fleet(
            client,
            p["resource_group"],
            p["workspace"],
            p["location"],
            check_mode=module.check_mode,
            wait_timeout=p["wait_timeout"],
            poll_interval=p["poll_interval"],
            say=say,
        )
        outcome = fleet.converge(
            p["instances"], p["state"], p["vm_size"], p["ssh_public_key"], p["allow_delete"]
        )
    except azureml.AzureMLError as error:
        module.fail_json(msg=str(error), changed=False, progress=progress)
    except ImportError as error:
        module.fail_json(
            msg=f"The Azure SDK is missing on the controller ({error}): "
            "pip install -r requirements.txt into the Python that runs ansible."
        )
    failed = outcome["failed"]
    result = {
        "changed": outcome["changed"],
        "instances": outcome["instances"],
        "failed_instances": failed,
        "progress": progress,
        "summary": azureml.summary(
            outcome["instances"], failed, p["state"], progress, module.check_mode
        ),
    }
    if failed:
        names = ", ".join(sorted(failed))
        details = " | ".join(f"{name}: {failed[name]}" for name in sorted(failed))
        module.fail_json(
            msg=f"{len(failed)} of {len(p['instances'])} instance(s) failed ({names}); "
            f"the others were handled. {details}",
            **result,
        )
    module.exit_json(**result)


if __name__ == "__main__":
    main()
