#!/usr/bin/python3
"""Renders the shared chat templates with Debian's python3-jinja2 the way Hugging Face transformers does, writing
the expected outputs used by tests/inference/chat_template_test.cpp.

Run once with Debian's interpreter (it has python3-jinja2 3.1.2) and commit the outputs:
    /usr/bin/python3 tools/render_templates.py [--shared ../shared] [--out tests/inference/data/chat_templates]

Writes cases.json (the conversations, extra variables and special tokens) and, for every template x case,
<template>__<case>.txt (exact rendered bytes) or <template>__<case>.error (the error message) when Jinja2 raises.
"""
import argparse
import json
import pathlib

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

# strftime_now() is pinned so the fixtures do not depend on the day they were made; the C++ test injects the same.
FIXED_DATE = {"year": 2024, "month": 7, "day": 26}

DEFAULT_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "</s>"}

# Special tokens of the models the .jinja files come from (only bos/eos matter to the templates).
JINJA_TOKENS = {
    "google-gemma-2-2b-it": {"bos_token": "<bos>", "eos_token": "<eos>", "unk_token": "<unk>", "pad_token": "<pad>"},
    "meta-llama-Llama-3.2-3B-Instruct": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                                         "unk_token": "", "pad_token": ""},
    "Qwen-Qwen2.5-7B-Instruct": {"bos_token": "", "eos_token": "<|im_end|>", "unk_token": "",
                                 "pad_token": "<|endoftext|>"},
    "HuggingFaceTB-SmolLM3-3B": {"bos_token": "", "eos_token": "<|im_end|>", "unk_token": "",
                                 "pad_token": "<|im_end|>"},
    "deepseek-ai-DeepSeek-R1-Distill-Llama-8B": {"bos_token": "<｜begin▁of▁sentence｜>",
                                                 "eos_token": "<｜end▁of▁sentence｜>", "unk_token": "",
                                                 "pad_token": "<｜end▁of▁sentence｜>"},
    "microsoft-Phi-3.5-mini-instruct": {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>",
                                        "pad_token": "<|endoftext|>"},
    "mistralai-Mistral-Nemo-Instruct-2407": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                                             "pad_token": "<pad>"},
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. \"Paris\""},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7.5},
            },
            "required": ["city"],
        },
        "return": {"type": "string"},
    },
}

CASES = [
    {"name": "basic", "add_generation_prompt": True, "messages": [
        {"role": "system", "content": "You are helpful."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "What is 2+2?"}]},
    {"name": "no_system", "add_generation_prompt": True, "messages": [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi there! How can I help?"},
        {"role": "user", "content": "Tell me a joke."}]},
    {"name": "no_generation_prompt", "add_generation_prompt": False, "messages": [
        {"role": "system", "content": "Answer in one word."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris"}]},
    {"name": "single_user", "add_generation_prompt": True, "messages": [
        {"role": "user", "content": "Write a haiku about the sea."}]},
    {"name": "multi_round", "add_generation_prompt": True, "messages": [
        {"role": "system", "content": "You are a terse assistant. /think"},
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": "2"},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>\nadd\n</think>\n\n4"},
        {"role": "user", "content": "3+3?"}]},
    {"name": "unicode", "add_generation_prompt": True, "messages": [
        {"role": "system", "content": "Réponds en français. 日本語もOK 🎉 /no_think"},
        {"role": "user", "content": "  He said \"hi\" & 'bye'\n\tNew line\\n literal {{ not a tag }}  "},
        {"role": "assistant", "content": "\n\nÇa va ? « oui » — ü\u00a0ß"},
        {"role": "user", "content": "Emoji: 👍🏽, zero width:\u200b, tab\tend\n"}]},
    {"name": "assistant_first", "add_generation_prompt": True, "messages": [
        {"role": "assistant", "content": "I speak first."},
        {"role": "user", "content": "Okay."}]},
    {"name": "empty", "add_generation_prompt": True, "messages": []},
    {"name": "tools", "add_generation_prompt": True, "variables": {"tools": [WEATHER_TOOL]}, "messages": [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "What's the weather in Paris?"}]},
    {"name": "no_thinking", "add_generation_prompt": True, "variables": {"enable_thinking": False}, "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"}]},
]


def make_environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # As transformers defines it: plain json.dumps, no HTML escaping.
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        import datetime
        return datetime.datetime(**FIXED_DATE).strftime(fmt)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def load_templates(shared):
    templates = {}
    for path in sorted((shared / "models/chat_templates/jinja").glob("*.jinja")):
        templates[path.stem] = {"source": "jinja/" + path.name, "text": path.read_text(encoding="utf-8"),
                                "tokens": JINJA_TOKENS.get(path.stem, DEFAULT_TOKENS)}
    for path in sorted((shared / "models/chat_templates").glob("*_tokenizer_config.json")):
        config = json.loads(path.read_text(encoding="utf-8"))
        name = path.name[: -len("_tokenizer_config.json")]
        tokens = {k: config.get(k) or "" for k in DEFAULT_TOKENS}
        templates[name] = {"source": path.name, "text": config["chat_template"], "tokens": tokens}
    return templates


def main():
    root = pathlib.Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", type=pathlib.Path, default=root.parent / "shared")
    parser.add_argument("--out", type=pathlib.Path, default=root / "tests/inference/data/chat_templates")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    env = make_environment()
    templates = load_templates(args.shared)
    manifest = {"jinja2_version": jinja2.__version__, "strftime_now_date": FIXED_DATE,
                "templates": {name: {"source": t["source"], **t["tokens"]} for name, t in templates.items()},
                "cases": CASES}
    (args.out / "cases.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    for name, t in templates.items():
        compiled = env.from_string(t["text"])
        for case in CASES:
            variables = dict(case.get("variables", {}))
            variables.update(t["tokens"])
            variables["messages"] = case["messages"]
            variables["add_generation_prompt"] = case["add_generation_prompt"]
            stem = args.out / f"{name}__{case['name']}"
            try:
                result, suffix = compiled.render(**variables), ".txt"
            except jinja2.exceptions.TemplateError as e:
                result, suffix = f"{type(e).__name__}: {e}", ".error"
            # Bytes as rendered: no newline translation.
            with open(str(stem) + suffix, "w", encoding="utf-8", newline="") as f:
                f.write(result)
            print(f"{stem.name}{suffix}")


if __name__ == "__main__":
    main()
