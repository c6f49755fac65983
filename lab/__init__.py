"""The built-in lab: local VMs shaped like Azure ML compute instances (see lab/README.md)."""
