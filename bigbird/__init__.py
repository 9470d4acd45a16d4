"""BigBird long-document transformer in PyTorch (pure PyTorch core; no Ray here)."""

from bigbird.config import BigBirdConfig
from bigbird.heads import (
    BigBirdForCausalLM,
    BigBirdForMaskedLM,
    BigBirdForMultipleChoice,
    BigBirdForPreTraining,
    BigBirdForQuestionAnswering,
    BigBirdForSequenceClassification,
    BigBirdForTokenClassification,
)
from bigbird.model import BigBirdModel
from bigbird.modeling_utils import BigBirdPreTrainedModel
from bigbird.tasks import pipeline
from bigbird.tokenization import BigBirdTokenizer, DNATokenizer

__all__ = [
    "BigBirdConfig",
    "BigBirdModel",
    "BigBirdPreTrainedModel",
    "BigBirdForPreTraining",
    "BigBirdForMaskedLM",
    "BigBirdForCausalLM",
    "BigBirdForSequenceClassification",
    "BigBirdForMultipleChoice",
    "BigBirdForTokenClassification",
    "BigBirdForQuestionAnswering",
    "BigBirdTokenizer",
    "DNATokenizer",
    "pipeline",
]
