"""BigBird tokenizers (the code lives in :mod:`bigbird.tokenization`).

``BigBirdTokenizer`` is BigBird's SentencePiece Unigram tokenizer with a transformers-like API;
``DNATokenizer`` is its character-level sibling for genomes.
"""

from bigbird.tokenization import BatchEncoding, BigBirdTokenizer, DNATokenizer

__all__ = ["BatchEncoding", "BigBirdTokenizer", "DNATokenizer"]
