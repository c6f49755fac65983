"""Test harness: run real playbooks on lab VMs and read what happened, task by task."""
