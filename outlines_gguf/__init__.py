"""outlines-gguf: guaranteed structured output for GGUF models run by llama.cpp.

>>> from llama_cpp import Llama, LogitsProcessorList
>>> from outlines_gguf import RegexLogitsProcessor
>>> llm = Llama("model.gguf")
>>> llm.create_completion("Year: ", logits_processor=LogitsProcessorList(
...     [RegexLogitsProcessor(r"[0-9]{4}", llm)]))
"""

from outlines_gguf import generate
from outlines_gguf.automata.dfa import ByteDFA
from outlines_gguf.compiler import (
    clear_caches,
    clear_guide_cache,
    compile_grammar,
    compile_json_schema,
    compile_regex,
)
from outlines_gguf.errors import (
    ChatTemplateError,
    ConcurrentUseError,
    ConstraintTooComplexError,
    ConstraintViolationError,
    EmptyLanguageError,
    GGUFFormatError,
    GrammarError,
    IncompleteGenerationError,
    OutlinesGGUFError,
    ProcessorFailedError,
    PromptTooLongError,
    RegexError,
    SchemaError,
    VocabularyError,
)
from outlines_gguf.grammar import shipped as grammars
from outlines_gguf.grammar.compiled import Grammar
from outlines_gguf.guides.base import RegexGuide, TokenMask
from outlines_gguf.guides.grammar import CFGGuide
from outlines_gguf.llama_cpp import model as models
from outlines_gguf.llama_cpp.processors import (
    CFGLogitsProcessor,
    GuideLogitsProcessor,
    JSONLogitsProcessor,
    RegexLogitsProcessor,
)
from outlines_gguf.llama_cpp.tracking import LogitTrackingProcessor, add_tracking
from outlines_gguf.tokens.cache import as_vocabulary
from outlines_gguf.tokens.vocabulary import Vocabulary

__version__ = "0.1.0"

__all__ = [
    "ByteDFA",
    "CFGGuide",
    "CFGLogitsProcessor",
    "ChatTemplateError",
    "ConcurrentUseError",
    "ConstraintTooComplexError",
    "ConstraintViolationError",
    "EmptyLanguageError",
    "GGUFFormatError",
    "Grammar",
    "GrammarError",
    "GuideLogitsProcessor",
    "IncompleteGenerationError",
    "JSONLogitsProcessor",
    "LogitTrackingProcessor",
    "OutlinesGGUFError",
    "ProcessorFailedError",
    "PromptTooLongError",
    "RegexError",
    "RegexGuide",
    "RegexLogitsProcessor",
    "SchemaError",
    "TokenMask",
    "Vocabulary",
    "VocabularyError",
    "__version__",
    "add_tracking",
    "as_vocabulary",
    "clear_caches",
    "clear_guide_cache",
    "compile_grammar",
    "compile_json_schema",
    "compile_regex",
    "generate",
    "grammars",
    "models",
]
