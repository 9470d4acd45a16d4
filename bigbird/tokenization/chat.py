"""Chat templates (``apply_chat_template``): Jinja rendering in a sandbox, then tokenization; saving and loading.

A BigBird encoder is not a chat model, but transformers' tokenizer API has chat templates and code written
against it calls them; the behaviour follows transformers' documentation: messages are dicts (or objects with
``model_dump()`` / dataclasses) whose None fields count as missing, ``continue_final_message`` cuts the
rendered text after the final message, templates are saved as ``chat_template.jinja`` (plus
``additional_chat_templates/<name>.jinja``) or in ``tokenizer_config.json``.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from bigbird.tokenization.batch import to_tensors

JINJA_FILE = "chat_template.jinja"
GEN_START, GEN_END = "\ue000", "\ue001"  # private-use marks around {% generation %} output, removed after rendering
EXTRA_DIR = "additional_chat_templates"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


def _message(message: Any) -> dict:
    if hasattr(message, "model_dump"):
        message = message.model_dump()
    elif dataclasses.is_dataclass(message) and not isinstance(message, type):
        message = dataclasses.asdict(message)
    if not isinstance(message, dict):
        raise TypeError(f"a chat message must be a dict (or an object with model_dump()), got {type(message).__name__}")
    return {key: value for key, value in message.items() if value is not None}


def _environment():
    from jinja2 import TemplateError, nodes
    from jinja2.ext import Extension
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Generation(Extension):
        """``{% generation %}...{% endgeneration %}``: marks what the assistant generates (assistant masks)."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return nodes.CallBlock(self.call_method("_mark"), [], [], body).set_lineno(lineno)

        def _mark(self, caller):
            return GEN_START + caller() + GEN_END

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols", Generation])
    env.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
    env.globals.update(raise_exception=raise_exception, strftime_now=lambda fmt: datetime.now().strftime(fmt))
    return env


def pick_template(templates: str | dict[str, str] | None, chat_template: str | None) -> str:
    """The template to render: ``chat_template`` (a template, or a name in ``templates``), else the default.

    Raises:
        ValueError: If there is no template.
    """
    if isinstance(templates, dict) and chat_template in templates:
        return templates[chat_template]
    if chat_template is not None:
        return chat_template
    if isinstance(templates, dict):
        if "default" not in templates:
            raise ValueError(f"pass chat_template= (one of {sorted(templates)}): this tokenizer has no default")
        return templates["default"]
    if templates is None:
        raise ValueError("this tokenizer has no chat template: set tokenizer.chat_template or pass chat_template=")
    return templates


def _unmark(text: str) -> tuple[str, list[tuple[int, int]]]:
    """The text without generation marks, and the ``[start, end)`` character spans they enclosed."""
    out, spans, start, pos = [], [], None, 0
    for char in text:
        if char == GEN_START:
            start = pos
        elif char == GEN_END:
            spans.append((start, pos))
        else:
            out.append(char)
            pos += 1
    return "".join(out), spans


def render(template: str, conversation: list, *, continue_final_message: bool | str = False,
           **variables: Any) -> tuple[str, list[tuple[int, int]]]:
    """Render one conversation.

    Args:
        template: The Jinja template.
        conversation: The messages.
        continue_final_message: Cut the text after the final message's content (or after the field this
            names, e.g. ``"reasoning_content"``), leaving it open for continuation.
        **variables: Template variables (``add_generation_prompt``, ``tools``, special tokens...).

    Returns:
        The text, and the character spans of its ``{% generation %}`` blocks.

    Raises:
        ValueError: For an empty conversation, or a final message not found in the rendered text.
    """
    messages = [_message(m) for m in conversation]
    if not messages:
        raise ValueError("cannot apply a chat template to an empty conversation")
    text, spans = _unmark(_environment().from_string(template).render(messages=messages, **variables))
    if continue_final_message:
        field = continue_final_message if isinstance(continue_final_message, str) else "content"
        final = str(messages[-1].get(field, "")).strip()
        if final not in text:
            raise ValueError(f"continue_final_message: the final message's {field!r} is not in the rendered text")
        text = text[: text.rindex(final) + len(final)]
        spans = [(a, min(b, len(text))) for a, b in spans if a < len(text)]
    return text, spans


def save_templates(templates: str | dict[str, str] | None, folder: Path, config: dict, *,
                   jinja_files: bool) -> list[Path]:
    """Write the templates (files, or into ``config``); returns the files written.

    Raises:
        ValueError: For a template name that is not a plain file name (checked before anything is written).
    """
    if templates is None:
        return []
    if isinstance(templates, dict):
        bad = [name for name in templates if name != "default" and not (_NAME.match(name) and ".." not in name)]
        if bad:
            raise ValueError(f"chat template names must be plain file names, got {bad}")
    if not jinja_files:
        config["chat_template"] = (templates if isinstance(templates, str)
                                   else [{"name": k, "template": v} for k, v in templates.items()])
        return []
    named = {"default": templates} if isinstance(templates, str) else dict(templates)
    written = []
    if "default" in named:
        path = folder / JINJA_FILE
        path.write_text(named.pop("default"), encoding="utf-8")
        written.append(path)
    for name, template in named.items():
        (folder / EXTRA_DIR).mkdir(exist_ok=True)
        path = folder / EXTRA_DIR / f"{name}.jinja"
        path.write_text(template, encoding="utf-8")
        written.append(path)
    return written


def load_templates(folder: Path | None, config: dict) -> str | dict[str, str] | None:
    """The templates of a saved tokenizer: ``chat_template.jinja`` (and extras) win over the config's."""
    value = config.get("chat_template")
    if isinstance(value, list):
        value = {item["name"]: item["template"] for item in value}
    if folder is not None and folder.is_dir():
        extras = {p.stem: p.read_text(encoding="utf-8") for p in sorted((folder / EXTRA_DIR).glob("*.jinja"))}
        if (folder / JINJA_FILE).is_file():
            default = (folder / JINJA_FILE).read_text(encoding="utf-8")
            value = {"default": default, **extras} if extras else default
        elif extras:
            value = {**(value if isinstance(value, dict) else {}), **extras}
    return value


class ChatTemplateMixin:
    """``apply_chat_template`` and the ``chat_template`` attribute (a template, or a dict of named ones)."""

    chat_template: str | dict[str, str] | None = None

    def apply_chat_template(self, conversation: list | list[list], tools: list | None = None,
                            documents: list | None = None, chat_template: str | None = None,
                            add_generation_prompt: bool = False, continue_final_message: bool | str = False,
                            tokenize: bool = True, padding: bool | str = False, truncation: bool = False,
                            max_length: int | None = None, return_tensors: str | None = None,
                            return_dict: bool = True, return_assistant_tokens_mask: bool = False,
                            **kwargs: Any) -> Any:
        """Render a conversation (or a batch of them) with a chat template, and tokenize it by default.

        Args:
            conversation: A list of messages (``{"role": ..., "content": ...}``), or a list of such lists.
            tools, documents: Passed to the template.
            chat_template: A template, or the name of one of :attr:`chat_template`'s (default: the default one).
            add_generation_prompt: Passed to the template.
            continue_final_message: Leave the final message open (see :func:`render`).
            tokenize: Return ids (else the rendered text).
            padding, truncation, max_length, return_tensors: As in ``__call__`` (when tokenizing).
            return_dict: Return the tokenizer's BatchEncoding (else only the ids).
            return_assistant_tokens_mask: Add ``assistant_masks``: 1 on tokens that start inside the template's
                ``{% generation %}`` blocks (needs ``return_dict``).
            **kwargs: More template variables.

        Returns:
            The text(s), the ids, or a BatchEncoding.

        Raises:
            ValueError: Without a template, for an empty conversation, or for ``continue_final_message`` with
                ``add_generation_prompt``.
        """
        if continue_final_message and add_generation_prompt:
            raise ValueError("continue_final_message and add_generation_prompt are exclusive")
        template = pick_template(self.chat_template, chat_template)
        batched = bool(conversation) and isinstance(conversation[0], (list, tuple))
        conversations = conversation if batched else [conversation]
        variables = {**self.special_tokens_map, "tools": tools, "documents": documents,
                     "add_generation_prompt": add_generation_prompt, **kwargs}
        rendered = [render(template, c, continue_final_message=continue_final_message, **variables)
                    for c in conversations]
        texts = [text for text, _ in rendered]
        if not tokenize:
            return texts if batched else texts[0]
        options = dict(add_special_tokens=False, padding=padding, truncation=truncation, max_length=max_length)
        out = self(texts if batched else texts[0], return_tensors=return_tensors, **options)
        if return_assistant_tokens_mask and return_dict:
            located = self(texts, return_offsets_mapping=True, return_attention_mask=True, **options)
            masks = [[int(m == 1 and e > s and any(a <= s < b for a, b in spans))
                      for (s, e), m in zip(offsets, attention)]
                     for (_, spans), offsets, attention in zip(rendered, located["offset_mapping"],
                                                               located["attention_mask"])]
            out["assistant_masks"] = (masks if batched else masks[0]) if return_tensors is None else \
                to_tensors({"assistant_masks": masks}, return_tensors)["assistant_masks"]
        return out if return_dict else out["input_ids"]

    special_tokens_map: dict[str, str]
