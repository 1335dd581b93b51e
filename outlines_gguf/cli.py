"""The ``outlines-gguf`` command line (also ``python -m outlines_gguf``).

    outlines-gguf regex '[0-9]{4}' -p "The Eiffel Tower was completed in "
    outlines-gguf json person.schema.json -p "A person as JSON: " --max-tokens 200
    outlines-gguf json '{"type": "integer", "minimum": 0}' -p "How many? "
    outlines-gguf cfg arithmetic.lark -p "A sum: "
    outlines-gguf cfg json.gbnf -p "Some JSON: "            # llama.cpp's GBNF grammars too
    outlines-gguf choice yes no maybe -p "Is it raining? " --chat
    outlines-gguf serve --model model.gguf --port 8000     # an OpenAI-compatible server

Without ``--model`` it runs on the project's embedded demo model
(``models/tiny-qwen2.gguf`` in the repository, or in the folder named by
``OUTLINES_GGUF_MODELS``), whose weights are random: the text is gibberish
but always fits the constraint. The result goes to stdout; progress lines,
errors and the ``--track`` table go to stderr. Exit codes: 0 success,
1 generation failed (incomplete at ``--max-tokens``, a processor failure),
2 bad input (a pattern, schema, grammar or file we cannot use).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from outlines_gguf.errors import IncompleteGenerationError, OutlinesGGUFError, ProcessorFailedError

DEFAULT_MODEL_NAME = "tiny-qwen2.gguf"
MODELS_ENV = "OUTLINES_GGUF_MODELS"
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class UsageError(Exception):
    """Bad input from the command line: reported on one line, exit code 2."""


def default_model_path() -> Path:
    """The embedded demo model: in ``$OUTLINES_GGUF_MODELS`` if set, else the repository's ``models/``."""
    folder = os.environ.get(MODELS_ENV)
    base = Path(folder) if folder else Path(__file__).resolve().parent.parent / "models"
    return base / DEFAULT_MODEL_NAME


class Progress:
    """Show ``message`` on one stderr line if the block takes longer than ``delay`` seconds.

    Quick steps print nothing; slow ones print ``message ...`` once and
    `` done (1.2 s)`` when they end.
    """

    def __init__(self, message: str, stream: TextIO | None = None, delay: float = 0.5) -> None:
        self.message = message
        self.stream = stream if stream is not None else sys.stderr
        self.delay = delay
        self.shown = False
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._start = 0.0

    def _show(self) -> None:
        with self._lock:
            if self._timer is not None:
                self.stream.write(f"{self.message} ...")
                self.stream.flush()
                self.shown = True

    def __enter__(self) -> Progress:
        self._start = time.perf_counter()
        self._timer = threading.Timer(self.delay, self._show)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            assert self._timer is not None
            self._timer.cancel()
            self._timer = None
            if self.shown:
                self.stream.write(f" done ({time.perf_counter() - self._start:.1f} s)\n")
                self.stream.flush()


# -- arguments --------------------------------------------------------------------------------


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    model = common.add_argument_group("model")
    model.add_argument(
        "--model", type=Path, help=f"a GGUF model file (default: the demo model {DEFAULT_MODEL_NAME})"
    )
    model.add_argument("--n-ctx", type=int, default=2048, help="context window in tokens (default 2048)")
    model.add_argument(
        "--n-gpu-layers",
        type=int,
        default=0,
        help="layers on the GPU, -1 = all (Metal/CUDA builds; default 0)",
    )
    model.add_argument("--n-threads", type=int, default=None, help="CPU threads")
    model.add_argument(
        "--chat-template", type=Path, default=None, metavar="FILE",
        help="a Jinja chat template file for --chat, replacing the model's own",
    )
    gen = common.add_argument_group("generation")
    gen.add_argument("-p", "--prompt", required=True, help="the prompt")
    gen.add_argument(
        "--chat", action="store_true", help="send the prompt as a user message through the chat template"
    )
    gen.add_argument(
        "--max-tokens",
        type=int,
        default=None,
        help="stop after this many tokens (default: when the context is full)",
    )
    gen.add_argument("--seed", type=int, default=None, help="same seed, same output")
    gen.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default 0.8)")
    gen.add_argument("--top-k", type=int, default=40, help="0 = off (default 40)")
    gen.add_argument("--top-p", type=float, default=0.95, help="1 = off (default 0.95)")
    gen.add_argument("--min-p", type=float, default=0.05, help="0 = off (default 0.05)")
    gen.add_argument("--stream", action="store_true", help="print the text as it is generated")
    gen.add_argument(
        "--on-incomplete", choices=["raise", "return"], default="raise",
        help="when generation stops before the constraint is complete: 'raise' (exit 1, the default) "
        "or 'return' (print the partial text, exit 0, a note on stderr)",
    )
    gen.add_argument(
        "--track", action="store_true", help="print per-token probabilities, natural vs constrained (stderr)"
    )
    gen.add_argument(
        "--track-rows",
        type=int,
        default=40,
        metavar="N",
        help="with --track: show at most N positions, the first and the last (default 40; 0 = all)",
    )
    gen.add_argument(
        "--no-fast-forward",
        dest="fast_forward",
        action="store_false",
        help="sample every token, text the constraint forces included (default: take it in one batch)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: one subcommand per constraint."""
    parser = argparse.ArgumentParser(
        prog="outlines-gguf",
        description="Constrained generation with GGUF models (llama.cpp).",
        epilog="Exit codes: 0 success, 1 generation failed, 2 bad input.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{regex,json,cfg,choice,serve}")
    common = [_common_options()]
    p = sub.add_parser("regex", parents=common, help="text matching a regular expression")
    p.add_argument("pattern", help="Python re syntax, matched in full")
    p = sub.add_parser("json", parents=common, help="JSON valid against a JSON Schema")
    p.add_argument("schema", help="a JSON Schema file, or the schema as inline JSON")
    p.add_argument("--whitespace-pattern", default=None, help="regex for whitespace between JSON tokens")
    p.add_argument(
        "--lenient", action="store_true",
        help="ignore schema keywords that cannot be enforced instead of refusing the schema",
    )
    p.add_argument(
        "--ref", action="append", default=[], metavar="URI=FILE",
        help="another document the schema's $refs lead to (repeatable; the JSON Schema "
        "meta-schemas need none)",
    )
    p = sub.add_parser("cfg", parents=common, help="text in the language of a Lark or GBNF grammar")
    p.add_argument(
        "grammar",
        help="a Lark grammar file, a llama.cpp GBNF file (.gbnf, or any file with 'root ::= ...'), "
        "a shipped grammar (json, arithmetic, sql_select, program), or the grammar itself inline",
    )
    p = sub.add_parser("choice", parents=common, help="one of the given strings")
    p.add_argument("choices", nargs="+", help="the strings to choose from")
    add_serve_parser(sub)
    return parser


def add_serve_parser(sub: Any) -> None:
    """``serve``: the OpenAI-compatible HTTP server (``outlines_gguf.server``, the ``server`` extra)."""
    p = sub.add_parser("serve", help="an OpenAI-compatible HTTP server (pip install 'outlines-gguf[server]')")
    p.add_argument(
        "--model", type=Path, help=f"a GGUF model file (default: the demo model {DEFAULT_MODEL_NAME})"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--n-ctx", type=int, default=4096, help="context window per instance (default 4096)")
    p.add_argument("--n-gpu-layers", type=int, default=0, help="layers on the GPU, -1 = all (default 0)")
    p.add_argument("--n-threads", type=int, default=None, help="CPU threads per instance")
    p.add_argument("--api-key", default=os.environ.get("OUTLINES_GGUF_API_KEY"),
                   help="require 'Authorization: Bearer KEY' (default: $OUTLINES_GGUF_API_KEY, else none)")
    p.add_argument("--parallel", type=int, default=1, help="model instances, one generation each (default 1)")
    p.add_argument("--chat-template", default=None, help="a Jinja chat template file replacing the model's")
    p.add_argument("--tool-format", choices=["hermes", "llama3", "mistral", "generic"], default=None,
                   help="tool-call format (default: detected from the chat template)")
    p.add_argument("--model-alias", default=None, help="the model id clients see (default: the file name)")
    p.add_argument("--max-body-bytes", type=int, default=None, help="largest request body (default 8 MiB)")
    p.add_argument("--cache-entries", type=int, default=None,
                   help="compiled constraints kept in memory (default 16)")
    p.add_argument("--max-queue", type=int, default=None, help="waiting requests before 503 (default 256)")
    p.add_argument("--reasoning-budget", type=int, default=None,
                   help="default cap on thinking tokens for reasoning models (default: none)")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="a folder replicas share for compiled constraints (needs --cache-key)")
    p.add_argument("--cache-key", default=os.environ.get("OUTLINES_GGUF_CACHE_KEY"),
                   help="secret signing the shared folder's entries (default: $OUTLINES_GGUF_CACHE_KEY)")


def run_serve(args: argparse.Namespace) -> int:
    """Start the server; returns when it is stopped."""
    path = resolve_model(args)
    if args.parallel < 1:
        raise UsageError(f"--parallel must be at least 1, got {args.parallel}")
    template = None
    if args.chat_template is not None:
        try:
            template = Path(args.chat_template).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read chat template {args.chat_template}: {exc.strerror}") from None
    from outlines_gguf.server import (  # ImportError without the server extra: exit 2, with the fix
        ServerConfig,
        serve,
    )

    options = {
        key: getattr(args, key)
        for key in ("max_body_bytes", "cache_entries", "max_queue")
        if getattr(args, key) is not None
    }
    serve(ServerConfig(
        model_path=path, host=args.host, port=args.port, n_ctx=args.n_ctx, n_gpu_layers=args.n_gpu_layers,
        n_threads=args.n_threads, api_key=args.api_key, parallel=args.parallel, chat_template=template,
        tool_format=args.tool_format, model_alias=args.model_alias, reasoning_budget=args.reasoning_budget,
        cache_dir=args.cache_dir, cache_key=args.cache_key, **options,
    ))
    return EXIT_OK


# -- inputs -----------------------------------------------------------------------------------


def read_schema(arg: str) -> Any:
    """A JSON Schema from a file path or inline JSON text."""
    path = Path(arg)
    if path.is_file():
        source, text = str(path), path.read_text(encoding="utf-8")
    else:
        source, text = "inline schema", arg
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        if source == "inline schema" and not arg.lstrip().startswith(("{", "[", '"')):
            raise UsageError(f"schema {arg!r} is neither a file nor inline JSON") from None
        raise UsageError(f"{source} is not valid JSON: {exc}") from None


def read_refs(args: list[str]) -> dict[str, Any]:
    """``--ref URI=FILE`` options: the documents by URI."""
    refs: dict[str, Any] = {}
    for arg in args:
        uri, sep, path = arg.partition("=")
        if not sep or not uri or not path:
            raise UsageError(f"--ref {arg!r}: expected URI=FILE")
        if not Path(path).is_file():
            raise UsageError(f"--ref {arg!r}: no file {path}")
        refs[uri] = read_schema(path)
    return refs


def read_grammar(arg: str) -> str:
    """The text of a grammar file, of a shipped grammar named like one (``json``), or the
    argument itself when it is a grammar (it has a rule: ``name: ...``), as ``json`` takes
    inline schemas."""
    from outlines_gguf import grammars

    path = Path(arg)
    if not path.exists():
        if arg in grammars.names():
            return grammars.load(arg)
        if re.search(r"^\s*[?!]?\w+(\.-?\d+)?\s*:", arg, flags=re.M):
            return arg
        raise UsageError(
            f"cannot read grammar file {arg!r}: there is none, and it is neither a shipped grammar "
            f"({', '.join(grammars.names())}) nor an inline grammar (rules such as 'start: ...')"
        )
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read grammar file {path}: {exc.strerror}") from None


def check_inputs(args: argparse.Namespace) -> None:
    """Read and check what needs no model, so that bad input fails before a slow model load."""
    from outlines_gguf.generate import GenerateOptions

    args.options = GenerateOptions(  # checked here, used for the generation
        max_tokens=args.max_tokens,
        seed=args.seed,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        min_p=args.min_p,
        on_incomplete=args.on_incomplete,
    )
    if args.command == "regex":
        from outlines_gguf.compiler import compile_regex

        compile_regex(args.pattern)
    elif args.command == "json":
        args.schema = read_schema(args.schema)
        args.refs = read_refs(args.ref)
        # the schema's keywords and its root piece need no vocabulary: a typo fails here
        from outlines_gguf.json_schema.loading import prepare_schema
        from outlines_gguf.json_schema.split import split_schema

        canonical, extra = prepare_schema(args.schema, None, args.refs, args.lenient)
        split_schema(canonical, args.whitespace_pattern, args.lenient, extra)
    elif args.command == "cfg":
        path = str(args.grammar)
        args.grammar = read_grammar(args.grammar)
        from outlines_gguf.compiler import compile_gbnf, compile_grammar  # cached: the processor reuses them
        from outlines_gguf.grammar.gbnf_parse import is_gbnf

        if path.endswith(".gbnf") or is_gbnf(args.grammar):
            if not is_gbnf(args.grammar):
                raise UsageError(f"{path} has no GBNF rule ('root ::= ...')")
            compile_gbnf(args.grammar)
        else:
            compile_grammar(args.grammar)


def resolve_model(args: argparse.Namespace) -> Path:
    """The model path to load; UsageError with the fix when it is missing."""
    if args.model is not None:
        if not args.model.is_file():
            raise UsageError(f"model file not found: {args.model}")
        return args.model
    path = default_model_path()
    if not path.is_file():
        raise UsageError(
            f"the default demo model {path} is missing: run `make setup` in the outlines-gguf "
            f"repository (or set {MODELS_ENV}), or pass --model PATH"
        )
    return path


def make_generator(model: Any, args: argparse.Namespace) -> Any:
    """The generator for the subcommand."""
    from outlines_gguf import generate

    track = args.track
    if args.command == "regex":
        return generate.regex(model, args.pattern, track=track)
    if args.command == "json":
        return generate.json(
            model, args.schema, args.whitespace_pattern, lenient=args.lenient, refs=args.refs, track=track
        )
    if args.command == "cfg":
        return generate.cfg(model, args.grammar, track=track)
    return generate.choice(model, args.choices, track=track)


# The fixes that messages name as Python options, as this command line's flags.
CLI_FIXES = (
    ("on_incomplete='return'", "--on-incomplete return"),
    ("lenient=True", "--lenient"),
    ("models.llamacpp(..., chat_template=...)", "--chat-template FILE"),
    ("pass a prompt string", "leave out --chat"),
    ("raise max_tokens", "raise --max-tokens"),
    ("larger n_ctx", "larger --n-ctx"),
    ("max_tokens=", "--max-tokens "),
    ("n_ctx=", "--n-ctx "),
)


def one_line(exc: BaseException) -> str:
    """An exception as one line of text, its fixes named as this command line's flags."""
    text = " ".join(str(exc).splitlines()).strip()
    for python, flag in CLI_FIXES:
        text = text.replace(python, flag)
    return text or type(exc).__name__


# -- running ----------------------------------------------------------------------------------


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Load, build, generate, print; raises UsageError/ValueError for bad input."""
    check_inputs(args)
    path = resolve_model(args)
    from outlines_gguf import models

    models.check_model_file(str(path))  # not GGUF, or a vocabulary-only file: said before loading
    template = None
    if args.chat_template is not None:
        try:
            template = args.chat_template.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read chat template {args.chat_template}: {exc.strerror}") from None
    with Progress(f"loading {path.name}", err):
        try:
            model = models.llamacpp(
                str(path),
                n_ctx=args.n_ctx,
                n_gpu_layers=args.n_gpu_layers,
                n_threads=args.n_threads,
                chat_template=template,
                fast_forward=args.fast_forward,
            )
            model.vocabulary  # noqa: B018 - read it now, inside the progress line
        except ValueError as exc:  # llama.cpp could not load it
            raise UsageError(f"cannot load {path}: {exc}") from None
    with Progress(f"compiling the {args.command} constraint", err):
        generator = make_generator(model, args)
    prompt: Any = [{"role": "user", "content": args.prompt}] if args.chat else args.prompt
    code = EXIT_OK
    try:
        if args.stream:
            for piece in generator.stream(prompt, options=args.options):
                out.write(piece)
                out.flush()
            out.write("\n")
        else:
            generator(prompt, options=args.options)
            out.write(generator.last_result.text + "\n")
        result = generator.last_result
        if result is not None and not result.complete:
            err.write(
                f"outlines-gguf: the text is incomplete (stopped at {result.finish_reason} before the "
                f"{args.command} constraint was complete)\n"
            )
    except (IncompleteGenerationError, ProcessorFailedError) as exc:
        if args.stream:
            out.write("\n")
        err.write(f"outlines-gguf: {one_line(exc)}\n")
        code = EXIT_FAILED
    out.flush()
    if args.track:
        rows = None if args.track_rows <= 0 else args.track_rows
        err.write(generator.logits_processor.table(max_rows=rows) + "\n")
    return code


def _own_stderr() -> TextIO:
    """A stderr that stays visible while llama-cpp-python loads a model.

    It points file descriptor 2 at /dev/null during the load (and swaps
    ``sys.stderr``), which would hide the progress line; a duplicate of the
    descriptor is not affected.
    """
    try:
        fd = os.dup(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # no real descriptor (e.g. captured in a test)
        return sys.stderr
    return os.fdopen(fd, "w", buffering=1, encoding=sys.stderr.encoding or "utf-8", errors="replace")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``outlines-gguf``; returns the exit code."""
    args = build_parser().parse_args(argv)
    err = _own_stderr()
    try:
        if args.command == "serve":
            return run_serve(args)
        return run(args, sys.stdout, err)
    except (UsageError, ValueError, ImportError, OutlinesGGUFError) as exc:
        err.write(f"outlines-gguf: error: {one_line(exc)}\n")
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        err.write("outlines-gguf: interrupted\n")
        return 130
    finally:
        if err is not sys.stderr:
            err.close()
