"""The local sandbox: the whole system on one machine, with Kubernetes emulated."""
