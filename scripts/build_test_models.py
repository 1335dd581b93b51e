"""Build the random-weight GGUF models used by the outlines_gguf tests and benchmarks.

The models pair real tokenizers with random weights:

* The vocabulary-only GGUF files (``ggml-vocab-*.gguf``) that llama.cpp ships for
  its tokenizer tests are taken from the llama-cpp-python source distribution,
  downloaded with ``pip download`` into ``.cache/sdist`` and extracted into
  ``models/vocab/``.
* Around three of them, small ``llama``/``qwen2`` transformers with seeded random
  weights are written with ``gguf.GGUFWriter`` (``tiny-*.gguf``).  With
  ``--realistic`` a Qwen2.5-0.5B-sized, Q8_0-quantized model is also written for
  benchmarks (``realistic-qwen2.gguf``).

Every ``tokenizer.*`` key of the vocabulary file is copied verbatim, so the
models tokenize exactly like the real ones; their outputs are gibberish, but
the next-token distributions are varied and cover the whole vocabulary.

Each written model is loaded with llama-cpp-python (when it is installed) and
asked for a few tokens as a smoke test.

Usage::

    python scripts/build_test_models.py [--realistic] [--force] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import importlib.metadata
import math
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import gguf
import numpy as np

SCRIPT_PATH = Path(__file__).resolve()
REPO_ROOT = SCRIPT_PATH.parent.parent
DEFAULT_OUT_DIR = REPO_ROOT / "models"
DEFAULT_VOCAB_DIR = REPO_ROOT / "models" / "vocab"
DEFAULT_CACHE_DIR = REPO_ROOT / ".cache" / "sdist"
DEFAULT_LLAMA_CPP_VERSION = "0.3.36"

PACKAGE_NAME = "llama-cpp-python"
VOCAB_MEMBER_PATTERN = "*/vendor/llama.cpp/models/ggml-vocab-*.gguf"

F16 = gguf.GGMLQuantizationType.F16
F32 = gguf.GGMLQuantizationType.F32
Q8_0 = gguf.GGMLQuantizationType.Q8_0

# Weight initialisation.  Matrices use N(0, 1/fan_in) so every layer changes
# the residual stream by O(1) and the output depends on the whole context.
# Embeddings are tied to the output head; they are kept small (as in real
# models) so the input token hardly biases its own logit, and the final norm
# gain is chosen so the logits have roughly TARGET_LOGIT_STD: the
# distributions are neither flat nor one-hot.
EMBED_STD = 0.02
BIAS_STD = 0.1
NORM_JITTER = 0.1
TARGET_LOGIT_STD = 3.0
CHUNK_ELEMENTS = 1 << 22  # random numbers generated per step (16 MiB of f32)

CHECK_PROMPT = "The quick brown fox"
CHECK_MAX_TOKENS = 8
CHECK_N_CTX = 256
CHECK_SEED = 1234

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}"
    "{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)


@dataclass(frozen=True)
class ChatTemplate:
    """A fallback chat template and the special tokens it needs in the vocabulary."""

    template: str
    required_tokens: tuple[str, ...]


CHATML = ChatTemplate(CHATML_TEMPLATE, ("<|im_start|>", "<|im_end|>"))
LLAMA3 = ChatTemplate(
    LLAMA3_TEMPLATE,
    ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
)


@dataclass(frozen=True)
class ModelSpec:
    """Architecture, size and provenance of one generated model."""

    name: str
    vocab_file: str
    arch: str
    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_ctx: int
    rope_theta: float
    rms_eps: float
    qkv_bias: bool
    matrix_type: gguf.GGMLQuantizationType
    seed: int
    realistic: bool = False
    chat_template: ChatTemplate | None = None

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def file_type(self) -> gguf.LlamaFileType:
        if self.matrix_type == Q8_0:
            return gguf.LlamaFileType.MOSTLY_Q8_0
        return gguf.LlamaFileType.MOSTLY_F16


@dataclass(frozen=True)
class Vocabulary:
    """The `tokenizer.*` fields of a vocabulary GGUF file and its token list."""

    fields: dict[str, gguf.ReaderField]
    tokens: list[str]


@dataclass(frozen=True)
class TensorPlan:
    """One tensor to write: name, numpy (row-major) shape, storage type and init."""

    name: str
    shape: tuple[int, ...]
    qtype: gguf.GGMLQuantizationType
    std: float
    mean: float = 0.0


MODEL_SPECS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="tiny-llama-spm",
        vocab_file="ggml-vocab-llama-spm.gguf",
        arch="llama",
        n_embd=64, n_layer=2, n_head=4, n_head_kv=4, n_ff=128, n_ctx=2048,
        rope_theta=10000.0, rms_eps=1e-5, qkv_bias=False,
        matrix_type=F16, seed=1001,
    ),
    ModelSpec(
        name="tiny-llama3-bpe",
        vocab_file="ggml-vocab-llama-bpe.gguf",
        arch="llama",
        n_embd=64, n_layer=2, n_head=4, n_head_kv=2, n_ff=128, n_ctx=2048,
        rope_theta=500000.0, rms_eps=1e-5, qkv_bias=False,
        matrix_type=F16, seed=1002, chat_template=LLAMA3,
    ),
    ModelSpec(
        name="tiny-qwen2",
        vocab_file="ggml-vocab-qwen2.gguf",
        arch="qwen2",
        n_embd=64, n_layer=2, n_head=4, n_head_kv=2, n_ff=128, n_ctx=2048,
        rope_theta=1000000.0, rms_eps=1e-6, qkv_bias=True,
        matrix_type=F16, seed=1003, chat_template=CHATML,
    ),
    ModelSpec(
        name="realistic-qwen2",
        vocab_file="ggml-vocab-qwen2.gguf",
        arch="qwen2",
        n_embd=896, n_layer=24, n_head=14, n_head_kv=2, n_ff=4864, n_ctx=4096,
        rope_theta=1000000.0, rms_eps=1e-6, qkv_bias=True,
        matrix_type=Q8_0, seed=2001, realistic=True, chat_template=CHATML,
    ),
)


class Console:
    """Prints progress lines; `--quiet` keeps only the one-line artifact summaries."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def detail(self, message: str) -> None:
        if not self.quiet:
            print(message, flush=True)

    def artifact(self, message: str) -> None:
        print(message, flush=True)


# --------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    names = [spec.name for spec in MODEL_SPECS]
    parser = argparse.ArgumentParser(
        description="Build the random-weight GGUF test models (real vocabularies, random weights).",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT_DIR,
                        help=f"directory for the models (default: {DEFAULT_OUT_DIR})")
    parser.add_argument("--vocab-dir", type=Path, default=DEFAULT_VOCAB_DIR,
                        help="directory for the extracted ggml-vocab-*.gguf files "
                             f"(default: {DEFAULT_VOCAB_DIR})")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR,
                        help=f"where the llama-cpp-python sdist is downloaded (default: {DEFAULT_CACHE_DIR})")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=names,
                        help=f"build only these models (any of: {', '.join(names)}); "
                             "naming a realistic model implies --realistic")
    parser.add_argument("--realistic", action="store_true",
                        help="also build realistic-qwen2.gguf (Qwen2.5-0.5B dimensions, Q8_0, ~0.5 GB)")
    parser.add_argument("--force", action="store_true",
                        help="rebuild models even when they are newer than this script")
    parser.add_argument("--quiet", action="store_true",
                        help="print only one line per artifact")
    parser.add_argument("--llama-cpp-version", default=None,
                        help="llama-cpp-python sdist version to take the vocabularies from "
                             "(default: the installed version, else "
                             f"{DEFAULT_LLAMA_CPP_VERSION})")
    return parser.parse_args(argv)


def select_specs(only: Sequence[str] | None, realistic: bool) -> list[ModelSpec]:
    """Return the specs the command line asks for, in declaration order."""
    if only:
        wanted = set(only)
        return [spec for spec in MODEL_SPECS if spec.name in wanted]
    return [spec for spec in MODEL_SPECS if realistic or not spec.realistic]


def is_up_to_date(path: Path) -> bool:
    """True when `path` exists and is newer than this script."""
    return path.exists() and path.stat().st_mtime > SCRIPT_PATH.stat().st_mtime


def format_size(n_bytes: int) -> str:
    """Human-readable size in MB/kB."""
    if n_bytes >= 1_000_000:
        return f"{n_bytes / 1_000_000:.1f} MB"
    return f"{n_bytes / 1_000:.1f} kB"


# ------------------------------------------------------------------ vocabularies


def installed_llama_cpp_version() -> str | None:
    """Version of the installed llama-cpp-python, or None when it is not installed."""
    try:
        import llama_cpp
    except ImportError:
        pass
    else:
        version = getattr(llama_cpp, "__version__", None)
        if version:
            return str(version)
    try:
        return importlib.metadata.version(PACKAGE_NAME)
    except importlib.metadata.PackageNotFoundError:
        return None


def resolve_llama_cpp_version(requested: str | None) -> str:
    """An explicit --llama-cpp-version, else the installed version, else the default."""
    return requested or installed_llama_cpp_version() or DEFAULT_LLAMA_CPP_VERSION


def find_sdist(cache_dir: Path, version: str) -> Path | None:
    """The cached sdist tarball for `version`, if it was downloaded before."""
    for stem in ("llama_cpp_python", "llama-cpp-python"):
        candidate = cache_dir / f"{stem}-{version}.tar.gz"
        if candidate.is_file():
            return candidate
    return None


def download_sdist(cache_dir: Path, version: str, console: Console) -> Path:
    """Download the llama-cpp-python sdist with pip and return the tarball path."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        f"{PACKAGE_NAME}=={version}", "-d", str(cache_dir),
    ]
    console.detail(f"downloading {PACKAGE_NAME}=={version} sdist into {cache_dir}")
    quiet_flags = ["--quiet"] if console.quiet else []
    subprocess.run(command + quiet_flags, check=True)
    tarball = find_sdist(cache_dir, version)
    if tarball is None:
        raise FileNotFoundError(f"pip download left no {PACKAGE_NAME} {version} tarball in {cache_dir}")
    return tarball


def ensure_sdist(cache_dir: Path, version: str, console: Console) -> Path:
    """Return the sdist tarball, downloading it only when it is not cached."""
    tarball = find_sdist(cache_dir, version)
    if tarball is not None:
        console.detail(f"using cached {tarball}")
        return tarball
    return download_sdist(cache_dir, version, console)


def extract_vocabularies(tarball: Path, vocab_dir: Path) -> list[Path]:
    """Stream the tarball and extract missing ggml-vocab-*.gguf files; return the new ones."""
    vocab_dir.mkdir(parents=True, exist_ok=True)
    extracted: list[Path] = []
    with tarfile.open(tarball, mode="r|gz") as archive:
        for member in archive:
            if not member.isfile() or not fnmatch.fnmatch(member.name, VOCAB_MEMBER_PATTERN):
                continue
            destination = vocab_dir / PurePosixPath(member.name).name
            if destination.exists():
                continue
            source = archive.extractfile(member)
            if source is None:
                continue
            partial = destination.with_name(destination.name + ".partial")
            with source, partial.open("wb") as sink:
                shutil.copyfileobj(source, sink)
            os.replace(partial, destination)
            extracted.append(destination)
    return extracted


def ensure_vocabularies(
    needed: Sequence[str], vocab_dir: Path, cache_dir: Path, version: str, console: Console,
) -> None:
    """Make sure every vocabulary file in `needed` exists in `vocab_dir`."""
    missing = [name for name in needed if not (vocab_dir / name).exists()]
    if not missing:
        return
    start = time.perf_counter()
    tarball = ensure_sdist(cache_dir, version, console)
    extracted = extract_vocabularies(tarball, vocab_dir)
    total = sum(path.stat().st_size for path in extracted)
    console.artifact(
        f"vocab/: extracted {len(extracted)} ggml-vocab files ({format_size(total)}) "
        f"from {tarball.name} in {time.perf_counter() - start:.1f} s"
    )
    still_missing = [name for name in needed if not (vocab_dir / name).exists()]
    if still_missing:
        raise FileNotFoundError(f"{tarball.name} has no {', '.join(still_missing)}")


# ---------------------------------------------------------------------- metadata


def field_value(field: gguf.ReaderField) -> tuple[Any, gguf.GGUFValueType, gguf.GGUFValueType | None]:
    """Value, GGUF type and array element type of a GGUFReader field."""
    main_type = field.types[0]
    if main_type != gguf.GGUFValueType.ARRAY:
        return field.contents(), main_type, None
    if len(field.types) != 2:
        raise ValueError(f"nested GGUF arrays are not supported ({field.name})")
    return field.contents(), main_type, field.types[1]


def read_tokenizer_fields(reader: gguf.GGUFReader) -> dict[str, gguf.ReaderField]:
    """All `tokenizer.*` fields of a GGUF file, in file order."""
    return {key: field for key, field in reader.fields.items() if key.startswith("tokenizer.")}


@functools.cache
def load_vocabulary(path: Path) -> Vocabulary:
    """Parse a vocabulary file once per run (GGUFReader takes seconds on 150k tokens)."""
    fields = read_tokenizer_fields(gguf.GGUFReader(path))
    return Vocabulary(fields, fields[gguf.Keys.Tokenizer.LIST].contents())


def copy_tokenizer_metadata(writer: gguf.GGUFWriter, fields: dict[str, gguf.ReaderField]) -> None:
    """Copy tokenizer key-values with their original GGUF value types."""
    for key, field in fields.items():
        value, value_type, sub_type = field_value(field)
        writer.add_key_value(key, value, value_type, sub_type=sub_type)


def fallback_chat_template(
    spec: ModelSpec, fields: dict[str, gguf.ReaderField], tokens: Sequence[str],
) -> str | None:
    """The spec's fallback template when the vocabulary has none and supports it."""
    if gguf.Keys.Tokenizer.CHAT_TEMPLATE in fields or spec.chat_template is None:
        return None
    available = set(tokens)
    if not all(token in available for token in spec.chat_template.required_tokens):
        return None
    return spec.chat_template.template


def add_model_metadata(writer: gguf.GGUFWriter, spec: ModelSpec, n_vocab: int) -> None:
    """General and architecture hyperparameter key-values."""
    writer.add_name(spec.name)
    writer.add_description(
        f"Random-weight test model (seed {spec.seed}) with the {spec.vocab_file} vocabulary; "
        "built by scripts/build_test_models.py"
    )
    writer.add_file_type(spec.file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(spec.n_ctx)
    writer.add_embedding_length(spec.n_embd)
    writer.add_block_count(spec.n_layer)
    writer.add_feed_forward_length(spec.n_ff)
    writer.add_head_count(spec.n_head)
    writer.add_head_count_kv(spec.n_head_kv)
    writer.add_layer_norm_rms_eps(spec.rms_eps)
    writer.add_rope_freq_base(spec.rope_theta)
    writer.add_rope_dimension_count(spec.head_dim)
    writer.add_vocab_size(n_vocab)


# ----------------------------------------------------------------------- tensors


def output_norm_gain(spec: ModelSpec) -> float:
    """Final-norm gain that gives tied-embedding logits a std of about TARGET_LOGIT_STD."""
    return TARGET_LOGIT_STD / (math.sqrt(spec.n_embd) * EMBED_STD)


def plan_tensors(spec: ModelSpec, n_vocab: int) -> list[TensorPlan]:
    """Tensors in llama.cpp's naming and (numpy row-major) shapes; output is tied."""
    n_embd, n_ff = spec.n_embd, spec.n_ff
    n_q = spec.head_dim * spec.n_head
    n_kv = spec.head_dim * spec.n_head_kv
    matrix = spec.matrix_type
    plans = [
        TensorPlan("token_embd.weight", (n_vocab, n_embd), matrix, EMBED_STD),
        TensorPlan("output_norm.weight", (n_embd,), F32, 0.0, output_norm_gain(spec)),
    ]
    for i in range(spec.n_layer):
        block = f"blk.{i}"
        plans += [
            TensorPlan(f"{block}.attn_norm.weight", (n_embd,), F32, NORM_JITTER, 1.0),
            TensorPlan(f"{block}.attn_q.weight", (n_q, n_embd), matrix, n_embd ** -0.5),
            TensorPlan(f"{block}.attn_k.weight", (n_kv, n_embd), matrix, n_embd ** -0.5),
            TensorPlan(f"{block}.attn_v.weight", (n_kv, n_embd), matrix, n_embd ** -0.5),
        ]
        if spec.qkv_bias:
            plans += [
                TensorPlan(f"{block}.attn_q.bias", (n_q,), F32, BIAS_STD),
                TensorPlan(f"{block}.attn_k.bias", (n_kv,), F32, BIAS_STD),
                TensorPlan(f"{block}.attn_v.bias", (n_kv,), F32, BIAS_STD),
            ]
        plans += [
            TensorPlan(f"{block}.attn_output.weight", (n_embd, n_q), matrix, n_q ** -0.5),
            TensorPlan(f"{block}.ffn_norm.weight", (n_embd,), F32, NORM_JITTER, 1.0),
            TensorPlan(f"{block}.ffn_gate.weight", (n_ff, n_embd), matrix, n_embd ** -0.5),
            TensorPlan(f"{block}.ffn_up.weight", (n_ff, n_embd), matrix, n_embd ** -0.5),
            TensorPlan(f"{block}.ffn_down.weight", (n_embd, n_ff), matrix, n_ff ** -0.5),
        ]
    return plans


def storage_layout(plan: TensorPlan) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and numpy dtype of the encoded tensor as handed to GGUFWriter."""
    if plan.qtype == F32:
        return plan.shape, np.dtype(np.float32)
    if plan.qtype == F16:
        return plan.shape, np.dtype(np.float16)
    return gguf.quant_shape_to_byte_shape(plan.shape, plan.qtype), np.dtype(np.uint8)


def iter_row_chunks(n_rows: int, n_cols: int) -> Iterator[tuple[int, int]]:
    """(start, stop) row ranges holding about CHUNK_ELEMENTS values each."""
    step = max(1, CHUNK_ELEMENTS // max(1, n_cols))
    for start in range(0, n_rows, step):
        yield start, min(n_rows, start + step)


def generate_tensor(plan: TensorPlan, rng: np.random.Generator) -> np.ndarray:
    """Random N(mean, std) values for `plan`, encoded chunk by chunk in its storage type."""
    shape, dtype = storage_layout(plan)
    encoded = np.empty(shape, dtype=dtype)
    rows = encoded.reshape(-1, shape[-1])
    n_cols = plan.shape[-1]
    n_rows = rows.shape[0]
    for start, stop in iter_row_chunks(n_rows, n_cols):
        block = rng.standard_normal((stop - start, n_cols), dtype=np.float32)
        block *= np.float32(plan.std)
        block += np.float32(plan.mean)
        rows[start:stop] = gguf.quants.quantize(block, plan.qtype)
    return encoded


def register_tensors(writer: gguf.GGUFWriter, plans: Sequence[TensorPlan]) -> None:
    """Declare every tensor's name, shape and type before the header is written."""
    for plan in plans:
        shape, dtype = storage_layout(plan)
        n_bytes = math.prod(shape) * dtype.itemsize
        writer.add_tensor_info(plan.name, shape, dtype, n_bytes, raw_dtype=plan.qtype)


def stream_tensors(writer: gguf.GGUFWriter, plans: Sequence[TensorPlan], seed: int) -> None:
    """Generate and write the tensors one at a time, so only one is ever in memory."""
    for index, plan in enumerate(plans):
        rng = np.random.default_rng((seed, index))
        writer.write_tensor_data(generate_tensor(plan, rng))


# ------------------------------------------------------------------------ models


def write_model(spec: ModelSpec, vocab_path: Path, destination: Path) -> None:
    """Write one model to `destination` (via a `.tmp` file renamed into place)."""
    vocab = load_vocabulary(vocab_path)
    plans = plan_tensors(spec, len(vocab.tokens))

    partial = destination.with_name(destination.name + ".tmp")
    writer = gguf.GGUFWriter(partial, spec.arch)
    try:
        add_model_metadata(writer, spec, len(vocab.tokens))
        copy_tokenizer_metadata(writer, vocab.fields)
        template = fallback_chat_template(spec, vocab.fields, vocab.tokens)
        if template is not None:
            writer.add_chat_template(template)
        register_tensors(writer, plans)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        stream_tensors(writer, plans, spec.seed)
        writer.close()
        os.replace(partial, destination)
    finally:
        writer.close()
        partial.unlink(missing_ok=True)


def build_model(spec: ModelSpec, vocab_dir: Path, out_dir: Path, console: Console) -> Path:
    """Build one model and print its one-line summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    destination = out_dir / spec.filename
    start = time.perf_counter()
    write_model(spec, vocab_dir / spec.vocab_file, destination)
    elapsed = time.perf_counter() - start
    console.artifact(
        f"{spec.filename}: {format_size(destination.stat().st_size)}, built in {elapsed:.1f} s "
        f"({spec.arch}, {spec.n_layer} layers, n_embd {spec.n_embd}, {spec.matrix_type.name})"
    )
    return destination


def check_model_loads(path: Path, console: Console) -> None:
    """Load `path` with llama-cpp-python and sample a few tokens, reporting tokens/s."""
    try:
        import llama_cpp
    except ImportError:
        console.detail(f"  load check skipped for {path.name}: llama_cpp is not importable")
        return
    load_start = time.perf_counter()
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=CHECK_N_CTX, verbose=False)
    try:
        load_time = time.perf_counter() - load_start
        # Untimed warm-up: the first decode pays one-off costs (graph allocation,
        # page faults on the freshly written file) that would swamp 8 tokens.
        llm.create_completion(CHECK_PROMPT, max_tokens=1, temperature=1.0, seed=CHECK_SEED)
        start = time.perf_counter()
        result = llm.create_completion(
            CHECK_PROMPT, max_tokens=CHECK_MAX_TOKENS, temperature=1.0, seed=CHECK_SEED,
        )
        elapsed = time.perf_counter() - start
    finally:
        llm.close()
    n_tokens = result["usage"]["completion_tokens"]
    text = result["choices"][0]["text"]
    console.detail(
        f"  load check {path.name}: loaded in {load_time:.2f} s, {n_tokens} tokens in "
        f"{elapsed:.2f} s ({n_tokens / elapsed:.1f} tok/s), text={text!r}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Build (and smoke-test) the selected models."""
    args = parse_args(argv)
    console = Console(args.quiet)
    specs = select_specs(args.only, args.realistic)
    out_dir: Path = args.out.resolve()

    pending: list[ModelSpec] = []
    for spec in specs:
        destination = out_dir / spec.filename
        if not args.force and is_up_to_date(destination):
            size = format_size(destination.stat().st_size)
            console.artifact(f"{spec.filename}: {size}, up to date (skipped)")
        else:
            pending.append(spec)
    if not pending:
        return 0

    version = resolve_llama_cpp_version(args.llama_cpp_version)
    needed = sorted({spec.vocab_file for spec in pending})
    ensure_vocabularies(needed, args.vocab_dir.resolve(), args.cache_dir.resolve(), version, console)

    for spec in pending:
        path = build_model(spec, args.vocab_dir.resolve(), out_dir, console)
        check_model_loads(path, console)
    return 0


if __name__ == "__main__":
    sys.exit(main())
