"""`python -m runtime encode|info|serve`: a thin argparse shell over the runtime package."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from runtime.core.options import EncodeOptions
from runtime.errors import SpladeError
from runtime.flags import add_model_flags, encoder_options

_E = EncodeOptions()  # encode flag defaults are the options' own


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m runtime", description="Run exported SPLADE models.")
    sub = parser.add_subparsers(dest="command", required=True)

    enc = sub.add_parser("encode", help="encode texts given as arguments, or a JSONL corpus")
    add_model_flags(enc)
    enc.add_argument("texts", nargs="*", metavar="TEXT", help="texts to encode (prints their top terms)")
    enc.add_argument("--top-k", type=int, default=_E.top_k, help="keep at most K terms per text")
    enc.add_argument("--threshold", type=float, default=_E.threshold, help="drop weights <= this. Default: %(default)s")
    enc.add_argument("--max-ratio", type=float, default=_E.max_ratio,
                     help="keep weights >= this × each text's largest weight, in [0, 1] (OpenSearch's max_ratio)")
    enc.add_argument("--alpha-mass", type=float, default=_E.alpha_mass,
                     help="keep each text's heaviest terms while they hold at most this share of its total weight, "
                          "in [0, 1] (OpenSearch's alpha_mass)")
    enc.add_argument("--prompt-name", default=_E.prompt_name,
                     help="a prompt of the model folder (sentence-transformers prompts) put before each text "
                          "(default: the folder's default prompt, if any)")
    enc.add_argument("--kind", choices=["document", "query"], default="document",
                     help="the texts are documents or queries: the folder's prompt for that kind applies unless "
                          "--prompt-name names one, as in the server's /encode. Default: %(default)s")
    enc.add_argument("--truncation-direction", choices=["right", "left"], default=_E.truncation_direction,
                     help="which end of an over-long text is cut. Default: %(default)s")
    enc.add_argument("--json", action="store_true", help="print JSON ({token: weight} per text)")
    enc.add_argument("--no-truncate", action="store_true",
                     help="encode over-long texts as overlapping windows, max-merged (default: cut at max length)")
    enc.add_argument("--batch-size", type=int, default=_E.batch_size, help="texts per batch. Default: %(default)s")
    enc.add_argument("--input", type=Path, help='JSONL corpus, one {"id": ..., "text": ...} per line')
    enc.add_argument("--output", type=Path, help="JSONL to append to; ids already there are skipped (resume)")
    enc.add_argument("--format", choices=["tokens", "indices"], default=None,
                     help='output rows: {"id", "vector": {token: weight}} (default) or {"id", "indices", "values"}; '
                          "with --ray only indices (the columns Ray writes)")
    enc.add_argument("--keep-first-duplicate", action="store_true",
                     help="a repeated id keeps its first text and skips the rest (default: refuse, naming both lines)")
    ray = enc.add_argument_group("Ray Data (the `ray` extra): --input/--output are Parquet or JSONL files or folders")
    ray.add_argument("--ray", action="store_true", help="encode on a Ray cluster (local if none is running)")
    ray.add_argument("--num-actors", type=int, default=1, help="actors, each holding one model. Default: %(default)s")
    ray.add_argument("--num-gpus-per-actor", type=float, default=0, help="Default: %(default)s")

    info = sub.add_parser("info", help="show the manifest, the providers available and the one that would run")
    add_model_flags(info)

    from runtime.serving.cli import add_serve_parser  # the server's flags live with the server
    add_serve_parser(sub)
    return parser


def _encode(args) -> int:
    from runtime.core.encoder import open_encoder
    from runtime.jobs.corpus import encode_corpus

    if bool(args.input) != bool(args.output):
        raise SystemExit("error: --input and --output go together")
    if not args.input and not args.texts:
        raise SystemExit("error: give TEXT arguments or --input/--output")
    options = EncodeOptions(top_k=args.top_k, threshold=args.threshold, max_ratio=args.max_ratio,
                            alpha_mass=args.alpha_mass, batch_size=args.batch_size, prompt_name=args.prompt_name,
                            truncation="windows" if args.no_truncate else "cut",
                            truncation_direction=args.truncation_direction)
    if args.ray:
        from runtime.jobs.ray import encode_files

        if not args.input:
            raise SystemExit("error: --ray needs --input and --output")
        if args.format == "tokens":
            raise SystemExit("error: --format tokens is not available with --ray (it writes indices and values columns)")
        if args.keep_first_duplicate:
            raise SystemExit("error: --keep-first-duplicate is not available with --ray; remove the repeated ids")
        if args.allow_failed_validation:
            raise SystemExit("error: --allow-failed-validation is not available with --ray; re-export the model "
                             "or encode without --ray")
        n = encode_files(args.model, args.input, args.output, options, num_actors=args.num_actors,
                         batch_size=args.batch_size, num_gpus_per_actor=args.num_gpus_per_actor, provider=args.provider,
                         threads=args.threads, kind=args.kind)
        print(f"encoded {n} texts into {args.output}", file=sys.stderr)
        return 0
    encoder = open_encoder(args.model, args.provider, **encoder_options(args))
    if args.input:
        n = encode_corpus(encoder, args.input, args.output, options, kind=args.kind, fmt=args.format or "tokens",
                          keep_first_duplicate=args.keep_first_duplicate)
        print(f"encoded {n} new texts into {args.output}", file=sys.stderr)
        return 0
    vectors = encoder.encode(args.texts, encoder.for_task(args.kind, options))
    if args.json:
        print(json.dumps([encoder.decode(v) for v in vectors], ensure_ascii=False))
        return 0
    for text, vec in zip(args.texts, vectors):
        terms = list(encoder.decode(vec).items())[: args.top_k or 10]
        print(f"{text!r} ({len(vec)} terms): " + ", ".join(f"{t} {w:.2f}" for t, w in terms))
    return 0


def _info(args) -> int:
    import onnxruntime as ort

    from runtime.core.encoder import open_encoder

    encoder = open_encoder(args.model, args.provider, **encoder_options(args))
    print(json.dumps({
        "manifest": json.loads(encoder.manifest.to_json()),
        "providers_available": ort.get_available_providers(),
        **encoder.running(),
    }, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    verbose = getattr(args, "verbose", False) or args.command == "serve"
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s", force=True)
    try:
        if args.command == "encode":
            return _encode(args)
        if args.command == "info":
            return _info(args)
        from runtime.serving.cli import run_server
        return run_server(args)
    except SpladeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
