"""A tied output embedding appears once in ``state_dict()``: under the input embedding's name.

The masked/causal LM and pre-training heads tie ``lm_head.decoder.weight`` to ``bert.embeddings.word.weight``
(one ``Parameter``; the pairs are the model's ``_tied_weights_keys``, alias -> source). ``nn.Module.state_dict``
lists a shared parameter under each of its names, and ``safetensors.torch.save_file`` refuses a tensor stored
under two names. ``transformers.Trainer`` saves a model that is not transformers' own ``PreTrainedModel``
exactly that way (``Trainer._save``: ``save_file(model.state_dict(), ...)``, for ``save_model`` and for every
periodic checkpoint), so these heads could not be saved by it. So while the weights really are tied (the same
``Parameter``), the alias is left out of the state dict, as ``save_pretrained`` leaves it out of the file, and
loading a state dict without it fills it from its source, so that neither ``strict=True`` nor Trainer's resume
reports it missing. A model whose weights are untied (``tie_word_embeddings=False``) keeps both keys.

transformers' own models do list both names (its peer test ``test_tied_weights_keys`` asserts that the two
names share one storage in ``state_dict()``); they get away with it because Trainer calls their
``save_pretrained`` instead.
"""

from __future__ import annotations

from typing import Any

from torch import nn


def tied_aliases(model: nn.Module) -> list[str]:
    """The model's ``_tied_weights_keys`` aliases (its own parameter names) that are the same ``Parameter``
    as their source right now."""
    out = []
    for alias, source in (getattr(model, "_tied_weights_keys", None) or {}).items():
        try:
            if model.get_parameter(alias) is model.get_parameter(source):
                out.append(alias)
        except AttributeError:  # a head without that module (e.g. replaced output embeddings)
            continue
    return out


def drop_tied_aliases(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    """``register_state_dict_post_hook``: remove the aliases of tied parameters."""
    for alias in tied_aliases(module):
        state_dict.pop(prefix + alias, None)


def fill_tied_aliases(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: dict[str, Any],
                      strict: bool, missing_keys: list[str], unexpected_keys: list[str],
                      error_msgs: list[str]) -> None:
    """``register_load_state_dict_pre_hook``: an alias the state dict lacks takes its source's tensor (the same
    parameter, so the same values), unless the source is missing too. ``state_dict`` is ``load_state_dict``'s
    own copy, not the caller's."""
    for alias in tied_aliases(module):
        source = module._tied_weights_keys[alias]
        if prefix + alias not in state_dict and prefix + source in state_dict:
            state_dict[prefix + alias] = state_dict[prefix + source]


def retie(module: nn.Module, incompatible_keys: Any) -> None:
    """``register_load_state_dict_post_hook``: ``load_state_dict(assign=True)`` gives each key its own new
    ``Parameter``; tie them again (a no-op after an ordinary load, which copies into the shared one)."""
    if getattr(module, "_tied_weights_keys", None):
        module.tie_weights()


def register(model: nn.Module) -> None:
    """Install the hooks on ``model`` (they do nothing for a model without tied parameters)."""
    model.register_state_dict_post_hook(drop_tied_aliases)
    model.register_load_state_dict_pre_hook(fill_tied_aliases)
    model.register_load_state_dict_post_hook(retie)
