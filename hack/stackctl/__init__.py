"""The local stack: real services as plain processes, driven by hack/stack."""
