"""Task heads on the BigBird encoder. Each head is a small module; loss handling is written once."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bigbird.config import BigBirdConfig
from bigbird.generation import GenerationMixin
from bigbird.model import BigBirdModel, activation
from bigbird.modeling_utils import BigBirdPreTrainedModel
from bigbird.outputs import (
    BigBirdForPreTrainingOutput,
    BigBirdForQuestionAnsweringModelOutput,
    CausalLMOutputWithCrossAttentions,
    MaskedLMOutput,
    SequenceClassifierOutput,
    tuple_on_request,
)

IGNORE_INDEX = -100


class LMHead(nn.Module):
    """Dense, activation, LayerNorm, then the (tied) vocabulary projection (``cls.predictions``)."""

    def __init__(self, config: BigBirdConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(self.act(self.dense(x))))


class ClassificationHead(nn.Module):
    """First token -> dropout -> dense -> activation -> dropout -> labels (RoBERTa style)."""

    def __init__(self, config: BigBirdConfig) -> None:
        super().__init__()
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.act = activation(config.hidden_act)
        self.out_proj = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, sequence: torch.Tensor) -> torch.Tensor:
        x = self.dropout(sequence[:, 0])
        return self.out_proj(self.dropout(self.act(self.dense(x))))


class QAHead(nn.Module):
    """Dropout, a feed-forward block with residual LayerNorm, then start/end logits (``qa_classifier``)."""

    def __init__(self, config: BigBirdConfig) -> None:
        super().__init__()
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.dense_in = nn.Linear(config.hidden_size, config.intermediate_size)
        self.act = activation(config.hidden_act)
        self.dense_out = nn.Linear(config.intermediate_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.out = nn.Linear(config.hidden_size, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dense_out(self.act(self.dense_in(self.dropout(x))))
        return self.out(self.norm(self.dropout(h) + x))


def _encoder_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments a head passes on to its encoder (which always returns an output object)."""
    kwargs["return_dict"] = True
    return kwargs


def lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                           ignore_index=IGNORE_INDEX)


def classification_loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: str | None) -> torch.Tensor:
    """Regression, single- or multi-label loss; ``problem_type`` None infers it as transformers does,
    per call, without writing to the config."""
    num_labels = logits.shape[-1]
    if problem_type is None:
        if num_labels == 1:
            problem_type = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem_type = "single_label_classification"
        else:
            problem_type = "multi_label_classification"
    if problem_type == "regression":
        if num_labels == 1:
            return F.mse_loss(logits.squeeze().float(), labels.squeeze().to(torch.float32))
        return F.mse_loss(logits.float(), labels.float())
    if problem_type == "single_label_classification":
        return F.cross_entropy(logits.reshape(-1, num_labels).float(), labels.reshape(-1))
    return F.binary_cross_entropy_with_logits(logits.float(), labels.to(torch.float32))


class BigBirdForPreTraining(BigBirdPreTrainedModel):
    """Masked-LM and next-sentence heads; loss is their sum when both labels are given."""

    _tied_weights_keys = {"lm_head.decoder.weight": "bert.embeddings.word.weight"}

    def __init__(self, config: BigBirdConfig) -> None:
        super().__init__(config)
        self.bert = BigBirdModel(config, add_pooling_layer=True)
        self.lm_head = LMHead(config)
        self.nsp_head = nn.Linear(config.hidden_size, 2)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head.decoder

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head.decoder = value

    @tuple_on_request
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels: torch.Tensor | None = None,
                next_sentence_label: torch.Tensor | None = None, **kwargs: Any) -> BigBirdForPreTrainingOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        **_encoder_kwargs(kwargs))
        logits = self.lm_head(out.last_hidden_state)
        nsp = self.nsp_head(out.pooler_output)
        loss = None
        if labels is not None:
            loss = lm_loss(logits, labels)
            if next_sentence_label is not None:
                loss = loss + F.cross_entropy(nsp.view(-1, 2).float(), next_sentence_label.view(-1))
        return BigBirdForPreTrainingOutput(loss, logits, nsp, out.hidden_states, out.attentions)


class _LanguageModel(BigBirdPreTrainedModel):
    """An encoder with the (tied) LM head: shared by the masked and the causal LM."""

    _tied_weights_keys = {"lm_head.decoder.weight": "bert.embeddings.word.weight"}

    def __init__(self, config: BigBirdConfig) -> None:
        super().__init__(config)
        self.bert = BigBirdModel(config)
        self.lm_head = LMHead(config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head.decoder

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head.decoder = value


class BigBirdForMaskedLM(_LanguageModel):
    """Masked language modelling."""

    @tuple_on_request
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels: torch.Tensor | None = None, **kwargs: Any) -> MaskedLMOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        **_encoder_kwargs(kwargs))
        logits = self.lm_head(out.last_hidden_state)
        loss = lm_loss(logits, labels) if labels is not None else None
        return MaskedLMOutput(loss, logits, out.hidden_states, out.attentions)


class BigBirdForCausalLM(GenerationMixin, _LanguageModel):
    """Left-to-right LM (``config.is_decoder=True``) with a key/value cache and ``logits_to_keep``."""

    @tuple_on_request
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, encoder_hidden_states=None, encoder_attention_mask=None,
                past_key_values=None, labels: torch.Tensor | None = None, use_cache: bool | None = None,
                logits_to_keep: int | torch.Tensor = 0, shift_labels: torch.Tensor | None = None,
                **kwargs: Any) -> CausalLMOutputWithCrossAttentions:
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        encoder_hidden_states=encoder_hidden_states,
                        encoder_attention_mask=encoder_attention_mask, past_key_values=past_key_values,
                        use_cache=use_cache, **_encoder_kwargs(kwargs))
        hidden = out.last_hidden_state
        if isinstance(logits_to_keep, int):
            hidden = hidden[:, -logits_to_keep:] if logits_to_keep > 0 else hidden
        else:
            hidden = hidden[:, logits_to_keep]
        logits = self.lm_head(hidden)
        loss = None
        if shift_labels is not None:
            # Already shifted: position t predicts shift_labels[t] (transformers' convention).
            loss = lm_loss(logits, shift_labels)
        elif labels is not None:
            # Predict token t+1 from position t.
            loss = lm_loss(logits[:, :-1], labels[:, 1:])
        return CausalLMOutputWithCrossAttentions(loss, logits, out.past_key_values, out.hidden_states,
                                                 out.attentions, out.cross_attentions)


class BigBirdForSequenceClassification(BigBirdPreTrainedModel):
    """Classification or regression from the first token (``config.problem_type``)."""

    _optional_prefixes = ("bert.pooler.",)

    def __init__(self, config: BigBirdConfig) -> None:
        super().__init__(config)
        self.bert = BigBirdModel(config)
        self.classifier = ClassificationHead(config)
        self.post_init()

    @tuple_on_request
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels: torch.Tensor | None = None, **kwargs: Any) -> SequenceClassifierOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        **_encoder_kwargs(kwargs))
        logits = self.classifier(out.last_hidden_state)
        loss = classification_loss(logits, labels, self.config.problem_type) if labels is not None else None
        return SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions)


class BigBirdForMultipleChoice(BigBirdPreTrainedModel):
    """Scores ``(batch, choices, length)`` inputs: a reshape around a one-logit classifier."""

    def __init__(self, config: BigBirdConfig) -> None:
        super().__init__(config)
        self.bert = BigBirdModel(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    @tuple_on_request
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels: torch.Tensor | None = None, **kwargs: Any) -> SequenceClassifierOutput:
        ref = input_ids if input_ids is not None else inputs_embeds
        if ref is None or ref.dim() < 3:
            raise ValueError("multiple choice inputs must be (batch, num_choices, sequence)"
                             f"{'' if ref is None else f', got shape {tuple(ref.shape)}'}")
        B, C = ref.shape[:2]

        def flat(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.reshape(B * C, *t.shape[2:])

        out = self.bert(flat(input_ids), flat(attention_mask), flat(token_type_ids), flat(position_ids),
                        flat(inputs_embeds), **_encoder_kwargs(kwargs))
        logits = self.classifier(self.dropout(out.pooler_output)).view(B, C)
        loss = F.cross_entropy(logits.float(), labels.view(-1)) if labels is not None else None
        return SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions)


class BigBirdForTokenClassification(BigBirdPreTrainedModel):
    """A label per token."""

    def __init__(self, config: BigBirdConfig) -> None:
        super().__init__(config)
        self.bert = BigBirdModel(config)
        p = config.classifier_dropout if config.classifier_dropout is not None else config.hidden_dropout_prob
        self.dropout = nn.Dropout(p)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    @tuple_on_request
    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None, labels: torch.Tensor | None = None, **kwargs: Any) -> SequenceClassifierOutput:
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        **_encoder_kwargs(kwargs))
        logits = self.classifier(self.dropout(out.last_hidden_state))
        loss = lm_loss(logits, labels) if labels is not None else None
        return SequenceClassifierOutput(loss, logits, out.hidden_states, out.attentions)


class BigBirdForQuestionAnswering(BigBirdPreTrainedModel):
    """Span extraction. Question tokens (up to the first ``[SEP]``) cannot be predicted as answers."""

    def __init__(self, config: BigBirdConfig, add_pooling_layer: bool = False) -> None:
        super().__init__(config)
        self.bert = BigBirdModel(config, add_pooling_layer=add_pooling_layer)
        self.qa_head = QAHead(config)
        self.post_init()

    @tuple_on_request
    def forward(self, input_ids=None, attention_mask=None, question_lengths: torch.Tensor | None = None,
                token_type_ids=None, position_ids=None, inputs_embeds=None,
                start_positions: torch.Tensor | None = None, end_positions: torch.Tensor | None = None,
                **kwargs: Any) -> BigBirdForQuestionAnsweringModelOutput:
        # Validate before deriving the question mask from the ids.
        _, L = self.bert._check_inputs(input_ids, inputs_embeds, attention_mask, token_type_ids, 0)
        ref = input_ids if input_ids is not None else inputs_embeds
        if question_lengths is None and input_ids is not None:
            # The question ends at the first [SEP] (inclusive).
            question_lengths = (input_ids == self.config.sep_token_id).int().argmax(-1, keepdim=True) + 1
        question_mask = None
        if question_lengths is not None:
            question_mask = torch.arange(L, device=ref.device)[None, :] < question_lengths.view(-1, 1)
            if token_type_ids is None:
                token_type_ids = (~question_mask).long()
            question_mask = question_mask.clone()
            question_mask[:, 0] = False  # [CLS] stays predictable (no-answer)
        out = self.bert(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds,
                        **_encoder_kwargs(kwargs))
        logits = self.qa_head(out.last_hidden_state)
        if question_mask is not None:
            logits = logits - question_mask[..., None].to(logits.dtype) * 1e6
        start_logits, end_logits = logits.unbind(-1)
        loss = None
        if start_positions is not None and end_positions is not None:
            ignored = start_logits.shape[1]
            start = start_positions.view(-1).clamp(0, ignored)
            end = end_positions.view(-1).clamp(0, ignored)
            loss = (F.cross_entropy(start_logits.float(), start, ignore_index=ignored)
                    + F.cross_entropy(end_logits.float(), end, ignore_index=ignored)) / 2
        return BigBirdForQuestionAnsweringModelOutput(loss, start_logits.contiguous(), end_logits.contiguous(),
                                                      out.pooler_output, out.hidden_states, out.attentions)
