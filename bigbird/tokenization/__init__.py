"""Tokenizers for BigBird on the ``tokenizers`` library: SentencePiece Unigram, any tokenizer.json, DNA."""

from bigbird.tokenization.batch import BatchEncoding
from bigbird.tokenization.core import BigBirdTokenizer
from bigbird.tokenization.dna import DNATokenizer
from bigbird.tokenization.kmer import KmerDNATokenizer

__all__ = ["BatchEncoding", "BigBirdTokenizer", "DNATokenizer", "KmerDNATokenizer"]
