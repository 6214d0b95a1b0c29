"""Write the canonical-SCOPE tokenizer to the repository's ``tokenizer/`` folder, deterministically.

    python scripts/build_tokenizer.py                 # regenerate tokenizer/
    python scripts/build_tokenizer.py --output DIR    # write elsewhere (tests compare it with tokenizer/)

The vocabulary is the special tokens followed by ``cloud_hf.scope.canonical_vocabulary()``; the SCOPE settings
(``ScopeEncoder(mode="canonical").to_dict()``: mode, format version, backend, tolerances) are recorded under
``scope`` in ``tokenizer_config.json``. Rerun it whenever the canonical vocabulary or its settings change.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cloud_hf.tokenization_cloud import CANONICAL_MAX_LENGTH, build_canonical_tokenizer

REPO_TOKENIZER_DIR = Path(__file__).resolve().parents[1] / "tokenizer"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO_TOKENIZER_DIR, help="output folder (default: tokenizer/)")
    parser.add_argument("--model-max-length", type=int, default=CANONICAL_MAX_LENGTH,
                        help=f"longest sequence in tokens, [CLS]/[SEP] included (default {CANONICAL_MAX_LENGTH})")
    args = parser.parse_args(argv)
    tokenizer = build_canonical_tokenizer(model_max_length=args.model_max_length)
    args.output.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(args.output)
    print(f"wrote {args.output}: {len(tokenizer)} tokens, scope {tokenizer.scope_config}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
