"""Deployment: the cell image and compose files, and ``deploy.vllm`` (a real vLLM serving the cortex)."""
