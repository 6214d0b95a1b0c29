"""``cloud-hf convert-reference``: the released CLOUD checkpoint (BertForMaskedLM) as a cloud-hf checkpoint.

Example::

    cloud-hf convert-reference path/to/CLOUD/ckpt converted/
    python -c "from transformers import AutoModelForMaskedLM; import cloud_hf; AutoModelForMaskedLM.from_pretrained('converted')"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cloud_hf.cli import plain_text


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``cloud-hf convert-reference``."""
    parser = subparsers.add_parser(
        "convert-reference",
        help="convert the released CLOUD checkpoint (BertForMaskedLM + BERT tokenizer) into a cloud-hf checkpoint",
        description=plain_text(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", type=Path, metavar="SRC",
                        help="reference folder: config.json, model.safetensors, vocab.txt, added_tokens.json, ...")
    parser.add_argument("dst", type=Path, metavar="DST", help="output folder of the cloud-hf checkpoint")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="also read pytorch_model.bin when no safetensors weights exist (trusted sources only)")
    parser.set_defaults(func=run_convert)


def run_convert(args: argparse.Namespace) -> int:
    """Convert ``args.src`` into ``args.dst``; print the result or the reason it failed (exit code 1)."""
    from cloud_hf.conversion import convert_reference_checkpoint

    try:
        destination = convert_reference_checkpoint(args.src, args.dst, allow_pickle=args.allow_pickle)
    except (OSError, ValueError, KeyError) as error:
        print(f"error: cannot convert {args.src}: {error}", file=sys.stderr)
        return 1
    print(f"converted {args.src} -> {destination} (CloudForMaskedLM + CloudTokenizerFast, SCOPE mode 'reference')")
    return 0
