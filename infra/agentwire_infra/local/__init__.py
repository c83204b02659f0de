"""The local runtime: the embedded AWS emulator, provisioning from the manifests, and the workers."""
