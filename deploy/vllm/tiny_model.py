"""Build the tiny test model ``nyx-tiny``: byte-level BPE tokenizer, Hermes chat template, 2-layer Llama.

Runs inside vLLM's own venv (it needs ``tokenizers``, ``transformers`` and ``torch``, which the project's
environment does not carry): ``<vllm-venv>/bin/python deploy/vllm/tiny_model.py OUT [CORPUS ...]``.

The weights are random (``torch.manual_seed(0)``), so the text it writes is meaningless; vLLM's guided
decoding still makes its forced tool calls and JSON-schema answers valid, which is the client path the
tests exercise. The tokenizer is trained on the given local text files (the project's README and docs)
plus a few generated JSON lines, so digits, braces and the tool-call tags are single cheap tokens.
The chat template is Hermes style (``<tool_call>{"name": ..., "arguments": ...}</tool_call>``), the
format of vLLM's ``hermes`` tool-call parser.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SEED = 0
VOCAB_SIZE = 2048
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"]

# ChatML with Hermes tool calls (as Qwen2.5 and Hermes models render them): tools listed in the system
# turn, an assistant's calls as one JSON object per <tool_call> block, tool results as <tool_response>.
CHAT_TEMPLATE = """\
{%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}

{% endif %}# Tools

You may call one or more functions. Function signatures within <tools></tools>:
<tools>
{% for tool in tools %}{{ tool | tojson }}
{% endfor %}</tools>

For each function call, return a json object within <tool_call></tool_call>:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call><|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'system' and loop.first %}
{%- elif message.role == 'assistant' %}<|im_start|>assistant
{% if message.content %}{{ message.content }}{% endif %}
{%- for call in message.tool_calls or [] %}
<tool_call>
{"name": {{ call.function.name | tojson }}, "arguments": \
{% if call.function.arguments is string %}{{ call.function.arguments }}\
{% else %}{{ call.function.arguments | tojson }}{% endif %}}
</tool_call>
{%- endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


def corpus(files: list[Path]) -> Iterator[str]:
    """Training text: the given files' lines and seeded JSON lines with numbers, keys and tool calls."""
    for path in files:
        yield from path.read_text(encoding="utf-8").splitlines()
    rng = random.Random(SEED)
    names = ["answer_lock", "go_to", "fetch_key_then_open", "open_door", "wait", "report_situation"]
    keys = ["x", "y", "value", "purpose", "ticks", "door_x", "door_y", "key_x", "key_y", "npc", "tick"]
    for _ in range(5000):
        args = {rng.choice(keys): rng.randint(-99, 9801) for _ in range(rng.randint(1, 4))}
        yield '<tool_call>\n{"name": "%s", "arguments": %s}\n</tool_call>' % (  # noqa: UP031
            rng.choice(names),
            json.dumps(args, separators=(",", ":") if rng.random() < 0.5 else (", ", ": ")),
        )


def build_tokenizer(files: list[Path]) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (every byte encodable) trained on ``corpus(files)``."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus(files), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", "<tool_call>", "</tool_call>"],
        model_max_length=8192,
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """A 2-layer Llama with random weights; head dim 32, the least vLLM's CPU attention accepts."""
    torch.manual_seed(SEED)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=8192,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        torch_dtype="float32",
    )
    return LlamaForCausalLM(config).eval()


def main(argv: list[str]) -> int:
    """Write tokenizer, chat template and model to argv[0], training the tokenizer on argv[1:]."""
    if not argv:
        print("usage: tiny_model.py OUT_DIR [CORPUS_FILE ...]", file=sys.stderr)
        return 2
    out, files = Path(argv[0]), [Path(f) for f in argv[1:]]
    tokenizer = build_tokenizer(files)
    model = build_model(tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    print(f"nyx-tiny: vocab {len(tokenizer)}, {params} parameters -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
