"""The cortex: the OpenAI-compatible client (to vLLM or the embedded server) and the ``nyx`` server."""
