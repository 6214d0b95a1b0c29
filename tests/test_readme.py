"""Every command and Python example in README.md runs: quick blocks in CI, the whole README in order under ``-m slow``.

Code comes from the README's ```` ```bash ```` and ```` ```python ```` blocks. Each runs offline in a scratch
folder whose entries link to the repository's (and ``../shared`` to the data beside it), with its own
``outputs/``, so what the examples write never lands in the working tree. ``pip install`` steps are not run
here: they must be the install steps of ``.ci/run``, which CI runs first. A block is slow when it trains,
launches ``accelerate``, converts a checkpoint or runs a benchmark; the slow test runs every block in README
order in one folder, as a newcomer would, skipping only lines that need hardware this machine lacks.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
CI_SCRIPT = REPO_ROOT / ".ci" / "run"
SHARED = REPO_ROOT.parent / "shared"

SLOW_MARKERS = ("accelerate launch", "recipes/", "benchmarks/", "convert", "scripts/")
"""Code containing one of these takes minutes (or rewrites committed files): it runs only with ``-m slow``."""

HARDWARE_NEEDS = {"multi_node.yaml": 10**6, "multi_gpu.yaml": 2, "fsdp.yaml": 2, "--device cuda": 1}
"""Marker → CUDA devices a line needs (multi-node launches need machines no test has)."""

RELEASED_CHECKPOINT_PLACEHOLDER = "path/to/CLOUD/ckpt"
"""How the README names the released checkpoint's folder (not downloadable offline: the test writes a stand-in)."""

FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)


def readme_blocks() -> list[tuple[str, str]]:
    """``(language, code)`` of every bash and python block of README.md, in order."""
    blocks = FENCE.findall(README.read_text(encoding="utf-8"))
    return [(language, code) for language, code in blocks if language in ("bash", "python")]


def command_lines(code: str) -> list[str]:
    """Command lines of a bash block: ``\\`` continuations joined, comments and blank lines dropped."""
    joined = code.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip() and not line.strip().startswith("#")]


def without_installs(line: str) -> str:
    """``line`` without its ``pip install`` steps (CI's ``.ci/run`` installs before the tests run)."""
    return " && ".join(part.strip() for part in line.split("&&") if not part.strip().startswith("pip install"))


def normalised(command: str) -> list[str]:
    """Words of a command without environment assignments; ``python -m pip`` and ``pip`` alike, pip's ``-q`` dropped."""
    words = [word for word in shlex.split(command, comments=True) if not re.fullmatch(r"[A-Z_]+=\S*", word)]
    if words[:3] == ["python", "-m", "pip"]:
        words = ["pip", *words[3:]]
    return [word for word in words if word != "-q"] if words[:1] == ["pip"] else words


def ci_commands() -> list[str]:
    return [
        line.strip() for line in CI_SCRIPT.read_text(encoding="utf-8").splitlines()
        if line.strip().startswith(("python -m pip", "python tests/conformance/fetch", "ruff", "python -m pytest"))
    ]


def missing_hardware(line: str) -> str | None:
    """Why ``line`` cannot run on this machine, or None."""
    import torch

    available = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for marker, needed in HARDWARE_NEEDS.items():
        if marker in line and available < needed:
            return f"needs {'several machines' if needed > 64 else f'{needed} CUDA device(s)'} ({marker})"
    return None


def runnable_code(language: str, code: str) -> str:
    """The part of a block a test runs: bash without installs, the test command and lines needing absent hardware."""
    if language == "python":
        return code
    lines = [without_installs(line) for line in command_lines(code)]
    return "\n".join(line for line in lines if line and "pytest" not in line and missing_hardware(line) is None)


def is_slow(code: str) -> bool:
    return any(marker in code for marker in SLOW_MARKERS)


def make_scratch(scratch: Path) -> Path:
    """``scratch/repo`` with links to the repository's entries (not ``outputs/``) and ``scratch/shared``."""
    workdir = scratch / "repo"
    workdir.mkdir(exist_ok=True)
    for entry in REPO_ROOT.iterdir():
        if entry.name not in (".git", "outputs") and not (workdir / entry.name).exists():
            (workdir / entry.name).symlink_to(entry)
    if SHARED.exists() and not (scratch / "shared").exists():
        (scratch / "shared").symlink_to(SHARED)
    return workdir


def run_block(language: str, code: str, workdir: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run one block's runnable code offline in ``workdir``."""
    if RELEASED_CHECKPOINT_PLACEHOLDER in code and not (workdir / RELEASED_CHECKPOINT_PLACEHOLDER).exists():
        write_reference_shaped_checkpoint(workdir / RELEASED_CHECKPOINT_PLACEHOLDER)
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if language == "python":
        command = [sys.executable, "-c", code]
    else:
        command = ["bash", "-euo", "pipefail", "-c", runnable_code(language, code)]
    return subprocess.run(command, cwd=workdir, env=environment, capture_output=True, text=True, timeout=timeout)


def write_reference_shaped_checkpoint(folder: Path) -> None:
    """A 2-layer ``BertForMaskedLM`` saved like the released checkpoint, with the reference tokenizer files."""
    from transformers import BertConfig, BertForMaskedLM

    tokenizer_folder = SHARED / "data" / "reference" / "tokenizer"
    if not tokenizer_folder.is_dir():
        pytest.skip(f"{tokenizer_folder} is absent: no reference tokenizer to build a stand-in checkpoint")
    config = BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=1, intermediate_size=256,
                        max_position_embeddings=64, type_vocab_size=1)
    BertForMaskedLM(config).save_pretrained(folder)
    for file in tokenizer_folder.iterdir():
        shutil.copy(file, folder / file.name)


def report(result: subprocess.CompletedProcess, code: str) -> str:
    return f"{code}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"


def test_readme_opens_with_the_main_job_and_the_ci_test_command():
    (_, main_job), (_, test_command) = readme_blocks()[:2]
    main_job, test_command = command_lines(main_job)[0], command_lines(test_command)[0]
    assert "HF_HUB_OFFLINE=1 cloud-hf predict examples/" in main_job
    assert [normalised(part) for part in test_command.split("&&")] == [normalised(line) for line in ci_commands()]
    # the main job installs what CI installs, without the test extras
    ci_installs = [normalised(line) for line in ci_commands() if "pip" in line]
    allowed = [*ci_installs, [word.replace(".[test]", ".") for install in ci_installs for word in install
                              if "[test]" in " ".join(install)]]
    for install in (part for part in main_job.split("&&") if part.strip().startswith("pip install")):
        assert normalised(install) in allowed, f"{install!r} is not an install step of {CI_SCRIPT}"


def test_main_job_runs_offline_on_the_bundled_model(tmp_path):
    """The first command (after the installs CI has done) prints one row per example and no failure."""
    language, code = readme_blocks()[0]
    result = run_block(language, code, make_scratch(tmp_path), timeout=600)
    assert result.returncode == 0, report(result, code)
    examples = sorted(path.name for path in (REPO_ROOT / "examples").glob("*.cif"))
    table = result.stdout.splitlines()
    assert "debye_temperature@300K [K]" in table[0] and "heat_capacity@300K [J/(mol·K)]" in table[0]
    assert "entropy@300K [J/(mol·K)]" in table[0] and " ± " in table[1]
    assert [line.split()[0] for line in table[1:-1]] == examples
    assert table[-1] == f"{len(examples)} ok, 0 failed"


def quick_blocks(language: str) -> list[str]:
    """Blocks after the two opening commands that are not slow and have something to run, in README order."""
    return [
        code for index, (block_language, code) in enumerate(readme_blocks())
        if index >= 2 and block_language == language and not is_slow(code) and runnable_code(language, code).strip()
    ]


@pytest.mark.parametrize("code", [pytest.param(code, id=code.strip().splitlines()[0][:60]) for code in quick_blocks("bash")])
def test_readme_shell_block_runs(code, tmp_path):
    result = run_block("bash", code, make_scratch(tmp_path), timeout=600)
    assert result.returncode == 0, report(result, code)


EXAMPLE_RUNNER = """
import sys, traceback
failures = 0
for index, code in enumerate(EXAMPLES):
    try:
        exec(compile(code, f"<README python example {index + 1}>", "exec"), {"__name__": "__main__"})
    except BaseException:
        failures += 1
        print(f"--- README python example {index + 1} failed:\\n{code}", file=sys.stderr)
        traceback.print_exc()
sys.exit(failures)
"""


def test_readme_python_examples_run(tmp_path):
    """Every quick Python example, each in a fresh namespace, in one interpreter (one import of torch & co.)."""
    examples = quick_blocks("python")
    runner = f"EXAMPLES = {examples!r}\n{EXAMPLE_RUNNER}"
    result = run_block("python", runner, make_scratch(tmp_path), timeout=900)
    assert result.returncode == 0, f"{result.returncode} of {len(examples)} examples failed:\n{result.stderr[-6000:]}"


@pytest.mark.slow
def test_whole_readme_runs_in_order(tmp_path):
    """Every block, top to bottom, in one folder (later blocks use what earlier ones trained)."""
    workdir = make_scratch(tmp_path)
    for language, code in readme_blocks():
        if not runnable_code(language, code).strip():
            continue
        result = run_block(language, code, workdir, timeout=7200)
        assert result.returncode == 0, report(result, code)
