"""A real vLLM for the cortex: its own venv, a tiny self-built test model, and the ``serve`` command line.

``python -m deploy.vllm setup`` makes the venv (``environment.setup``), ``python -m deploy.vllm serve``
starts the OpenAI-compatible server as ``nyx``; the tests marked ``vllm`` do the same through
``environment.serve_command``. The project's own environment stays free of vLLM.
"""
